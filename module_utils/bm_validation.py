"""The validation core: thresholds, verdicts, retries and the result formats (docs/validation.md).

Stdlib only: Ansible ships this file to the nodes with the benchmark modules, and `baremetal inspect` imports it
on the controller. Nothing here runs a tool; it judges numbers that the modules (or inspect) measured or parsed.

Verdicts are `pass`, `warn`, `fail` and `not_applicable`; there is no path that yields `pass` without a number
and a threshold (a measured value without a threshold is a `warn`, a missing value a `fail`).
"""

from __future__ import annotations

import calendar
import copy
import json
import math
import re
import statistics
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

SCHEMA_VERSION = 1
THRESHOLDS_SCHEMA_VERSION = 1
VERDICTS = ("pass", "warn", "fail", "not_applicable")
TIERS = ("quick", "standard", "extended")

# Units a threshold may use. Bandwidths convert into each other (bytes/s factors); the others stand alone.
UNITS = ("TFLOP/s", "TB/s", "GB/s", "MB/s", "Gbit/s", "IOPS", "count")
_BYTES_PER_S = {"TB/s": 1e12, "GB/s": 1e9, "MB/s": 1e6, "Gbit/s": 1.25e8}

# Every check the project knows: its area (a tag of playbooks/validate.yml) and default unit.
CHECKS: dict[str, dict[str, str]] = {
    "gemm_bf16_tflops": {"area": "gpu", "unit": "TFLOP/s"},
    "gemm_fp16_tflops": {"area": "gpu", "unit": "TFLOP/s"},
    "hbm_copy_tbps": {"area": "gpu", "unit": "TB/s"},
    "h2d_gbps": {"area": "gpu", "unit": "GB/s"},
    "d2h_gbps": {"area": "gpu", "unit": "GB/s"},
    "p2p_gbps": {"area": "gpu", "unit": "GB/s"},
    "nccl_allreduce_busbw_gbps": {"area": "nccl", "unit": "GB/s"},
    # The other nccl-tests collectives (library/nccl_bench.py); no shipped threshold: a value is a warn until one
    # is set per GPU model (validation_thresholds_override).
    "nccl_allgather_busbw_gbps": {"area": "nccl", "unit": "GB/s"},
    "nccl_reducescatter_busbw_gbps": {"area": "nccl", "unit": "GB/s"},
    "nccl_alltoall_busbw_gbps": {"area": "nccl", "unit": "GB/s"},
    "nccl_broadcast_busbw_gbps": {"area": "nccl", "unit": "GB/s"},
    "nccl_allreduce_multinode_busbw_gbps": {"area": "nccl", "unit": "GB/s"},
    "rdma_write_bw_gbps": {"area": "rdma", "unit": "Gbit/s"},
    "storage_seq_read_mbps": {"area": "storage", "unit": "MB/s"},
    "storage_seq_write_mbps": {"area": "storage", "unit": "MB/s"},
    "storage_randread_4k_iops": {"area": "storage", "unit": "IOPS"},
    "network_iperf3_gbps": {"area": "network", "unit": "Gbit/s"},
    "gpu_count": {"area": "health", "unit": "count"},
    "gpu_model_mismatch": {"area": "health", "unit": "count"},
    "gpu_xid_fatal": {"area": "health", "unit": "count"},
    "gpu_ecc_uncorrectable": {"area": "health", "unit": "count"},
    "gpu_row_remap_pending": {"area": "health", "unit": "count"},
    "gpu_row_remap_failed": {"area": "health", "unit": "count"},
    "gpu_throttle_at_idle": {"area": "health", "unit": "count"},
    "gpu_pcie_link_degraded": {"area": "health", "unit": "count"},
    "gpu_nvlink_down": {"area": "health", "unit": "count"},
    "dcgm_diag_failures": {"area": "health", "unit": "count"},
    "rdma_ports_down": {"area": "rdma", "unit": "count"},
}
GPU_MODEL_CHECKS = ("gemm_bf16_tflops", "gemm_fp16_tflops", "hbm_copy_tbps", "h2d_gbps", "d2h_gbps", "p2p_gbps",
                    "nccl_allreduce_busbw_gbps", "nccl_allgather_busbw_gbps", "nccl_reducescatter_busbw_gbps",
                    "nccl_alltoall_busbw_gbps", "nccl_broadcast_busbw_gbps", "nccl_allreduce_multinode_busbw_gbps",
                    "rdma_write_bw_gbps")
