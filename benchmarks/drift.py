#!/usr/bin/env python3
"""Times the drift check (playbooks/drift.yml --check --diff) on 3 and 8 lab nodes and writes the table into
benchmarks/README.md between the DRIFT-BENCH markers.

For each size: `lab up` (lab name `drift8`), one converge (records the baseline; timed), one drift run to warm
the controller (SSH masters, fact gathering), then --repeat warm drift runs (each timed; the median is reported).
With --mitogen DIR (a `pip install --target DIR mitogen` tree), the warm runs are repeated with Mitogen's
linear strategy, an optional speed-up (never required by the project). The lab is taken down at the end.

    .venv/bin/python benchmarks/drift.py [--sizes 3 8] [--repeat 2] [--mitogen /tmp/mitogen-pkg]
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


def playbook(args: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    t0 = time.monotonic()
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(ROOT / "inventories" / NAME), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    return time.monotonic() - t0, proc.returncode, proc.stdout[-3000:] + proc.stderr[-2000:]


def measure(size: int, repeat: int, mitogen: Path | None, out: Path) -> dict:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    row: dict = {"nodes": size}
    lab("down")
    try:
        t0 = time.monotonic()
        lab("up", "--nodes", str(size))
        row["lab_up_s"] = round(time.monotonic() - t0, 1)
        row["converge_s"], rc, tail = playbook(["site.yml", "-e", f"drift_dir={out}"], env)
        if rc != 0:
            sys.exit(f"converge of {size} nodes failed:\n{tail}")
        drift = ["playbooks/drift.yml", "--check", "--diff", "-e", f"drift_dir={out}"]
        first, rc, tail = playbook([*drift, "-e", f"drift_run_id=bench{size}-first"], env)
        if rc != 0:
            sys.exit(f"drift run on {size} nodes found drift right after converge (exit {rc}):\n{tail}")
        row["drift_first_s"] = round(first, 1)
        warm = []
        for i in range(repeat):
            s, rc, tail = playbook([*drift, "-e", f"drift_run_id=bench{size}-warm{i}"], env)
            if rc != 0:
                sys.exit(f"warm drift run on {size} nodes: exit {rc}\n{tail}")
            warm.append(round(s, 1))
            row["load_after"] = round(os.getloadavg()[0], 1)
        row["drift_warm_s"] = warm
        if mitogen:
            menv = {**env, "ANSIBLE_STRATEGY_PLUGINS": str(mitogen / "ansible_mitogen" / "plugins" / "strategy"),
                    "ANSIBLE_STRATEGY": "mitogen_linear",
                    "PYTHONPATH": f"{mitogen}:{env.get('PYTHONPATH', '')}".rstrip(":")}
            mw = []
            for i in range(repeat):
                s, rc, tail = playbook([*drift, "-e", f"drift_run_id=bench{size}-mitogen{i}"], menv)
                if rc != 0:
                    sys.exit(f"mitogen drift run on {size} nodes: exit {rc}\n{tail}")
                mw.append(round(s, 1))
            row["drift_warm_mitogen_s"] = mw
        row["converge_s"] = round(row["converge_s"], 1)
    finally:
        lab("down")
    print(json.dumps(row), flush=True)
    return row


def table(rows: list[dict]) -> str:
    lines = [f"Measured {time.strftime('%Y-%m-%d')} on {platform.node() or 'the development machine'} "
             f"({os.cpu_count()} cores, shared with other work; podman lab nodes), `benchmarks/drift.py`:", "",
             "| nodes | lab up | converge (records baseline) | first drift run | warm drift runs (median) | "
             "warm, Mitogen (optional) | load average after |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        mit = r.get("drift_warm_mitogen_s")
        lines.append(f"| {r['nodes']} | {r['lab_up_s']} s | {r['converge_s']} s | {r['drift_first_s']} s | "
                     f"{', '.join(f'{x} s' for x in r['drift_warm_s'])} "
                     f"(**{statistics.median(r['drift_warm_s']):.1f} s**) | "
                     + (f"{', '.join(f'{x} s' for x in mit)} (**{statistics.median(mit):.1f} s**)" if mit else "—")
                     + f" | {r.get('load_after', '?')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[3, 8])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--mitogen", type=Path, default=None)
    ap.add_argument("--no-write", action="store_true", help="print the table, leave README.md alone")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(n, a.repeat, a.mitogen, Path(tmp)) for n in a.sizes]
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
