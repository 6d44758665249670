"""Checks shared by the roles' Molecule testinfra tests (imported from roles/*/molecule/*/tests/)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path


def assert_check_mode_changes_nothing() -> None:
    """Honest check mode: `ansible-playbook --check --diff` of the scenario's converge.yml on the converged
    instance succeeds and reports 0 changed; a failure names the tasks that would change."""
    scenario = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    env = {**os.environ, "ANSIBLE_CONFIG": os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "ansible.cfg"),
           "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run(["ansible-playbook", "--check", "--diff", "-i", os.environ["MOLECULE_INVENTORY_FILE"],
                           str(scenario / "converge.yml")], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    recap = re.search(r"molecule-\S+\s+:\s+ok=\d+\s+changed=(\d+)", proc.stdout)
    changed = re.findall(r"^TASK \[(.*?)\].*\n(?:.*\n)*?changed: ", proc.stdout, flags=re.M)
    assert recap and recap.group(1) == "0", changed or proc.stdout[-3000:]
