"""`baremetal inspect` (src/baremetal_ai/inspect.py) on the real fixtures of every kind the parsers know."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from baremetal_ai import _bm_utils
from baremetal_ai import inspect as ins

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="baremetal")
    ins.add_inspect_parser(parser.add_subparsers(dest="cmd"))
    rc = ins.run_inspect(parser.parse_args(["inspect", *argv]))
    out = capsys.readouterr()
    return rc, out.out, out.err


# One real fixture per kind, what it must be detected as, and the exit code inspect gives.
CASES = [
    ("nvidia-smi/h100-2gpu-v12.xml", "nvsmi_xml", 1),
    ("nvidia-smi/a100-mig-v11.xml", "nvsmi_xml", 0),
    ("nvidia-smi/query-gpu-header-units.csv", "nvsmi_csv", 0),
    ("nvidia-smi/nvlink-status.txt", "nvlink_status", 1),
    ("nvidia-smi-topo/hgx-h100-8gpu-4nic.txt", "topo_matrix", 0),
    ("nccl-tests/all_reduce_perf-8gpu-info.txt", "nccl_tests", 0),
    ("nccl-tests/all_reduce_perf-wrong-results.txt", "nccl_tests", 1),
    ("perftest/ib_write_bw-report_gbits-all-sizes.txt", "perftest", 0),
    ("dcgmi/diag-r1-pass.txt", "dcgmi_diag", 0),
    ("dcgmi/diag-r1-json.json", "dcgmi_diag", 1),
    ("xid/journalctl-k.txt", "xid", 1),
    ("fio/write-verify-warning-2s.json", "fio_json", 0),
    ("validation/fio-randread_4k-direct-2s.json", "fio_json", 0),
    ("iperf3/tcp-loopback-2s.json", "iperf3_json", 0),
    ("iperf3/connection-refused.json", "iperf3_json", 1),
    ("ibv_devinfo/two-hca-v.txt", "ibv_devinfo", 1),
    ("show_gids/show_gids.txt", "gid_table", 0),
    ("lspci/gpu-node-lspci-vvv-nn-D.txt", "lspci_vvv", 1),
    ("gpubench/h200-device0.json", "gpubench_json", 0),
    ("nccl-tests/real-h200-1gpu-8B-1G.txt", "nccl_tests", 0),
    ("gpubench/h200-bad-arg.json", "gpubench_json", 1),
    ("nvidia-smi/h200-1gpu-v13-q-x.xml", "nvsmi_xml", 0),
]


def test_every_parser_kind_has_a_case():
    assert {k for _f, k, _rc in CASES} == set(_bm_utils.bm_parsers.KINDS)


@pytest.mark.parametrize(("path", "kind", "rc"), CASES)
def test_each_kind_is_recognised_and_judged(capsys, path, kind, rc):
    code, out, err = run(capsys, str(FIX / path), "--json")
    assert code == rc, out + err
    report = json.loads(out)
    assert report["files"][0]["kind"] == kind
    for c in report["files"][0]["checks"]:
        assert c["verdict"] in ("pass", "warn", "fail", "not_applicable") and c["reason"]


def test_gpu_model_comes_from_the_nvidia_smi_xml_among_the_files(capsys):
    code, out, _ = run(capsys, str(FIX / "nvidia-smi/a100-mig-v11.xml"),
                       str(FIX / "nccl-tests/all_reduce_perf-8gpu-info.txt"), "--json")
    report = json.loads(out)
    assert report["gpu_model_key"] == "A100-SXM4-80GB"
    nccl = report["files"][1]["checks"][0]
    assert nccl["check"] == "nccl_allreduce_busbw_gbps" and nccl["threshold"]["floor_effective"] == 228
    assert nccl["verdict"] == "pass" and code == 0


def test_gpu_model_option_and_text_output(capsys):
    code, out, _ = run(capsys, str(FIX / "nccl-tests/all_reduce_perf-8gpu-info.txt"), "--gpu-model",
                       "H100-SXM5-80GB")
    assert code == 0
    assert "H100-SXM5-80GB" in out and "nccl_allreduce_busbw_gbps" in out and "overall:" in out
    line = next(ln for ln in out.splitlines() if "nccl_allreduce_busbw_gbps" in ln)
    assert line.split()[0] in ("PASS", "WARN")
    # Without a model there is no NCCL floor: a warn, never a pass.
    code, out, _ = run(capsys, str(FIX / "nccl-tests/all_reduce_perf-8gpu-info.txt"), "--json")
    assert json.loads(out)["files"][0]["checks"][0]["verdict"] == "warn"


def test_link_speed_and_node_class(capsys):
    f = str(FIX / "validation/iperf3-loopback-P4-2s.json")
    assert run(capsys, f, "--link-gbps", "100")[0] == 1  # 14.4 Gbit/s < 80% of 100G
    assert run(capsys, f, "--link-gbps", "10")[0] == 0
    _, out, _ = run(capsys, f, "--node-class", "lab", "--json")
    assert json.loads(out)["files"][0]["checks"][0]["verdict"] == "pass"


def test_kind_option_forces_the_parser(capsys):
    code, out, _ = run(capsys, str(FIX / "xid/clean-dmesg.txt"), "--kind", "xid", "--json")
    assert code == 0 and json.loads(out)["files"][0]["checks"][0]["verdict"] == "pass"


def test_unrecognised_input_lists_the_known_kinds(capsys, tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("hello world\n")
    code, out, err = run(capsys, str(junk))
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "unrecognised input" in err and all(k in err for k in _bm_utils.bm_parsers.KINDS)


@pytest.mark.parametrize(("args", "message"), [
    (["--kind", "sar"], "--kind sar: unknown; known kinds:"),
    (["--gpu-model", "GTX-1080"], "'GTX-1080' has no entry"),
    (["--node-class", "fast"], "node class 'fast'"),
])
def test_usage_errors_exit_2(capsys, args, message):
    code, _, err = run(capsys, str(FIX / "iperf3/tcp-loopback-2s.json"), *args)
    assert code == 2 and message in err


def test_malformed_input_of_a_forced_kind(capsys, tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{not json")
    code, _, err = run(capsys, str(bad), "--kind", "fio_json")
    assert code == 2 and "not valid fio_json" in err


def test_bad_threshold_file(capsys, tmp_path):
    bad = tmp_path / "thresholds.yml"
    text = (ROOT / "validation" / "thresholds.yml").read_text()
    bad.write_text(text.replace("h2d_gbps: {unit: GB/s, floor: 48, source: azure_h100}",
                                "h2d_gbps: {unit: GB/s, floor: 48}", 1))
    code, _, err = run(capsys, str(FIX / "iperf3/tcp-loopback-2s.json"), "--thresholds", str(bad))
    assert code == 2 and "gpu_models.H100-SXM5-80GB.checks.h2d_gbps.source: missing" in err
    code, _, err = run(capsys, str(FIX / "iperf3/tcp-loopback-2s.json"), "--thresholds", str(tmp_path / "none.yml"))
    assert code == 2 and "cannot read" in err


def test_missing_file(capsys, tmp_path):
    code, _, err = run(capsys, str(tmp_path / "absent.xml"))
    assert code == 2 and "cannot read" in err
