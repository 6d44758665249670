"""The validation core (module_utils/bm_validation.py) and validation/thresholds.yml: threshold errors, verdicts
and warn-band edges, retries, result documents, JUnit, Prometheus exposition, fleet outliers."""

from __future__ import annotations

import copy
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "module_utils"))
import bm_validation as v  # noqa: E402

THRESHOLDS = ROOT / "validation" / "thresholds.yml"


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(THRESHOLDS.read_text())


@pytest.fixture(scope="module")
def th() -> dict:
    return v.load_thresholds(str(THRESHOLDS))


# --- thresholds ---------------------------------------------------------------------------------------------

def test_shipped_thresholds_are_valid_and_cover_the_models(th):
    assert set(th["gpu_models"]) == {"H100-SXM5-80GB", "H100-PCIE-80GB", "H200-SXM5-141GB", "A100-SXM4-80GB",
                                     "L40S", "MI300X"}
    for model, m in th["gpu_models"].items():
        assert m["checks"], model
        for check, t in m["checks"].items():
            assert t["source"] and t["unit"] in v.UNITS, (model, check)
            assert t.get("floor") or t.get("fraction_of_spec"), (model, check)
    # Source short names are expanded to the citation.
    assert "check_gpu_bw 48 335" in th["gpu_models"]["H100-SXM5-80GB"]["checks"]["h2d_gbps"]["source"]
    assert {"generic", "lab"} <= set(th["node_classes"])


def test_thresholds_match_the_reference_numbers(th):
    h100 = th["gpu_models"]["H100-SXM5-80GB"]["checks"]
    assert h100["h2d_gbps"]["floor"] == 48 and h100["p2p_gbps"]["floor"] == 335
    assert h100["nccl_allreduce_busbw_gbps"]["floor"] == 460 and h100["rdma_write_bw_gbps"]["floor"] == 380
    assert th["gpu_models"]["H200-SXM5-141GB"]["checks"]["nccl_allreduce_busbw_gbps"]["floor"] == 431
    a100 = th["gpu_models"]["A100-SXM4-80GB"]["checks"]
    assert a100["nccl_allreduce_busbw_gbps"]["floor"] == 228 and a100["p2p_gbps"]["floor"] == 238
    # Our own GEMM floors say so.
    assert h100["gemm_bf16_tflops"]["source"].startswith("ours:")


@pytest.mark.parametrize(("mutate", "key"), [
    (lambda d: d["gpu_models"]["H100-SXM5-80GB"]["checks"]["h2d_gbps"].update(unit="GiB/s"),
     "gpu_models.H100-SXM5-80GB.checks.h2d_gbps.unit"),
    (lambda d: d["gpu_models"]["L40S"]["checks"]["h2d_gbps"].pop("source"),
     "gpu_models.L40S.checks.h2d_gbps.source"),
    (lambda d: d["gpu_models"]["L40S"]["checks"].update(gemm_fp8_tflops={"unit": "TFLOP/s", "floor": 1,
                                                                          "source": "x"}),
     "gpu_models.L40S.checks.gemm_fp8_tflops"),
    (lambda d: d["gpu_models"]["L40S"]["checks"]["h2d_gbps"].update(floor=-3), "h2d_gbps.floor"),
    (lambda d: d["gpu_models"]["L40S"]["checks"]["h2d_gbps"].update(unit="IOPS"), "h2d_gbps.unit"),
    (lambda d: d["gpu_models"]["L40S"]["spec"].pop("hbm_copy_tbps"), "L40S.checks.hbm_copy_tbps.fraction_of_spec"),
    (lambda d: d["node_classes"]["lab"]["storage_seq_read_mbps"].update(fraction_of_link=1.5),
     "node_classes.lab.storage_seq_read_mbps.fraction_of_link"),
    (lambda d: d.update(schema_version=2), "schema_version"),
    (lambda d: d["node_classes"].pop("generic"), "node_classes.generic"),
    (lambda d: d["health"].update(gpu_count={"unit": "count", "source": "x"}), "health.gpu_count"),
])
def test_bad_threshold_data_names_the_key(raw, mutate, key):
    doc = copy.deepcopy(raw)
    mutate(doc)
    with pytest.raises(v.ThresholdError) as err:
        v.validate_thresholds(doc, origin="thresholds.yml")
    assert key in str(err.value)


def test_unknown_gpu_model_lists_the_known_ones(th):
    with pytest.raises(v.ThresholdError, match=r"'B300'.*H100-SXM5-80GB"):
        v.resolve_model(th, "B300")
    assert v.resolve_model(th, "none") is None and v.resolve_model(th, None) is None
    assert v.resolve_model(th, "nvidia h100 80gb hbm3") == "H100-SXM5-80GB"
    assert v.resolve_model(th, "H200-SXM5-141GB") == "H200-SXM5-141GB"


