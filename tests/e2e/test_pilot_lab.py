"""The pilot end to end on a 1-node lab: `playbooks/pilot.yml` in check mode (runs no job), then for real
(training, SIGKILL and resume, inference service on the node's loopback), the fetched result judged, no server
process left on the node, and `baremetal pilot report` against the example baseline.

Uses its own lab name (`pilot`) and takes it down at the end, also when a test fails. About a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from baremetal_ai import pilot

pytestmark = [pytest.mark.e2e, pytest.mark.podman]
ROOT = Path(__file__).resolve().parents[2]
LAB = "pilot"
BIN = Path(sys.executable).parent


def lab(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    # --name right after the subcommand: `lab ssh NODE COMMAND...` takes everything after NODE as the command.
    proc = subprocess.run([sys.executable, "-m", "baremetal_ai.cli", "lab", args[0], "--name", LAB, *args[1:]],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def playbook(inventory: str, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "collections"), "ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp / "cp")}
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", inventory, "playbooks/pilot.yml", *extra], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=900, check=False)


def recap(output: str) -> dict[str, dict[str, int]]:
    out = {}
    for m in re.finditer(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", output, flags=re.M):
        out[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return out


@pytest.fixture(scope="module")
def pilot_lab():
    lab("down")
    t0 = time.monotonic()
    try:
        # Without the GPU software stack: test_lab_e2e.py converges and checks it; here it would only add minutes.
        lab("up", "--nodes", "1", "--no-gpu-stack")
        print(f"lab up (1 node) took {time.monotonic() - t0:.1f} s")
        yield json.loads(lab("status", "--json").stdout)
    finally:
        lab("down")


@pytest.fixture(scope="module")
def run(pilot_lab, tmp_path_factory):
    """The real pilot run, shared by the tests below: (result, ansible output, results dir, status)."""
    tmp = tmp_path_factory.mktemp("pilot")
    (tmp / "cp").mkdir()
    run_id = time.strftime("e2e-%Y%m%dT%H%M%SZ", time.gmtime())
    t0 = time.monotonic()
    proc = playbook(pilot_lab["inventory"], tmp, "-e", f"pilot_run_id={run_id}", "-e", f"pilot_results_dir={tmp}/res")
    print(f"pilot playbook took {time.monotonic() - t0:.1f} s")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    host = pilot_lab["nodes"][0]["name"]
    assert recap(proc.stdout)[host]["failed"] == 0
    result = json.loads((tmp / "res" / run_id / f"{host}.json").read_text())
    return result, proc.stdout, tmp / "res" / run_id, pilot_lab


def test_check_mode_runs_no_job(pilot_lab, tmp_path):
    (tmp_path / "cp").mkdir()
    proc = playbook(pilot_lab["inventory"], tmp_path, "--check", "-e", f"pilot_results_dir={tmp_path}/res")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "pilot_run.py train" in proc.stdout and "pilot_run.py inference" in proc.stdout  # what would run
    for phase in ("Phase 1, training job", "Phase 2, checkpoint recovery", "Phase 3, inference service"):
        assert re.search(rf"TASK \[{phase}[^\n]*\n(skipping|ok: \[\S+\] => \(.*skip)", proc.stdout), phase
    assert not (tmp_path / "res").exists()


def test_result_schema_and_backend(run):
    result, _, _, st = run
    assert result["schema_version"] == 1 and result["host"] == st["nodes"][0]["name"]
    assert result["backend"]["name"] == "cpu-numpy"
    assert result["backend"]["note"] == "cpu-numpy, tiny model: not representative of GPU throughput"


def test_training_measured_and_loss_falls(run):
    t = run[0]["training"]
    st = t["step_time_s"]
    assert t["status"] == "ran" and t["tokens_per_s"] > 0
    assert 0 < st["p50"] <= st["p95"] <= st["max"] and st["cv"] >= 0
    assert t["loss"]["fell"] and t["loss"]["mean_last_10pct"] < 0.5 * t["loss"]["mean_first_10pct"]
    print(f"training: {t['tokens_per_s']:.0f} tokens/s, step p50 {st['p50'] * 1e3:.2f} ms, p95 "
          f"{st['p95'] * 1e3:.2f} ms, CV {st['cv']:.3f}, loss {t['loss']['first']:.3f} -> {t['loss']['last']:.3f}")


def test_steps_continue_after_the_kill(run):
    r = run[0]["recovery"]
    assert r["verdict"] == "pass", r["checks"]
    assert r["killed"] and r["killed_run_exit"] == -9 and r["signal"] == "SIGKILL"
    assert r["first_step_after_resume"] == r["checkpoint_step"] + 1 > 1
    assert r["checkpoint_step"] <= r["last_step_before_kill"] < r["steps"]
    pre, post = [s["step"] for s in r["pre_kill"]], [s["step"] for s in r["post_resume"]]
    assert pre == list(range(1, pre[-1] + 1)) and post == list(range(r["checkpoint_step"] + 1, r["steps"] + 1))
    assert r["compared"] and all(c["rel_diff"] <= r["loss_rtol"] for c in r["compared"])
    assert r["checkpoint_dir"].startswith("/var/lib/baremetal-ai/checkpoints/pilot/")


def test_inference_latency_ordered_and_positive(run):
    i = run[0]["inference"]
    lat = i["latency_ms"]
    assert i["errors"] == 0 and i["ok"] == i["requests"] == 200
    assert 0 < lat["p50"] <= lat["p95"] <= lat["p99"] and i["throughput_rps"] > 0
    assert i["server"]["address"] == "127.0.0.1" and i["server"]["port"] > 0
    print(f"inference: p50/p95/p99 {lat['p50']:.2f}/{lat['p95']:.2f}/{lat['p99']:.2f} ms, "
          f"{i['throughput_rps']:.0f} req/s")


def test_gpu_fields_say_not_applicable_with_reason(run):
    res = run[0]
    for util in (res["training"]["gpu_utilization"], res["inference"]["gpu_utilization"], res["environment"]["gpu"]):
        assert util["applicable"] is False
        assert util["reason"].startswith("not applicable: no GPU")
        assert not {"mean_pct", "peak_pct"} & set(util)


def test_no_server_process_left_on_the_node(run):
    res, _, _, st = run
    assert res["inference"]["server"]["left_running"] == []
    # pgrep exits 1 when nothing matches; through `lab ssh` (the lab's CLI), as an unprivileged user who sees
    # every process's command line.
    ps = lab("ssh", st["nodes"][0]["name"], "pgrep", "-a", "-f", "baremetal-ai-pilot-serve", check=False)
    assert ps.returncode == 1, ps.stdout + ps.stderr


def test_report_against_the_example_baseline(run, tmp_path, capsys):
    _, _, res_dir, _ = run
    p = argparse.ArgumentParser()
    pilot.add_pilot_parser(p.add_subparsers(dest="cmd"))
    args = p.parse_args(["pilot", "report", "--result", str(res_dir), "--baseline",
                         str(ROOT / "examples" / "pilot-baseline-example.json"), "--out", str(tmp_path)])
    assert pilot.run_pilot_report(args) == 0
    md = capsys.readouterr().out
    assert "## Training" in md and "## Inference" in md and "EXAMPLE" in md
    assert "| environment | backend | tokens/s |" in md and "| environment | backend | p50 (ms) |" in md
    for png in ("training.png", "inference.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
