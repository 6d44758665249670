"""playbooks/rolling_upgrade.yml on a 3-node lab (`roll`): node2's fabric MTU is broken before the run, so node2
fails its post-upgrade validation. The run must go node by node (drain, upgrade, validate, undrain), stop after
node2 (which stays drained), never touch node3, and say so.

Lab nodes declare no GPU, so the driver/CUDA/NCCL roles are skipped here (their upgrade paths are covered by
their Molecule scenarios); this test proves the orchestration: serial batches, hooks, validation, stop-the-line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from baremetal_ai.lab import podman

pytestmark = [pytest.mark.e2e, pytest.mark.podman]
ROOT = Path(__file__).resolve().parents[2]
LAB = "roll"
BIN = Path(sys.executable).parent


def lab_cli(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "baremetal_ai.cli", "lab", args[0], "--name", LAB, *args[1:]],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def lab():
    lab_cli("down")
    try:
        # Without the GPU software stack: test_lab_e2e.py converges and checks it; here it would only add minutes.
        lab_cli("up", "--nodes", "3", "--no-gpu-stack")
        yield json.loads((ROOT / ".lab" / LAB / "lab.json").read_text())
    finally:
        lab_cli("down")


def recap(output: str) -> dict[str, dict[str, int]]:
    out = {}
    for m in re.finditer(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", output, flags=re.M):
        out[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return out


def test_rolling_upgrade_stops_after_the_node_that_fails_validation(lab, tmp_path):
    n1, n2, n3 = lab["nodes"]
    r = podman.run(["exec", n2["container"], "ip", "link", "set", "eth1", "mtu", "1500"], check=False)
    assert r.returncode == 0, r.stderr
    hooks = tmp_path / "hooks.log"
    extra = {"rolling_upgrade_drain_command": f"sh -c 'echo drain {{{{ inventory_hostname }}}} >> {hooks}'",
             "rolling_upgrade_undrain_command": f"sh -c 'echo undrain {{{{ inventory_hostname }}}} >> {hooks}'",
             "validation_results_dir": str(tmp_path / "results")}
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp_path)}
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(ROOT / "inventories" / LAB),
                           str(ROOT / "playbooks" / "rolling_upgrade.yml"), "-e", json.dumps(extra)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-4000:]
    # node by node: node1 drained, validated, undrained; node2 drained and left drained; node3 never touched
    assert hooks.read_text().split("\n")[:-1] == [f"drain {n1['name']}", f"undrain {n1['name']}",
                                                  f"drain {n2['name']}"], out[-4000:]
    rc = recap(proc.stdout)
    assert rc[n1["name"]]["failed"] == 0 and rc[n2["name"]]["failed"] == 1
    assert n3["name"] not in rc or rc[n3["name"]]["ok"] == 0, rc
    # the message names the failed node, why, and the nodes not upgraded
    assert f"{n2['name']} failed validation after its upgrade and stays drained; not upgraded: {n3['name']}" in out
    assert "contract: mtu.eth1 is 1500" in out
    # node1's validation ran (validate.yml, tier quick) and wrote its result
    assert list((tmp_path / "results").glob(f"rolling-{n1['name']}-*/{n1['name']}.json"))