def test_unknown_node_class(th):
    with pytest.raises(v.ThresholdError, match=r"node class 'fast'.*generic"):
        v.resolve_thresholds(th, None, "fast")


def test_load_errors_are_threshold_errors(tmp_path):
    with pytest.raises(v.ThresholdError, match="cannot read"):
        v.load_thresholds(str(tmp_path / "missing.yml"))
    bad = tmp_path / "bad.yml"
    bad.write_text("gpu_models: [\n")
    with pytest.raises(v.ThresholdError, match="not valid YAML"):
        v.load_thresholds(str(bad))


def test_override_merges_over_the_file(th):
    override = {"gpu_models": {"H100-SXM5-80GB": {"checks": {"nccl_allreduce_busbw_gbps": {
        "floor": 470, "unit": "GB/s", "source": "ours: fleet baseline minus 3%"}}}}}
    t = v.load_thresholds(str(THRESHOLDS), override)
    r = v.resolve_thresholds(t, "H100-SXM5-80GB", "generic", 8)
    assert r["nccl_allreduce_busbw_gbps"]["floor_effective"] == 470
    assert r["h2d_gbps"]["floor_effective"] == 48  # the rest of the model is kept
    assert r["gpu_count"]["exact"] == 8
    # An override with a mistake fails like the file would.
    with pytest.raises(v.ThresholdError, match=r"nccl_allreduce_busbw_gbps\.source"):
        v.load_thresholds(str(THRESHOLDS), {"gpu_models": {"L40S": {"checks": {"nccl_allreduce_busbw_gbps": {
            "floor": 1, "unit": "GB/s"}}}}})


def test_fraction_of_spec_and_floor_take_the_stricter(th):
    r = v.resolve_thresholds(th, "H100-SXM5-80GB")
    assert r["gemm_bf16_tflops"]["floor_effective"] == pytest.approx(593.4)  # 0.60 x 989
    assert r["storage_seq_read_mbps"]["floor_effective"] == 500  # node class generic


# --- judge -----------------------------------------------------------------------------------------------

FLOOR = {"unit": "GB/s", "floor": 100.0, "floor_effective": 100.0, "source": "test"}


@pytest.mark.parametrize(("value", "verdict"), [
    (99.999, "fail"), (100.0, "warn"), (104.999, "warn"), (105.0, "pass"), (250, "pass"),
])
def test_floor_and_warn_band_edges(value, verdict):
    out = v.judge("h2d_gbps", value, "GB/s", FLOOR, warn_band=0.05)
    assert out["verdict"] == verdict, out["reason"]
    assert out["threshold"]["warn_below"] == pytest.approx(105.0)


def test_units_convert_and_mismatches_raise():
    # 0.8 TB/s = 800 GB/s against a 100 GB/s floor.
    assert v.judge("h2d_gbps", 0.8, "TB/s", FLOOR)["verdict"] == "pass"
    # 400 Gbit/s = 50 GB/s
    assert v.judge("h2d_gbps", 400, "Gbit/s", FLOOR)["verdict"] == "fail"
    with pytest.raises(ValueError, match="does not match"):
        v.judge("h2d_gbps", 1, "IOPS", FLOOR)


@pytest.mark.parametrize(("value", "verdict"), [(0, "pass"), (1, "fail")])
def test_ceiling_zero(value, verdict):
    t = {"unit": "count", "ceiling": 0.0, "source": "t"}
    assert v.judge("gpu_xid_fatal", value, "count", t)["verdict"] == verdict


def test_ceiling_warn_band():
    t = {"unit": "count", "ceiling": 100.0, "source": "t"}
    assert v.judge("gpu_xid_fatal", 95, "count", t)["verdict"] == "pass"
    assert v.judge("gpu_xid_fatal", 96, "count", t)["verdict"] == "warn"
    assert v.judge("gpu_xid_fatal", 101, "count", t)["verdict"] == "fail"


def test_never_a_silent_pass():
    assert v.judge("h2d_gbps", None, "GB/s", FLOOR)["verdict"] == "fail"
    assert v.judge("h2d_gbps", float("nan"), "GB/s", FLOOR)["verdict"] == "fail"
    no_t = v.judge("h2d_gbps", 50, "GB/s", None)
    assert no_t["verdict"] == "warn" and "no threshold" in no_t["reason"]
    link = v.judge("network_iperf3_gbps", 9, "Gbit/s", {"unit": "Gbit/s", "fraction_of_link": 0.8, "source": "t"})
    assert link["verdict"] == "warn" and "link speed unknown" in link["reason"]
    na = v.not_applicable("gemm_bf16_tflops", "no GPU", "install CUDA")
    assert na["verdict"] == "not_applicable" and na["install_hint"] == "install CUDA" and na["value"] is None