NODE_CLASS_CHECKS = ("storage_seq_read_mbps", "storage_seq_write_mbps", "storage_randread_4k_iops",
                     "network_iperf3_gbps", "rdma_write_bw_gbps")
HEALTH_CHECKS = ("gpu_count", "gpu_model_mismatch", "gpu_xid_fatal", "gpu_ecc_uncorrectable", "gpu_row_remap_pending",
                 "gpu_row_remap_failed", "gpu_throttle_at_idle", "gpu_pcie_link_degraded", "gpu_nvlink_down",
                 "dcgm_diag_failures", "rdma_ports_down")
_BOUND_KEYS = ("floor", "fraction_of_spec", "fraction_of_link", "ceiling", "exact")
NO_GPU_MODELS = ("", "none", "no-gpu")
RAW_LIMIT = 16000


class ThresholdError(ValueError):
    """The threshold data is wrong; the message names the key (e.g. gpu_models.H100-SXM5-80GB.checks.x.unit)."""


# --- thresholds -----------------------------------------------------------------------------------------------

def merge(base: Any, override: Any) -> Any:
    """`override` merged over `base`, recursively for mappings (the override's value wins elsewhere)."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
            out[k] = merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(override)


def _num(value: Any, key: str, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ThresholdError(f"{key}: must be a number, got {value!r}")
    if positive and value <= 0:
        raise ThresholdError(f"{key}: must be > 0, got {value!r}")
    return float(value)


def _source_text(source: Any, sources: dict, key: str) -> str:
    if not isinstance(source, str) or not source.strip():
        raise ThresholdError(f"{key}.source: missing; every number needs a source (docs/validation-reference.md, "
                             "or 'ours: <how it was derived>')")
    head, _, rest = source.strip().partition(" ")
    if head in sources:
        return sources[head] + (f" {rest}" if rest else "")
    return source.strip()


def _check_entry(entry: Any, key: str, check: str, sources: dict, spec: dict | None) -> dict:
    if not isinstance(entry, dict):
        raise ThresholdError(f"{key}: must be a mapping with unit, source and a floor/fraction/ceiling")
    if check not in CHECKS:
        raise ThresholdError(f"{key}: unknown check {check!r}; known checks: {', '.join(sorted(CHECKS))}")
    unknown = set(entry) - {"unit", "source", *_BOUND_KEYS}
    if unknown:
        raise ThresholdError(f"{key}: unknown field(s) {', '.join(sorted(unknown))}; allowed: unit, source, "
                             f"{', '.join(_BOUND_KEYS)}")
    unit = entry.get("unit")
    if unit not in UNITS:
        raise ThresholdError(f"{key}.unit: {unit!r} is not a known unit ({', '.join(UNITS)})")
    if not _convertible(unit, CHECKS[check]["unit"]):
        raise ThresholdError(f"{key}.unit: {unit} cannot measure {check} (expects {CHECKS[check]['unit']})")
    out: dict[str, Any] = {"unit": unit, "source": _source_text(entry.get("source"), sources, key)}
    if not any(b in entry for b in _BOUND_KEYS):
        raise ThresholdError(f"{key}: needs one of {', '.join(_BOUND_KEYS)}")
    if "floor" in entry:
        out["floor"] = _num(entry["floor"], f"{key}.floor")
    if "ceiling" in entry:
        out["ceiling"] = _num(entry["ceiling"], f"{key}.ceiling", positive=False)
        if out["ceiling"] < 0:
            raise ThresholdError(f"{key}.ceiling: must be >= 0")
    for frac in ("fraction_of_spec", "fraction_of_link"):
        if frac in entry:
            f = _num(entry[frac], f"{key}.{frac}")
            if f > 1:
                raise ThresholdError(f"{key}.{frac}: must be in (0, 1], got {f}")
            out[frac] = f
    if "fraction_of_spec" in out:
        if not spec or check not in spec:
            raise ThresholdError(f"{key}.fraction_of_spec: the model has no spec.{check} to take a fraction of")
        out["spec"] = _num(spec[check], key.rsplit(".checks.", 1)[0] + f".spec.{check}")
    if "exact" in entry:
        if entry["exact"] != "declared" and not isinstance(entry["exact"], int):
            raise ThresholdError(f"{key}.exact: 'declared' or an integer, got {entry['exact']!r}")
        out["exact"] = entry["exact"]
    return out


def validate_thresholds(doc: Any, origin: str = "thresholds") -> dict:
    """Check the whole threshold document and return it normalised (sources expanded, floors computed).

    Raises ThresholdError naming the offending key. Run this once, before any benchmark, so that a typo costs
    seconds, not a benchmark run."""
    if not isinstance(doc, dict):
        raise ThresholdError(f"{origin}: must be a mapping")
    if doc.get("schema_version") != THRESHOLDS_SCHEMA_VERSION:
        raise ThresholdError(f"{origin}.schema_version: {doc.get('schema_version')!r}; this version reads "
                             f"{THRESHOLDS_SCHEMA_VERSION}")
    sources = doc.get("sources") or {}
    if not isinstance(sources, dict) or not all(isinstance(v, str) and v.strip() for v in sources.values()):
        raise ThresholdError(f"{origin}.sources: must map short names to non-empty texts")
    out: dict[str, Any] = {"schema_version": THRESHOLDS_SCHEMA_VERSION, "sources": dict(sources)}
    for key, default in (("warn_band", 0.05), ("fleet_margin", 0.05)):
        val = doc.get(key, default)
        val = _num(val, f"{origin}.{key}", positive=False)
        if not 0 <= val < 1:
            raise ThresholdError(f"{origin}.{key}: must be in [0, 1), got {val}")
        out[key] = val
    models = doc.get("gpu_models") or {}
    if not isinstance(models, dict):
        raise ThresholdError(f"{origin}.gpu_models: must be a mapping of GPU model -> spec/checks")
    out["gpu_models"] = {}
    for model, m in models.items():
        mkey = f"{origin}.gpu_models.{model}"
        if not isinstance(m, dict):
            raise ThresholdError(f"{mkey}: must be a mapping")
        unknown = set(m) - {"product_names", "spec", "spec_source", "checks"}
        if unknown:
            raise ThresholdError(f"{mkey}: unknown field(s) {', '.join(sorted(unknown))}")
        spec = m.get("spec") or {}
        for s, v in spec.items():
            if s not in CHECKS:
                raise ThresholdError(f"{mkey}.spec.{s}: unknown check; known: {', '.join(GPU_MODEL_CHECKS)}")
            _num(v, f"{mkey}.spec.{s}")
        if spec:
            _source_text(m.get("spec_source"), sources, f"{mkey}.spec")
        checks = {}
        for check, entry in (m.get("checks") or {}).items():
            if check not in GPU_MODEL_CHECKS and check in CHECKS:
                raise ThresholdError(f"{mkey}.checks.{check}: not a per-GPU-model check (set it under "
                                     "node_classes or health)")
            checks[check] = _check_entry(entry, f"{mkey}.checks.{check}", check, sources, spec)
        names = m.get("product_names") or []
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ThresholdError(f"{mkey}.product_names: must be a list of strings")
        out["gpu_models"][model] = {"product_names": names, "spec": dict(spec), "checks": checks,
                                    "spec_source": _source_text(m.get("spec_source"), sources, f"{mkey}.spec")
                                    if spec else None}
    out["health"] = {}
    for check, entry in (doc.get("health") or {}).items():
        key = f"{origin}.health.{check}"
        if check in CHECKS and check not in HEALTH_CHECKS:
            raise ThresholdError(f"{key}: not a health check")
        out["health"][check] = _check_entry(entry, key, check, sources, None)
    out["node_classes"] = {}
    for cls, entries in (doc.get("node_classes") or {}).items():
        if not isinstance(entries, dict):
            raise ThresholdError(f"{origin}.node_classes.{cls}: must be a mapping of check -> threshold")
        out["node_classes"][cls] = {}
        for check, entry in entries.items():
            key = f"{origin}.node_classes.{cls}.{check}"
            if check in CHECKS and check not in NODE_CLASS_CHECKS:
                raise ThresholdError(f"{key}: not a node-class check ({', '.join(NODE_CLASS_CHECKS)})")
            out["node_classes"][cls][check] = _check_entry(entry, key, check, sources, None)
    if "generic" not in out["node_classes"]:
        raise ThresholdError(f"{origin}.node_classes.generic: missing (the default node class)")
    return out


def load_thresholds(path: str, override: dict | None = None) -> dict:
    """Read a thresholds YAML file (PyYAML, present wherever Ansible runs), merge `override`, validate."""
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover
        raise ThresholdError(f"{path}: reading YAML needs PyYAML ({exc})") from None
    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except OSError as exc:
        raise ThresholdError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ThresholdError(f"{path}: not valid YAML: {exc}") from None
    if override:
        doc = merge(doc, override)
    return validate_thresholds(doc, origin=path)


def resolve_model(thresholds: dict, model: str | None) -> str | None:
    """Threshold key for a declared model key or an nvidia-smi product name; None for 'no GPU' spellings.

    Unknown names raise ThresholdError listing the known keys (an unknown GPU must not pass unjudged)."""
    if model is None or str(model).strip().lower() in NO_GPU_MODELS:
        return None
    name = str(model).strip()
    models = thresholds["gpu_models"]
    for key, m in models.items():
        if name.lower() == key.lower() or name.lower() in (p.lower() for p in m["product_names"]):
            return key
    raise ThresholdError(f"GPU model {name!r} has no entry in the thresholds (known: {', '.join(sorted(models))}); "
                         "add it under gpu_models (with its nvidia-smi product name) or fix node_gpu_model")


def effective_floor(t: dict) -> float | None:
    floors = [t["floor"]] if "floor" in t else []
    if "fraction_of_spec" in t and "spec" in t:
        floors.append(round(t["fraction_of_spec"] * t["spec"], 6))
    if "fraction_of_link" in t and t.get("link_speed") is not None:
        floors.append(round(t["fraction_of_link"] * t["link_speed"], 6))
    return max(floors) if floors else None


def resolve_thresholds(thresholds: dict, gpu_model: str | None, node_class: str = "generic",
                       gpu_count: int | None = None) -> dict[str, dict]:
    """check -> threshold for one node: health, then node class, then the GPU model's checks (which win)."""
    if node_class not in thresholds["node_classes"]:
        raise ThresholdError(f"node class {node_class!r} has no entry under node_classes (known: "
                             f"{', '.join(sorted(thresholds['node_classes']))})")
    out: dict[str, dict] = {k: dict(v) for k, v in thresholds["health"].items()}
    if "gpu_count" in out and out["gpu_count"].get("exact") == "declared":
        out["gpu_count"]["exact"] = int(gpu_count or 0)
    out.update({k: dict(v) for k, v in thresholds["node_classes"][node_class].items()})
    key = resolve_model(thresholds, gpu_model)
    if key:
        out.update({k: dict(v) for k, v in thresholds["gpu_models"][key]["checks"].items()})
    for t in out.values():
        f = effective_floor(t)
        if f is not None:
            t["floor_effective"] = f
    return out


