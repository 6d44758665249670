#!/usr/bin/env python3
"""Times the drift check (playbooks/drift.yml --check --diff) on 3 and 8 lab nodes and writes the table into
benchmarks/README.md between the DRIFT-BENCH markers.

For each size: `lab up` (lab name `drift8`), one converge (records the baseline; timed), one drift run to warm
the controller (SSH masters, fact gathering), then --repeat warm drift runs as make lab and the nightly job start
them (strategy baremetal_linear: over Mitogen; the median is reported), then --repeat warm runs with Ansible's plain
linear strategy (BAREMETAL_MITOGEN=0) for comparison. The controller's CPU time (user+system of ansible-playbook
and its workers) is recorded too: the lab nodes share this machine's cores. The lab is taken down at the end.

    .venv/bin/python benchmarks/drift.py [--sizes 3 8] [--repeat 2] [--plain-repeat N] [--no-gpu-stack] [--no-write]

The lab nodes carry the GPU software stack (the lab's default); --no-gpu-stack measures them without it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "benchmarks" / "README.md"
NAME = "drift8"
BIN = Path(sys.executable).parent


def lab(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "baremetal_ai.cli", "lab", args[0], "--name", NAME, *args[1:]],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def playbook(args: list[str], env: dict[str, str]) -> tuple[float, int, str, float]:
    """(wall seconds, exit status, output tail, controller CPU seconds of the run)"""
    t0, c0 = time.monotonic(), os.times()
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(ROOT / "inventories" / NAME), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    c1 = os.times()
    cpu = (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)
    return time.monotonic() - t0, proc.returncode, proc.stdout[-3000:] + proc.stderr[-2000:], cpu


def measure(size: int, repeat: int, out: Path, plain_repeat: int, gpu_stack: bool = True) -> dict:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    denv = {**env, "ANSIBLE_STRATEGY": "baremetal_linear", "BAREMETAL_MITOGEN": "1", "ANSIBLE_CACHE_PLUGIN": "memory"}
    row: dict = {"nodes": size, "gpu_stack": gpu_stack}
    lab("down")
    try:
        t0 = time.monotonic()
        lab("up", "--nodes", str(size), *([] if gpu_stack else ["--no-gpu-stack"]))
        row["lab_up_s"] = round(time.monotonic() - t0, 1)
        row["converge_s"], rc, tail, _ = playbook(["site.yml", "-e", f"drift_dir={out}"], env)
        if rc != 0:
            sys.exit(f"converge of {size} nodes failed:\n{tail}")
        row["converge_s"] = round(row["converge_s"], 1)
        drift = ["playbooks/drift.yml", "--check", "--diff", "-e", f"drift_dir={out}"]
        first, rc, tail, _ = playbook([*drift, "-e", f"drift_run_id=bench{size}-first"], denv)
        if rc != 0:
            sys.exit(f"drift run on {size} nodes found drift right after converge (exit {rc}):\n{tail}")
        row["drift_first_s"] = round(first, 1)
        for key, env_run, n in (("mitogen", denv, repeat), ("plain", {**denv, "BAREMETAL_MITOGEN": "0"}, plain_repeat)):
            walls, cpus = [], []
            for i in range(n):
                s, rc, tail, cpu = playbook([*drift, "-e", f"drift_run_id=bench{size}-{key}{i}"], env_run)
                if rc != 0:
                    sys.exit(f"warm drift run ({key}) on {size} nodes: exit {rc}\n{tail}")
                walls.append(round(s, 1))
                cpus.append(round(cpu, 1))
            row[f"drift_{key}_s"], row[f"drift_{key}_cpu_s"] = walls, cpus
        row["load_after"] = round(os.getloadavg()[0], 1)
    finally:
        lab("down")
    print(json.dumps(row), flush=True)
    return row


def table(rows: list[dict]) -> str:
    def runs(xs: list[float]) -> str:
        return f"{', '.join(f'{x} s' for x in xs)} (**{statistics.median(xs):.1f} s**)" if xs else "not run"

    def cpu(xs: list[float]) -> str:
        return f"{statistics.median(xs):.1f} s" if xs else "-"

    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {platform.node() or 'the development machine'} "
             f"({os.cpu_count()} cores, which the podman lab nodes share), `benchmarks/drift.py`:", "",
             "| nodes | GPU stack | lab up | converge (records baseline) | first drift run "
             "| warm drift runs, Mitogen (shipped) | controller CPU | warm, plain linear | controller CPU "
             "| load average after |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        stack = "yes" if r.get("gpu_stack", True) else "no"
        lines.append(f"| {r['nodes']} | {stack} | {r['lab_up_s']} s | {r['converge_s']} s | {r['drift_first_s']} s | "
                     f"{runs(r['drift_mitogen_s'])} | {cpu(r['drift_mitogen_cpu_s'])} | "
                     f"{runs(r['drift_plain_s'])} | {cpu(r['drift_plain_cpu_s'])} | "
                     f"{r.get('load_after', '?')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[3, 8])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--plain-repeat", type=int, help="warm runs with plain linear (default --repeat; 0 skips them)")
    ap.add_argument("--no-gpu-stack", dest="gpu_stack", action="store_false",
                    help="lab nodes without the GPU software stack (lab up --no-gpu-stack)")
    ap.add_argument("--no-write", action="store_true", help="print the table, leave README.md alone")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plain = a.repeat if a.plain_repeat is None else a.plain_repeat
        rows = [measure(n, a.repeat, Path(tmp), plain, a.gpu_stack) for n in a.sizes]
    text = table(rows)
    print(text)
    if a.no_write:
        return
    readme = README.read_text()
    block = f"<!-- DRIFT-BENCH:BEGIN -->\n{text}\n<!-- DRIFT-BENCH:END -->"
    if "<!-- DRIFT-BENCH:BEGIN -->" in readme:
        readme = re.sub(r"<!-- DRIFT-BENCH:BEGIN -->.*<!-- DRIFT-BENCH:END -->", lambda _: block, readme, flags=re.S)
    else:
        readme = readme.rstrip("\n") + "\n\n## Drift check (`benchmarks/drift.py`)\n\n" + block + "\n"
    README.write_text(readme)


if __name__ == "__main__":
    main()
