"""library/gpu_bench.py and bm_parsers.parse_gpubench_json: judged on the real H200 output of our CUDA program
(tests/fixtures/gpubench/), and the module's main() with fake nvidia-smi / nvcc / binary on PATH."""

from __future__ import annotations

import copy
import importlib
import json
import os
import re
import stat
from pathlib import Path

import pytest
from test_bench_modules import FIX, ROOT, load, run_main, v

bp = importlib.import_module("ansible.module_utils.bm_parsers")  # after test_bench_modules put module_utils on the path

gb = load("gpu_bench")
H200 = v.resolve_thresholds(v.load_thresholds(str(ROOT / "validation" / "thresholds.yml")), "NVIDIA H200", "generic", 1)
DEVICE0 = (FIX / "gpubench" / "h200-device0.json").read_text()


# --- parser ------------------------------------------------------------------------------------------------

def test_real_device_run_parses():
    doc = bp.parse_gpubench_json(DEVICE0)
    assert doc["device"]["name"] == "NVIDIA H200" and doc["device"]["compute_capability"] == "9.0"
    tests = {r["test"]: r for r in doc["results"]}
    assert list(tests) == ["gemm_bf16", "gemm_fp16", "copy", "h2d", "d2h"]
    assert tests["gemm_bf16"]["tflops"] == pytest.approx(684.708)
    assert tests["copy"]["counting"] == "read+write" and tests["copy"]["method"] == "memcpy"
    assert bp.detect_kind(DEVICE0) == "gpubench_json"


def test_real_error_document_is_returned_with_the_error():
    doc = bp.parse_gpubench_json((FIX / "gpubench" / "h200-bad-arg.json").read_text())
    assert "unknown test 'nope'" in doc["error"] and doc["results"] == []


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.update(tool="other"), "tool='baremetal-gpubench'"),
    (lambda d: d.update(schema=2), "schema 2"),
    (lambda d: d["results"][0].update(test="gemm_fp8"), "unknown test 'gemm_fp8'"),
    (lambda d: d["results"][2].update(tbps=-1), "tbps must be a number >= 0"),
    (lambda d: d["results"][3].pop("gbps"), "gbps must be a number"),
    (lambda d: d.pop("results"), "expected a results list"),
])
def test_parser_rejects_what_is_not_a_result(mutate, message):
    doc = json.loads(DEVICE0)
    mutate(doc)
    with pytest.raises(bp.ParseError, match=message):
        bp.parse_gpubench_json(json.dumps(doc))


def test_truncated_output_is_a_parse_error_with_the_head():
    with pytest.raises(bp.ParseError) as e:
        bp.parse_gpubench_json(DEVICE0[:300])
    assert e.value.head.startswith('{"tool": "baremetal-gpubench"')


# --- judging -----------------------------------------------------------------------------------------------

def test_h200_numbers_judged_against_the_h200_row():
    checks = {c["check"]: c for c in gb.checks_from_document(bp.parse_gpubench_json(DEVICE0), H200, 0.05,
                                                             links={0: gb.pcie_gbps(5, 16)})}
    assert set(checks) == {"gemm_bf16_tflops[gpu0]", "gemm_fp16_tflops[gpu0]", "hbm_copy_tbps[gpu0]",
                           "h2d_gbps[gpu0]", "d2h_gbps[gpu0]"}
    assert all(c["verdict"] == "pass" for c in checks.values()), checks
    assert checks["gemm_bf16_tflops[gpu0]"]["threshold"]["floor_effective"] == pytest.approx(593.4)
    assert checks["hbm_copy_tbps[gpu0]"]["threshold"]["ratio_to_spec"] == pytest.approx(4.27039 / 4.8, abs=1e-3)
    h2d = checks["h2d_gbps[gpu0]"]
    assert h2d["link_theoretical_gbps"] == 63.02 and h2d["fraction_of_link"] == pytest.approx(0.879, abs=1e-3)
    assert "88% of the PCIe link" in h2d["reason"]
    assert checks["gemm_bf16_tflops[gpu0]"]["details"]["algos_tried"] == 8
    assert all(c["area"] == "gpu" for c in checks.values())