def test_fraction_of_link():
    t = v.with_link_speed({"unit": "Gbit/s", "fraction_of_link": 0.8, "source": "t"}, 100)
    assert t["floor_effective"] == 80
    assert v.judge("network_iperf3_gbps", 79, "Gbit/s", t)["verdict"] == "fail"
    assert v.judge("network_iperf3_gbps", 90, "Gbit/s", t)["verdict"] == "pass"


def test_raw_kept_on_failure_only_unless_asked():
    assert v.judge("h2d_gbps", 1, "GB/s", FLOOR, raw="tool output")["raw"] == "tool output"
    assert "raw" not in v.judge("h2d_gbps", 500, "GB/s", FLOOR, raw="tool output")
    assert v.judge("h2d_gbps", 500, "GB/s", FLOOR, raw="x", keep_raw=True)["raw"] == "x"
    long = "a" * (v.RAW_LIMIT + 100)
    assert "characters cut" in v.judge("h2d_gbps", 1, "GB/s", FLOOR, raw=long)["raw"]


def test_exact():
    t = {"unit": "count", "exact": 8, "source": "t"}
    assert v.judge("gpu_count", 8, "count", t)["verdict"] == "pass"
    assert v.judge("gpu_count", 7, "count", t)["verdict"] == "fail"


# --- retry -----------------------------------------------------------------------------------------------

def _seq(*values):
    it = iter(values)
    return lambda: v.judge("h2d_gbps", next(it), "GB/s", FLOOR, raw="out")


def test_retry_after_cooldown_records_both_attempts():
    sleeps = []
    out = v.with_retry(_seq(50, 60), cooldown_s=7, sleep=sleeps.append)
    assert sleeps == [7] and out["verdict"] == "fail" and len(out["attempts"]) == 2
    assert [a["value"] for a in out["attempts"]] == [50, 60]
    assert out["reason"].startswith("failed 2 attempts")


def test_pass_on_retry_is_a_warn():
    out = v.with_retry(_seq(50, 200), cooldown_s=1, sleep=lambda s: None)
    assert out["verdict"] == "warn" and "passed on retry" in out["reason"] and out["value"] == 200


def test_no_retry_when_the_first_attempt_passes_or_warns():
    calls = []

    def measure():
        calls.append(1)
        return v.judge("h2d_gbps", 101, "GB/s", FLOOR)

    out = v.with_retry(measure, cooldown_s=1, sleep=lambda s: pytest.fail("no sleep expected"))
    assert out["verdict"] == "warn" and len(calls) == 1 and "attempts" not in out
    out = v.with_retry(_seq(50, 60), cooldown_s=0, retries=0, sleep=lambda s: None)
    assert out["verdict"] == "fail" and "attempts" not in out


# --- documents and formats ----------------------------------------------------------------------------------

def _checks():
    return [
        v.judge("h2d_gbps", 52.0, "GB/s", FLOOR | {"floor": 48.0, "floor_effective": 48.0}, duration_s=2.5),
        v.judge("storage_seq_read_mbps", 10.0, "MB/s", {"unit": "MB/s", "floor": 500.0, "floor_effective": 500.0,
                                                        "source": "t"}, raw='fio said "<slow>" & \x01 done'),
        v.not_applicable("gemm_bf16_tflops", "no GPU"),
        v.judge("network_iperf3_gbps", 9.4, "Gbit/s", None),
    ]


def test_result_document_schema():
    doc = v.result_document("node1", {"declared": {"gpu_count": 0}}, _checks(), "standard", "r1")
    assert doc["schema_version"] == 1 and doc["kind"] == "baremetal-validation-result"
    assert {"run_id", "host", "tier", "generated_at", "facts", "checks", "summary"} <= set(doc)
    assert doc["summary"] == {"pass": 1, "warn": 1, "fail": 1, "not_applicable": 1, "total": 4, "verdict": "fail"}
    for c in doc["checks"]:
        assert {"check", "area", "value", "unit", "threshold", "verdict", "reason", "duration_s"} <= set(c)
    assert v.check_document(json.loads(json.dumps(doc))) is not None
    with pytest.raises(ValueError, match="tier"):
        v.result_document("n", {}, [], "fast", "r")
    with pytest.raises(ValueError, match="schema_version"):
        v.check_document({**doc, "schema_version": 9})
    # A module that returns a made-up verdict is a fail, not a pass.
    bad = v.result_document("n", {}, [{"check": "x", "verdict": "ok", "reason": "?"}], "quick", "r")
    assert bad["checks"][0]["verdict"] == "fail" and bad["summary"]["verdict"] == "fail"
    assert v.summarize([])["verdict"] == "not_applicable"


