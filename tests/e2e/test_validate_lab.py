"""playbooks/validate.yml end to end on a 2-node lab: tier standard measures storage (fio on the node's overlay
disk under /var/tmp) and network (iperf3 between the two nodes over their fabric addresses) for real; GPU checks
are not_applicable ("no GPU"); results JSON, junit.xml and the Prometheus textfile on each node exist and parse.
Tier quick runs facts + health only. An impossible floor makes the run exit non-zero, naming host and check.

Uses its own lab name (`val`) and takes it down at the end, also when a test fails. About 1.5 minutes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from baremetal_ai.lab import podman

pytestmark = [pytest.mark.e2e, pytest.mark.podman]
ROOT = Path(__file__).resolve().parents[2]
LAB = "val"
BIN = Path(sys.executable).parent
PROM = "/var/lib/prometheus/node-exporter/baremetal_validation.prom"
# Small and short: the lab is a shared 2-core machine. The lab node class has floors that only catch a broken
# path (validation/thresholds.yml).
FAST = ["-e", "validation_node_class=lab", "-e", "validation_storage_size=128M", "-e", "validation_storage_runtime_s=3",
        "-e", "validation_network_duration_s=3", "-e", "validation_retry_cooldown_s=2"]


def _exposition_checker():
    spec = importlib.util.spec_from_file_location("_core_tests", ROOT / "tests" / "unit" / "test_validation_core.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.parse_exposition


def lab(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "baremetal_ai.cli", "lab", args[0], "--name", LAB, *args[1:]],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def playbook(tmp: Path, run_id: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "collections"), "ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp / "cp")}
    (tmp / "cp").mkdir(exist_ok=True)
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", str(ROOT / "inventories" / LAB),
                           "playbooks/validate.yml", "-e", f"validation_run_id={run_id}",
                           "-e", f"validation_results_dir={tmp / 'res'}", *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)


def node_exec(node: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return podman.run(["exec", node, *cmd], check=False)


@pytest.fixture(scope="module")
def val_lab():
    lab("down")
    try:
        t0 = time.monotonic()
        # Without the GPU software stack: test_lab_e2e.py converges and checks it; here it would only add minutes.
        lab("up", "--nodes", "2", "--no-gpu-stack")
        print(f"lab up (2 nodes) took {time.monotonic() - t0:.1f} s")
        yield json.loads((ROOT / ".lab" / LAB / "lab.json").read_text())
    finally:
        lab("down")


@pytest.fixture(scope="module")
def standard(val_lab, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("validate")
    t0 = time.monotonic()
    proc = playbook(tmp, "e2e-standard", *FAST)
    print(f"validate.yml (standard) took {time.monotonic() - t0:.1f} s")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    return tmp / "res" / "e2e-standard", val_lab


def test_standard_measures_storage_and_network_for_real(standard):
    run_dir, status = standard
    hosts = sorted(n["name"] for n in status["nodes"])
    fabric = {n["name"]: n["fabric_ip"] for n in status["nodes"]}
    for host in hosts:
        doc = json.loads((run_dir / f"{host}.json").read_text())
        assert doc["schema_version"] == 1 and doc["tier"] == "standard" and doc["host"] == host
        checks = {c["check"]: c for c in doc["checks"]}
        for name in ("storage_seq_write_mbps", "storage_seq_read_mbps", "storage_randread_4k_iops"):
            assert checks[name]["value"] > 0 and checks[name]["verdict"] == "pass", checks[name]
            assert "/var/tmp/baremetal-validation" in checks[name]["command"]
        net = checks["network_iperf3_gbps"]
        assert net["value"] > 0 and net["verdict"] == "pass", net
        peer = hosts[(hosts.index(host) + 1) % len(hosts)]
        assert f"-c {fabric[peer]} " in net["command"]  # over the fabric, to the next node
        assert net["interface"]["name"] == "eth1" and net["interface"]["mtu"] == 9000
        assert net["interface"]["virtual"] is True  # veth: no link speed, the lab's absolute floor applies
        assert doc["facts"]["storage"]["filesystem"] == "overlay"
        print(f"{host}: seq write {checks['storage_seq_write_mbps']['value']:.0f} MB/s, seq read "
              f"{checks['storage_seq_read_mbps']['value']:.0f} MB/s, randread 4k "
              f"{checks['storage_randread_4k_iops']['value']:.0f} IOPS, iperf3 {net['value']:.2f} Gbit/s")
        # No GPU in the lab: every GPU check says so, none passes.
        gpu = [c for c in doc["checks"] if c["area"] == "health"]
        assert len(gpu) == 10 and {(c["verdict"], c["reason"]) for c in gpu} == {("not_applicable", "no GPU")}
        bench = [c for c in doc["checks"] if c["area"] == "gpu"]
        assert [c["check"] for c in bench] == ["gemm_bf16_tflops", "gemm_fp16_tflops", "hbm_copy_tbps", "h2d_gbps",
                                               "d2h_gbps", "p2p_gbps"]
        assert all(c["verdict"] == "not_applicable" and "nvidia-smi not found" in c["reason"] for c in bench)
        # No nccl-tests, no RDMA device in a container: not applicable, with the reason.
        assert checks["nccl_allreduce_busbw_gbps"]["verdict"] == "not_applicable"
        assert checks["rdma_write_bw_gbps"]["verdict"] == "not_applicable"
        assert "no RDMA device" in checks["rdma_write_bw_gbps"]["reason"]
        assert doc["summary"]["fail"] == 0 and doc["summary"]["pass"] == 4
        assert doc["summary"]["not_applicable"] == 18


def test_standard_writes_junit_and_the_node_textfile(standard):
    run_dir, status = standard
    root = ET.fromstring((run_dir / "junit.xml").read_text())
    # per node: 4 measured (storage x3, network) + 18 not applicable (health x10, gpu x6, nccl, rdma)
    assert root.get("tests") == "44" and root.get("failures") == "0" and root.get("skipped") == "36"
    fleet = json.loads((run_dir / "fleet.json").read_text())
    assert fleet["failures"] == [] and fleet["missing_hosts"] == []
    parse = _exposition_checker()
    for n in status["nodes"]:
        text = node_exec(n["container"], "cat", PROM)
        assert text.returncode == 0, text.stderr
        samples = parse(text.stdout)
        values = {s[1]["check"]: s[2] for s in samples if s[0] == "baremetal_validation_value"}
        assert set(values) == {"storage_seq_write_mbps", "storage_seq_read_mbps", "storage_randread_4k_iops",
                               "network_iperf3_gbps"}
        assert all(x > 0 for x in values.values())
        # Nothing left behind: no iperf3 server, no scratch file.
        assert node_exec(n["container"], "pgrep", "-x", "iperf3").returncode == 1
        assert node_exec(n["container"], "test", "-e", "/var/tmp/baremetal-validation").returncode == 1


def test_quick_tier_runs_facts_and_health_only(val_lab, tmp_path):
    t0 = time.monotonic()
    proc = playbook(tmp_path, "e2e-quick", "-e", "validation_tier=quick", "-e", "validation_install_packages=false")
    took = time.monotonic() - t0
    print(f"validate.yml (quick) took {took:.1f} s")
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert "Storage (fio" in proc.stdout and "iperf3" in proc.stdout  # listed, and skipped
    for n in val_lab["nodes"]:
        doc = json.loads((tmp_path / "res" / "e2e-quick" / f"{n['name']}.json").read_text())
        assert doc["tier"] == "quick"
        assert {c["area"] for c in doc["checks"]} == {"health"}
        assert doc["facts"]["gpu_facts"]  # the fact modules ran
    assert took < 60


def test_a_failing_check_fails_the_run_and_names_it(val_lab, tmp_path):
    impossible = {"node_classes": {"lab": {"storage_seq_read_mbps": {
        "unit": "MB/s", "floor": 1e9, "source": "e2e test: impossible floor"}}}}
    proc = playbook(tmp_path, "e2e-fail", "--tags", "storage", "-e", "validation_node_class=lab",
                    "-e", "validation_storage_size=16M", "-e", "validation_storage_runtime_s=1",
                    "-e", "validation_retries=0", "-e", json.dumps({"validation_thresholds_override": impossible}))
    assert proc.returncode != 0
    msg = re.search(r"validation failed \(.*", proc.stdout + proc.stderr, flags=re.S)
    assert msg, proc.stdout[-4000:]
    for n in val_lab["nodes"]:
        assert f"{n['name']}/storage_seq_read_mbps:" in msg.group(0)
    assert "storage_seq_write_mbps:" not in msg.group(0)
    root = ET.fromstring((tmp_path / "res" / "e2e-fail" / "junit.xml").read_text())
    failure = root.find(".//testcase[@name='storage_seq_read_mbps']/failure")
    assert failure is not None and '"fio version"' in failure.text  # fio's raw output is attached


def test_bad_thresholds_stop_the_run_before_anything_runs(val_lab, tmp_path):
    proc = playbook(tmp_path, "e2e-bad", "-e", json.dumps({"validation_thresholds_override": {
        "node_classes": {"lab": {"storage_seq_read_mbps": {"unit": "MB/sec", "floor": 1, "source": "x"}}}}}),
        "-e", "validation_node_class=lab")
    assert proc.returncode != 0
    assert "node_classes.lab.storage_seq_read_mbps.unit" in proc.stdout
    assert "Read the GPUs" not in proc.stdout and not (tmp_path / "res").exists()