def test_a_slow_gpu_fails_and_keeps_the_output():
    doc = json.loads(DEVICE0)
    doc["results"][0]["tflops"] = 400.0
    checks = gb.checks_from_document(bp.parse_gpubench_json(json.dumps(doc)), H200, 0.05, raw="RAW")
    bf16 = checks[0]
    assert bf16["verdict"] == "fail" and "< floor 593.4" in bf16["reason"] and bf16["raw"] == "RAW"


def test_no_threshold_is_a_warn_never_a_pass():
    checks = gb.checks_from_document(bp.parse_gpubench_json(DEVICE0), {}, 0.05)
    assert {c["verdict"] for c in checks} == {"warn"}


@pytest.mark.parametrize(("gen", "width", "gbps"), [(5, 16, 63.02), (4, 16, 31.51), (3, 16, 15.75), (4, 8, 15.75),
                                                     (1, 16, 4.0), (None, 16, None), (5, None, None), (9, 16, None)])
def test_pcie_theoretical_rate(gen, width, gbps):
    assert gb.pcie_gbps(gen, width) == gbps


# --- the module, with fakes on PATH ------------------------------------------------------------------------

def _exe(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def node(tmp_path, monkeypatch):
    """A fake GPU node: nvidia-smi answering the query, an nvcc that 'compiles' by writing a script that prints
    the real H200 document (or what $GPUBENCH_OUT names), and the source file."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (tmp_path / "out.json").write_text(DEVICE0)
    _exe(bin_ / "nvidia-smi", 'echo "0, 00000000:00:06.0, NVIDIA H200, 9.0, 5, 16"\n')
    _exe(bin_ / "nvcc", f"""[ "$1" = --version ] && {{ echo "Cuda compilation tools, release 13.0, V13.0.88"; exit 0; }}
echo "$@" >> {tmp_path}/nvcc.log
while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done
printf '#!/bin/sh\\necho "$@" >> {tmp_path}/runs.log\\ncat "${{GPUBENCH_OUT:-{tmp_path}/out.json}}"\\n' > "$out"
chmod +x "$out"
""")
    src = tmp_path / "gpubench.cu"
    src.write_text((ROOT / "validation" / "gpubench" / "gpubench.cu").read_text())
    monkeypatch.setenv("PATH", f"{bin_}:{os.environ['PATH']}")
    return tmp_path


def _args(node: Path, **kw) -> dict:
    return {"source": str(node / "gpubench.cu"), "build_dir": str(node / "build"), "retry_cooldown_s": 0,
            "thresholds": H200, "numa_bind": False, "sysfs_root": str(node / "sys"), **kw}


def test_builds_once_then_reuses_the_binary(node, capsys):
    first = run_main(gb, _args(node), capsys)
    assert first["changed"] is True and first["build"]["compiled"] is True
    assert "-gencode=arch=compute_90,code=sm_90" in (node / "nvcc.log").read_text()
    assert [c["verdict"] for c in first["checks"]] == ["pass"] * 5 + ["not_applicable"]  # p2p: one GPU
    assert first["checks"][-1]["check"] == "p2p_gbps"
    second = run_main(gb, _args(node), capsys)
    assert second["changed"] is False and second["build"]["compiled"] is False
    assert len((node / "nvcc.log").read_text().splitlines()) == 1
    runs = (node / "runs.log").read_text().splitlines()
    assert len(runs) == 2 and runs[0].startswith("--device 0 --tests gemm_bf16,gemm_fp16,copy,h2d,d2h")


def test_a_changed_source_is_rebuilt(node, capsys):
    run_main(gb, _args(node), capsys)
    (node / "gpubench.cu").write_text((node / "gpubench.cu").read_text() + "\n// changed\n")
    assert run_main(gb, _args(node), capsys)["build"]["compiled"] is True


def test_check_mode_runs_nothing_and_lists_the_commands(node, capsys):
    out = run_main(gb, {**_args(node), "_ansible_check_mode": True}, capsys)
    assert {c["verdict"] for c in out["checks"]} == {"not_applicable"}
    assert any("nvcc" in c and "-o" in c for c in out["commands"])
    assert not (node / "nvcc.log").exists() and not (node / "build").exists()


def test_no_driver_is_not_applicable_with_the_fix(node, capsys, monkeypatch):
    (node / "bin" / "nvidia-smi").unlink()
    out = run_main(gb, _args(node, tests=["gemm_bf16"]), capsys)
    c = out["checks"][0]
    assert c["verdict"] == "not_applicable" and "nvidia-smi not found" in c["reason"]
    assert "nvidia_driver" in c["install_hint"]


def test_no_nvcc_is_not_applicable_with_the_fix(node, capsys, monkeypatch):
    monkeypatch.setenv("PATH", f"{node / 'bin'}:/usr/bin:/bin")
    monkeypatch.setattr(gb, "NVCC_FALLBACKS", ())
    (node / "bin" / "nvcc").unlink()
    out = run_main(gb, _args(node, tests=["copy"]), capsys)
    c = out["checks"][0]
    assert c["verdict"] == "not_applicable" and "nvcc not found" in c["reason"] and "role cuda" in c["install_hint"]


def test_compile_error_fails_every_check_with_the_compiler_output(node, capsys):
    _exe(node / "bin" / "nvcc", '[ "$1" = --version ] && exit 0; echo "gpubench.cu(1): error: boom" >&2; exit 1\n')
    out = run_main(gb, _args(node, tests=["gemm_bf16", "h2d"]), capsys)
    assert [c["verdict"] for c in out["checks"]] == ["fail", "fail"]
    assert "nvcc failed (rc 1)" in out["checks"][0]["reason"] and "error: boom" in out["checks"][0]["raw"]
    assert out["changed"] is False and not list((node / "build").glob("gpubench-*"))


def test_cuda_error_from_the_program_fails_that_gpu(node, capsys, monkeypatch):
    monkeypatch.setenv("GPUBENCH_OUT", str(FIX / "gpubench" / "h200-bad-arg.json"))
    out = run_main(gb, _args(node, tests=["gemm_bf16"]), capsys)
    c = out["checks"][0]
    assert c["check"] == "gemm_bf16_tflops[gpu0]" and c["verdict"] == "fail"
    assert "unknown test 'nope'" in c["reason"] and "baremetal-gpubench" in c["raw"]


def test_garbage_output_fails_with_its_first_lines(node, capsys, monkeypatch):
    (node / "junk.txt").write_text("Segmentation fault (core dumped)\n")
    monkeypatch.setenv("GPUBENCH_OUT", str(node / "junk.txt"))
    c = run_main(gb, _args(node, tests=["copy"]), capsys)["checks"][0]
    assert c["verdict"] == "fail" and "unreadable" in c["reason"] and "Segmentation fault" in c["raw"]


def test_slow_first_run_is_retried_once_and_a_pass_on_retry_is_a_warn(node, capsys, monkeypatch):
    slow = json.loads(DEVICE0)
    slow["results"][0]["tflops"] = 300.0
    (node / "slow.json").write_text(json.dumps(slow))
    # The first run of the binary prints the slow document, the retry the real one.
    _exe(node / "bin" / "nvcc", f"""[ "$1" = --version ] && exit 0
while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done
d={node}
printf '#!/bin/sh\\nif [ -e %s/ran ]; then cat %s/out.json;\\n' $d $d > "$out"
printf 'else touch %s/ran; cat %s/slow.json; fi\\n' $d $d >> "$out"
chmod +x "$out"
""")
    out = run_main(gb, _args(node, tests=["gemm_bf16"]), capsys)
    c = out["checks"][0]
    assert c["verdict"] == "warn" and "passed on retry 1" in c["reason"]
    assert [a["verdict"] for a in c["attempts"]] == ["fail", "pass"]


@pytest.mark.parametrize(("args", "message"), [
    ({"gpus": [3]}, r"gpus: \[3\] not on this node"),
    ({"gemm_size": 100}, "gemm_size: 100 is outside 256..65536"),
    ({"arch": "sm_90"}, "arch: 'sm_90' is not a compute capability"),
    ({"warmup_s": -1}, "warmup_s: must be >= 0"),
    ({"tests": ["gemm_fp8"]}, "value of tests must be one or more of"),
])
def test_bad_arguments_are_named(node, capsys, args, message):
    out = run_main(gb, _args(node, **args), capsys)
    assert out["failed"] is True
    assert re.search(message, out["msg"]), out["msg"]


def test_missing_source_names_the_fix(node, capsys):
    (node / "gpubench.cu").unlink()
    out = run_main(gb, _args(node), capsys)
    assert out["failed"] is True and "copy validation/gpubench/gpubench.cu" in out["msg"]


def test_two_gpus_run_each_and_the_pairs(node, capsys, monkeypatch):
    _exe(node / "bin" / "nvidia-smi", 'echo "0, 00000000:1B:00.0, NVIDIA H200, 9.0, 5, 16"\n'
                                      'echo "1, 00000000:43:00.0, NVIDIA H200, 9.0, 5, 16"\n')
    # Constructed p2p document in the program's format (a two-GPU machine was not available).
    p2p = {"tool": "baremetal-gpubench", "schema": 1, "cuda_runtime": 13000, "cuda_driver": 13000, "cublaslt": 130100,
           "device_count": 2, "results": [
               {"test": "p2p", "src": 0, "dst": 1, "peer_access": True, "bytes": 536870912, "gbps": 370.0},
               {"test": "p2p", "src": 1, "dst": 0, "peer_access": True, "bytes": 536870912, "gbps": 120.0}]}
    (node / "p2p.json").write_text(json.dumps(p2p))
    gpu1 = copy.deepcopy(json.loads(DEVICE0))
    gpu1["device"]["index"] = 1
    (node / "gpu1.json").write_text(json.dumps(gpu1))
    _exe(node / "bin" / "nvcc", f"""[ "$1" = --version ] && exit 0
while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done
d={node}
printf '#!/bin/sh\\ncase "$*" in\\n*--p2p*) cat %s/p2p.json;;\\n' $d > "$out"
printf '*"--device 1"*) cat %s/gpu1.json;;\\n*) cat %s/out.json;;\\nesac\\n' $d $d >> "$out"
chmod +x "$out"
""")
    sysfs = node / "sys" / "bus" / "pci" / "devices" / "0000:43:00.0"
    sysfs.mkdir(parents=True)
    (sysfs / "numa_node").write_text("1\n")
    out = run_main(gb, _args(node, retries=0, numa_bind=True), capsys)
    by = {c["check"]: c for c in out["checks"]}
    assert by["gemm_bf16_tflops[gpu1]"]["verdict"] == "pass"
    assert by["p2p_gbps[gpu0-gpu1]"]["verdict"] == "pass" and by["p2p_gbps[gpu1-gpu0]"]["verdict"] == "fail"
    assert len(out["gpus"]) == 2
    # GPU 1 sits on NUMA node 1: bound there when numactl exists; GPU 0 has no numa_node file: never bound.
    gpu1_cmd = next(c for c in out["commands"] if "--device 1" in c)
    gpu0_cmd = next(c for c in out["commands"] if "--device 0" in c)
    assert "numactl" not in gpu0_cmd
    if gb.shutil.which("numactl"):
        assert "--cpunodebind=1 --membind=1" in gpu1_cmd


def test_cublas_found_by_file_name_when_only_versioned_libraries_exist(tmp_path):
    lib = tmp_path / "cu" / "lib"
    lib.mkdir(parents=True)
    (lib / "libcublasLt.so.13").write_text("")
    flags = gb._cublas_flags("/nonexistent/bin/nvcc", [f"-L{lib}"])
    assert flags == [f"-L{lib}", f"-Xlinker=-rpath={lib}", "-l:libcublasLt.so.13"]
    (lib / "libcublasLt.so").write_text("")
    assert gb._cublas_flags("/nonexistent/bin/nvcc", [f"-L{lib}"])[-1] == "-lcublasLt"


def test_docs_match_the_argument_spec_and_render():
    import subprocess
    import sys

    import yaml
    doc = yaml.safe_load(gb.DOCUMENTATION)
    src = (ROOT / "library" / "gpu_bench.py").read_text()
    assert doc["module"] == "gpu_bench"
    for option in doc["options"]:
        assert f'"{option}"' in src, f"documented option {option} is not in the argument_spec"
    yaml.safe_load(gb.EXAMPLES)
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-doc"), "-M", str(ROOT / "library"), "--json",
                           "gpu_bench"], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["gpu_bench"]["doc"]["options"]["tests"]["default"][0] == "gemm_bf16"
