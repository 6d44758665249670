"""Runs `molecule test` for every role scenario (create, converge, idempotence, verify, destroy), one pytest
test per scenario so the summary lists them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(p.parent for p in ROOT.glob("roles/*/molecule/*/molecule.yml"))


def _node_image() -> str:
    return subprocess.run([sys.executable, "-m", "baremetal_ai.cli", "lab", "image", "--print-tag"],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.podman
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[f"{p.parts[-3]}:{p.name}" for p in SCENARIOS])
def test_molecule_scenario(scenario: Path) -> None:
    role_dir = scenario.parents[1]
    env = {**os.environ, "BMAI_NODE_IMAGE": _node_image(), "ANSIBLE_FORCE_COLOR": "0", "PY_COLORS": "0",
           "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "collections")}
    t0 = time.monotonic()
    proc = subprocess.run([str(Path(sys.executable).with_name("molecule")), "-c",
                           str(ROOT / ".config/molecule/config.yml"), "test", "-s", scenario.name],
                          cwd=role_dir, env=env, capture_output=True, text=True, check=False)
    took = time.monotonic() - t0
    print(f"molecule {role_dir.name}:{scenario.name} took {took:.0f} s")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
