"""The network, numa and rdma roles on a 2-node lab (`net`): converge, the 9000-byte path MTU across the fabric
(8972 passes, 8973 fails), iperf3 between the nodes over the fabric, then a power cycle of node2 through its BMC
(Redfish ForceOff, On) and the roles' own verify phases (`--tags *_verify`) proving that the MTU, the persisted
sysctls, the boot units and the rendered QoS/IRQ configuration are still in force.

What a lab node cannot show (it shares the host kernel): live sysctls (/proc/sys is read-only), IRQs, DCB, RDMA
devices. The verify phases report those as skipped with the reason; this test checks that they say so.
The lab's eth1 also gets MTU 9000 from its podman network on every start, so after the restart the MTU is
proved by the role's verify, not attributable to the role alone; the boot units' fresh status files in /run
(a tmpfs, empty after the power cycle) are what proves that the role's units ran at boot.

The tests in this module run in order and share one lab; the lab is taken down at the end, also on failure.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sushy

from baremetal_ai.lab import podman

pytestmark = [pytest.mark.e2e, pytest.mark.podman]
ROOT = Path(__file__).resolve().parents[2]
LAB = "net"
BIN = Path(sys.executable).parent
PLAYBOOK = ROOT / "tests" / "e2e" / "playbooks" / "network_roles.yml"
VERIFY_TAGS = "network_verify,numa_verify,rdma_verify"


def lab_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "baremetal_ai.cli", "lab", args[0], "--name", LAB, *args[1:]],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def ansible_env(tmp: Path) -> dict[str, str]:
    # A private ControlPath dir: a live ControlPersist master would hide a changed host key.
    return {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_ROLES_PATH": str(ROOT / "roles"), "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "collections"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp)}


def playbook(tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", str(ROOT / "inventories" / LAB), str(PLAYBOOK),
                           *extra], cwd=ROOT, env=ansible_env(tmp), capture_output=True, text=True, timeout=600,
                          check=False)


def recap(output: str) -> dict[str, dict[str, int]]:
    out = {}
    for m in re.finditer(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", output, flags=re.M):
        out[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return out


def sh(container: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return podman.run(["exec", container, *argv], check=False)


def wait(pred, timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return time.monotonic() - t0
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout} s")


@pytest.fixture(scope="module")
def lab():
    lab_cli("down")
    t0 = time.monotonic()
    try:
        # Without the GPU software stack: test_lab_e2e.py converges and checks it; here it would only add minutes.
        lab_cli("up", "--nodes", "2", "--no-gpu-stack")
        print(f"lab up (2 nodes) took {time.monotonic() - t0:.1f} s")
        yield json.loads((ROOT / ".lab" / LAB / "lab.json").read_text())
    finally:
        lab_cli("down")


@pytest.fixture(scope="module")
def cp_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cp")


@pytest.fixture(scope="module")
def converged(lab, cp_dir):
    t0 = time.monotonic()
    proc = playbook(cp_dir)
    print(f"roles network, numa, rdma on 2 nodes: {time.monotonic() - t0:.0f} s")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    return proc.stdout


def test_converge_proves_the_path_mtu_and_reports_skips(lab, converged):
    names = [n["name"] for n in lab["nodes"]]
    assert set(recap(converged)) == set(names)
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in recap(converged).values())
    # the network role's verify pinged the next node: 8972 bytes DF passed, 8973 failed
    for peer in (lab["nodes"][1], lab["nodes"][0]):
        assert f"{peer['name']} {peer['fabric_ip']}: 8972 bytes must pass" in converged
        assert f"{peer['name']} {peer['fabric_ip']}: 8973 bytes must fail" in converged
    # honest skips, with reasons
    assert "driver veth does not report ring parameters" in converged
    assert "driver veth has no DCB netlink (dcbnl) support" in converged
    assert "RDMA port and GID checks skipped" in converged
    assert "/proc/sys is read-only here (container)" in converged


def test_path_mtu_9000_between_the_nodes(lab, converged):
    a, b = lab["nodes"]
    assert sh(a["container"], "cat", "/sys/class/net/eth1/mtu").stdout.strip() == "9000"
    ok = sh(a["container"], "ping", "-c", "1", "-W", "2", "-M", "do", "-s", "8972", b["fabric_ip"])
    assert ok.returncode == 0, ok.stdout + ok.stderr
    big = sh(a["container"], "ping", "-c", "1", "-W", "2", "-M", "do", "-s", "8973", b["fabric_ip"])
    assert big.returncode != 0
    print(f"path MTU {a['name']} -> {b['name']} ({b['fabric_ip']}): 8972-byte DF payload passes, 8973 fails")


def test_iperf3_over_the_fabric(lab, converged):
    a, b = lab["nodes"]
    server = sh(b["container"], "iperf3", "-s", "-1", "-D", "-B", b["fabric_ip"])
    assert server.returncode == 0, server.stderr
    time.sleep(0.5)
    client = sh(a["container"], "iperf3", "-c", b["fabric_ip"], "-t", "5", "-J")
    assert client.returncode == 0, client.stdout[-2000:] + client.stderr
    result = json.loads(client.stdout)
    gbits = result["end"]["sum_received"]["bits_per_second"] / 1e9
    print(f"iperf3 {a['name']} -> {b['name']} over the fabric (veth, MTU 9000, 5 s, 1 stream): {gbits:.1f} Gbit/s")
    assert gbits > 0.1


def test_bmc_power_cycle_then_the_roles_verify_still_passes(lab, converged, cp_dir):
    node = lab["nodes"][1]
    container = node["container"]
    before = sh(container, "stat", "-c", "%Y", "/run/baremetal-ai/rdma-qos.status").stdout.strip()
    bmc = lab["bmc"]
    conn = sushy.Sushy(bmc["endpoint"] + "/redfish/v1", username=bmc["username"],
                       password=(ROOT / ".lab" / LAB / "bmc" / "password").read_text().strip(),
                       verify=bmc["ca_file"])
    system = conn.get_system(f"/redfish/v1/Systems/{node['bmc_system_id']}")
    t0 = time.monotonic()
    system.reset_system(sushy.ResetType.FORCE_OFF)
    wait(lambda: not podman.is_running(container), 40, f"{container} off after ForceOff")
    system.reset_system(sushy.ResetType.ON)
    wait(lambda: podman.is_running(container), 40, f"{container} on after On")

    def ssh_ok() -> bool:
        p = subprocess.run([str(BIN / "ansible"), "-i", str(ROOT / "inventories" / LAB), node["name"], "-m",
                            "ansible.builtin.ping"], cwd=ROOT, env=ansible_env(cp_dir), capture_output=True,
                           text=True, check=False)
        return p.returncode == 0

    wait(ssh_ok, 90, f"SSH to {node['name']}")
    print(f"{node['name']} power-cycled through its BMC, SSH back after {time.monotonic() - t0:.0f} s")
    # /run is a tmpfs: the status files are new, written by the role's units at this boot
    after = sh(container, "stat", "-c", "%Y", "/run/baremetal-ai/rdma-qos.status").stdout.strip()
    assert after and after != before
    proc = playbook(cp_dir, "--tags", VERIFY_TAGS)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    rec = recap(proc.stdout)
    assert all(r["failed"] == 0 and r["changed"] == 0 for r in rec.values()), rec
    for task in ("Assert the live MTU", "Assert the persisted MTU", "Assert the persisted sysctls",
                 "Assert that the units are enabled and ran successfully",
                 "Assert that the rendered scripts, units and QoS record are what the variables say",
                 "Assert that the rendered scripts, units and configs are what the variables say",
                 "Assert that topology.json still describes this hardware",
                 "Assert that the units are enabled and their last run succeeded"):
        assert task in proc.stdout, task
    assert f"{lab['nodes'][0]['fabric_ip']}: 8972 bytes must pass" in proc.stdout
    # the same facts straight from the node
    assert sh(container, "cat", "/sys/class/net/eth1/mtu").stdout.strip() == "9000"
    units = ["baremetal-network-tuning", "baremetal-rdma-qos", "baremetal-rdma-cm", "baremetal-irq-affinity",
             "baremetal-numa-tuning", "systemd-networkd"]
    states = sh(container, "systemctl", "is-active", *units).stdout.split()
    assert states == ["active"] * len(units), dict(zip(units, states, strict=False))
    conf = sh(container, "cat", "/etc/sysctl.d/90-baremetal-ai-network.conf").stdout
    assert "net.core.rmem_max=134217728" in conf.replace(" ", "")
    print(f"after the power cycle: verify of network/numa/rdma passed on both nodes ({rec})")
