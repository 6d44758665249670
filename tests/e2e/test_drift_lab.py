"""The watch stage on a 2-node lab (`drift`): converge (which records the baseline), a drift run that finds
nothing; then drifts injected behind Ansible's back (eth1 MTU, a removed package, a rendered config file on
node1; an edited sysctl file and a stopped service on node2) and a drift run that names every one with its host;
a converge, after which the drift report is back to zero; and a stopped node container, which the drift run
reports as unreachable (exit status 4), never as drift-free.

Then the nightly job's systemd units (deploy/systemd/) under a lab node's real systemd.

The tests in this module run in order and share one lab; the lab is taken down at the end, also on failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from baremetal_ai.lab import podman

pytestmark = [pytest.mark.e2e, pytest.mark.podman]
ROOT = Path(__file__).resolve().parents[2]
LAB = "drift"
BIN = Path(sys.executable).parent
SYSCTL_FILE = "/etc/sysctl.d/90-baremetal-ai-network.conf"
SSHD_DROPIN = "/etc/ssh/sshd_config.d/00-baremetal-ai.conf"


def lab_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "baremetal_ai.cli", "lab", args[0], "--name", LAB, *args[1:]],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def ansible_env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_ROLES_PATH": str(ROOT / "roles"), "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "collections"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp / "cp")}


def sh(container: str, script: str) -> subprocess.CompletedProcess[str]:
    return podman.run(["exec", container, "sh", "-c", script], check=False)


@pytest.fixture(scope="module")
def lab():
    lab_cli("down")
    try:
        # Without the GPU software stack: test_lab_e2e.py converges and checks it; here it would only add minutes.
        lab_cli("up", "--nodes", "2", "--no-gpu-stack")
        yield json.loads((ROOT / ".lab" / LAB / "lab.json").read_text())
    finally:
        lab_cli("down")


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("drift")
    (d / "cp").mkdir()
    return d


def converge(out: Path) -> subprocess.CompletedProcess[str]:
    t0 = time.monotonic()
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(ROOT / "inventories" / LAB),
                           str(ROOT / "site.yml"), "-e", f"drift_dir={out}"], cwd=ROOT, env=ansible_env(out),
                          capture_output=True, text=True, timeout=900, check=False)
    print(f"converge: {time.monotonic() - t0:.0f} s")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    return proc


def drift(out: Path, run_id: str, mitogen: bool = True) -> tuple[int, dict]:
    """A drift run as make lab and the nightly job start it: strategy baremetal_linear, over Mitogen unless
    mitogen=False (BAREMETAL_MITOGEN=0: Ansible's plain linear strategy), facts in memory."""
    t0 = time.monotonic()
    env = {**ansible_env(out), "ANSIBLE_STRATEGY": "baremetal_linear", "ANSIBLE_CACHE_PLUGIN": "memory",
           "BAREMETAL_MITOGEN": "1" if mitogen else "0"}
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(ROOT / "inventories" / LAB),
                           str(ROOT / "playbooks" / "drift.yml"), "--check", "--diff", "-e", f"drift_dir={out}",
                           "-e", f"drift_run_id={run_id}"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900, check=False)
    print(f"drift run {run_id} ({'Mitogen' if mitogen else 'plain linear'}): {time.monotonic() - t0:.0f} s, "
          f"exit {proc.returncode}")
    report_file = out / f"{run_id}.json"
    assert report_file.is_file(), proc.stdout[-6000:] + proc.stderr[-2000:]
    report = json.loads(report_file.read_text())
    report["_stdout"] = proc.stdout
    return proc.returncode, report


def found(report: dict, host: str) -> set[str]:
    """Everything the run names for a host: changed task names (with item) and differing fact items."""
    h = report["hosts"][host]
    return ({c["task"] + (f" [{c['item']}]" if c.get("item") else "") for c in h["changes"]}
            | {f["item"] for f in h["facts"]})


@pytest.fixture(scope="module")
def converged(lab, out):
    converge(out)
    names = [n["name"] for n in lab["nodes"]]
    for n in names:
        base = json.loads((out / "baseline" / f"{n}.json").read_text())
        assert base["schema_version"] == 1 and base["items"]["mtu.eth1"] == 9000
    return names


