"""The preflight role through ansible-playbook, against crafted inventories on the controller (no nodes).

Facts are not gathered (preflight_gather_facts: false), so the OS, disk and interface checks are skipped with
their reason and the result does not depend on the machine running the tests; those checks are covered by
test_preflight_filter.py and on a real node by roles/preflight/molecule/default.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ANSIBLE_PLAYBOOK = BIN / "ansible-playbook"

pytestmark = pytest.mark.skipif(not ANSIBLE_PLAYBOOK.exists(), reason="ansible-playbook is not in this venv")

CONTRACT = {
    "node_mgmt_interface": "eth0",
    "node_fabric_interface": "eth1",
    "node_fabric_prefix": 24,
    "node_fabric_mtu": 9000,
    "node_gpu_model": "none",
    "node_gpu_count": 0,
    "bmc_endpoint": "https://127.0.0.1:8000",
    "bmc_username": "admin",
    "bmc_password": "{{ lookup('ansible.builtin.env', 'BMAI_TEST_UNSET_VAR', default='pw') }}",
    "bmc_ca_file": "/etc/ssl/certs/ca-certificates.crt",
}

PLAYBOOK = """
- name: Preflight
  hosts: gpu_nodes
  gather_facts: false
  roles:
    - role: preflight
      vars:
        preflight_gather_facts: false
- name: After preflight
  hosts: gpu_nodes
  gather_facts: false
  tasks:
    - name: Reached
      ansible.builtin.debug:
        msg: reached
"""


def host(n: int, **overrides: Any) -> dict[str, Any]:
    return {
        "ansible_host": f"127.0.0.{10 + n}",
        "node_fabric_address": f"198.51.100.{n}",
        "bmc_system_id": f"node{n}",
        **overrides,
    }


def run(tmp_path: Path, hosts: dict[str, dict[str, Any]], *args: str) -> tuple[int, dict[str, Any]]:
    inventory = {
        "gpu_nodes": {
            "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, **CONTRACT},
            "hosts": hosts,
        }
    }
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    (tmp_path / "ansible.cfg").write_text("[defaults]\nretry_files_enabled = False\n")
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(tmp_path / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "collections"),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp"),
        "ANSIBLE_HOME": str(tmp_path / "home"),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    proc = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", str(tmp_path / "hosts.yml"), str(tmp_path / "play.yml"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.stdout.lstrip().startswith("{"), proc.stdout + proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def task_results(out: dict[str, Any], name: str) -> dict[str, dict[str, Any]]:
    """The results of the task called ``name`` (without role prefix), hosts that skipped it left out."""
    for play in out["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"].split(" : ", 1)[-1] == name:
                return {h: r for h, r in task["hosts"].items() if not r.get("skipped")}
    return {}


def test_clean_inventory_passes_without_changes_in_check_mode(tmp_path: Path) -> None:
    rc, out = run(tmp_path, {"node1": host(1), "node2": host(2)}, "--check")
    assert rc == 0
    for name, stats in out["stats"].items():
        assert stats["changed"] == 0 and stats["failures"] == 0, name
    verified = task_results(out, "Assert that every check was evaluated and none failed")
    assert set(verified) == {"node1", "node2"}
    assert "passed required_vars, mtu, unique_addresses" in verified["node1"]["msg"]
    skipped = task_results(out, "Show the checks that were skipped, and why")["node1"]["msg"]
    assert [s.split(":")[1].strip() for s in skipped] == [
        "os check skipped",
        "interfaces check skipped",
    ]
    # Without facts, free space still comes from `df` on the (local) host.
    assert "disk" in verified["node1"]["msg"].split("skipped")[0]
    assert set(task_results(out, "Reached")) == {"node1", "node2"}


def test_bad_inventory_lists_every_problem_and_stops_every_host(tmp_path: Path) -> None:
    hosts = {
        "node1": host(1, node_fabric_mtu=9600, bmc_password="{{ lookup('ansible.builtin.file', '/nonexistent/pw') }}"),
        "node2": host(2, node_fabric_address="198.51.100.1", node_fabric_prefix="24"),
        "node3": host(3),
    }
    del hosts["node1"]["bmc_system_id"]
    rc, out = run(tmp_path, hosts)
    assert rc == 2
    failed = task_results(out, "Fail with every problem found on this host")
    assert set(failed) == {"node1", "node2"}
    node1 = failed["node1"]["msg"]
    assert [m.split(" Fix: ")[0] for m in node1] == [
        "node1: bmc_system_id is missing (Redfish system id of the node).",
        "node1: bmc_password (BMC password (usually a lookup)) cannot be evaluated: The lookup plugin "
        "'ansible.builtin.file' failed: Unable to access the file '/nonexistent/pw': File not found. Use -vvvvv "
        "to see paths searched.",
        "node1: node_fabric_mtu = 9600 is outside 1280..9216 (the fabric MTU; IPv6 needs at least 1280, common "
        "NICs allow at most 9216).",
        "node1: node_fabric_address = '198.51.100.1' is also used by node2 (node_fabric_address).",
    ]
    assert all(" Fix: " in m for m in node1)
    assert [m.split(" Fix: ")[0] for m in failed["node2"]["msg"]] == [
        "node2: node_fabric_prefix = '24' is a string, not an integer (prefix length of the fabric network, e.g. 24).",
        "node2: node_fabric_address = '198.51.100.1' is also used by node1 (node_fabric_address).",
    ]
    # node3 passed its own checks but is stopped, so nothing changes anywhere
    stopped = task_results(out, "Stop the hosts that passed when another host failed")["node3"]
    assert stopped["failed"] and "preflight failed or could not run on node1, node2" in stopped["msg"]
    assert task_results(out, "Reached") == {}


def test_bad_hosts_can_be_dropped_while_the_rest_go_on(tmp_path: Path) -> None:
    hosts = {"node1": host(1, node_fabric_mtu=100), "node2": host(2)}
    rc, out = run(tmp_path, hosts, "-e", '{"preflight_failure_stops_all_hosts": false}')
    assert rc == 2
    assert set(task_results(out, "Fail with every problem found on this host")) == {"node1"}
    assert set(task_results(out, "Reached")) == {"node2"}
