"""The validation modules' pure functions on real captured output (tests/fixtures/<tool>/, provenance in each
README), their main() with patched arguments (tool missing, check mode, a fake nvidia-smi), and their docs."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import ansible.module_utils as amu
import pytest
import yaml
from ansible.module_utils.testing import patch_module_args

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures"
if str(ROOT / "module_utils") not in amu.__path__:
    amu.__path__.append(str(ROOT / "module_utils"))
from ansible.module_utils import bm_validation as v  # noqa: E402

MODULES = ("storage_bench", "network_bench", "gpu_health", "validation_report")


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"_test_lib_{name}", ROOT / "library" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


sb, nb, gh, vr = (load(m) for m in MODULES)


def run_main(mod, args: dict, capsys) -> dict:
    with patch_module_args(args), pytest.raises(SystemExit):
        mod.main()
    return json.loads(capsys.readouterr().out)


def fixture(path: str) -> str:
    return (FIX / path).read_text()


TH = v.resolve_thresholds(v.load_thresholds(str(ROOT / "validation" / "thresholds.yml")), "H100-SXM5-80GB",
                          "generic", 2)


# --- docs ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", MODULES)
def test_docs_are_valid_yaml_and_match_the_argument_spec(name):
    mod = load(name)
    doc = yaml.safe_load(mod.DOCUMENTATION)
    assert doc["module"] == name and doc["short_description"]
    yaml.safe_load(mod.EXAMPLES)
    assert isinstance(yaml.safe_load(mod.RETURN), dict)
    src = (ROOT / "library" / f"{name}.py").read_text()
    for option in doc["options"]:
        assert f'"{option}"' in src, f"{name}: documented option {option} is not in the argument_spec"
    assert "supports_check_mode=True" in src


def test_ansible_doc_renders_the_modules():
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), "-M", str(ROOT / "library"), "--json",
                           *MODULES], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")})
    assert proc.returncode == 0, proc.stderr
    docs = json.loads(proc.stdout)
    assert set(docs) == set(MODULES)


# --- storage_bench ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("job", "check", "value"), [
    ("seq_write", "storage_seq_write_mbps", 3244.33),
    ("seq_read", "storage_seq_read_mbps", 1118.31),
    ("randread_4k", "storage_randread_4k_iops", 71104.4),
])
def test_fio_real_outputs_are_judged(job, check, value):
    out = sb.judge_fio(job, 0, fixture(f"validation/fio-{job}-direct-2s.json"), "", TH[check], 0.05, 2.0)
    assert out["check"] == check and out["value"] == pytest.approx(value, rel=1e-3)
    assert out["verdict"] == "pass" and out["unit"] in ("MB/s", "IOPS")
    # The same output against a floor above it fails, with fio's JSON attached.
    high = dict(TH[check], floor_effective=value * 10)
    failed = sb.judge_fio(job, 0, fixture(f"validation/fio-{job}-direct-2s.json"), "", high, 0.05, 2.0)
    assert failed["verdict"] == "fail" and '"fio version"' in failed["raw"]


def test_fio_errors_fail_with_the_output():
    out = sb.judge_fio("seq_read", 1, "", "fio: pid=1, err=2/file:filesetup.c: No such file", TH[
        "storage_seq_read_mbps"], 0.05, 0.1)
    assert out["verdict"] == "fail" and "exited with 1" in out["reason"] and "No such file" in out["raw"]
    garbage = sb.judge_fio("seq_read", 0, "not json", "", None, 0.05, 0.1)
    assert garbage["verdict"] == "fail" and "not parseable" in garbage["reason"]
    # The parser engineer's capture of a job with a verify warning still parses; its write value is judged.
    warned = sb.judge_fio("seq_write", 0, fixture("fio/write-verify-warning-2s.json"), "", None, 0.05, 2)
    assert warned["verdict"] == "warn" and warned["value"] > 0


def test_fio_command_and_helpers():
    cmd = sb.fio_command("randread_4k", "/var/tmp/x/f", "1G", 10, True, "libaio", 32)
    assert cmd[0] == "fio" and "--rw=randread" in cmd and "--bs=4k" in cmd and "--iodepth=64" in cmd
    assert "--direct=1" in cmd and "--output-format=json" in cmd and "--time_based" in cmd
    assert "--end_fsync=1" in sb.fio_command("seq_write", "/f", "1G", 1, False, "psync", 1)
    assert sb.direct_unsupported(1, "", "fio: looks like your file system does not support direct=1/buffered=0")
    assert sb.direct_unsupported(1, "", "file:filesetup.c:805, func=open(f), error=Invalid argument")
    assert not sb.direct_unsupported(0, "", "Invalid argument")
    mounts = ("overlay / overlay rw 0 0\ntmpfs /tmp tmpfs rw 0 0\n/dev/vdb /var/lib/scratch xfs rw 0 0\n"
              "/dev/vdc /var/lib/scratch2 ext4 rw 0 0\n")
    assert sb.filesystem_of("/tmp/x", mounts) == "tmpfs"
    assert sb.filesystem_of("/var/tmp/baremetal-validation", mounts) == "overlay"
    assert sb.filesystem_of("/var/lib/scratch/a", mounts) == "xfs"
    assert sb.filesystem_of("/var/lib/scratch2", mounts) == "ext4"


def test_storage_main_without_fio_is_not_applicable(capsys, tmp_path):
    out = run_main(sb, {"path": str(tmp_path / "s"), "fio": "fio-not-installed-here"}, capsys)
    assert [c["verdict"] for c in out["checks"]] == ["not_applicable"] * 3
    assert all(c["install_hint"].startswith("apt-get install fio") for c in out["checks"])
    assert len(out["commands"]) == 3 and not (tmp_path / "s").exists()


def test_storage_main_refuses_tmpfs(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(sb, "filesystem_of", lambda path, mounts: "tmpfs")
    out = run_main(sb, {"path": str(tmp_path)}, capsys)
    assert out["failed"] and "tmpfs" in out["msg"]


@pytest.mark.skipif(not shutil.which("fio"), reason="needs fio")
def test_storage_main_check_mode_runs_nothing(capsys, tmp_path):
    out = run_main(sb, {"path": str(tmp_path / "s"), "_ansible_check_mode": True}, capsys)
    assert all(c["verdict"] == "not_applicable" and "check mode" in c["reason"] for c in out["checks"])
    assert "--rw=write" in out["checks"][0]["reason"] and not (tmp_path / "s").exists()


@pytest.mark.skipif(not shutil.which("fio"), reason="needs fio")
def test_storage_main_measures_and_cleans_up(capsys, tmp_path):
    # Tiny and short: a real run of the module on this machine's disk (not /tmp: may be tmpfs).
    scratch = Path("/var/tmp") / f"bm-test-{os.getpid()}"
    out = run_main(sb, {"path": str(scratch), "size": "16M", "runtime_s": 1, "jobs": ["seq_write", "seq_read"],
                        "thresholds": TH, "retries": 0}, capsys)
    assert [c["check"] for c in out["checks"]] == ["storage_seq_write_mbps", "storage_seq_read_mbps"]
    assert all(c["value"] > 0 and c["verdict"] in ("pass", "warn", "fail") for c in out["checks"])
    assert not scratch.exists()


# --- network_bench ---------------------------------------------------------------------------------------

def test_iperf3_real_output_is_judged():
    t = v.with_link_speed(TH["network_iperf3_gbps"], 100)
    out = nb.judge_iperf3(0, fixture("validation/iperf3-loopback-P4-2s.json"), "", t, 0.05, 2.0)
    assert out["value"] == pytest.approx(14.449, rel=1e-3) and out["unit"] == "Gbit/s"
    assert out["verdict"] == "fail" and "< floor 80" in out["reason"]  # 80% of a 100G link
    assert out["details"]["num_streams"] == 4
    slow_link = nb.judge_iperf3(0, fixture("validation/iperf3-loopback-P4-2s.json"), "",
                                v.with_link_speed(TH["network_iperf3_gbps"], 10), 0.05, 2.0)
    assert slow_link["verdict"] == "pass"
    unknown_link = nb.judge_iperf3(0, fixture("iperf3/tcp-loopback-2s.json"), "", TH["network_iperf3_gbps"], 0.05, 2)
    assert unknown_link["verdict"] == "warn" and "link speed unknown" in unknown_link["reason"]


def test_iperf3_connection_refused_fails_with_raw():
    out = nb.judge_iperf3(1, fixture("iperf3/connection-refused.json"), "", TH["network_iperf3_gbps"], 0.05, 0.1)
    assert out["verdict"] == "fail" and "Connection refused" in out["reason"] and "raw" in out
    assert nb.judge_iperf3(1, "", "iperf3: error", None, 0.05, 0)["verdict"] == "fail"


def test_network_helpers(tmp_path):
    assert nb.client_command("iperf3", "10.0.0.2", 5201, 10, 4, 1) == [
        "iperf3", "-c", "10.0.0.2", "-p", "5201", "-t", "10", "-P", "4", "-O", "1", "-J"]
    srv = nb.server_command("/usr/bin/iperf3", 5300, 60)
    assert srv[:3] == ["timeout", "--kill-after=5", "60"] and "-s" in srv and "-1" not in srv
    assert nb.route_interface("10.89.1.12 dev eth1 src 10.89.1.11 uid 0 \\    cache") == "eth1"
    assert nb.route_interface("") is None
    sysfs = tmp_path / "net"
    (sysfs / "eth1").mkdir(parents=True)
    (sysfs / "eth1" / "speed").write_text("10000\n")
    (sysfs / "eth1" / "mtu").write_text("9000\n")
    assert nb.interface_info("eth1", str(sysfs)) == {"name": "eth1", "mtu": 9000, "speed_gbps": None,
                                                     "reported_speed_gbps": 10.0, "virtual": True}
    (sysfs / "eth1" / "device").mkdir()
    assert nb.interface_info("eth1", str(sysfs))["speed_gbps"] == 10.0
    proc_net = tmp_path / "proc"
    proc_net.mkdir()
    (proc_net / "tcp").write_text(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 00000000:1451 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n")
    assert nb.listening(5201, str(proc_net)) and not nb.listening(5202, str(proc_net))


@pytest.mark.skipif(not shutil.which("ip"), reason="needs iproute2")
def test_network_main_without_iperf3_and_in_check_mode(capsys):
    out = run_main(nb, {"server": "127.0.0.1", "iperf3": "iperf3-not-installed"}, capsys)
    assert out["checks"][0]["verdict"] == "not_applicable"
    assert out["checks"][0]["install_hint"].startswith("apt-get install iperf3")
    if shutil.which("iperf3"):
        out = run_main(nb, {"server": "127.0.0.1", "_ansible_check_mode": True}, capsys)
        assert out["checks"][0]["verdict"] == "not_applicable" and "-c 127.0.0.1" in out["checks"][0]["reason"]


# --- gpu_health ------------------------------------------------------------------------------------------

def test_health_from_real_h100_xml():
    parsed = gh.parse_nvsmi_xml(fixture("nvidia-smi/h100-2gpu-v12.xml"))
    checks = {c["check"]: c for c in gh.xml_checks(parsed, TH, 0.05)}
    assert checks["gpu_ecc_uncorrectable"]["verdict"] == "fail" and checks["gpu_ecc_uncorrectable"]["value"] == 1
    assert checks["gpu_row_remap_pending"]["verdict"] == "fail"
    assert checks["gpu_row_remap_failed"]["verdict"] == "pass"
    assert checks["gpu_throttle_at_idle"]["verdict"] == "fail" and "hw_slowdown" in checks[
        "gpu_throttle_at_idle"]["reason"]
    assert checks["gpu_pcie_link_degraded"]["verdict"] == "fail" and "x8 of x16" in checks[
        "gpu_pcie_link_degraded"]["reason"]
    assert "pcie_generation_at_idle" in checks["gpu_pcie_link_degraded"]


def test_health_from_real_a100_mig_xml():
    parsed = gh.parse_nvsmi_xml(fixture("nvidia-smi/a100-mig-v11.xml"))
    checks = {c["check"]: c["verdict"] for c in gh.xml_checks(parsed, TH, 0.05)}
    assert checks["gpu_row_remap_pending"] == "not_applicable"  # bare N/A leaf with MIG
    assert checks["gpu_ecc_uncorrectable"] == "pass"


def test_nvlink_and_count_checks():
    status = gh.parse_nvlink_status(fixture("nvidia-smi/nvlink-status.txt"))
    out = gh.nvlink_check({"gpus": []}, status, TH, 0.05)
    assert out["verdict"] == "fail" and out["value"] == 2 and "GPU1 link 6" in out["reason"]
    assert gh.nvlink_check({"gpus": []}, None, TH, 0.05)["verdict"] == "not_applicable"
    assert gh.gpu_count_check(8, 8, TH["gpu_count"])["verdict"] == "pass"
    bad = gh.gpu_count_check(7, 8, TH["gpu_count"])
    assert bad["verdict"] == "fail" and bad["reason"] == "declared 8 GPUs (node_gpu_count), found 7"
    assert gh.gpu_count_check(2, None, None)["verdict"] == "warn"


@pytest.mark.parametrize(("path", "verdict", "value"), [
    ("xid/journalctl-k.txt", "fail", 1), ("xid/clean-dmesg.txt", "pass", 0), ("xid/dmesg-T-mixed.txt", "fail", 1),
])
def test_xid_from_real_logs(path, verdict, value):
    out = gh.xid_check(fixture(path), "test", TH, 0.05)
    assert out["verdict"] == verdict and out["value"] == value
    if verdict == "fail":
        assert "NVRM: Xid" in out["raw"]


def test_xid_unreadable_log_is_not_a_pass():
    out = gh.xid_check(None, "dmesg: Operation not permitted", TH, 0.05)
    assert out["verdict"] == "warn" and "not readable" in out["reason"]


@pytest.mark.parametrize(("path", "verdict"), [
    ("dcgmi/diag-r1-pass.txt", "pass"), ("dcgmi/diag-r2-fail.txt", "fail"), ("dcgmi/diag-r1-json.json", "fail"),
])
def test_dcgm_from_real_outputs(path, verdict):
    assert gh.dcgm_check(0, fixture(path), "", TH, 0.05, 1.0, 1)["verdict"] == verdict
    assert gh.dcgm_check(1, "Error: unable to connect to host engine", "", TH, 0.05, 1.0, 1)["verdict"] == "fail"


def test_health_main_without_gpu(capsys):
    out = run_main(gh, {"nvidia_smi": "nvidia-smi-not-here", "expected_count": 0}, capsys)
    assert len(out["checks"]) == len(gh.HEALTH)
    assert {(c["verdict"], c["reason"]) for c in out["checks"]} == {("not_applicable", "no GPU")}
    declared = run_main(gh, {"nvidia_smi": "nvidia-smi-not-here", "expected_count": 8}, capsys)
    assert declared["checks"][0]["verdict"] == "fail" and "declared 8" in declared["checks"][0]["reason"]


def test_health_main_with_a_fake_nvidia_smi(capsys, tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text(f"#!/bin/sh\nif [ \"$1\" = nvlink ]; then cat {FIX}/nvidia-smi/nvlink-status.txt; "
                    f"else cat {FIX}/nvidia-smi/h100-2gpu-v12.xml; fi\n")
    dcgmi = tmp_path / "dcgmi"
    dcgmi.write_text(f"#!/bin/sh\ncat {FIX}/dcgmi/diag-r1-pass.txt\n")
    for f in (fake, dcgmi):
        f.chmod(0o755)
    names = ["H100-SXM5-80GB", "NVIDIA H100 80GB HBM3"]
    out = run_main(gh, {"nvidia_smi": str(fake), "dcgmi": str(dcgmi), "expected_count": 2, "thresholds": TH,
                        "expected_model_names": names}, capsys)
    checks = {c["check"]: c["verdict"] for c in out["checks"]}
    assert list(checks) == list(gh.HEALTH)
    assert checks["gpu_model_mismatch"] == "pass"
    pcie = run_main(gh, {"nvidia_smi": str(fake), "expected_count": 2, "thresholds": TH,
                         "expected_model_names": ["H100-PCIE-80GB", "NVIDIA H100 PCIe"]}, capsys)
    wrong = next(c for c in pcie["checks"] if c["check"] == "gpu_model_mismatch")
    assert wrong["verdict"] == "fail" and wrong["value"] == 2 and "GPU0 is 'NVIDIA H100 80GB HBM3'" in wrong["reason"]
    undeclared = run_main(gh, {"nvidia_smi": str(fake), "expected_count": 2, "thresholds": TH}, capsys)
    assert next(c for c in undeclared["checks"] if c["check"] == "gpu_model_mismatch")["verdict"] == "not_applicable"
    assert checks["gpu_count"] == "pass" and checks["gpu_nvlink_down"] == "fail"
    assert checks["dcgm_diag_failures"] == "pass" and checks["gpu_ecc_uncorrectable"] == "fail"
    assert out["driver_version"] == "535.54.03" and len(out["gpus"]) == 2
    check_mode = run_main(gh, {"nvidia_smi": str(fake), "_ansible_check_mode": True}, capsys)
    assert all(c["verdict"] == "not_applicable" and "check mode" in c["reason"] for c in check_mode["checks"])


# --- validation_report -----------------------------------------------------------------------------------

def test_report_resolve_errors_name_the_key(capsys):
    doc = yaml.safe_load((ROOT / "validation" / "thresholds.yml").read_text())
    ok = run_main(vr, {"mode": "resolve", "thresholds": doc, "gpu_model": "NVIDIA H100 80GB HBM3", "gpu_count": 8},
                  capsys)
    assert ok["gpu_model_key"] == "H100-SXM5-80GB" and ok["thresholds"]["gpu_count"]["exact"] == 8
    assert ok["gpu_model_names"][:2] == ["H100-SXM5-80GB", "NVIDIA H100 80GB HBM3"]
    bad = run_main(vr, {"mode": "resolve", "thresholds": doc, "gpu_model": "GTX-1080"}, capsys)
    assert bad["failed"] and "'GTX-1080'" in bad["msg"]
    override = {"node_classes": {"lab": {"storage_seq_read_mbps": {"unit": "MB/sec", "floor": 1, "source": "x"}}}}
    bad = run_main(vr, {"mode": "resolve", "thresholds": doc, "override": override, "gpu_model": "none"}, capsys)
    assert "node_classes.lab.storage_seq_read_mbps.unit" in bad["msg"] and "validation_thresholds_override" in bad[
        "msg"]


def test_report_host_and_fleet(capsys, tmp_path):
    for host, value in (("n1", 900.0), ("n2", 1000.0), ("n3", 100.0)):
        checks = [v.judge("storage_seq_read_mbps", value, "MB/s", TH["storage_seq_read_mbps"]),
                  v.not_applicable("gemm_bf16_tflops", "no GPU")]
        out = run_main(vr, {"mode": "host", "host": host, "run_id": "r1", "results_dir": str(tmp_path),
                            "checks": checks, "tier": "standard"}, capsys)
        assert out["changed"] and Path(out["path"]).is_file()
        assert "baremetal_validation_value" in out["prometheus"]
    (tmp_path / "r1" / "stray.json").write_text("{}")
    out = run_main(vr, {"mode": "fleet", "run_id": "r1", "results_dir": str(tmp_path),
                        "expected_hosts": ["n1", "n2", "n3", "n4"]}, capsys)
    assert out["missing_hosts"] == ["n4"]
    assert any(f.startswith("n3/storage_seq_read_mbps: 100 MB/s < floor 500") for f in out["failures"])
    assert any("stray.json" in f for f in out["failures"])
    assert [(o["host"], o["check"]) for o in out["outliers"]] == [("n3", "storage_seq_read_mbps")]
    junit = (tmp_path / "r1" / "junit.xml").read_text()
    assert junit.count("<testcase ") == 6
    fleet = json.loads((tmp_path / "r1" / "fleet.json").read_text())
    assert fleet["summary"]["n1"]["verdict"] == "pass" and fleet["summary"]["n3"]["verdict"] == "fail"


def test_report_check_mode_writes_nothing(capsys, tmp_path):
    out = run_main(vr, {"mode": "host", "host": "n1", "run_id": "r1", "results_dir": str(tmp_path), "checks": [],
                        "_ansible_check_mode": True}, capsys)
    assert not out["changed"] and not (tmp_path / "r1").exists()