def test_drift_after_converge_is_zero(converged, out):
    rc, rep = drift(out, "clean1")
    assert rc == 0, rep["summary_lines"]
    assert rep["verdict"] == "clean"
    assert {h: v["status"] for h, v in rep["hosts"].items()} == dict.fromkeys(converged, "clean")
    assert (out / "clean1.md").is_file() and (out / "clean1.junit.xml").is_file()


def test_injected_drifts_are_all_found_with_host_and_item(lab, converged, out):
    n1, n2 = lab["nodes"]
    r = sh(n1["container"], f"ip link set eth1 mtu 1500 && apt-get remove -y -q jq >/dev/null "
                            f"&& echo 'MaxAuthTries 10' >> {SSHD_DROPIN}")
    assert r.returncode == 0, r.stdout + r.stderr
    r = sh(n2["container"], f"sed -i 's/^net.core.rmem_max.*/net.core.rmem_max = 8388608/' {SYSCTL_FILE} "
                            "&& systemctl stop prometheus-node-exporter")
    assert r.returncode == 0, r.stdout + r.stderr

    # the same findings over Mitogen (what make lab and the nightly job run) and with Ansible's plain strategy
    for run_id, mitogen in (("injected", True), ("injected-plain", False)):
        check_injected(out, lab, *drift(out, run_id, mitogen=mitogen), run_id=run_id)


def check_injected(out: Path, lab: dict, rc: int, rep: dict, run_id: str) -> None:
    n1, n2 = lab["nodes"]
    assert rc == 2, rep["summary_lines"]
    assert rep["verdict"] == "drift"
    a, b = found(rep, n1["name"]), found(rep, n2["name"])
    print(f"{n1['name']}: {sorted(a)}\n{n2['name']}: {sorted(b)}")
    # node1: MTU (fact), package (fact and the apt task), rendered config file (the template task, with its diff)
    assert "mtu.eth1" in a
    assert "package.jq" in a and "common : Install the baseline packages" in a
    assert "hardening : Write the sshd drop-in" in a
    sshd = next(c for c in rep["hosts"][n1["name"]]["changes"] if c["task"] == "hardening : Write the sshd drop-in")
    assert "-MaxAuthTries 10" in sshd["diff"]
    mtu = next(f for f in rep["hosts"][n1["name"]]["facts"] if f["item"] == "mtu.eth1")
    assert (mtu["baseline"], mtu["current"]) == (9000, 1500)
    # node2: the sysctl file (fact and the sysctl task), the stopped service (fact and the service task)
    assert "sysctl_conf.net.core.rmem_max" in b
    assert any(t.startswith("network : Persist the socket buffer sysctls") for t in b)
    assert "service.prometheus-node-exporter" in b and "monitoring : Enable and start the node exporter" in b
    # and nothing of node1's drift is attributed to node2 or the reverse
    assert "mtu.eth1" not in b and "service.prometheus-node-exporter" not in a
    # the Markdown and JUnit name host and item too
    md = (out / f"{run_id}.md").read_text()
    assert f"## {n1['name']}: drift" in md and "`mtu.eth1` | 9000 | 1500" in md
    junit = (out / f"{run_id}.junit.xml").read_text()
    assert f'name="{n2["name"]}"' in junit and "differs: service.prometheus-node-exporter" in junit


def test_converge_brings_the_report_back_to_zero(converged, out):
    converge(out)
    rc, rep = drift(out, "clean2")
    assert rc == 0, rep["summary_lines"]
    assert rep["verdict"] == "clean"


def test_a_stopped_node_is_unreachable_not_drift_free(lab, converged, out):
    n1, n2 = lab["nodes"]
    podman.run(["stop", "-t", "5", n2["container"]])
    rc, rep = drift(out, "stopped")
    assert rc == 4, rep["summary_lines"]
    assert rep["verdict"] == "unreachable"
    assert rep["hosts"][n2["name"]]["status"] == "unreachable"
    assert rep["hosts"][n2["name"]]["unreachable"]
    assert rep["hosts"][n1["name"]]["status"] == "clean"
    junit = (out / "stopped.junit.xml").read_text()
    assert 'type="unreachable"' in junit


