"""Runs `molecule test` for every role scenario (create, converge, idempotence, verify, destroy), one pytest
test per scenario so the summary lists them.

The selected scenarios run BMAI_MOLECULE_JOBS at a time (default 2): a scenario spends much of its time waiting
on podman and on Ansible's per-task round trips, so two of them can share two cores (README.md "Timings" has the
measured suite time). Each scenario has its own instance name (molecule-<role>[-<scenario>]) and Molecule state
directory, so they do not touch each other. The first test to run starts them all; each waits for its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(p.parent for p in ROOT.glob("roles/*/molecule/*/molecule.yml"))
JOBS = max(1, int(os.environ.get("BMAI_MOLECULE_JOBS", "2")))


def _node_image() -> str:
    return subprocess.run([sys.executable, "-m", "baremetal_ai.cli", "lab", "image", "--print-tag"],
                          capture_output=True, text=True, check=True).stdout.strip()


def _run(scenario: Path, image: str) -> tuple[int, str, float]:
    role_dir = scenario.parents[1]
    env = {**os.environ, "BMAI_NODE_IMAGE": image, "ANSIBLE_FORCE_COLOR": "0", "PY_COLORS": "0",
           "ANSIBLE_COLLECTIONS_PATH": str(ROOT / "collections")}
    t0 = time.monotonic()
    proc = subprocess.run([str(Path(sys.executable).with_name("molecule")), "-c",
                           str(ROOT / ".config/molecule/config.yml"), "test", "-s", scenario.name],
                          cwd=role_dir, env=env, capture_output=True, text=True, check=False)
    return proc.returncode, (proc.stdout + proc.stderr)[-6000:], time.monotonic() - t0


def _id(p: Path) -> str:
    return f"{p.parts[-3]}:{p.name}"


@pytest.fixture(scope="module")
def runs(request: pytest.FixtureRequest):
    """Futures of every scenario selected in this session, started JOBS at a time, slowest roles first."""
    selected = [item.callspec.params["scenario"] for item in request.session.items
                if item.module is request.module and hasattr(item, "callspec")]
    first = ("nvidia_driver", "nccl", "cuda")  # the longest (about 2-4 min each): start them early
    selected.sort(key=lambda p: (p.parts[-3] not in first, first.index(p.parts[-3]) if p.parts[-3] in first else 0))
    image = _node_image()
    pool = ThreadPoolExecutor(max_workers=JOBS, thread_name_prefix="molecule")
    futures: dict[Path, Future] = {s: pool.submit(_run, s, image) for s in selected}
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.podman
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[_id(p) for p in SCENARIOS])
def test_molecule_scenario(scenario: Path, runs: dict[Path, Future]) -> None:
    rc, tail, took = runs[scenario].result()
    print(f"molecule {_id(scenario)} took {took:.0f} s ({JOBS} at a time)")
    assert rc == 0, tail
