"""`baremetal pilot report`: compare pilot results with a baseline from the current environment.

A pilot result is what `playbooks/pilot.yml` fetches to results/pilot/<run id>/<host>.json (schema_version 1);
a baseline is a file of the same schema measured in the environment the team runs on today (run the same
scripts there, or fill the numbers in by hand: examples/pilot-baseline-example.json shows the shape and is
labelled as an example). The report is two Markdown tables (training, inference), the verdicts of the pilot's
own checks, notes on whatever makes two rows not comparable, and two PNG plots.

Exit codes: 0 report written, 1 report written but a pilot result failed its own checks (recovery, loss,
inference errors, a server left running), 2 unusable input.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from baremetal_ai.errors import UserError

SCHEMA_VERSION = 1
NA = "n/a"


# --- loading ----------------------------------------------------------------------------------------------

def check_result(data: Any, source: str) -> dict:
    """Raise UserError unless ``data`` is a pilot result of the supported schema."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: not a pilot result (a JSON object expected)")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise UserError(f"{source}: schema_version {version!r}, this version of baremetal-ai reads {SCHEMA_VERSION}")
    if not any(isinstance(data.get(k), dict) for k in ("training", "inference")):
        raise UserError(f"{source}: has neither a 'training' nor an 'inference' section")
    return data


def load_file(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    data = check_result(data, str(path))
    data.setdefault("_source", str(path))
    return data


def load_results(path: Path) -> list[dict]:
    """A result file, or a directory of them (results/pilot/<run id>/: one file per host)."""
    if path.is_dir():
        files = sorted(p for p in path.glob("*.json"))
        if not files:
            raise UserError(f"{path}: no *.json pilot results in this directory")
        return [load_file(p) for p in files]
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    return [load_file(path)]


# --- rows (pure) ------------------------------------------------------------------------------------------

def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) else None


def label_of(result: dict, role: str) -> str:
    label = _get(result, "environment", "label") or result.get("host") or "?"
    host = result.get("host")
    text = f"{label} ({host})" if host and host != label else str(label)
    return f"{text} [baseline]" if role == "baseline" else text


def gpu_cell(util: Any, key: str) -> str:
    """'37 %' or 'n/a: <reason>' — never a number where none was measured."""
    if not isinstance(util, dict):
        return f"{NA}: not recorded"
    if not util.get("applicable"):
        return f"{NA}: {str(util.get('reason') or 'not applicable').removeprefix('not applicable: ')}"
    value = _num(util.get(key))
    return f"{value:.0f} %" if value is not None else f"{NA}: not recorded"


def training_row(result: dict, role: str = "pilot") -> dict:
    t = result.get("training") if isinstance(result.get("training"), dict) else {}
    st = t.get("step_time_s") if isinstance(t.get("step_time_s"), dict) else {}
    ms = {k: (_num(st.get(k)) * 1000 if _num(st.get(k)) is not None else None) for k in ("p50", "p95", "max")}
    return {
        "environment": label_of(result, role), "role": role, "ran": t.get("status", "ran") == "ran" and bool(st),
        "backend": _get(result, "backend", "name") or _get(t, "backend", "name") or "?",
        "tokens_per_s": _num(t.get("tokens_per_s")), "step_p50_ms": ms["p50"], "step_p95_ms": ms["p95"],
        "step_max_ms": ms["max"], "step_cv": _num(st.get("cv")),
        "gpu_mean": gpu_cell(t.get("gpu_utilization"), "mean_pct"),
        "gpu_peak": gpu_cell(t.get("gpu_utilization"), "peak_pct"),
        "loss_first": _num(_get(t, "loss", "first")), "loss_last": _num(_get(t, "loss", "last")),
    }


def inference_row(result: dict, role: str = "pilot") -> dict:
    i = result.get("inference") if isinstance(result.get("inference"), dict) else {}
    lat = i.get("latency_ms") if isinstance(i.get("latency_ms"), dict) else {}
    return {
        "environment": label_of(result, role), "role": role, "ran": i.get("status", "ran") == "ran" and bool(lat),
        "backend": i.get("backend") if isinstance(i.get("backend"), str) else _get(result, "backend", "name") or "?",
        "p50_ms": _num(lat.get("p50")), "p95_ms": _num(lat.get("p95")), "p99_ms": _num(lat.get("p99")),
        "throughput_rps": _num(i.get("throughput_rps")), "requests": i.get("requests"),
        "concurrency": i.get("concurrency"), "errors": i.get("errors"),
        "gpu_peak": gpu_cell(i.get("gpu_utilization"), "peak_pct"),
    }