def test_nightly_units_run_under_systemd_on_a_lab_node(lab):
    """deploy/systemd's service and timer under a real systemd (a lab node's): systemd-analyze verify, the timer
    scheduled, and the service running the real scripts/nightly-watch.sh as its own user, with its state
    directory, the drift check's strategy, and the job's exit status making the unit failed (drift) or not.
    ansible-playbook and baremetal are the unit test's stand-ins: the lab node is not a controller."""
    c = lab["nodes"][0]["container"]
    status = ("systemctl show -P Result baremetal-watch.service; "
              "systemctl show -P ExecMainStatus baremetal-watch.service")
    units, standins = ROOT / "deploy" / "systemd", ROOT / "tests" / "fixtures" / "nightly-standins"
    assert sh(c, "mkdir -p /opt/baremetal-ai/scripts /opt/baremetal-ai/inventories/prod /opt/standins").returncode == 0
    for src, dest in ((units / "baremetal-watch.service", "/etc/systemd/system/"),
                      (units / "baremetal-watch.timer", "/etc/systemd/system/"),
                      (ROOT / "scripts" / "nightly-watch.sh", "/opt/baremetal-ai/scripts/"),
                      (standins / "ansible-playbook", "/opt/standins/"), (standins / "baremetal", "/opt/standins/")):
        podman.run(["cp", str(src), f"{c}:{dest}"])
    # The drop-in a user writes (systemctl edit): where the tools are. Lab-only lines: in a container systemd
    # cannot set up the mount namespaces of ProtectSystem/PrivateTmp (no CAP_SYS_ADMIN), and the node's systemd
    # gets no cgroup-empty notification here, so with the default KillMode it waits out the 90 s stop timeout
    # after the job has exited (seen: Result=timeout, ExecMainStatus=0); KillMode=process stops at the job's exit.
    dropin = ("[Service]\nEnvironment=BAREMETAL_BIN=/opt/standins FAKE_LOG=/var/lib/baremetal-ai/calls.log\n"
              "ProtectSystem=no\nPrivateTmp=no\nKillMode=process\n")
    r = sh(c, "id baremetal >/dev/null 2>&1 || useradd --system --home-dir /var/lib/baremetal-ai baremetal; "
              "mkdir -p /etc/systemd/system/baremetal-watch.service.d && "
              f"printf '{dropin}' > /etc/systemd/system/baremetal-watch.service.d/lab.conf && "
              "chmod 0755 /opt/baremetal-ai/scripts/nightly-watch.sh /opt/standins/* && systemctl daemon-reload && "
              "systemd-analyze verify /etc/systemd/system/baremetal-watch.service "
              "/etc/systemd/system/baremetal-watch.timer")
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        r = sh(c, "systemctl enable --now baremetal-watch.timer && "
                  "systemctl show -P NextElapseUSecRealtime baremetal-watch.timer")
        assert r.returncode == 0 and r.stdout.strip(), r.stdout + r.stderr  # scheduled
        r = sh(c, f"systemctl start baremetal-watch.service; {status}; stat -c %U /var/lib/baremetal-ai; "
                  "cat /var/lib/baremetal-ai/calls.log")
        lines = r.stdout.split("\n")
        assert lines[:3] == ["success", "0", "baremetal"], r.stdout + r.stderr
        assert "strategy=baremetal_linear" in r.stdout and "drift.yml --check --diff" in r.stdout
        assert "strategy=default" in r.stdout and "validate.yml" in r.stdout
        r = sh(c, "ls /var/lib/baremetal-ai/drift /var/lib/baremetal-ai/reports")
        assert ".json" in r.stdout and ".junit.xml" in r.stdout, r.stdout + r.stderr
        # drift: the job exits 2 and the unit is failed (what an alert watches)
        r = sh(c, "printf '[Service]\\nEnvironment=FAKE_DRIFT_RC=2\\n' "
                  "> /etc/systemd/system/baremetal-watch.service.d/drift.conf && systemctl daemon-reload && "
                  f"systemctl start baremetal-watch.service; {status}; systemctl is-failed baremetal-watch.service")
        assert r.stdout.split("\n")[:3] == ["exit-code", "2", "failed"], r.stdout + r.stderr
    finally:
        sh(c, "systemctl disable --now baremetal-watch.timer; systemctl reset-failed baremetal-watch.service; "
              "rm -rf /etc/systemd/system/baremetal-watch.* /opt/standins /opt/baremetal-ai; systemctl daemon-reload")