def with_link_speed(threshold: dict | None, link_speed: float | None, unit: str = "Gbit/s") -> dict | None:
    """A fraction_of_link threshold made concrete with the link speed measured on the node."""
    if threshold is None:
        return None
    t = dict(threshold)
    if link_speed and link_speed > 0 and "fraction_of_link" in t:
        t["link_speed"] = convert(link_speed, unit, t["unit"])
    f = effective_floor(t)
    if f is not None:
        t["floor_effective"] = f
    else:
        t.pop("floor_effective", None)
    return t


# --- verdicts -------------------------------------------------------------------------------------------------

def _convertible(a: str, b: str) -> bool:
    return a == b or (a in _BYTES_PER_S and b in _BYTES_PER_S)


def convert(value: float, unit: str, to: str) -> float:
    """`value` in `unit` expressed in `to`; ValueError when the units measure different things."""
    if unit == to:
        return value
    if unit in _BYTES_PER_S and to in _BYTES_PER_S:
        return value * _BYTES_PER_S[unit] / _BYTES_PER_S[to]
    raise ValueError(f"cannot convert {unit} to {to}")


def _fmt(x: float) -> str:
    return f"{x:.4g}" if abs(x) < 1e6 else f"{x:.0f}"


def _truncate(raw: Any) -> Any:
    if isinstance(raw, str) and len(raw) > RAW_LIMIT:
        half = RAW_LIMIT // 2
        return raw[:half] + f"\n... [{len(raw) - RAW_LIMIT} characters cut] ...\n" + raw[-half:]
    return raw