def test_junit_one_testcase_per_check():
    docs = [v.result_document(h, {}, _checks(), "standard", "r1") for h in ("node1", "node2")]
    root = ET.fromstring(v.to_junit(docs))
    assert root.tag == "testsuites" and root.get("tests") == "8" and root.get("failures") == "2"
    assert root.get("skipped") == "2"
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["node1", "node2"]
    cases = suites[0].findall("testcase")
    assert [c.get("name") for c in cases] == ["h2d_gbps", "storage_seq_read_mbps", "gemm_bf16_tflops",
                                              "network_iperf3_gbps"]
    assert cases[0].get("classname") == "baremetal.node1.gpu"
    failure = cases[1].find("failure")
    assert failure is not None and "floor 500" in failure.get("message")
    assert 'fio said "<slow>" &' in failure.text  # raw output attached, escaped, control chars removed
    assert cases[2].find("skipped").get("message") == "no GPU"
    assert "WARN" in cases[3].find("system-out").text


_PROM_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
                        r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*)?\})? '
                        r'([-+]?(?:[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|Inf|NaN))$')


def parse_exposition(text: str) -> list[tuple[str, dict, float]]:
    """A small checker of the Prometheus text format: HELP/TYPE before samples, one TYPE per metric, sample
    syntax, label escaping, no duplicate series."""
    assert text.endswith("\n")
    samples, typed, seen = [], {}, set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _h, _t, name, typ = line.split(" ", 3)
            assert name not in typed and typ in {"gauge", "counter", "untyped"}
            typed[name] = typ
            continue
        m = _PROM_LINE.match(line)
        assert m, f"bad sample line: {line!r}"
        name = m.group(1)
        assert name in typed, f"{name} has no TYPE before its samples"
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen, f"duplicate series {key}"
        seen.add(key)
        samples.append((name, labels, float(m.group(3))))
    return samples


def test_prometheus_exposition_parses_and_names():
    checks = [*_checks(), v.judge("gpu_xid_fatal", 0, "count", {"unit": "count", "ceiling": 0.0, "source": "t"})]
    doc = v.result_document('no"de\\1', {}, checks, "quick", "r1")
    samples = parse_exposition(v.to_prometheus(doc))
    names = {s[0] for s in samples}
    assert names == set(v.PROM_METRICS)
    assert all(n.startswith("baremetal_validation_") for n in names)
    value = {(s[1]["check"]): s[2] for s in samples if s[0] == "baremetal_validation_value"}
    assert value == {"h2d_gbps": 52.0, "storage_seq_read_mbps": 10.0, "network_iperf3_gbps": 9.4, "gpu_xid_fatal": 0}
    verdicts = {(s[1]["check"], s[1]["verdict"]): s[2] for s in samples if s[0] == "baremetal_validation_verdict"}
    assert verdicts[("storage_seq_read_mbps", "fail")] == 1 and verdicts[("storage_seq_read_mbps", "pass")] == 0
    assert verdicts[("gemm_bf16_tflops", "not_applicable")] == 1
    thr = {(s[1]["check"], s[1]["bound"]): s[2] for s in samples if s[0] == "baremetal_validation_threshold"}
    assert thr == {("h2d_gbps", "floor"): 48.0, ("storage_seq_read_mbps", "floor"): 500.0,
                   ("gpu_xid_fatal", "ceiling"): 0.0}
    dur = [s for s in samples if s[0] == "baremetal_validation_duration_seconds"]
    assert [(s[1]["check"], s[2]) for s in dur] == [("h2d_gbps", 2.5)]
    info = next(s for s in samples if s[0] == "baremetal_validation_info")
    assert info[1]["host"] == 'no\\"de\\\\1' and info[1]["tier"] == "quick"


def test_fleet_outliers():
    def doc(host, gemm, fio, xid=0):
        return v.result_document(host, {}, [
            v.judge("gemm_bf16_tflops", gemm, "TFLOP/s", None),
            v.judge("storage_seq_read_mbps", fio, "MB/s", None),
            v.judge("gpu_xid_fatal", xid, "count", {"unit": "count", "ceiling": 0.0, "source": "t"}),
            v.not_applicable("p2p_gbps", "single GPU"),
        ], "standard", "r")

    docs = [doc("a", 800, 1000), doc("b", 790, 1000), doc("c", 740, 1000, xid=5), doc("d", 805, 940)]
    out = v.fleet_outliers(docs, margin=0.05)
    assert [(o["host"], o["check"]) for o in out] == [("c", "gemm_bf16_tflops"), ("d", "storage_seq_read_mbps")]
    assert out[0]["fleet_median"] == pytest.approx(795) and out[0]["ratio_to_median"] == pytest.approx(740 / 795, 1e-3)
    # Two hosts are not a fleet.
    assert v.fleet_outliers(docs[:2], margin=0.0001) == []
