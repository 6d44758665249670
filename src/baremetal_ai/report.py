"""`baremetal report`: validation results and drift runs as one self-contained HTML page and Markdown.

Reads validation results (``results/<run id>/<host>.json``, schema_version 1, docs/validation.md) and drift runs
(``drift/<run id>.json``, schema_version 1, docs/drift.md); writes ``OUT/report.html`` (plots embedded as base64
PNG: nothing else to fetch), ``OUT/report.md`` with the PNGs beside it, and ``OUT/report.json`` (what was read).

Plots (matplotlib): per benchmark, a bar per node against its floor and the fleet median (latest run); per
benchmark, each node's value across the last runs (trend). Tables: every check's verdict per node, the latest
drift run's findings per host, and the drift history.

Exit codes: 0 report written, fleet healthy; 1 report written, but the latest validation run has a failed check
or the latest drift run is not clean; 2 nothing to report or a file that is not what it claims (the message
names the file and the field).
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import statistics
from pathlib import Path
from typing import Any

from baremetal_ai.errors import UserError

VALIDATION_KIND = "baremetal-validation-result"
SCHEMA_VERSION = 1
VERDICT_COLORS = {"pass": "#2e7d32", "warn": "#f9a825", "fail": "#c62828", "not_applicable": "#9e9e9e"}


# --- loading ------------------------------------------------------------------------------------------------

def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not JSON: {exc}") from None


def check_validation_doc(doc: Any, path: Path) -> dict:
    """A schema-1 validation result, or a UserError naming the file and the field."""
    if not isinstance(doc, dict):
        raise UserError(f"{path}: expected a JSON object")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise UserError(f"{path}: schema_version: expected {SCHEMA_VERSION}, got {doc.get('schema_version')!r}")
    for field, typ in (("host", str), ("run_id", str), ("checks", list)):
        if not isinstance(doc.get(field), typ):
            raise UserError(f"{path}: {field}: expected {typ.__name__}, got {type(doc.get(field)).__name__}")
    for i, c in enumerate(doc["checks"]):
        if not isinstance(c, dict) or not isinstance(c.get("check"), str):
            raise UserError(f"{path}: checks[{i}].check: expected a check name")
        v = c.get("value")
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise UserError(f"{path}: checks[{i}].value ({c['check']}): expected a number or null, got {v!r}")
    return doc


def check_drift_doc(doc: Any, path: Path) -> dict:
    if not isinstance(doc, dict):
        raise UserError(f"{path}: expected a JSON object")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise UserError(f"{path}: schema_version: expected {SCHEMA_VERSION}, got {doc.get('schema_version')!r}")
    for field, typ in (("run_id", str), ("verdict", str), ("hosts", dict)):
        if not isinstance(doc.get(field), typ):
            raise UserError(f"{path}: {field}: expected {typ.__name__}, got {type(doc.get(field)).__name__}")
    return doc


def load_validation_runs(results_dir: Path) -> list[dict]:
    """[{run_id, generated_at, docs: {host: doc}}], oldest first. Directories holding no validation result
    (e.g. results/lab/ logs, results/pilot/) are not runs; a file that claims to be a result but is malformed is
    an error."""
    runs = []
    if not results_dir.is_dir():
        return runs
    for d in sorted(p for p in results_dir.iterdir() if p.is_dir()):
        docs = {}
        for f in sorted(d.glob("*.json")):
            doc = _load_json(f)
            if not isinstance(doc, dict) or doc.get("kind") != VALIDATION_KIND:
                continue
            doc = check_validation_doc(doc, f)
            docs[doc["host"]] = doc
        if docs:
            gen = max(str(x.get("generated_at", "")) for x in docs.values())
            runs.append({"run_id": d.name, "generated_at": gen, "docs": docs})
    runs.sort(key=lambda r: (r["generated_at"], r["run_id"]))
    return runs


def load_drift_runs(drift_dir: Path) -> list[dict]:
    runs = []
    if not drift_dir.is_dir():
        return runs
    for f in sorted(drift_dir.glob("*.json")):
        doc = _load_json(f)
        if not isinstance(doc, dict) or doc.get("kind") != "drift":
            continue
        runs.append(check_drift_doc(doc, f))
    runs.sort(key=lambda r: (str(r.get("started", "")), r["run_id"]))
    return runs


# --- numbers ------------------------------------------------------------------------------------------------

def floor_of(check: dict) -> float | None:
    t = check.get("threshold") or {}
    for key in ("floor_effective", "floor"):
        if isinstance(t.get(key), int | float):
            return float(t[key])
    return None


def benchmarks(run: dict) -> dict[str, dict[str, dict]]:
    """check name -> host -> check, for checks with a measured value (benchmarks and counts with values)."""
    out: dict[str, dict[str, dict]] = {}
    for host, doc in sorted(run["docs"].items()):
        for c in doc["checks"]:
            if isinstance(c.get("value"), int | float) and not isinstance(c.get("value"), bool) \
                    and c.get("unit") != "count":
                out.setdefault(c["check"], {})[host] = c
    return out


def fleet_medians(run: dict) -> dict[str, float]:
    return {name: statistics.median(float(c["value"]) for c in by_host.values())
            for name, by_host in benchmarks(run).items()}


# --- plots --------------------------------------------------------------------------------------------------

def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def plot_bars(run: dict) -> bytes | None:
    """One panel per benchmark: a bar per node (colored by verdict), its floor, and the fleet median."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bench = benchmarks(run)
    if not bench:
        return None
    medians = fleet_medians(run)
    n = len(bench)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
    for ax, (name, by_host) in zip(axes.flat, sorted(bench.items()), strict=False):
        hosts = sorted(by_host)
        values = [float(by_host[h]["value"]) for h in hosts]
        colors = [VERDICT_COLORS.get(by_host[h].get("verdict"), "#607d8b") for h in hosts]
        ax.bar(range(len(hosts)), values, color=colors)
        floors = sorted({floor_of(by_host[h]) for h in hosts} - {None})
        for fl in floors:
            ax.axhline(fl, color="#c62828", linewidth=1.2)
        ax.axhline(medians[name], color="#1565c0", linestyle="--", linewidth=1.2)
        unit = next((by_host[h].get("unit") for h in hosts if by_host[h].get("unit")), "")
        # floor and median in the title, not in a legend that could hide a short (failing) bar
        floor_txt = ", ".join(f"{fl:g}" for fl in floors) or "none"
        ax.set_title(f"{name}\nfloor {floor_txt} (red), fleet median {medians[name]:.4g} (blue)", fontsize=8)
        ax.set_ylabel(unit or "", fontsize=8)
        ax.set_xticks(range(len(hosts)), hosts, rotation=20, ha="right", fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(f"Validation run {run['run_id']}: each node vs floor (red) and fleet median (blue)", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def plot_trends(runs: list[dict]) -> bytes | None:
    """One panel per benchmark: each node's value across runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(runs) < 2:
        return None
    names = sorted({name for r in runs for name in benchmarks(r)})
    if not names:
        return None
    cols = min(len(names), 3)
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.2 * rows), squeeze=False)
    labels = [r["run_id"] for r in runs]
    for ax, name in zip(axes.flat, names, strict=False):
        hosts = sorted({h for r in runs for h in benchmarks(r).get(name, {})})
        for h in hosts:
            ys = [benchmarks(r).get(name, {}).get(h, {}).get("value") for r in runs]
            ax.plot(range(len(runs)), [float("nan") if y is None else y for y in ys], marker="o", label=h)
        ax.set_title(name, fontsize=9)
        ax.set_xticks(range(len(runs)), [lb[-12:] for lb in labels], rotation=30, ha="right", fontsize=7)
        ax.legend(fontsize=6, loc="best")
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.suptitle(f"Trends over the last {len(runs)} validation runs", fontsize=10)
    fig.tight_layout()
    return _png(fig)


# --- tables -------------------------------------------------------------------------------------------------

def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _absent(v: Any) -> str:
    return "(absent)" if v is None else _fmt(v)


def checks_table(run: dict) -> tuple[list[str], list[list[str]]]:
    """Rows: check; columns: node -> 'verdict value unit'."""
    hosts = sorted(run["docs"])
    names: list[str] = []
    cell: dict[tuple[str, str], str] = {}
    for h in hosts:
        for c in run["docs"][h]["checks"]:
            if c["check"] not in names:
                names.append(c["check"])
            val = "" if c.get("value") is None else f" {_fmt(c.get('value'))} {c.get('unit') or ''}".rstrip()
            cell[(c["check"], h)] = f"{c.get('verdict', '?')}{val}"
    return ["check", *hosts], [[n, *(cell.get((n, h), "—") for h in hosts)] for n in names]


def drift_rows(drift: dict) -> list[list[str]]:
    rows = []
    for host, h in sorted(drift["hosts"].items()):
        if h.get("status") == "clean":
            rows.append([host, "clean", "", "", ""])
            continue
        for c in h.get("changes", []):
            rows.append([host, h["status"], "task would change",
                         c.get("task", "") + (f" [{c['item']}]" if c.get("item") else ""), ""])
        for f in h.get("facts", []):
            rows.append([host, h["status"], "fact differs", f.get("item", ""),
                         f"{_absent(f.get('baseline'))} → {_absent(f.get('current'))}"])
        if h.get("unreachable"):
            rows.append([host, h["status"], "unreachable", "", str(h["unreachable"])[:200]])
        for t in h.get("failed_tasks", []):
            rows.append([host, h["status"], "task failed", t.get("task", ""), str(t.get("msg", ""))[:200]])
        if h.get("status") == "no_result":
            rows.append([host, "no_result", "no task reported", "", ""])
    return rows


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    esc = [[str(c).replace("|", "\\|").replace("\n", " ") for c in r] for r in rows]
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in esc)]


def _html_table(header: list[str], rows: list[list[str]], status_col: int | None = None) -> str:
    out = ["<table><thead><tr>", *(f"<th>{html.escape(h)}</th>" for h in header), "</tr></thead><tbody>"]
    for r in rows:
        out.append("<tr>")
        for i, c in enumerate(r):
            word = str(c).split(" ")[0]
            cls = f' class="v-{html.escape(word)}"' if (status_col is None or i == status_col) and word in (
                "pass", "warn", "fail", "not_applicable", "clean", "drift", "unreachable", "error",
                "no_result", "incomplete") else ""
            out.append(f"<td{cls}>{html.escape(str(c))}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


# --- the report ---------------------------------------------------------------------------------------------

CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f0f0f0}td:first-child,td:nth-child(2){white-space:nowrap}.v-pass,.v-clean{background:#e8f5e9}.v-warn,.v-incomplete{background:#fff8e1}
.v-fail,.v-drift,.v-error{background:#ffebee}.v-unreachable,.v-no_result{background:#fce4ec;font-weight:bold}
.v-not_applicable{color:#777}img{max-width:100%;border:1px solid #ddd}.verdict{font-size:1.2em}"""


def build(results_dir: Path, drift_dir: Path, last: int) -> dict:
    vruns = load_validation_runs(results_dir)[-last:] if last > 0 else []
    druns = load_drift_runs(drift_dir)[-last:] if last > 0 else []
    if not vruns and not druns:
        raise UserError(f"nothing to report: no validation results under {results_dir}/<run id>/ and no drift runs "
                        f"under {drift_dir}/ (run playbooks/validate.yml or playbooks/drift.yml first)")
    return {"validation_runs": vruns, "drift_runs": druns}


def status(data: dict) -> dict:
    v = data["validation_runs"][-1] if data["validation_runs"] else None
    d = data["drift_runs"][-1] if data["drift_runs"] else None
    failed = [f"{h}/{c['check']}" for h, doc in sorted(v["docs"].items()) for c in doc["checks"]
              if c.get("verdict") == "fail"] if v else []
    return {"validation_run": v["run_id"] if v else None, "validation_failures": failed,
            "drift_run": d["run_id"] if d else None, "drift_verdict": d["verdict"] if d else None,
            "healthy": not failed and (d is None or d["verdict"] == "clean")}


def render(data: dict, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    st = status(data)
    vruns, druns = data["validation_runs"], data["drift_runs"]
    latest = vruns[-1] if vruns else None
    images: dict[str, bytes] = {}
    if latest:
        bars = plot_bars(latest)
        if bars:
            images["benchmarks.png"] = bars
        trends = plot_trends(vruns)
        if trends:
            images["trends.png"] = trends
    for name, data_png in images.items():
        (out / name).write_bytes(data_png)

    title = "baremetal-ai fleet report"
    verdict = "healthy" if st["healthy"] else "needs attention"
    md = [f"# {title}", "", f"**{verdict}**: latest validation run `{st['validation_run']}` "
          f"({len(st['validation_failures'])} failed check(s)); latest drift run `{st['drift_run']}` "
          f"(verdict {st['drift_verdict']}).", ""]
    h = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>{CSS}</style></head>"
         f"<body><h1>{title}</h1><p class='verdict'><b>{verdict}</b>: latest validation run "
         f"<code>{html.escape(str(st['validation_run']))}</code> ({len(st['validation_failures'])} failed check(s)); "
         f"latest drift run <code>{html.escape(str(st['drift_run']))}</code> (verdict "
         f"<span class='v-{html.escape(str(st['drift_verdict']))}'>{html.escape(str(st['drift_verdict']))}</span>)."
         "</p>"]
    if st["validation_failures"]:
        md += ["Failed: " + ", ".join(st["validation_failures"]), ""]
        h.append("<p>Failed: " + html.escape(", ".join(st["validation_failures"])) + "</p>")

    if latest:
        md += [f"## Validation run {latest['run_id']}", ""]
        h.append(f"<h2>Validation run {html.escape(latest['run_id'])}</h2>")
        medians = fleet_medians(latest)
        brow = []
        for name, by_host in sorted(benchmarks(latest).items()):
            for host, c in sorted(by_host.items()):
                brow.append([name, host, _fmt(c["value"]), c.get("unit") or "", _fmt(floor_of(c)),
                             _fmt(medians[name]), c.get("verdict", "?")])
        if "benchmarks.png" in images:
            md += ["![benchmarks per node](benchmarks.png)", ""]
            h.append("<img alt='benchmarks per node' src='data:image/png;base64,"
                     + base64.b64encode(images["benchmarks.png"]).decode() + "'>")
        if brow:
            hdr = ["benchmark", "node", "value", "unit", "floor", "fleet median", "verdict"]
            md += [*_md_table(hdr, brow), ""]
            h.append(_html_table(hdr, brow, status_col=6))
        hdr, rows = checks_table(latest)
        md += ["### Every check", "", *_md_table(hdr, rows), ""]
        h.append("<h3>Every check</h3>" + _html_table(hdr, rows))
        if "trends.png" in images:
            md += [f"## Trends (last {len(vruns)} runs)", "", "![trends](trends.png)", ""]
            h.append(f"<h2>Trends (last {len(vruns)} runs)</h2><img alt='trends' src='data:image/png;base64,"
                     + base64.b64encode(images["trends.png"]).decode() + "'>")
    else:
        md += ["No validation results.", ""]
        h.append("<p>No validation results.</p>")

    if druns:
        d = druns[-1]
        hdr = ["host", "status", "kind", "item", "detail"]
        md += [f"## Drift run {d['run_id']}: {d['verdict']}", "", *_md_table(hdr, drift_rows(d)), ""]
        h.append(f"<h2>Drift run {html.escape(d['run_id'])}: <span class='v-{html.escape(d['verdict'])}'>"
                 f"{html.escape(d['verdict'])}</span></h2>" + _html_table(hdr, drift_rows(d), status_col=1))
        hist = [[r["run_id"], r.get("started", ""), r["verdict"],
                 ", ".join(f"{n} {s}" for s, n in sorted(r.get("counts", {}).items()))] for r in reversed(druns)]
        hh = ["drift run", "started", "verdict", "hosts"]
        md += ["### Drift history", "", *_md_table(hh, hist), ""]
        h.append("<h3>Drift history</h3>" + _html_table(hh, hist, status_col=2))
    else:
        md += ["No drift runs.", ""]
        h.append("<p>No drift runs.</p>")
    h.append("</body></html>")
    (out / "report.md").write_text("\n".join(md))
    (out / "report.html").write_text("".join(h))
    summary = {**st, "html": str(out / "report.html"), "markdown": str(out / "report.md"),
               "images": sorted(images), "validation_runs": [r["run_id"] for r in vruns],
               "drift_runs": [r["run_id"] for r in druns]}
    (out / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def add_report_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report", help="HTML + Markdown report of validation results and drift runs, with plots",
        description="Renders the validation results (RESULTS/<run id>/<host>.json) and drift runs "
                    "(DRIFT/<run id>.json) as OUT/report.html (self-contained: plots embedded) and OUT/report.md "
                    "(PNG plots beside it): per-node bars of each benchmark against its floor and the fleet "
                    "median, trends across the last runs, every check's verdict, and the drift findings. "
                    "Exit 0: healthy; 1: the latest validation run failed a check or the latest drift run is not "
                    "clean (the report is written either way); 2: nothing to report or a malformed file.")
    p.add_argument("--results", type=Path, default=Path("results"), help="validation results root (default results)")
    p.add_argument("--drift", type=Path, default=Path("drift"), help="drift reports directory (default drift)")
    p.add_argument("--out", type=Path, default=Path("results/report"), help="output directory (default results/report)")
    p.add_argument("--last", type=int, default=10, help="runs to include in trends and history (default 10)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def run_report(args: argparse.Namespace) -> int:
    if args.last < 1:
        raise UserError(f"--last: expected a positive number of runs, got {args.last}")
    summary = render(build(args.results, args.drift, args.last), args.out)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"report: {summary['html']} (Markdown: {summary['markdown']})")
        print(f"validation run {summary['validation_run']}: {len(summary['validation_failures'])} failed check(s); "
              f"drift run {summary['drift_run']}: {summary['drift_verdict']}")
    return 0 if summary["healthy"] else 1
