"""nccl_bench and rdma_bench: their judging functions on the nccl-tests and perftest fixtures (tests/fixtures/<tool>/,
provenance in each README), and their main() with patched arguments and fake tool executables that print the same
fixtures (argument handling, tool missing, check mode, mpirun command line, retries, the perftest server's life)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
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

MODULES = ("nccl_bench", "rdma_bench")


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"_test_lib_{name}", ROOT / "library" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


nc, rb = (load(m) for m in MODULES)


def run_main(mod, args: dict, capsys) -> dict:
    with patch_module_args(args), pytest.raises(SystemExit):
        mod.main()
    return json.loads(capsys.readouterr().out)


def fixture(path: str) -> str:
    return (FIX / path).read_text()


def fake_tool(path: Path, body: str) -> Path:
    """An executable shell script (a stand-in for all_reduce_perf, mpirun, ib_write_bw...)."""
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


THRESHOLDS = v.load_thresholds(str(ROOT / "validation" / "thresholds.yml"))
H100 = v.resolve_thresholds(THRESHOLDS, "H100-SXM5-80GB", "generic", 8)
A100 = v.resolve_thresholds(THRESHOLDS, "A100-SXM4-80GB", "generic", 8)
GENERIC = v.resolve_thresholds(THRESHOLDS, None, "generic")
NCCL_8GPU = "nccl-tests/all_reduce_perf-8gpu-info.txt"
NCCL_WRONG = "nccl-tests/all_reduce_perf-wrong-results.txt"
NCCL_2NODE = "nccl-tests/all_reduce_perf-old-error-column.txt"
WRITE_BW = "perftest/ib_write_bw-report_gbits-all-sizes.txt"


# --- docs ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", MODULES)
def test_docs_are_valid_yaml_and_match_the_argument_spec(name):
    mod = load(name)
    doc = yaml.safe_load(mod.DOCUMENTATION)
    assert doc["module"] == name and doc["short_description"]
    yaml.safe_load(mod.EXAMPLES)
    assert isinstance(yaml.safe_load(mod.RETURN), dict)
    src = (ROOT / "library" / f"{name}.py").read_text()
    spec_names = set(doc["options"])
    for option in spec_names:
        assert f'"{option}": {{"type"' in src, f"{name}: documented option {option} is not in the argument_spec"
    assert "supports_check_mode=True" in src


def test_ansible_doc_renders_the_modules():
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), "-M", str(ROOT / "library"), "--json",
                           *MODULES], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")})
    assert proc.returncode == 0, proc.stderr
    docs = json.loads(proc.stdout)
    assert set(docs) == set(MODULES)
    assert docs["nccl_bench"]["doc"]["options"]["test"]["choices"] == list(nc.TESTS)


# --- nccl_bench: check names -----------------------------------------------------------------------------

def test_every_collective_has_a_known_nccl_check():
    assert nc.check_name("all_reduce") == "nccl_allreduce_busbw_gbps"
    for test in nc.TESTS:
        name = nc.check_name(test)
        assert v.CHECKS[name] == {"area": "nccl", "unit": "GB/s"} and name in v.GPU_MODEL_CHECKS
    # A threshold for one of the new checks can be set per GPU model and is validated like the others.
    doc = yaml.safe_load((ROOT / "validation" / "thresholds.yml").read_text())
    override = {"gpu_models": {"H100-SXM5-80GB": {"checks": {"nccl_allgather_busbw_gbps": {
        "floor": 300, "unit": "GB/s", "source": "ours: test"}}}}}
    th = v.validate_thresholds(v.merge(doc, override))
    assert th["gpu_models"]["H100-SXM5-80GB"]["checks"]["nccl_allgather_busbw_gbps"]["floor"] == 300
    bad = {"gpu_models": {"H100-SXM5-80GB": {"checks": {"nccl_allgather_busbw_gbps": {
        "floor": 300, "unit": "Gbit/sec", "source": "ours: test"}}}}}
    with pytest.raises(v.ThresholdError, match=r"nccl_allgather_busbw_gbps\.unit"):
        v.validate_thresholds(v.merge(doc, bad))


# --- nccl_bench: judging ---------------------------------------------------------------------------------

def test_nccl_8gpu_peak_busbw_of_the_large_rows_is_judged():
    out = nc.judge_nccl("nccl_allreduce_busbw_gbps", 0, fixture(NCCL_8GPU), "", H100["nccl_allreduce_busbw_gbps"],
                        0.05, 30.0, label="all_reduce_perf")
    # Peak over the 1 GiB and 8 GiB rows (in-place 482.13), not the "Avg bus bandwidth" (178.8, all sizes).
    assert out["value"] == 482.13 and out["unit"] == "GB/s" and out["area"] == "nccl"
    assert out["verdict"] == "warn" and "within 5% above floor 460" in out["reason"]  # warn below 483
    assert "peak busbw over sizes >= 1 GiB, at 8589934592 B; 8 ranks" in out["reason"]
    assert out["details"]["avg_bus_bandwidth_gbps"] == 178.8 and out["details"]["ranks"] == 8
    assert out["details"]["sizes_judged"] == [1073741824, 8589934592]
    assert out["details"]["hosts"] == ["gpu-node-01"] and "raw" in out  # warn keeps the output
    a100 = nc.judge_nccl("nccl_allreduce_busbw_gbps", 0, fixture(NCCL_8GPU), "", A100["nccl_allreduce_busbw_gbps"],
                         0.05, 30.0)
    assert a100["verdict"] == "pass" and "raw" not in a100
    assert nc.judge_nccl("nccl_allreduce_busbw_gbps", 0, fixture(NCCL_8GPU), "", A100["nccl_allreduce_busbw_gbps"],
                         0.05, 30.0, keep_raw=True)["raw"].startswith("# nThread 1 nGpus 8")


def test_nccl_small_rows_do_not_count_when_large_rows_exist():
    # A 128 MiB row faster than every large row does not raise the value.
    text = fixture(NCCL_8GPU).replace("462.97", "999.00").replace("465.30", "999.00")
    out = nc.judge_nccl("nccl_allreduce_busbw_gbps", 0, text, "", None, 0.05, 1.0)
    assert out["value"] == 482.13 and out["verdict"] == "warn" and "no threshold" in out["reason"]
    # Without a row of 1 GiB or more, the largest size is judged.
    short = "\n".join(ln for ln in fixture(NCCL_8GPU).splitlines()
                      if not ln.lstrip().startswith(("1073741824 ", "8589934592 ")))
    out = nc.judge_nccl("nccl_allreduce_busbw_gbps", 0, short, "", H100["nccl_allreduce_busbw_gbps"], 0.05, 1.0)
    assert out["value"] == 465.3 and "largest size (below 1 GiB), at 134217728 B" in out["reason"]


def test_nccl_wrong_results_fail_with_the_output():
    out = nc.judge_nccl("nccl_allreduce_busbw_gbps", 0, fixture(NCCL_WRONG), "", H100["nccl_allreduce_busbw_gbps"],
                        0.05, 1.0, label="all_reduce_perf")
    assert out["verdict"] == "fail" and out["value"] is None
    assert "#wrong total 4096" in out["reason"] and "out of bounds values 4096 FAILED" in out["reason"]
    assert "rank=5 #wrong=2048" in out["reason"] and "NCCL WARN Cuda failure" in out["raw"]
    # Only a per-rank error line, or only the out-of-bounds footer, fails too.
    only_oob = fixture(NCCL_8GPU).replace("# Out of bounds values : 0 OK", "# Out of bounds values : 12 FAILED")
    assert nc.judge_nccl("c", 0, only_oob, "", None, 0.05, 1.0)["verdict"] == "fail"
    only_rank = fixture(NCCL_8GPU) + " rank=3 #wrong=1\n"
    assert nc.judge_nccl("c", 0, only_rank, "", None, 0.05, 1.0)["verdict"] == "fail"


def test_nccl_two_nodes_old_error_column_is_judged():
    out = nc.judge_nccl("nccl_allreduce_busbw_gbps", 0, fixture(NCCL_2NODE), "", H100["nccl_allreduce_busbw_gbps"],
                        0.05, 1.0)
    assert out["value"] == 1.14 and out["verdict"] == "fail" and "< floor 460" in out["reason"]
    assert out["details"]["ranks"] == 2 and out["details"]["hosts"] == ["node-a", "node-b"]


def test_nccl_one_rank_output_is_not_applicable():
    one = "\n".join(ln for ln in fixture(NCCL_2NODE).splitlines() if "node-b" not in ln)
    out = nc.judge_nccl("nccl_allreduce_busbw_gbps", 0, one, "", H100["nccl_allreduce_busbw_gbps"], 0.05, 1.0)
    assert out["verdict"] == "not_applicable" and "2(n-1)/n" in out["reason"] and out["value"] is None


def test_nccl_zero_bus_bandwidth_fails():
    zero = fixture(NCCL_2NODE).replace("1.14    1.14", "0.00    0.00")
    out = nc.judge_nccl("nccl_allreduce_busbw_gbps", 0, zero, "", None, 0.05, 1.0)
    assert out["verdict"] == "fail" and "bus bandwidth 0 GB/s with 2 ranks" in out["reason"] and "raw" in out


def test_nccl_unparseable_or_failed_runs_fail_with_raw():
    out = nc.judge_nccl("nccl_allreduce_busbw_gbps", 127, "",
                        "all_reduce_perf: error while loading shared libraries: libnccl.so.2", None, 0.05, 0.1,
                        label="all_reduce_perf")
    assert out["verdict"] == "fail" and "all_reduce_perf exited with 127, output not parseable" in out["reason"]
    assert "libnccl.so.2" in out["raw"]
    garbage = nc.judge_nccl("c", 0, "Segmentation fault\nline 2\n", "", None, 0.05, 0.1)
    assert garbage["verdict"] == "fail" and garbage["raw"].startswith("Segmentation fault\nline 2")
    # Parseable output but a non-zero exit status (e.g. mpirun reporting a dead rank) is a fail too.
    died = nc.judge_nccl("c", 1, fixture(NCCL_8GPU), "mpirun noticed that process rank 3 exited", None, 0.05, 0.1)
    assert died["verdict"] == "fail" and died["reason"] == "nccl-tests exited with 1: mpirun noticed that process " \
        "rank 3 exited"


# --- nccl_bench: helpers ---------------------------------------------------------------------------------

def test_nccl_sizes_and_command_lines(tmp_path):
    assert [nc.parse_size(s) for s in ("8", "1K", "256m", "1G", "16G")] == [8, 1024, 256 << 20, 1 << 30, 16 << 30]
    for bad in ("1X", "", "1.5G", "-1", "G"):
        with pytest.raises(ValueError, match="not a size"):
            nc.parse_size(bad)
    bench = nc.bench_args("/opt/nccl-tests/build/all_reduce_perf", 8, "1g", "16G", 2, 20, 5, 1)
    assert bench == ["/opt/nccl-tests/build/all_reduce_perf", "-b", "1G", "-e", "16G", "-f", "2", "-g", "8",
                     "-n", "20", "-w", "5", "-c", "1"]
    cmd = nc.mpirun_command("/usr/bin/mpirun", ["gpu01", "gpu02"], 16, ["NCCL_DEBUG", "NCCL_IB_HCA"],
                            ["--allow-run-as-root"], bench)
    assert cmd[:11] == ["/usr/bin/mpirun", "-np", "16", "-H", "gpu01:8,gpu02:8", "-x", "NCCL_DEBUG", "-x",
                        "NCCL_IB_HCA", "--allow-run-as-root", "/opt/nccl-tests/build/all_reduce_perf"]
    assert nc.exported_keys({"NCCL_DEBUG": "INFO", "UCX_TLS": "rc"}, {"NCCL_IB_HCA": "mlx5", "HOME": "/root"}) == [
        "NCCL_DEBUG", "NCCL_IB_HCA", "UCX_TLS"]
    gpus = tmp_path / "gpus"
    gpus.mkdir()
    assert nc.count_gpus({}, str(gpus)) == 0
    for bdf in ("0000:18:00.0", "0000:2a:00.0"):
        (gpus / bdf).mkdir()
    assert nc.count_gpus({}, str(gpus)) == 2
    assert nc.count_gpus({"CUDA_VISIBLE_DEVICES": "0,1,2"}, str(gpus)) == 3
    assert nc.count_gpus({}, str(tmp_path / "absent")) == 0


# --- nccl_bench: main ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "message"), [
    ({"test": "all_to_all"}, "value of test must be one of"),
    ({"min_bytes": "1X"}, "'1X' is not a size"),
    ({"min_bytes": "32G"}, "min_bytes (32G) must be at least 1 and at most max_bytes (16G)"),
    ({"step_factor": 1}, "step_factor must be at least 2"),
    ({"iters": 0}, "iters must be >= 1"),
    ({"gpus": -1}, "gpus must be 0 (no GPU) or more"),
    ({"hosts": ["a", "b"], "np": 3}, "np (3) must be a positive multiple of the number of hosts (2)"),
    ({"np": 8}, "np needs hosts"),
    ({"check_name": "gemm_bf16_tflops"}, "check_name: 'gemm_bf16_tflops' is not an nccl check"),
])
def test_nccl_bad_arguments_fail_with_a_message(capsys, args, message):
    out = run_main(nc, args, capsys)
    assert out["failed"] and message in out["msg"]


def test_nccl_missing_binary_is_not_applicable_with_how_to_build(capsys, tmp_path):
    out = run_main(nc, {"binary_dir": str(tmp_path), "gpus": 8}, capsys)
    (check,) = out["checks"]
    assert check["verdict"] == "not_applicable" and check["check"] == "nccl_allreduce_busbw_gbps"
    assert f"{tmp_path}/all_reduce_perf not found" in check["reason"]
    assert "make MPI=1 CUDA_HOME=" in check["install_hint"] and "v2.19.6" in check["install_hint"]
    other = run_main(nc, {"binary_dir": str(tmp_path), "gpus": 8, "test": "all_gather"}, capsys)
    assert other["checks"][0]["check"] == "nccl_allgather_busbw_gbps"
    assert other["command"][0] == f"{tmp_path}/all_gather_perf"


def test_nccl_no_gpu_and_one_rank_run_nothing(capsys, tmp_path, monkeypatch):
    ran = tmp_path / "ran"
    fake_tool(tmp_path / "all_reduce_perf", f"touch {ran}; cat {FIX / NCCL_8GPU}")
    out = run_main(nc, {"binary_dir": str(tmp_path), "gpus": 0}, capsys)
    assert out["checks"][0]["verdict"] == "not_applicable" and out["checks"][0]["reason"] == "no GPU (gpus is 0)"
    monkeypatch.setattr(nc, "NVIDIA_GPUS", str(tmp_path / "no-driver"))
    out = run_main(nc, {"binary_dir": str(tmp_path)}, capsys)
    assert out["checks"][0]["verdict"] == "not_applicable" and "lists none" in out["checks"][0]["reason"]
    one = run_main(nc, {"binary_dir": str(tmp_path), "gpus": 1}, capsys)
    assert one["ranks"] == 1 and one["checks"][0]["verdict"] == "not_applicable"
    assert "bus bandwidth is 0 by definition with one rank" in one["checks"][0]["reason"]
    assert "2(n-1)/n" in one["checks"][0]["reason"]
    assert not ran.exists()


def test_nccl_check_mode_reports_the_command(capsys, tmp_path, monkeypatch):
    ran = tmp_path / "ran"
    fake_tool(tmp_path / "all_reduce_perf", f"touch {ran}; cat {FIX / NCCL_8GPU}")
    gpus = tmp_path / "gpus"
    for i in range(8):
        (gpus / f"0000:{i:02x}:00.0").mkdir(parents=True)
    monkeypatch.setattr(nc, "NVIDIA_GPUS", str(gpus))
    out = run_main(nc, {"binary_dir": str(tmp_path), "_ansible_check_mode": True}, capsys)
    (check,) = out["checks"]
    assert check["verdict"] == "not_applicable" and check["reason"].startswith("check mode: not run; would run: ")
    assert f"{tmp_path}/all_reduce_perf -b 1G -e 16G -f 2 -g 8 -n 20 -w 5 -c 1" in check["reason"]
    assert out["ranks"] == 8 and not ran.exists()


def test_nccl_runs_and_judges_the_fake_binary(capsys, tmp_path):
    seen = tmp_path / "env"
    fake_tool(tmp_path / "all_reduce_perf", f'echo "$NCCL_DEBUG $*" > {seen}; cat {FIX / NCCL_8GPU}')
    out = run_main(nc, {"binary_dir": str(tmp_path), "gpus": 8, "min_bytes": "8", "max_bytes": "8G",
                        "env": {"NCCL_DEBUG": "INFO"}, "threshold": H100["nccl_allreduce_busbw_gbps"],
                        "retries": 0}, capsys)
    (check,) = out["checks"]
    assert check["value"] == 482.13 and check["verdict"] == "warn" and check["threshold"]["floor"] == 460
    assert check["command"] == f"{tmp_path}/all_reduce_perf -b 8 -e 8G -f 2 -g 8 -n 20 -w 5 -c 1"
    assert seen.read_text().strip() == "INFO -b 8 -e 8G -f 2 -g 8 -n 20 -w 5 -c 1"
    assert "attempts" not in check and not out["changed"]


def test_nccl_multi_node_builds_the_mpirun_command(capsys, tmp_path, monkeypatch):
    fake_tool(tmp_path / "all_reduce_perf", "exit 99")  # must exist; mpirun (fake) runs it on the nodes
    argv = tmp_path / "argv"
    mpirun = fake_tool(tmp_path / "mpirun", f'printf "%s\\n" "$@" > {argv}; cat {FIX / NCCL_2NODE}')
    monkeypatch.setenv("NCCL_IB_HCA", "mlx5_0")
    monkeypatch.delenv("NCCL_DEBUG", raising=False)
    out = run_main(nc, {"binary_dir": str(tmp_path), "hosts": ["node-a", "node-b"], "gpus": 1, "mpirun": str(mpirun),
                        "mpirun_args": ["--allow-run-as-root"], "env": {"NCCL_DEBUG": "WARN"},
                        "threshold": H100["nccl_allreduce_busbw_gbps"], "retries": 0}, capsys)
    assert argv.read_text().splitlines() == [
        "-np", "2", "-H", "node-a:1,node-b:1", "-x", "NCCL_DEBUG", "-x", "NCCL_IB_HCA", "--allow-run-as-root",
        f"{tmp_path}/all_reduce_perf", "-b", "1G", "-e", "16G", "-f", "2", "-g", "1", "-n", "20", "-w", "5", "-c", "1"]
    assert out["ranks"] == 2 and out["command"][0] == str(mpirun)
    (check,) = out["checks"]
    assert check["value"] == 1.14 and check["verdict"] == "fail" and check["details"]["hosts"] == ["node-a", "node-b"]
    # One process per GPU: the GPUs per process default to the node's GPUs divided by the processes per host.
    plan = run_main(nc, {"binary_dir": str(tmp_path), "hosts": ["node-a", "node-b"], "np": 16, "mpirun": str(mpirun),
                         "env": {"CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}, "_ansible_check_mode": True}, capsys)
    assert plan["ranks"] == 16 and "-H node-a:8,node-b:8" in plan["checks"][0]["reason"]
    assert plan["command"][plan["command"].index("-g") + 1] == "1"
    # validate.yml names the multi-node run apart from the single-node one.
    named = run_main(nc, {"binary_dir": str(tmp_path), "hosts": ["node-a", "node-b"], "gpus": 1, "mpirun": str(mpirun),
                          "check_name": "nccl_allreduce_multinode_busbw_gbps", "retries": 0}, capsys)
    assert named["checks"][0]["check"] == "nccl_allreduce_multinode_busbw_gbps"
    assert named["checks"][0]["area"] == "nccl" and named["checks"][0]["value"] == 1.14
    missing = run_main(nc, {"binary_dir": str(tmp_path), "hosts": ["node-a", "node-b"], "gpus": 8,
                            "mpirun": "mpirun-not-installed"}, capsys)
    assert missing["checks"][0]["verdict"] == "not_applicable"
    assert missing["checks"][0]["install_hint"].startswith("apt-get install openmpi-bin")


def test_nccl_retry_after_wrong_results_passes_as_warn(capsys, tmp_path):
    count = tmp_path / "count"
    fake_tool(tmp_path / "all_reduce_perf",
              f"echo x >> {count}\nif [ $(wc -l < {count}) -eq 1 ]; then cat {FIX / NCCL_WRONG}; exit 1; fi\n"
              f"cat {FIX / NCCL_8GPU}")
    out = run_main(nc, {"binary_dir": str(tmp_path), "gpus": 8, "threshold": A100["nccl_allreduce_busbw_gbps"],
                        "retry_cooldown_s": 0}, capsys)
    (check,) = out["checks"]
    assert count.read_text().count("x") == 2
    assert check["verdict"] == "warn" and check["reason"].startswith("passed on retry 1 after 0 s cooldown")
    assert [a["verdict"] for a in check["attempts"]] == ["fail", "pass"]
    assert "rank=5 #wrong=2048" in check["attempts"][0]["raw"] and check["value"] == 482.13


def test_nccl_unparseable_output_fails_both_attempts_with_raw(capsys, tmp_path):
    fake_tool(tmp_path / "all_reduce_perf", "echo 'NCCL failure common.cu:1039 unhandled system error'; exit 3")
    out = run_main(nc, {"binary_dir": str(tmp_path), "gpus": 2, "retry_cooldown_s": 0}, capsys)
    (check,) = out["checks"]
    assert check["verdict"] == "fail" and check["reason"].startswith("failed 2 attempts")
    assert "exited with 3, output not parseable" in check["reason"]
    assert check["raw"] == "NCCL failure common.cu:1039 unhandled system error" and len(check["attempts"]) == 2


def test_nccl_hung_run_is_killed_and_fails(capsys, tmp_path):
    fake_tool(tmp_path / "all_reduce_perf", "echo '# nThread 1 nGpus 2'; exec sleep 30")
    t0 = time.monotonic()
    out = run_main(nc, {"binary_dir": str(tmp_path), "gpus": 2, "timeout_s": 1, "retries": 0}, capsys)
    assert time.monotonic() - t0 < 20
    assert out["checks"][0]["verdict"] == "fail" and "did not finish within 1 s" in out["checks"][0]["reason"]


# --- rdma_bench: judging ---------------------------------------------------------------------------------

def test_rdma_write_bw_is_judged_on_the_largest_message():
    th = v.with_link_speed(GENERIC["rdma_write_bw_gbps"], 400)  # 90% of the link
    out = rb.judge_perftest(0, fixture(WRITE_BW), "", th, 0.05, 5.0)
    assert out["value"] == 392.0 and out["unit"] == "Gbit/s" and out["area"] == "rdma"
    assert out["verdict"] == "pass" and out["threshold"]["floor_effective"] == 360
    assert "(BW average at 8388608 B)" in out["reason"]
    assert out["details"]["bw_peak_gbps"] == 393.57 and out["details"]["gid_index"] == 3
    assert out["details"]["link_type"] == "Ethernet"
    h100 = rb.judge_perftest(0, fixture(WRITE_BW), "", H100["rdma_write_bw_gbps"], 0.05, 5.0)
    assert h100["verdict"] == "warn" and "floor 380" in h100["reason"]
    unknown_link = rb.judge_perftest(0, fixture(WRITE_BW), "", v.with_link_speed(GENERIC["rdma_write_bw_gbps"], None),
                                     0.05, 5.0)
    assert unknown_link["verdict"] == "warn" and "link speed unknown" in unknown_link["reason"]
    slow = rb.judge_perftest(0, fixture(WRITE_BW), "", v.with_link_speed(GENERIC["rdma_write_bw_gbps"], 800),
                             0.05, 5.0)
    assert slow["verdict"] == "fail" and "< floor 720" in slow["reason"] and "RDMA_Write BW Test" in slow["raw"]


def test_rdma_other_perftest_outputs_are_not_taken_for_write_bw():
    read = rb.judge_perftest(0, fixture("perftest/ib_read_bw-mb-65536.txt"), "", None, 0.05, 1.0)
    assert read["verdict"] == "fail" and "not ib_write_bw" in read["reason"]
    lat = rb.judge_perftest(0, fixture("perftest/ib_write_lat-all-sizes.txt"), "", None, 0.05, 1.0)
    assert lat["verdict"] == "fail" and "lat table, not bandwidth" in lat["reason"]


def test_rdma_failures_fail_with_raw():
    refused = rb.judge_perftest(1, "", " Couldn't connect to 10.0.0.2:18515\nUnable to open file descriptor for "
                                "socket connection Unable to init the socket connection", None, 0.05, 0.1)
    assert refused["verdict"] == "fail" and "ib_write_bw exited with 1, output not parseable" in refused["reason"]
    assert "Couldn't connect to 10.0.0.2:18515" in refused["raw"]
    died = rb.judge_perftest(1, fixture(WRITE_BW), "Failed to complete run", None, 0.05, 0.1)
    assert died["verdict"] == "fail" and died["reason"] == "ib_write_bw exited with 1: Failed to complete run"


def test_rdma_latency_summary():
    # The ib_write_lat fixture stands in for ib_read_lat: the same latency table.
    lat = rb.latency_summary(0, fixture("perftest/ib_write_lat-all-sizes.txt"), "")
    assert lat == {"test": "RDMA_Write Latency Test", "unit": "us", "bytes": 2, "iterations": 1000, "t_min_us": 1.66,
                   "t_max_us": 7.01, "t_typical_us": 1.71, "t_avg_us": 1.73, "t_stdev_us": 0.03, "p99_us": 2.14,
                   "p99_9_us": 4.96}
    bad = rb.latency_summary(1, "", "Couldn't connect")
    assert "not parseable" in bad["error"] and bad["raw"] == "--- stderr ---\nCouldn't connect"
    assert rb.latency_summary(0, fixture(WRITE_BW), "")["error"] == "not a latency table"


# --- rdma_bench: helpers ---------------------------------------------------------------------------------

def test_rdma_command_lines():
    client = rb.bw_command("ib_write_bw", "mlx5_0", 1, 3, 18515, 8388608, False, 5, None, 4, True, 2, "10.0.0.2")
    assert client == ["ib_write_bw", "-d", "mlx5_0", "-i", "1", "-x", "3", "-p", "18515", "-s", "8388608", "-D", "5",
                      "-q", "4", "--report_gbits", "--use_cuda=2", "-F", "10.0.0.2"]
    server = rb.bw_command("ib_write_bw", "mlx5_0", 1, None, 18515, 65536, True, 5, None, 1, False, None)
    assert server == ["ib_write_bw", "-d", "mlx5_0", "-i", "1", "-p", "18515", "-a", "-q", "1", "-F"]
    assert rb.bw_command("b", "d", 1, None, 1, 2, False, 5, 100, 1, True, None)[7:11] == ["-s", "2", "-n", "100"]
    assert rb.lat_command("ib_read_lat", "mlx5_0", 1, 3, 18516, 1000, "10.0.0.2") == [
        "ib_read_lat", "-d", "mlx5_0", "-i", "1", "-x", "3", "-p", "18516", "-n", "1000", "-F", "10.0.0.2"]
    srv = rb.server_command(["ib_write_bw", "-d", "mlx5_0"], None, 120)
    assert srv[:5] == ["timeout", "--kill-after=5", "120", "sh", "-c"]
    assert srv[5] == ": baremetal-rdma-bench; while :; do ib_write_bw -d mlx5_0 || sleep 1; done"
    both = rb.server_command(["ib_write_bw"], ["ib_read_lat", "-p", "18516"], 120)[5]
    assert "(while :; do ib_write_bw || sleep 1; done) & (while :; do ib_read_lat -p 18516" in both
    assert both.endswith("& wait")


def rdma_tree(root: Path) -> Path:
    """A fake /sys/class/infiniband: mlx5_0 port 1 DOWN (IB), mlx5_1 port 1 ACTIVE (RoCE, 400G)."""
    for dev, state, layer, rate in (("mlx5_0", "1: DOWN", "InfiniBand", "100 Gb/sec (4X EDR)"),
                                    ("mlx5_1", "4: ACTIVE", "Ethernet", "400 Gb/sec (4X NDR)")):
        port = root / "sys" / "class" / "infiniband" / dev / "ports" / "1"
        port.mkdir(parents=True)
        (port / "state").write_text(state + "\n")
        (port / "link_layer").write_text(layer + "\n")
        (port / "rate").write_text(rate + "\n")
    return root


def test_rdma_sysfs_and_facts_helpers(tmp_path):
    root = str(rdma_tree(tmp_path))
    names, base = rb.rdma_devices(root)
    assert names == ["mlx5_0", "mlx5_1"] and base.endswith("sys/class/infiniband")
    assert rb.pick_device(root, names, 1) == "mlx5_1"
    assert rb.port_info(root, "mlx5_1", 1) == {"name": "mlx5_1", "port": 1, "exists": True, "state": "ACTIVE",
                                               "link_layer": "Ethernet", "rate": "400 Gb/sec (4X NDR)",
                                               "rate_gbps": 400.0}
    assert rb.port_info(root, "mlx5_0", 2)["exists"] is False
    assert rb.rdma_devices(str(tmp_path / "none")) == ([], str(tmp_path / "none" / "sys" / "class" / "infiniband"))
    assert rb.rate_gbps("200 Gb/sec (2X NDR)") == 200.0 and rb.rate_gbps(None) is None
    rdma = {"present": True, "devices": [{"name": "mlx5_1", "ports": [{"port": 1, "roce_v2_gid_index": 3}]}]}
    for shape in (rdma, {"rdma": rdma}, {"ansible_facts": {"rdma": rdma}, "changed": False}):
        assert rb.facts_port(shape, "mlx5_1", 1) == {"port": 1, "roce_v2_gid_index": 3}
    assert rb.facts_port(rdma, "mlx5_1", 2) is None and rb.facts_port(None, "mlx5_1", 1) is None


# --- rdma_bench: main ------------------------------------------------------------------------------------

RDMA_FACTS = {"ansible_facts": {"rdma": {"present": True, "devices": [
    {"name": "mlx5_1", "ports": [{"port": 1, "roce_v2_gid_index": 3, "rate": "400 Gb/sec (4X NDR)"}]}]}}}


def test_rdma_without_device_is_not_applicable(capsys, tmp_path):
    out = run_main(rb, {"server": "10.0.0.2", "sysfs_root": str(tmp_path)}, capsys)
    assert out["checks"][0]["verdict"] == "not_applicable"
    assert out["checks"][0]["reason"] == f"no RDMA device (no entries in {tmp_path}/sys/class/infiniband)"
    (tmp_path / "sys" / "class" / "infiniband").mkdir(parents=True)
    assert run_main(rb, {"server": "10.0.0.2", "sysfs_root": str(tmp_path)}, capsys)["checks"][0][
        "verdict"] == "not_applicable"
    srv = run_main(rb, {"mode": "server", "sysfs_root": str(tmp_path)}, capsys)
    assert srv["checks"] == [] and "no server started" in srv["msg"] and not srv["changed"]


def test_rdma_missing_tool_no_peer_bad_device_and_down_port(capsys, tmp_path):
    root = str(rdma_tree(tmp_path))
    out = run_main(rb, {"server": "10.0.0.2", "sysfs_root": root, "ib_write_bw": "ib_write_bw-not-here"}, capsys)
    assert out["checks"][0]["verdict"] == "not_applicable"
    assert out["checks"][0]["install_hint"].startswith("apt install perftest")
    assert out["device"]["name"] == "mlx5_1"  # the device whose port is ACTIVE
    srv = run_main(rb, {"mode": "server", "sysfs_root": root, "ib_write_bw": "ib_write_bw-not-here"}, capsys)
    assert srv["checks"] == [] and "apt install perftest" in srv["msg"]
    tool = fake_tool(tmp_path / "ib_write_bw", f"cat {FIX / WRITE_BW}")
    no_peer = run_main(rb, {"sysfs_root": root, "ib_write_bw": str(tool)}, capsys)
    assert no_peer["checks"][0]["verdict"] == "not_applicable" and "no peer" in no_peer["checks"][0]["reason"]
    bad = run_main(rb, {"server": "10.0.0.2", "device": "mlx5_9", "sysfs_root": root, "ib_write_bw": str(tool)},
                   capsys)
    assert bad["checks"][0]["verdict"] == "fail" and "mlx5_9 not found (present: mlx5_0, mlx5_1)" in bad["checks"][
        0]["reason"]
    down = run_main(rb, {"server": "10.0.0.2", "device": "mlx5_0", "sysfs_root": root, "ib_write_bw": str(tool)},
                    capsys)
    assert down["checks"][0]["verdict"] == "fail" and down["checks"][0]["reason"] == "mlx5_0 port 1 is DOWN, not ACTIVE"
    sizes = run_main(rb, {"server": "10.0.0.2", "size": 0, "qps": 0, "sysfs_root": root}, capsys)
    assert sizes["failed"] and "size must be at least 1" in sizes["msg"] and "qps must be at least 1" in sizes["msg"]
    mode = run_main(rb, {"mode": "both"}, capsys)
    assert mode["failed"] and "value of mode must be one of" in mode["msg"]


def test_rdma_check_mode_reports_the_command(capsys, tmp_path):
    root = str(rdma_tree(tmp_path))
    ran = tmp_path / "ran"
    tool = fake_tool(tmp_path / "ib_write_bw", f"touch {ran}; cat {FIX / WRITE_BW}")
    out = run_main(rb, {"server": "10.0.0.2", "sysfs_root": root, "ib_write_bw": str(tool), "rdma_facts": RDMA_FACTS,
                        "_ansible_check_mode": True}, capsys)
    (check,) = out["checks"]
    assert check["verdict"] == "not_applicable" and check["reason"].startswith("check mode: not run; would run: ")
    assert f"{tool} -d mlx5_1 -i 1 -x 3 -p 18515 -s 8388608 -D 5 -q 1 --report_gbits -F 10.0.0.2" in check["reason"]
    assert out["device"]["gid_index"] == 3 and not ran.exists()
    srv = run_main(rb, {"mode": "server", "sysfs_root": root, "ib_write_bw": str(tool), "_ansible_check_mode": True},
                   capsys)
    assert srv["changed"] and srv["command"][:3] == ["timeout", "--kill-after=5", "300"] and not ran.exists()


def test_rdma_client_measures_and_reports_latency(capsys, tmp_path):
    root = str(rdma_tree(tmp_path))
    argv = tmp_path / "argv"
    tool = fake_tool(tmp_path / "ib_write_bw", f'echo "$*" > {argv}; cat {FIX / WRITE_BW}')
    lat = fake_tool(tmp_path / "ib_read_lat", f"cat {FIX / 'perftest/ib_write_lat-all-sizes.txt'}")
    out = run_main(rb, {"server": "10.0.0.2", "sysfs_root": root, "ib_write_bw": str(tool), "ib_read_lat": str(lat),
                        "latency": True, "gid_index": 5, "rdma_facts": RDMA_FACTS,
                        "threshold": GENERIC["rdma_write_bw_gbps"], "retries": 0}, capsys)
    (check,) = out["checks"]
    assert argv.read_text().split() == ["-d", "mlx5_1", "-i", "1", "-x", "5", "-p", "18515", "-s", "8388608", "-D",
                                        "5", "-q", "1", "--report_gbits", "-F", "10.0.0.2"]
    assert check["value"] == 392.0 and check["verdict"] == "pass" and check["link_gbps"] == 400.0
    assert check["threshold"]["floor_effective"] == 360  # 0.9 x the port's 400 Gb/sec from sysfs
    assert out["device"] == {"name": "mlx5_1", "port": 1, "exists": True, "state": "ACTIVE", "link_layer": "Ethernet",
                             "rate": "400 Gb/sec (4X NDR)", "rate_gbps": 400.0, "gid_index": 5}
    assert out["latency"]["t_typical_us"] == 1.71 and out["latency"]["command"][-1] == "10.0.0.2"
    assert "-p" in out["latency"]["command"] and out["latency"]["command"][out["latency"]["command"].index("-p") + 1] \
        == "18516"
    # link_gbps wins over the port's rate.
    slower = run_main(rb, {"server": "10.0.0.2", "sysfs_root": root, "ib_write_bw": str(tool), "link_gbps": 800,
                           "threshold": GENERIC["rdma_write_bw_gbps"], "retries": 0}, capsys)
    assert slower["checks"][0]["verdict"] == "fail" and slower["checks"][0]["threshold"]["floor_effective"] == 720
    assert "note" in slower and "GID index" in slower["note"]  # RoCE port, no gid_index and no facts


def test_rdma_connection_failure_is_retried(capsys, tmp_path):
    root = str(rdma_tree(tmp_path))
    count = tmp_path / "count"
    tool = fake_tool(tmp_path / "ib_write_bw",
                     f"echo x >> {count}\nif [ $(wc -l < {count}) -eq 1 ]; then "
                     f"echo \" Couldn't connect to $1:18515\" >&2; exit 1; fi\ncat {FIX / WRITE_BW}")
    out = run_main(rb, {"server": "10.0.0.2", "sysfs_root": root, "ib_write_bw": str(tool),
                        "threshold": H100["rdma_write_bw_gbps"], "retry_cooldown_s": 0}, capsys)
    (check,) = out["checks"]
    assert check["verdict"] == "warn" and [a["verdict"] for a in check["attempts"]] == ["fail", "warn"]
    assert "Couldn't connect" in check["attempts"][0]["raw"] and check["value"] == 392.0
    garbage = fake_tool(tmp_path / "garbage", "echo 'ibv_open_device failed'; exit 0")
    out = run_main(rb, {"server": "10.0.0.2", "sysfs_root": root, "ib_write_bw": str(garbage), "retries": 0}, capsys)
    assert out["checks"][0]["verdict"] == "fail" and out["checks"][0]["raw"] == "ibv_open_device failed"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rdma_server_starts_detached_and_stops(capsys, tmp_path, monkeypatch):
    root = str(rdma_tree(tmp_path))
    monkeypatch.setattr(rb, "PIDFILE", str(tmp_path / "perftest-{port}.pid"))
    monkeypatch.setattr(rb, "LOGFILE", str(tmp_path / "perftest-{port}.log"))
    port = _free_port()
    # A stand-in server: listens on the -p port like perftest's connection exchange, then idles.
    fake = tmp_path / "ib_write_bw"
    fake.write_text(f"#!{sys.executable}\nimport socket, sys, time\nport = int(sys.argv[sys.argv.index('-p') + 1])\n"
                    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                    "s.bind(('127.0.0.1', port)); s.listen(1); time.sleep(60)\n")
    fake.chmod(0o755)
    args = {"mode": "server", "sysfs_root": root, "ib_write_bw": str(fake), "port": port, "server_ttl_s": 60}
    pid = None
    try:
        out = run_main(rb, args, capsys)
        pid = out.get("pid")
        assert out["changed"] and pid and rb.listening(port), out
        assert (tmp_path / f"perftest-{port}.pid").read_text().strip() == str(pid)
        assert os.getpgid(pid) == pid  # its own session: the play ending does not take it down
        again = run_main(rb, args, capsys)
        assert not again["changed"] and again["pid"] == pid and "already running" in again["msg"]
        stop = run_main(rb, {"mode": "stop", "port": port}, capsys)
        assert stop["changed"] and stop["command"] == ["kill", "--", f"-{pid}"]
        deadline = time.monotonic() + 10
        while rb.listening(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not rb.listening(port) and not (tmp_path / f"perftest-{port}.pid").exists()
        assert not run_main(rb, {"mode": "stop", "port": port}, capsys)["changed"]
    finally:
        if pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, 9)


def test_rdma_server_refuses_a_taken_port(capsys, tmp_path, monkeypatch):
    root = str(rdma_tree(tmp_path))
    monkeypatch.setattr(rb, "PIDFILE", str(tmp_path / "perftest-{port}.pid"))
    monkeypatch.setattr(rb, "LOGFILE", str(tmp_path / "perftest-{port}.log"))
    tool = fake_tool(tmp_path / "ib_write_bw", "sleep 60")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        out = run_main(rb, {"mode": "server", "sysfs_root": root, "ib_write_bw": str(tool), "port": port}, capsys)
    assert out["failed"] and f"TCP port(s) [{port}] taken by another program" in out["msg"]
    assert not (tmp_path / f"perftest-{port}.pid").exists()