def _fmt(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "–"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def _ratio(x: float | None, base: float | None) -> str:
    if x is None or base is None or base == 0:
        return "–"
    return f"{x / base:.2f}×"


def training_table(rows: list[dict]) -> str:
    base = next((r for r in rows if r["role"] == "baseline"), None)
    head = ("| environment | backend | tokens/s | vs baseline | step p50 (ms) | step p95 (ms) | step max (ms) "
            "| step-time CV | GPU util mean | GPU util peak |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in rows:
        if not r["ran"]:
            lines.append(f"| {r['environment']} | {r['backend']} | not run | | | | | | | |")
            continue
        vs = "baseline" if r is base else _ratio(r["tokens_per_s"], base["tokens_per_s"] if base else None)
        lines.append(f"| {r['environment']} | {r['backend']} | {_fmt(r['tokens_per_s'], 0)} | {vs} "
                     f"| {_fmt(r['step_p50_ms'])} | {_fmt(r['step_p95_ms'])} | {_fmt(r['step_max_ms'])} "
                     f"| {_fmt(r['step_cv'], 3)} | {r['gpu_mean']} | {r['gpu_peak']} |")
    return "\n".join(lines)


def inference_table(rows: list[dict]) -> str:
    base = next((r for r in rows if r["role"] == "baseline"), None)
    head = ("| environment | backend | p50 (ms) | p95 (ms) | p99 (ms) | p95 vs baseline | throughput (req/s) "
            "| requests × concurrency | errors | GPU util peak |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in rows:
        if not r["ran"]:
            lines.append(f"| {r['environment']} | {r['backend']} | not run | | | | | | | |")
            continue
        vs = "baseline" if r is base else _ratio(r["p95_ms"], base["p95_ms"] if base else None)
        lines.append(f"| {r['environment']} | {r['backend']} | {_fmt(r['p50_ms'])} | {_fmt(r['p95_ms'])} "
                     f"| {_fmt(r['p99_ms'])} | {vs} | {_fmt(r['throughput_rps'], 1)} "
                     f"| {r['requests']} × {r['concurrency']} | {r['errors']} | {r['gpu_peak']} |")
    return "\n".join(lines)


def result_problems(result: dict) -> list[str]:
    """The pilot's own checks that failed, one line each (empty: all passed or not run)."""
    out = []
    who = label_of(result, "pilot")
    t, r, i = (result.get(k) if isinstance(result.get(k), dict) else {} for k in ("training", "recovery", "inference"))
    if t.get("status") == "ran" and _get(t, "loss", "fell") is False:
        out.append(f"{who}: training loss did not fall")
    if r.get("status") == "ran" and r.get("verdict") != "pass":
        failed = [c.get("detail", c.get("name")) for c in r.get("checks", [])
                  if isinstance(c, dict) and not c.get("ok")]
        out.append(f"{who}: checkpoint recovery failed: {'; '.join(failed) or 'no verdict'}")
    if i.get("status") == "ran":
        if i.get("errors"):
            out.append(f"{who}: {i['errors']} inference requests failed")
        if _get(i, "server", "left_running"):
            out.append(f"{who}: inference server processes left running: {_get(i, 'server', 'left_running')}")
    return out


def recovery_line(result: dict) -> str:
    r = result.get("recovery") if isinstance(result.get("recovery"), dict) else {}
    who = label_of(result, "pilot")
    if r.get("status") != "ran":
        return f"- {who}: recovery not run"
    comp = [c for c in r.get("checks", []) if isinstance(c, dict) and c.get("name") == "loss picks up where it stopped"]
    return (f"- {who}: **{r.get('verdict', '?')}** — killed ({r.get('signal', '?')}) after step "
            f"{r.get('last_step_before_kill')}, resumed from the checkpoint of step {r.get('checkpoint_step')} at step "
            f"{r.get('first_step_after_resume')}; {comp[0]['detail'] if comp else 'loss not compared'}")


def comparability_notes(results: list[dict], baseline: dict | None) -> list[str]:
    """What makes rows not comparable: an example baseline, other backends, other model or load settings."""
    notes = []
    everyone = [*results, *([baseline] if baseline else [])]
    if baseline and (baseline.get("example") or "EXAMPLE" in str(_get(baseline, "environment", "label")).upper()):
        notes.append("The baseline is the shipped EXAMPLE with invented numbers: replace it with a result measured "
                     "in your current environment before drawing any conclusion.")
    for res in everyone:
        note = _get(res, "backend", "note")
        if note:
            notes.append(f"{label_of(res, 'baseline' if res is baseline else 'pilot')}: {note}.")
    backends = {_get(r, "backend", "name") for r in everyone}
    if len(backends) > 1:
        notes.append(f"Backends differ ({', '.join(sorted(map(str, backends)))}): throughput and latency compare "
                     "hardware and software stacks together.")
    configs = {json.dumps(r.get("config"), sort_keys=True) for r in everyone if r.get("config") is not None}
    if len(configs) > 1:
        notes.append("Model/data configurations differ between rows: tokens/s and step times are not comparable "
                     "(run the pilot with the same pilot_model settings in both environments).")
    loads = {(_get(r, "inference", "requests"), _get(r, "inference", "concurrency"),
              _get(r, "inference", "new_tokens_per_request")) for r in everyone if _get(r, "inference", "status")
             in ("ran", None) and _get(r, "inference", "latency_ms")}
    if len(loads) > 1:
        notes.append("Inference load differs between rows (requests, concurrency, tokens per request): latency is "
                     "not comparable.")
    return notes


# --- plots ------------------------------------------------------------------------------------------------

def _bar_panel(ax, labels: list[str], series: dict[str, list[float | None]], ylabel: str, title: str) -> None:
    import numpy as np

    n = max(len(series), 1)
    width = 0.8 / n
    x = np.arange(len(labels))
    values = [v for vs in series.values() for v in vs if v]
    for k, (name, vs) in enumerate(series.items()):
        ax.bar(x + (k - (n - 1) / 2) * width, [v or 0 for v in vs], width, label=name)
    if values and max(values) / max(min(values), 1e-12) > 50:
        ax.set_yscale("log")
        ylabel += " (log scale)"
    ax.set_xticks(x, labels, rotation=15, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if n > 1:
        ax.legend(fontsize=8)


def _short(label: str) -> str:
    return label if len(label) <= 32 else label[:30] + "…"


def plot_training(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["ran"]]
    labels = [_short(r["environment"]) for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    _bar_panel(a, labels, {"tokens/s": [r["tokens_per_s"] for r in rows]}, "tokens/s", "Training throughput")
    _bar_panel(b, labels, {"p50": [r["step_p50_ms"] for r in rows], "p95": [r["step_p95_ms"] for r in rows],
                           "max": [r["step_max_ms"] for r in rows]}, "step time (ms)", "Training step time")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_inference(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["ran"]]
    labels = [_short(r["environment"]) for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    _bar_panel(a, labels, {"p50": [r["p50_ms"] for r in rows], "p95": [r["p95_ms"] for r in rows],
                           "p99": [r["p99_ms"] for r in rows]}, "latency (ms)", "Inference latency")
    _bar_panel(b, labels, {"req/s": [r["throughput_rps"] for r in rows]}, "requests/s", "Inference throughput")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --- the report -------------------------------------------------------------------------------------------

def render_markdown(results: list[dict], baseline: dict | None, images: dict[str, str] | None = None) -> str:
    trows = [training_row(r) for r in results] + ([training_row(baseline, "baseline")] if baseline else [])
    irows = [inference_row(r) for r in results] + ([inference_row(baseline, "baseline")] if baseline else [])
    images = images or {}
    run_ids = sorted({str(r.get("run_id")) for r in results if r.get("run_id")})
    parts = ["# Pilot report", ""]
    base = f"{label_of(baseline, 'pilot')} ({baseline.get('_source', '?')})" if baseline else "none"
    parts.append(f"Pilot run(s): {', '.join(run_ids) or '?'}; {len(results)} node result(s). Baseline: {base}.")
    notes = comparability_notes(results, baseline)
    if notes:
        parts += ["", "**Read this first**", ""] + [f"- {n}" for n in notes]
    parts += ["", "## Training", "", training_table(trows), ""]
    parts.append("tokens/s: next-token predictions trained per second of step time (warm-up steps excluded). "
                 "Step time: one optimizer step; CV = standard deviation / mean (steady is < 0.05 on a quiet "
                 "GPU node). GPU utilization: nvidia-smi samples while the job ran.")
    if "training" in images:
        parts += ["", f"![training]({images['training']})"]
    parts += ["", "## Inference", "", inference_table(irows), ""]
    parts.append("Latency: client-side, per request (connect, greedy generation, response), warm-up requests "
                 "excluded. Throughput: completed requests / wall time at the stated concurrency.")
    if "inference" in images:
        parts += ["", f"![inference]({images['inference']})"]
    parts += ["", "## Checkpoint recovery", ""] + [recovery_line(r) for r in results]
    problems = [p for r in results for p in result_problems(r)]
    parts += ["", "## Verdict", ""]
    parts += [f"- FAILED: {p}" for p in problems] or ["- Every pilot check passed (loss fell, recovery, inference "
                                                      "without errors, no server left running)."]
    return "\n".join(parts) + "\n"


def write_report(results: list[dict], baseline: dict | None, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    trows = [training_row(r) for r in results] + ([training_row(baseline, "baseline")] if baseline else [])
    irows = [inference_row(r) for r in results] + ([inference_row(baseline, "baseline")] if baseline else [])
    images = {}
    if any(r["ran"] for r in trows):
        images["training"] = plot_training(trows, out / "training.png").name
    if any(r["ran"] for r in irows):
        images["inference"] = plot_inference(irows, out / "inference.png").name
    md = render_markdown(results, baseline, images)
    (out / "report.md").write_text(md)
    summary = {"report": str(out / "report.md"), "images": {k: str(out / v) for k, v in images.items()},
               "training": trows, "inference": irows, "problems": [p for r in results for p in result_problems(r)],
               "notes": comparability_notes(results, baseline)}
    (out / "report.json").write_text(json.dumps(summary, indent=2))
    return {**summary, "markdown": md}


# --- CLI --------------------------------------------------------------------------------------------------

def add_pilot_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    pilot = subparsers.add_parser(
        "pilot", help="the controlled pilot: compare its results with the current environment",
        description="Run the pilot with `ansible-playbook -i INVENTORY playbooks/pilot.yml`; it writes "
                    "results/pilot/<run id>/<host>.json. `baremetal pilot report` compares them with a baseline "
                    "measured in the environment you use today (see docs/pilot.md).")
    ps = pilot.add_subparsers(dest="pilot_cmd", required=True)
    p = ps.add_parser("report", help="Markdown tables + PNG plots: pilot vs baseline",
                      description="Writes OUT/report.md, OUT/training.png, OUT/inference.png, OUT/report.json and "
                                  "prints the Markdown. Exit 1 when a pilot result failed its own checks.")
    p.add_argument("--result", required=True, type=Path,
                   help="a pilot result file, or a directory of them (results/pilot/<run id>/)")
    p.add_argument("--baseline", type=Path, default=None,
                   help="a result of the same schema from the current environment "
                        "(shape: examples/pilot-baseline-example.json)")
    p.add_argument("--out", required=True, type=Path, help="directory for the report and plots")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of the Markdown")
    return pilot


def run_pilot_report(args: argparse.Namespace) -> int:
    results = load_results(args.result)
    baseline = load_file(args.baseline) if args.baseline else None
    rep = write_report(results, baseline, args.out)
    if getattr(args, "json", False):
        print(json.dumps({k: v for k, v in rep.items() if k != "markdown"}, indent=2))
    else:
        print(rep["markdown"], end="")
    return 1 if rep["problems"] else 0
