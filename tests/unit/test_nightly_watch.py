"""The nightly watch job: scripts/nightly-watch.sh with stand-in ansible-playbook/baremetal (exit statuses,
retention of the newest N runs, usage errors), and the shipped systemd units and CI examples."""

from __future__ import annotations

import configparser
import os
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "nightly-watch.sh"

# Stand-ins for ansible-playbook and baremetal (also used by the lab e2e test of the systemd units): they log
# their arguments (and ANSIBLE_STRATEGY, ANSIBLE_CACHE_PLUGIN) to $FAKE_LOG, write what the real commands would
# write, and exit with FAKE_DRIFT_RC / FAKE_VALIDATE_RC.
STANDINS = ROOT / "tests" / "fixtures" / "nightly-standins"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("ansible-playbook", "baremetal"):
        (bindir / name).write_text((STANDINS / name).read_text())
        (bindir / name).chmod(0o755)
    out = tmp_path / "out"
    for old in ("20260101T023000Z", "20260102T023000Z", "20260103T023000Z"):
        (out / "drift").mkdir(parents=True, exist_ok=True)
        for s in ("json", "md", "junit.xml"):
            (out / "drift" / f"{old}.{s}").write_text("{}")
        (out / "results" / old).mkdir(parents=True)
        (out / "reports" / old).mkdir(parents=True)
    (out / "drift" / "baseline").mkdir()  # never pruned
    (tmp_path / "inv").mkdir()
    return {**os.environ, "BAREMETAL_BIN": str(bindir), "BAREMETAL_OUT": str(out), "BAREMETAL_KEEP": "2",
            "FAKE_LOG": str(tmp_path / "calls.log")}


def run(env: dict[str, str], tmp: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *(args or [str(tmp / "inv")])], env={**env, **extra}, capture_output=True,
                          text=True, check=False, timeout=60)


def test_clean_run_keeps_the_newest_n_and_exits_zero(env, tmp_path):
    proc = run(env, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = tmp_path / "out"
    drift_json = sorted(p.name for p in (out / "drift").glob("2*Z.json"))
    assert len(drift_json) == 2 and drift_json[0] == "20260103T023000Z.json"  # the new run is the other one
    assert len(list((out / "drift").glob("2*Z.md"))) == 2 and len(list((out / "drift").glob("2*Z.junit.xml"))) == 2
    assert (out / "drift" / "baseline").is_dir()
    assert sorted(p.name for p in (out / "results").iterdir())[0] == "20260103T023000Z"
    assert len(list((out / "results").iterdir())) == 2 and len(list((out / "reports").iterdir())) == 2
    calls = (tmp_path / "calls.log").read_text()
    assert "validate.yml -e validation_tier=quick" in calls
    assert "drift.yml --check --diff" in calls
    assert "baremetal report" in calls
    # the drift check runs over Mitogen (plugins/strategy/baremetal_linear.py); validation keeps the default
    lines = calls.splitlines()
    assert any(ln.startswith("strategy=baremetal_linear cache=memory ") and "drift.yml" in ln for ln in lines)
    assert any(ln.startswith("strategy=default cache=default ") and "validate.yml" in ln for ln in lines)


@pytest.mark.parametrize(("drift_rc", "validate_rc", "want"), [
    ("2", "0", 2), ("4", "0", 4), ("0", "2", 3), ("2", "2", 2), ("0", "4", 4), ("0", "0", 0)])
def test_exit_status_follows_drift_then_validation(env, tmp_path, drift_rc, validate_rc, want):
    proc = run(env, tmp_path, FAKE_DRIFT_RC=drift_rc, FAKE_VALIDATE_RC=validate_rc)
    assert proc.returncode == want, proc.stdout + proc.stderr
    # the report is written whatever the outcome
    assert "baremetal report" in (tmp_path / "calls.log").read_text()


def test_validation_can_be_skipped(env, tmp_path):
    assert run(env, tmp_path, BAREMETAL_VALIDATE="none").returncode == 0
    assert "validate.yml" not in (tmp_path / "calls.log").read_text()


@pytest.mark.parametrize(("extra", "msg"), [
    ({"BAREMETAL_KEEP": "0"}, "BAREMETAL_KEEP must be a positive integer"),
    ({"BAREMETAL_KEEP": "x"}, "BAREMETAL_KEEP must be a positive integer"),
    ({"BAREMETAL_VALIDATE": "full"}, "BAREMETAL_VALIDATE must be quick, standard or none"),
])
def test_bad_settings_are_named(env, tmp_path, extra, msg):
    proc = run(env, tmp_path, **extra)
    assert proc.returncode == 64 and msg in proc.stderr


def test_missing_inventory_is_a_usage_error(env, tmp_path):
    proc = run(env, tmp_path, str(tmp_path / "nope"))
    assert proc.returncode == 64 and "does not exist" in proc.stderr


def test_systemd_units_are_complete():
    svc = configparser.ConfigParser(strict=False, interpolation=None)
    svc.optionxform = str
    svc.read(ROOT / "deploy" / "systemd" / "baremetal-watch.service")
    assert svc["Service"]["Type"] == "oneshot"
    assert "scripts/nightly-watch.sh ${BAREMETAL_INVENTORY}" in svc["Service"]["ExecStart"]
    timer = configparser.ConfigParser(strict=False, interpolation=None)
    timer.optionxform = str
    timer.read(ROOT / "deploy" / "systemd" / "baremetal-watch.timer")
    assert timer["Timer"]["Unit"] == "baremetal-watch.service" and timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_ci_examples_run_the_watch_script_and_keep_reports():
    gl = yaml.safe_load((ROOT / "examples" / "ci" / "gitlab-nightly-watch.yml").read_text())["watch:nightly"]
    assert any("nightly-watch.sh" in s for s in gl["script"]) and gl["artifacts"]["when"] == "always"
    gh = yaml.safe_load((ROOT / "examples" / "ci" / "github-nightly-watch.yml").read_text())
    assert gh["on"]["schedule"][0]["cron"]
    steps = gh["jobs"]["watch"]["steps"]
    assert any("nightly-watch.sh" in s.get("run", "") for s in steps)
    assert any(s.get("if") == "always()" and "upload-artifact" in s.get("uses", "") for s in steps)
