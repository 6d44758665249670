"""The pilot's pure parts: recovery judging (good and bad runs), statistics, GPU sampling parsing, the numpy
model's resume, and `baremetal pilot report` (tables, notes, PNG plots, exit codes).

The node-side scripts (playbooks/files/pilot/) are imported from their directory: they run on the node with
stdlib + numpy and are tested here as they are shipped.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import pytest

from baremetal_ai import pilot
from baremetal_ai.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "playbooks" / "files" / "pilot"))

import pilot_model as pm  # noqa: E402  (the node-side scripts live outside the package)
import pilot_run  # noqa: E402
from pilot_recovery import judge_recovery  # noqa: E402

BASELINE = ROOT / "examples" / "pilot-baseline-example.json"

NO_GPU = {"applicable": False, "reason": "not applicable: no GPU (nvidia-smi not found)"}

# Trimmed from a real lab run (results/pilot/20261127T050413Z/pilot-node1.json, 1-node lab, cpu-numpy).
LAB_RESULT = {
    "schema_version": 1, "kind": "baremetal-ai pilot result", "run_id": "20261127T050413Z", "host": "pilot-node1",
    "environment": {"label": "pilot-node1", "cpu_model": "AMD EPYC", "virtualization": "podman",
                    "gpu": {**NO_GPU, "gpus": []}},
    "backend": {"name": "cpu-numpy", "device": "cpu", "note": "cpu-numpy, tiny model: not representative of GPU "
                "throughput"},
    "config": {"vocab": 128, "context": 8, "dim": 32, "hidden": 256, "batch": 16, "positions": 32, "lr": 0.01,
               "seed": 1234},
    "training": {"status": "ran", "steps": 100, "tokens_per_step": 512, "tokens_per_s": 45902.23695280001,
                 "step_time_s": {"n": 97, "mean": 0.01115, "p50": 0.010067616, "p95": 0.016266264, "p99": 0.02104,
                                 "max": 0.022268363, "min": 0.009198, "cv": 0.2306518675535226},
                 "loss": {"first": 4.848, "last": 1.127, "fell": True},
                 "gpu_utilization": {"applicable": False, "reason": "not applicable: no GPU (nvidia-smi not found)"}},
    "recovery": {"status": "ran", "verdict": "pass", "signal": "SIGKILL", "checkpoint_step": 50,
                 "last_step_before_kill": 55, "first_step_after_resume": 51,
                 "checks": [{"name": "loss picks up where it stopped", "ok": True,
                             "detail": "5 steps compared with the killed run, largest relative difference 0 "
                                       "<= 0.0001"}]},
    "inference": {"status": "ran", "backend": "cpu-numpy", "requests": 200, "concurrency": 8,
                  "new_tokens_per_request": 16, "errors": 0,
                  "latency_ms": {"n": 200, "p50": 12.8147, "p95": 25.2121, "p99": 55.0059, "max": 59.24},
                  "throughput_rps": 541.0993631013309,
                  "gpu_utilization": {"applicable": False, "reason": "not applicable: no GPU (nvidia-smi not found)"},
                  "server": {"address": "127.0.0.1", "port": 43909, "left_running": []}},
}


def steps(a: int, b: int, loss=lambda s: 5.0 - 0.03 * s) -> list[dict]:
    return [{"step": s, "loss": loss(s)} for s in range(a, b + 1)]


# --- recovery judging -------------------------------------------------------------------------------------

def test_recovery_passes_when_steps_continue_and_losses_replay():
    v = judge_recovery(steps(1, 55), steps(51, 100), checkpoint_step=50, total_steps=100, loss_rtol=1e-4)
    assert v["verdict"] == "pass", v["checks"]
    assert v["first_step_after_resume"] == 51 and v["last_step_before_kill"] == 55
    assert [c["step"] for c in v["compared"]] == [51, 52, 53, 54, 55]


def failed(v: dict) -> dict[str, str]:
    return {c["name"]: c["detail"] for c in v["checks"] if not c["ok"]}


def test_recovery_fails_on_restart_from_zero():
    v = judge_recovery(steps(1, 55), steps(1, 100), checkpoint_step=50, total_steps=100, loss_rtol=1e-4)
    assert v["verdict"] == "fail"
    assert "restarted from step 1" in failed(v)["step count continues from the checkpoint"]


def test_recovery_fails_on_a_gap():
    v = judge_recovery(steps(1, 55), steps(61, 100), checkpoint_step=50, total_steps=100, loss_rtol=1e-4)
    assert v["verdict"] == "fail"
    assert "gap" in failed(v)["step count continues from the checkpoint"]


def test_recovery_fails_on_a_loss_jump():
    # Same step numbers, but the resumed run's losses are those of fresh weights (about ln(128) = 4.85).
    v = judge_recovery(steps(1, 55), steps(51, 100, loss=lambda s: 4.85), checkpoint_step=50, total_steps=100,
                       loss_rtol=1e-4)
    assert v["verdict"] == "fail"
    assert failed(v).keys() == {"loss picks up where it stopped"}
    assert "loss jump at step" in failed(v)["loss picks up where it stopped"]


def test_recovery_catches_lost_optimizer_state_on_the_second_replayed_step():
    # The first step after a resume computes its loss before any update: only the second one differs.
    post = steps(51, 100)
    post[1] = {"step": 52, "loss": post[1]["loss"] * 1.05}
    v = judge_recovery(steps(1, 55), post, checkpoint_step=50, total_steps=100, loss_rtol=1e-4)
    assert v["verdict"] == "fail" and "step 52" in failed(v)["loss picks up where it stopped"]


def test_recovery_fails_when_the_kill_came_too_soon_unless_a_reference_exists():
    v = judge_recovery(steps(1, 50), steps(51, 100), checkpoint_step=50, total_steps=100, loss_rtol=1e-4)
    assert "only 0 step(s) to compare" in failed(v)["loss picks up where it stopped"]
    v = judge_recovery(steps(1, 50), steps(51, 100), checkpoint_step=50, total_steps=100, loss_rtol=1e-4,
                       reference=steps(1, 100))
    assert v["verdict"] == "pass" and v["compared_with"] == "uninterrupted reference run"


def test_recovery_fails_without_checkpoint_or_when_never_killed():
    v = judge_recovery(steps(1, 55), steps(1, 100), checkpoint_step=None, total_steps=100, loss_rtol=1e-4)
    assert "no checkpoint was loaded" in failed(v)["resumed from a checkpoint written before the kill"]
    v = judge_recovery(steps(1, 100), [], checkpoint_step=100, total_steps=100, loss_rtol=1e-4)
    assert "killed mid-run" in failed(v)


def test_recovery_fails_on_repeated_steps_and_incomplete_resume():
    v = judge_recovery(steps(1, 55), steps(41, 100), checkpoint_step=50, total_steps=100, loss_rtol=1e-4)
    assert "repeats steps" in failed(v)["step count continues from the checkpoint"]
    v = judge_recovery(steps(1, 55), steps(51, 90), checkpoint_step=50, total_steps=100, loss_rtol=1e-4)
    assert "resumed run contiguous to the last step" in failed(v)


# --- the model and its checkpoints (numpy backend, milliseconds) ------------------------------------------

def test_numpy_model_learns_and_resume_replays_exactly(tmp_path):
    cfg = pm.Config(hidden=64, batch=8, positions=16)
    table = pm.transition_table(cfg)
    m = pm.NumpyModel(cfg)
    losses = {}
    for s in range(1, 31):
        losses[s] = m.train_step(*pm.batch_for_step(cfg, table, s))
        if s == 20:
            info = pm.save_checkpoint(m, str(tmp_path), s)
    assert info["bytes"] > 0 and not list(tmp_path.glob("*.tmp"))
    assert sum(list(losses.values())[-5:]) / 5 < sum(list(losses.values())[:5]) / 5  # the loss falls
    r = pm.NumpyModel(cfg)
    assert pm.load_latest(r, str(tmp_path))["step"] == 20
    replay = {s: r.train_step(*pm.batch_for_step(cfg, table, s)) for s in range(21, 31)}
    assert all(abs(replay[s] - losses[s]) <= 1e-4 * losses[s] for s in replay)


def test_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path):
    cfg = pm.Config(hidden=16, batch=2, positions=4)
    m = pm.NumpyModel(cfg)
    pm.save_checkpoint(m, str(tmp_path), 10)
    (tmp_path / "ckpt-00000020.npz").write_bytes(b"half a file")
    got = pm.load_latest(pm.NumpyModel(cfg), str(tmp_path))
    assert got["step"] == 10 and "ckpt-00000020.npz" in got["skipped"][0]


# --- statistics and GPU sampling --------------------------------------------------------------------------

def test_percentiles_match_numpy_linear_method():
    import numpy as np

    xs = [0.3, 1.0, 7.5, 2.2, 2.2, 9.9, 0.01]
    for q in (50, 95, 99):
        assert pilot_run.percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))
    d = pilot_run.distribution([2.0, 2.0, 2.0])
    assert d["cv"] == 0 and d["p50"] == d["p95"] == d["max"] == 2.0


def test_gpu_utilization_says_not_applicable_with_reason_and_never_a_number():
    u = pilot_run.summarize_utilization({}, 200, "not applicable: no GPU (nvidia-smi not found)")
    assert u == {"applicable": False, "reason": "not applicable: no GPU (nvidia-smi not found)"}
    assert "mean_pct" not in pilot_run.summarize_utilization({}, 200, None)


def test_gpu_utilization_from_nvidia_smi_lines():
    lines = ["0, 35", "1, 0", "0, 97", "garbage", "1, 3", "0, [N/A]"]
    samples = pilot_run.parse_smi_samples(lines)
    assert samples == {"0": [35.0, 97.0], "1": [0.0, 3.0]}
    u = pilot_run.summarize_utilization(samples, 200, None)
    assert u["applicable"] and u["gpu"] == "0" and u["peak_pct"] == 97.0 and u["mean_pct"] == 66.0


# --- the report -------------------------------------------------------------------------------------------

@pytest.fixture
def baseline() -> dict:
    return pilot.load_file(BASELINE)


def test_example_baseline_is_a_valid_result_and_labelled_example(baseline):
    assert baseline["example"] is True and "EXAMPLE" in baseline["environment"]["label"]
    assert pilot.comparability_notes([LAB_RESULT], baseline)[0].startswith("The baseline is the shipped EXAMPLE")


def test_training_table_has_each_environment_its_numbers_and_gpu_reason(baseline):
    rows = [pilot.training_row(LAB_RESULT), pilot.training_row(baseline, "baseline")]
    table = pilot.training_table(rows)
    lines = table.splitlines()
    assert lines[0].startswith("| environment | backend | tokens/s |") and "step-time CV" in lines[0]
    assert lines[2].startswith("| pilot-node1 | cpu-numpy | 45,902 | 0.18× | 10.07 | 16.27 | 22.27 | 0.231 |")
    assert "n/a: no GPU (nvidia-smi not found)" in lines[2]
    assert "[baseline] | torch-cuda | 249,756 | baseline | 1.90 | 3.10 |" in lines[3]
    assert "| 38 % | 61 % |" in lines[3]


def test_inference_table_has_percentiles_throughput_and_ratio(baseline):
    rows = [pilot.inference_row(LAB_RESULT), pilot.inference_row(baseline, "baseline")]
    lines = pilot.inference_table(rows).splitlines()
    assert "p50 (ms) | p95 (ms) | p99 (ms)" in lines[0]
    assert lines[2].startswith("| pilot-node1 | cpu-numpy | 12.81 | 25.21 | 55.01 | 3.19× | 541.1 | 200 × 8 | 0 |")
    assert "| 4.10 | 7.90 | 12.40 | baseline | 1,650 |" in lines[3]


def test_not_run_phase_is_a_row_that_says_so():
    res = copy.deepcopy(LAB_RESULT)
    res["inference"] = {"status": "not run", "reason": "phase not selected"}
    table = pilot.inference_table([pilot.inference_row(res)])
    assert "| pilot-node1 | cpu-numpy | not run |" in table


def test_notes_flag_other_configs_and_backends(baseline):
    other = copy.deepcopy(baseline)
    other["config"]["hidden"] = 4096
    notes = " ".join(pilot.comparability_notes([LAB_RESULT], other))
    assert "Backends differ" in notes and "configurations differ" in notes and "not representative" in notes


def test_report_writes_markdown_with_both_tables_and_png_plots(tmp_path, baseline):
    rep = pilot.write_report([LAB_RESULT], baseline, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "## Training" in md and "## Inference" in md and "## Checkpoint recovery" in md
    assert "| environment | backend | tokens/s |" in md and "| environment | backend | p50 (ms) |" in md
    for name in ("training.png", "inference.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        assert f"]({name})" in md
    assert rep["problems"] == []
    assert json.loads((tmp_path / "report.json").read_text())["training"][0]["tokens_per_s"] == pytest.approx(45902.2,
                                                                                                                rel=1e-5)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd")
    pilot.add_pilot_parser(sub)
    return p.parse_args(argv)


def test_cli_exit_1_when_a_pilot_check_failed(tmp_path, capsys):
    bad = copy.deepcopy(LAB_RESULT)
    bad["recovery"].update(verdict="fail", checks=[{"name": "step count continues from the checkpoint", "ok": False,
                                                    "detail": "restarted from step 1"}])
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "pilot-node1.json").write_text(json.dumps(bad))
    args = parse(["pilot", "report", "--result", str(tmp_path / "res"), "--baseline", str(BASELINE),
                  "--out", str(tmp_path / "out")])
    assert pilot.run_pilot_report(args) == 1
    out = capsys.readouterr().out
    assert "FAILED: pilot-node1: checkpoint recovery failed: restarted from step 1" in out


def test_cli_exit_0_and_json(tmp_path, capsys):
    f = tmp_path / "r.json"
    f.write_text(json.dumps(LAB_RESULT))
    args = parse(["pilot", "report", "--result", str(f), "--out", str(tmp_path / "o"), "--json"])
    assert pilot.run_pilot_report(args) == 0
    assert json.loads(capsys.readouterr().out)["inference"][0]["p99_ms"] == pytest.approx(55.0059)


@pytest.mark.parametrize(("content", "message"), [
    ("{", "not JSON"),
    ('{"schema_version": 2, "training": {}}', "schema_version 2"),
    ('{"schema_version": 1}', "neither a 'training' nor an 'inference'"),
    ("[1]", "not a pilot result"),
])
def test_unusable_input_is_one_clear_error(tmp_path, content, message):
    f = tmp_path / "r.json"
    f.write_text(content)
    with pytest.raises(UserError, match=message):
        pilot.load_results(f)


def test_empty_result_directory_is_an_error(tmp_path):
    with pytest.raises(UserError, match=r"no \*\.json pilot results"):
        pilot.load_results(tmp_path)
