"""`baremetal inspect`: judge captured tool output (fio, iperf3, nccl-tests, perftest, nvidia-smi, dcgmi, kernel
logs, lspci, ibv_devinfo, ...) with the same parsers, judging functions and thresholds as playbooks/validate.yml.

Useful for output captured by hand or by another tool: `nvidia-smi -q -x > gpu.xml; baremetal inspect gpu.xml`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from baremetal_ai.errors import UserError

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _utils():
    from baremetal_ai import _bm_utils

    return _bm_utils


def known_kinds() -> list[str]:
    return sorted(_utils().bm_parsers.KINDS)


def gpu_model_from(kind: str, parsed: Any) -> str | None:
    if kind == "nvsmi_xml":
        names = [g.get("name") for g in parsed.get("gpus") or [] if g.get("name")]
        return names[0] if names else None
    if kind == "gpubench_json":
        return (parsed.get("device") or {}).get("name")
    return None


def _fio_job_options(text: str) -> dict[str, dict]:
    """jobname -> fio's "job options" (rw, bs), which parse_fio_json does not carry."""
    try:
        start = text.index("{")
        doc = json.loads(text[start:])
    except ValueError:
        return {}
    glob = doc.get("global options") or {}
    return {j.get("jobname"): {**glob, **(j.get("job options") or {})} for j in doc.get("jobs") or []}


def _fio_checks(text: str, parsed: dict, th: dict, band: float) -> list[dict]:
    u = _utils()
    v, sb = u.bm_validation, u.library_module("storage_bench")
    options = _fio_job_options(text)
    checks = []
    for job in parsed["jobs"]:
        name = job.get("name") or "?"
        opts = options.get(name, {})
        rw, bs = str(opts.get("rw", "")), str(opts.get("bs", "")).lower()
        if name in sb.JOBS:
            key = name
        elif rw in ("read", "write") and bs not in ("4k", "4096"):
            key = "seq_read" if rw == "read" else "seq_write"
        elif rw == "randread" and bs in ("4k", "4096"):
            key = "randread_4k"
        else:
            checks.append(v.not_applicable(f"fio:{name}", f"fio job rw={rw or '?'} bs={bs or '?'} matches no storage "
                                           "check (sequential read/write, random 4k read)"))
            continue
        check, *_rest, unit = sb.JOBS[key]
        one = {**parsed, "jobs": [job], "totals": {d: {"bw_bytes": (job.get(d) or {}).get("bw_bytes"),
                                                        "iops": (job.get(d) or {}).get("iops")}
                                                    for d in ("read", "write")}}
        if job.get("error"):
            checks.append(v.failed(check, f"fio job {name} reported error {job['error']}", text))
        else:
            checks.append(v.judge(check, sb.fio_value(key, one), unit, th.get(check), band))
    return checks


