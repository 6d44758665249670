"""playbooks/drift.yml and playbooks/rolling_upgrade.yml without a lab: they parse, and bad input stops them in
their first (controller-only) play with a message naming the setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def play(tmp: Path, playbook: str, *extra: str) -> subprocess.CompletedProcess[str]:
    inv = tmp / "hosts.yml"
    # gpu_nodes is empty: only the controller plays run
    inv.write_text("all:\n  children:\n    gpu_nodes:\n      hosts: {}\n")
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0",
           "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false"}
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inv), str(ROOT / "playbooks" / playbook),
                           "-e", f"ansible_python_interpreter={sys.executable}", *extra], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False, timeout=300)


@pytest.mark.parametrize("playbook", ["drift.yml", "rolling_upgrade.yml", "converge.yml"])
def test_syntax(tmp_path, playbook):
    proc = play(tmp_path, playbook, "--syntax-check")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_drift_refuses_to_run_without_check_and_diff(tmp_path):
    proc = play(tmp_path, "drift.yml")
    assert proc.returncode == 2
    assert "only checks: run it as" in proc.stdout and "--check --diff" in proc.stdout
    proc = play(tmp_path, "drift.yml", "--check")
    assert proc.returncode == 2 and "only checks" in proc.stdout


def test_drift_names_a_bad_run_id(tmp_path):
    proc = play(tmp_path, "drift.yml", "--check", "--diff", "-e", "drift_run_id=../x", "-e", f"drift_dir={tmp_path}")
    assert proc.returncode == 2 and "drift_run_id may hold" in proc.stdout


def test_drift_without_a_run_id_names_one_itself(tmp_path):
    """`make lab` runs the check with no drift_run_id: the run id check must not need one (it did, once)."""
    proc = play(tmp_path, "drift.yml", "--check", "--diff", "-e", f"drift_dir={tmp_path}")
    assert "drift_run_id' is undefined" not in proc.stdout and "Check the run id" in proc.stdout
    reports = list(tmp_path.glob("2*.json"))
    assert len(reports) == 1, proc.stdout[-3000:]  # named by UTC time, e.g. 20261127T091517Z.json


def test_drift_with_no_hosts_writes_a_report_that_is_not_clean(tmp_path):
    proc = play(tmp_path, "drift.yml", "--check", "--diff", "-e", "drift_run_id=empty", "-e", f"drift_dir={tmp_path}")
    # no host was checked: the verdict is never "clean"
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert (tmp_path / "empty.json").is_file() and '"verdict": "error"' in (tmp_path / "empty.json").read_text()


@pytest.mark.parametrize(("extra", "named"), [
    ("rolling_upgrade_serial=0", "rolling_upgrade_serial must be a positive number or percentage (got 0)"),
    ("rolling_upgrade_serial=two", "(got two)"),
    ("rolling_upgrade_max_fail_percentage=-1", "rolling_upgrade_max_fail_percentage a number 0-100 (got -1)"),
    ("rolling_upgrade_validation_tier=full", "rolling_upgrade_validation_tier quick, standard or none (got full)"),
])
def test_rolling_upgrade_names_a_bad_setting(tmp_path, extra, named):
    proc = play(tmp_path, "rolling_upgrade.yml", "-e", extra)
    assert proc.returncode == 2
    assert named in " ".join(proc.stdout.split()), proc.stdout[-2000:]