def area_of(check: str) -> str:
    return CHECKS.get(check.split("[", 1)[0], {}).get("area", "other")


def _result(check: str, value: Any, unit: str | None, threshold: dict | None, verdict: str, reason: str,
            duration_s: float | None, raw: Any) -> dict:
    out = {"check": check, "area": area_of(check), "value": value, "unit": unit, "threshold": threshold,
           "verdict": verdict, "reason": reason, "duration_s": None if duration_s is None else round(duration_s, 3)}
    if raw is not None:
        out["raw"] = _truncate(raw)
    return out


def judge(check: str, value: float | None, unit: str, threshold: dict | None, warn_band: float = 0.05,
          duration_s: float | None = None, raw: Any = None, keep_raw: bool = False) -> dict:
    """One check's verdict.

    floor: value < floor -> fail; floor <= value < floor*(1+warn_band) -> warn; else pass.
    ceiling: value > ceiling -> fail; ceiling*(1-warn_band) < value <= ceiling (ceiling > 0) -> warn; else pass.
    exact: value == exact -> pass, else fail. No value -> fail. No threshold -> warn ("no threshold").
    `raw` (the tool's output) is kept on fail and warn, and on pass only with keep_raw."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return _result(check, None, unit, threshold, "fail", "no value was measured", duration_s, raw)
    value = float(value)
    if threshold is None or not any(k in threshold for k in ("floor_effective", "ceiling", "exact")):
        why = "no threshold for this check"
        if threshold and "fraction_of_link" in threshold:
            why = "no threshold: link speed unknown for a fraction_of_link floor"
        return _result(check, value, unit, threshold, "warn", f"{why}; value recorded ({_fmt(value)} {unit})",
                       duration_s, raw)
    t = dict(threshold)
    tu = t.get("unit", unit)
    try:
        v = convert(value, unit, tu)
    except ValueError:
        raise ValueError(f"{check}: value unit {unit} does not match threshold unit {tu}") from None
    spec = t.get("spec")
    if spec:
        t["ratio_to_spec"] = round(v / spec, 4)
    if "exact" in t:
        ok = v == float(t["exact"])
        reason = f"{_fmt(v)} {tu} {'==' if ok else '!='} expected {t['exact']}"
        return _result(check, value, unit, t, "pass" if ok else "fail", reason, duration_s,
                       raw if (keep_raw or not ok) else None)
    if "floor_effective" in t:
        floor = t["floor_effective"]
        warn_below = floor * (1 + warn_band)
        t["warn_below"] = round(warn_below, 6)
        if v < floor:
            verdict, reason = "fail", f"{_fmt(v)} {tu} < floor {_fmt(floor)} {tu}"
        elif v < warn_below:
            verdict, reason = "warn", (f"{_fmt(v)} {tu} within {warn_band:.0%} above floor {_fmt(floor)} {tu} "
                                       f"(warn below {_fmt(warn_below)})")
        else:
            verdict = "pass"
            reason = f"{_fmt(v)} {tu} >= {_fmt(warn_below)} {tu} (floor {_fmt(floor)} + {warn_band:.0%})"
    else:
        ceiling = t["ceiling"]
        warn_above = ceiling * (1 - warn_band)
        if v > ceiling:
            verdict, reason = "fail", f"{_fmt(v)} {tu} > ceiling {_fmt(ceiling)}"
        elif ceiling > 0 and v > warn_above:
            t["warn_above"] = round(warn_above, 6)
            verdict, reason = "warn", f"{_fmt(v)} {tu} within {warn_band:.0%} of ceiling {_fmt(ceiling)}"
        else:
            verdict, reason = "pass", f"{_fmt(v)} {tu} <= ceiling {_fmt(ceiling)}"
    if spec:
        reason += f"; {t['ratio_to_spec']:.0%} of spec {_fmt(spec)}"
    return _result(check, value, unit, t, verdict, reason, duration_s, raw if (keep_raw or verdict != "pass") else None)


def not_applicable(check: str, reason: str, install_hint: str | None = None, unit: str | None = None) -> dict:
    """A check that cannot run here, with the reason (and how to make it run). Never counted as a pass."""
    out = _result(check, None, unit or CHECKS.get(check, {}).get("unit"), None, "not_applicable", reason, None, None)
    if install_hint:
        out["install_hint"] = install_hint
    return out


def failed(check: str, reason: str, raw: Any = None, duration_s: float | None = None,
           threshold: dict | None = None) -> dict:
    """A check whose tool ran and failed (exit status, unparseable output): fail, raw output attached."""
    return _result(check, None, CHECKS.get(check, {}).get("unit"), threshold, "fail", reason, duration_s, raw)


def with_retry(measure: Callable[[], dict], cooldown_s: float = 10.0, retries: int = 1,
               sleep: Callable[[float], None] = time.sleep) -> dict:
    """Run `measure` (returns a check dict); on `fail`, cool down and try again, up to `retries` times.

    Both attempts are recorded under `attempts`. A pass that needed the retry becomes `warn` (a node that is
    slow only sometimes is worth a look, and must not be a silent pass). warn and not_applicable are final."""
    attempts = [measure()]
    while attempts[-1]["verdict"] == "fail" and len(attempts) <= retries:
        sleep(cooldown_s)
        attempts.append(measure())
    final = dict(attempts[-1])
    if len(attempts) > 1:
        final["attempts"] = [{k: a.get(k) for k in ("value", "verdict", "reason", "duration_s", "raw")
                              if a.get(k) is not None} for a in attempts]
        final["cooldown_s"] = cooldown_s
        if final["verdict"] == "pass":
            final["verdict"] = "warn"
            final["reason"] = (f"passed on retry {len(attempts) - 1} after {cooldown_s:g} s cooldown "
                               f"(first attempt: {attempts[0]['reason']}); {final['reason']}")
        elif final["verdict"] == "fail":
            final["reason"] = f"failed {len(attempts)} attempts ({cooldown_s:g} s cooldown): {final['reason']}"
    return final


# --- result documents -----------------------------------------------------------------------------------------

def summarize(checks: list[dict]) -> dict:
    counts = {v: 0 for v in VERDICTS}
    for c in checks:
        counts[c.get("verdict", "fail") if c.get("verdict") in VERDICTS else "fail"] += 1
    if counts["fail"]:
        verdict = "fail"
    elif counts["warn"]:
        verdict = "warn"
    elif counts["pass"]:
        verdict = "pass"
    else:
        verdict = "not_applicable"
    return {**counts, "total": len(checks), "verdict": verdict}


def result_document(host: str, facts: dict, checks: list[dict], tier: str, run_id: str, **extra: Any) -> dict:
    """The per-host result (schema_version 1, docs/validation.md). A check with an unknown verdict is a fail."""
    if tier not in TIERS:
        raise ValueError(f"tier {tier!r}: one of {', '.join(TIERS)}")
    fixed = []
    for c in checks:
        c = dict(c)
        if c.get("verdict") not in VERDICTS:
            c["reason"] = f"invalid verdict {c.get('verdict')!r} from the module: {c.get('reason')}"
            c["verdict"] = "fail"
        c.setdefault("area", area_of(str(c.get("check"))))
        fixed.append(c)
    doc = {"schema_version": SCHEMA_VERSION, "kind": "baremetal-validation-result", "run_id": run_id,
           "host": host, "tier": tier, "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "facts": facts, "checks": fixed, "summary": summarize(fixed)}
    doc.update(extra)
    return doc


def check_document(doc: Any, origin: str = "result") -> dict:
    """Raise ValueError unless `doc` is a schema-1 result document."""
    if not isinstance(doc, dict) or doc.get("kind") != "baremetal-validation-result":
        raise ValueError(f"{origin}: not a baremetal validation result")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{origin}: schema_version {doc.get('schema_version')!r}, this version reads {SCHEMA_VERSION}")
    for field in ("host", "run_id", "tier", "checks", "summary"):
        if field not in doc:
            raise ValueError(f"{origin}: missing {field}")
    return doc


_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_text(x: Any) -> str:
    if x is None:
        return ""
    s = x if isinstance(x, str) else json.dumps(x, indent=1, default=str)
    return _XML_BAD.sub("?", s)


def to_junit(docs: list[dict]) -> str:
    """JUnit XML: one testsuite per host, one testcase per check. fail -> <failure> with the raw output,
    not_applicable -> <skipped message=reason>, warn -> a passing testcase with the reason in <system-out>."""
    root = ET.Element("testsuites", name="baremetal-validation")
    totals = {"tests": 0, "failures": 0, "skipped": 0, "time": 0.0}
    for doc in docs:
        checks = doc.get("checks", [])
        suite = ET.SubElement(root, "testsuite", name=str(doc.get("host")), timestamp=str(doc.get("generated_at", "")))
        counts = {"tests": len(checks), "failures": 0, "skipped": 0, "time": 0.0}
        props = ET.SubElement(suite, "properties")
        for k in ("run_id", "tier", "schema_version"):
            ET.SubElement(props, "property", name=k, value=str(doc.get(k)))
        for c in checks:
            dur = float(c.get("duration_s") or 0.0)
            counts["time"] += dur
            case = ET.SubElement(suite, "testcase", name=str(c.get("check")),
                                 classname=f"baremetal.{doc.get('host')}.{c.get('area', area_of(str(c.get('check'))))}",
                                 time=f"{dur:.3f}")
            verdict = c.get("verdict")
            if verdict == "fail":
                counts["failures"] += 1
                f = ET.SubElement(case, "failure", message=_xml_text(c.get("reason")), type="fail")
                body = {k: c.get(k) for k in ("value", "unit", "threshold", "attempts") if c.get(k) is not None}
                f.text = _xml_text(json.dumps(body, default=str) + "\n" + _xml_text(c.get("raw")))
            elif verdict == "not_applicable":
                counts["skipped"] += 1
                ET.SubElement(case, "skipped", message=_xml_text(c.get("reason")))
            elif verdict == "warn":
                ET.SubElement(case, "system-out").text = _xml_text(f"WARN: {c.get('reason')}")
            else:
                ET.SubElement(case, "system-out").text = _xml_text(c.get("reason"))
        for k in ("tests", "failures", "skipped"):
            suite.set(k, str(counts[k]))
            totals[k] += counts[k]
        suite.set("errors", "0")
        suite.set("time", f"{counts['time']:.3f}")
        totals["time"] += counts["time"]
    for k in ("tests", "failures", "skipped"):
        root.set(k, str(totals[k]))
    root.set("errors", "0")
    root.set("time", f"{totals['time']:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _label(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**kv: Any) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in kv.items()) + "}"


def _metric_value(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x))


PROM_METRICS = {
    "baremetal_validation_info": ("gauge", "Validation run on this node (value 1); labels carry run id and tier."),
    "baremetal_validation_run_timestamp_seconds": ("gauge", "Unix time the result was written."),
    "baremetal_validation_value": ("gauge", "Measured value of a check, in the unit label."),
    "baremetal_validation_threshold": ("gauge", "Threshold a check was judged against (bound = floor|ceiling|exact)."),
    "baremetal_validation_verdict": ("gauge", "1 for the check's verdict, 0 for the other verdicts."),
    "baremetal_validation_duration_seconds": ("gauge", "Time the check took."),
    "baremetal_validation_checks": ("gauge", "Number of checks per verdict in the run."),
}


def to_prometheus(doc: dict) -> str:
    """Prometheus text exposition (node exporter textfile collector) for one host's result."""
    host = doc.get("host")
    lines: dict[str, list[str]] = {m: [] for m in PROM_METRICS}
    info = _labels(host=host, run_id=doc.get("run_id"), tier=doc.get("tier"), schema_version=doc.get("schema_version"))
    lines["baremetal_validation_info"].append(f"baremetal_validation_info{info} 1")
    gen = doc.get("generated_at")
    try:
        ts = calendar.timegm(time.strptime(gen, "%Y-%m-%dT%H:%M:%SZ")) if gen else time.time()
    except (TypeError, ValueError):
        ts = time.time()
    lines["baremetal_validation_run_timestamp_seconds"].append(
        f"baremetal_validation_run_timestamp_seconds{_labels(host=host)} {_metric_value(ts)}")
    for c in doc.get("checks", []):
        base = {"host": host, "check": c.get("check"), "area": c.get("area", area_of(str(c.get("check"))))}
        unit = c.get("unit") or ""
        if isinstance(c.get("value"), (int, float)) and not isinstance(c.get("value"), bool):
            lines["baremetal_validation_value"].append(
                f"baremetal_validation_value{_labels(**base, unit=unit)} {_metric_value(c['value'])}")
        t = c.get("threshold") or {}
        for bound, key in (("floor", "floor_effective"), ("ceiling", "ceiling"), ("exact", "exact")):
            if isinstance(t.get(key), (int, float)) and not isinstance(t.get(key), bool):
                lines["baremetal_validation_threshold"].append(
                    f"baremetal_validation_threshold{_labels(**base, unit=t.get('unit', unit), bound=bound)} "
                    f"{_metric_value(t[key])}")
        for v in VERDICTS:
            lines["baremetal_validation_verdict"].append(
                f"baremetal_validation_verdict{_labels(**base, verdict=v)} {1 if c.get('verdict') == v else 0}")
        if c.get("duration_s") is not None:
            lines["baremetal_validation_duration_seconds"].append(
                f"baremetal_validation_duration_seconds{_labels(**base)} {_metric_value(c['duration_s'])}")
    summary = doc.get("summary") or summarize(doc.get("checks", []))
    for v in VERDICTS:
        lines["baremetal_validation_checks"].append(
            f"baremetal_validation_checks{_labels(host=host, verdict=v)} {summary.get(v, 0)}")
    out = []
    for name, (typ, help_) in PROM_METRICS.items():
        if lines[name]:
            out += [f"# HELP {name} {help_}", f"# TYPE {name} {typ}", *lines[name]]
    return "\n".join(out) + "\n"


def fleet_outliers(docs: list[dict], margin: float = 0.05, min_hosts: int = 3) -> list[dict]:
    """Hosts more than `margin` below the fleet median of a benchmark (a higher-is-better check with a value).

    Needs `min_hosts` hosts with a value for the check (a median of two is just their mean). Health counts and
    not_applicable checks are not compared."""
    by_check: dict[str, dict[str, float]] = {}
    for doc in docs:
        for c in doc.get("checks", []):
            name = str(c.get("check"))
            if name.split("[", 1)[0] in HEALTH_CHECKS or c.get("verdict") == "not_applicable":
                continue
            v = c.get("value")
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                by_check.setdefault(name, {})[str(doc.get("host"))] = float(v)
    out = []
    for name, values in sorted(by_check.items()):
        if len(values) < min_hosts:
            continue
        median = statistics.median(values.values())
        if median <= 0:
            continue
        for host, v in sorted(values.items()):
            if v < median * (1 - margin):
                out.append({"host": host, "check": name, "value": v, "fleet_median": median,
                            "ratio_to_median": round(v / median, 4), "margin": margin, "hosts": len(values)})
    return out