def checks_for(kind: str, text: str, parsed: Any, th: dict, band: float, args: argparse.Namespace) -> list[dict]:
    """The checks a parsed input yields, judged with the module's own functions."""
    u = _utils()
    v = u.bm_validation
    if kind == "fio_json":
        return _fio_checks(text, parsed, th, band)
    if kind == "iperf3_json":
        nb = u.library_module("network_bench")
        t = v.with_link_speed(th.get(nb.CHECK), args.link_gbps)
        return [nb.judge_iperf3(0, text, "", t, band, None)]
    if kind == "nccl_tests":
        # The module's own judge: the same verdict for a pasted log as for a live run.
        nb = u.library_module("nccl_bench")
        test = (parsed.get("test") or "all_reduce_perf").removesuffix("_perf")
        check = nb.check_name(test) if test in nb.TESTS else nb.check_name("all_reduce")
        if test not in nb.TESTS:
            return [v.not_applicable(check, f"nccl-tests {parsed.get('test')}: not one of the judged tests "
                                     f"({', '.join(nb.TESTS)})")]
        return [nb.judge_nccl(check, 0, text, "", th.get(check), band, None)]
    if kind == "perftest":
        test = (parsed.get("test") or "").lower()
        if parsed.get("kind") != "bw" or "write" not in test:
            return [v.not_applicable("rdma_write_bw_gbps", f"perftest {parsed.get('test')}: only ib_write_bw "
                                     "bandwidth is judged")]
        t = v.with_link_speed(th.get("rdma_write_bw_gbps"), args.link_gbps)
        return [v.judge("rdma_write_bw_gbps", parsed.get("bw_average_gbps"), "Gbit/s", t, band)]
    if kind == "gpubench_json":
        return u.library_module("gpu_bench").checks_from_document(parsed, th, band, text)
    if kind == "nvsmi_xml":
        gh = u.library_module("gpu_health")
        out = []
        if args.gpu_count is not None:
            out.append(gh.gpu_count_check(len(parsed.get("gpus") or []), args.gpu_count, th.get("gpu_count")))
        return out + gh.xml_checks(parsed, th, band) + [gh.nvlink_check(parsed, None, th, band)]
    if kind == "nvlink_status":
        return [u.library_module("gpu_health").nvlink_check({}, parsed, th, band)]
    if kind == "xid":
        return [u.library_module("gpu_health").xid_check(text, "the file", th, band)]
    if kind == "dcgmi_diag":
        return [u.library_module("gpu_health").dcgm_check(0, text, "", th, band, None, None)]
    if kind == "lspci_vvv":
        gpus = [d for d in parsed if d.get("vendor_id") == "10de" or "nvidia" in (d.get("description") or "").lower()]
        gpus = [d for d in gpus if d.get("lnkcap") and d.get("lnksta")]
        if not gpus:
            return [v.not_applicable("gpu_pcie_link_degraded", "no NVIDIA device with a PCIe link in the listing")]
        bad = [f"{d['bdf']} (x{d['lnksta']['width']} of x{d['lnkcap']['width']})" for d in gpus
               if (d["lnksta"]["width"] or 0) < (d["lnkcap"]["width"] or 0)]
        out = v.judge("gpu_pcie_link_degraded", len(bad), "count", th.get("gpu_pcie_link_degraded"), band)
        out["reason"] = (f"narrower than capable: {', '.join(bad)}; " if bad else "") + out["reason"]
        return [out]
    if kind == "ibv_devinfo":
        ports = [(d["hca_id"], p) for d in parsed.get("devices") or [] for p in d.get("ports") or []]
        if not ports:
            return [v.not_applicable("rdma_ports_down", "no RDMA device")]
        down = [f"{h}:{p['port']} ({p.get('state')})" for h, p in ports if p.get("state") != "PORT_ACTIVE"]
        out = v.judge("rdma_ports_down", len(down), "count", th.get("rdma_ports_down") or
                      {"unit": "count", "ceiling": 0, "source": "ours: every RDMA port must be PORT_ACTIVE"}, band)
        out["reason"] = (f"not active: {', '.join(down)}; " if down else "") + out["reason"]
        return [out]
    return []  # topo_matrix, gid_table, nvsmi_csv: information only


def summary_of(kind: str, parsed: Any) -> str:
    if kind == "nvsmi_xml":
        gpus = parsed.get("gpus") or []
        return f"{len(gpus)} GPU(s) {sorted({g.get('name') for g in gpus})}, driver {parsed.get('driver_version')}"
    if kind == "topo_matrix":
        return f"{len(parsed.get('gpus') or [])} GPU(s), {len(parsed.get('nics') or [])} NIC(s)"
    if kind == "gid_table":
        return f"{len(parsed)} GID entries, {sum(1 for e in parsed if e.get('version') == 'v2')} RoCE v2"
    if kind == "nvsmi_csv":
        return f"{len(parsed)} row(s)"
    if kind == "fio_json":
        return f"{len(parsed['jobs'])} fio job(s), fio {parsed.get('fio_version')}"
    return ""


def inspect_files(paths: list[Path], kind: str | None, gpu_model: str | None, thresholds_path: Path,
                  node_class: str, args: argparse.Namespace) -> dict:
    u = _utils()
    p, v = u.bm_parsers, u.bm_validation
    kinds = known_kinds()
    if kind and kind not in kinds:
        raise UserError(f"--kind {kind}: unknown; known kinds: {', '.join(kinds)}")
    inputs = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from None
        k = kind or p.detect_kind(text)
        if k is None:
            raise UserError(f"{path}: unrecognised input; known kinds: {', '.join(kinds)} (or pass --kind)")
        try:
            parsed = p.KINDS[k](text)
        except p.ParseError as exc:
            raise UserError(f"{path}: not valid {k}: {exc.message}") from None
        inputs.append((path, k, text, parsed))
    try:
        thresholds = v.load_thresholds(str(thresholds_path))
    except v.ThresholdError as exc:
        raise UserError(f"thresholds: {exc}") from None
    model = gpu_model or next((m for _p, k, _t, parsed in inputs if (m := gpu_model_from(k, parsed))), None)
    try:
        key = v.resolve_model(thresholds, model)
        th = v.resolve_thresholds(thresholds, model, node_class, args.gpu_count)
    except v.ThresholdError as exc:
        raise UserError(f"{exc} (pass --gpu-model)") from None
    band = thresholds["warn_band"]
    files = []
    for path, k, text, parsed in inputs:
        checks = checks_for(k, text, parsed, th, band, args)
        files.append({"file": str(path), "kind": k, "summary": summary_of(k, parsed), "checks": checks,
                      "verdict": v.summarize(checks)["verdict"] if checks else "info"})
    all_checks = [c for f in files for c in f["checks"]]
    return {"gpu_model": model, "gpu_model_key": key, "node_class": node_class, "thresholds": str(thresholds_path),
            "files": files, "summary": v.summarize(all_checks)}


def _value(c: dict) -> str:
    if c.get("value") is None:
        return "-"
    return f"{c['value']:.4g} {c.get('unit') or ''}".strip()


def render(report: dict) -> str:
    lines = [f"GPU model: {report['gpu_model'] or 'unknown'} (thresholds: {report['gpu_model_key'] or 'none'}); "
             f"node class {report['node_class']}"]
    for f in report["files"]:
        lines.append(f"{f['file']}  [{f['kind']}]" + (f"  {f['summary']}" if f["summary"] else ""))
        if not f["checks"]:
            lines.append("  info            (no check judges this kind; parsed only)")
        for c in f["checks"]:
            lines.append(f"  {c['verdict'].upper():<15} {c['check']:<28} {_value(c):>16}  {c['reason']}")
    s = report["summary"]
    lines.append(f"overall: {s['verdict']} ({s['pass']} pass, {s['warn']} warn, {s['fail']} fail, "
                 f"{s['not_applicable']} not applicable)")
    return "\n".join(lines) + "\n"


def add_inspect_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "inspect", help="judge captured tool output (fio, iperf3, nccl-tests, perftest, nvidia-smi, dcgmi, ...)",
        description="Detects each file's kind from its content, parses it with the validation parsers and judges "
                    "it against validation/thresholds.yml (GPU model from nvidia-smi XML among the files, or "
                    "--gpu-model). Exit 0: all pass/warn/not applicable; 1: a check failed; 2: usage, unrecognised "
                    "input or bad thresholds.")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="captured tool output")
    p.add_argument("--kind", default=None, help="skip detection: the kind of every FILE (see the error for the list)")
    p.add_argument("--gpu-model", default=None,
                   help="GPU model key or nvidia-smi product name (e.g. H100-SXM5-80GB, 'NVIDIA H100 80GB HBM3')")
    p.add_argument("--gpu-count", type=int, default=None, help="expected GPU count (judges nvidia-smi XML)")
    p.add_argument("--node-class", default="generic", help="node class for storage/network floors (default generic)")
    p.add_argument("--link-gbps", type=float, default=None,
                   help="link speed in Gbit/s for fraction-of-link floors (iperf3, ib_write_bw)")
    p.add_argument("--thresholds", type=Path, default=None,
                   help="threshold file (default: validation/thresholds.yml of this checkout)")
    p.add_argument("--json", action="store_true", help="print the verdicts as JSON")
    return p


def run_inspect(args: argparse.Namespace) -> int:
    try:
        thresholds = args.thresholds or (_utils().ROOT / "validation" / "thresholds.yml")
        report = inspect_files(list(args.files), args.kind, args.gpu_model, thresholds, args.node_class, args)
    except UserError as exc:
        print(f"baremetal inspect: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(render(report), end="")
    return EXIT_FAIL if report["summary"]["fail"] else EXIT_OK
