#!/usr/bin/env python3
"""Times `baremetal lab up` (cold image and warm image) and `lab down` for 3 and 8 nodes, and writes the
table into benchmarks/README.md between the LAB-BENCH markers.

cold: the node and base images are removed first, so `lab up` includes debootstrap + image build.
warm: the image exists; `lab up` creates networks, BMC emulator, apt cache, nodes, and waits for sshd.
Each warm figure is the median of --repeat runs. Uses the lab name `bench`; needs root and podman.

    .venv/bin/python benchmarks/lab.py [--sizes 3 8] [--repeat 3] [--no-cold]
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "benchmarks" / "README.md"
NAME = "bench"


def cli(*args: str) -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "baremetal_ai.cli", "lab", *args], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def drop_images() -> None:
    """Remove node and base images; refuses (never forces) while any container still uses them."""
    users = subprocess.run(["podman", "ps", "-a", "-q", "--filter", "label=io.baremetal-ai.lab"],
                           capture_output=True, text=True).stdout.split()
    if users:
        sys.exit("benchmarks/lab.py: lab containers exist; take every lab down first (cold runs remove the image)")
    for repo in ("localhost/baremetal-ai-node", "localhost/baremetal-ai-base"):
        ids = subprocess.run(["podman", "images", "-q", repo], capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["podman", "rmi", *ids], check=True, stdout=subprocess.DEVNULL)


def machine() -> str:
    cpus = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    mem = round(int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024)
    pod = subprocess.run(["podman", "--version"], capture_output=True, text=True).stdout.strip()
    return f"{platform.platform()}, {cpus} cores, {mem} GiB RAM, {pod}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[3, 8])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-image runs")
    args = ap.parse_args()
    cli("down", "--name", NAME)
    rows = []
    for n in args.sizes:
        cold = None
        if not args.no_cold:
            drop_images()
            cold = cli("up", "--name", NAME, "--nodes", str(n))
            cli("down", "--name", NAME)
        ups, downs = [], []
        for _ in range(args.repeat):
            ups.append(cli("up", "--name", NAME, "--nodes", str(n)))
            downs.append(cli("down", "--name", NAME))
        rows.append((n, cold, statistics.median(ups), max(ups), statistics.median(downs)))
        print(f"{n} nodes: cold up {f'{cold:.1f} s' if cold else 'not run'}, warm up median {rows[-1][2]:.1f} s "
              f"(max {rows[-1][3]:.1f}), down median {rows[-1][4]:.1f} s", flush=True)
    table = [f"Measured {time.strftime('%Y-%m-%d')} on {machine()}; warm = median of {args.repeat} runs.", "",
             "| nodes | `lab up` cold image | `lab up` warm image (median / max) | `lab down` (median) |",
             "|---:|---:|---:|---:|"]
    for n, cold, up, upmax, down in rows:
        table.append(f"| {n} | {f'{cold:.1f} s' if cold else 'not run'} | {up:.1f} s / {upmax:.1f} s | {down:.1f} s |")
    text = README.read_text()
    block = "<!-- LAB-BENCH:BEGIN -->\n" + "\n".join(table) + "\n<!-- LAB-BENCH:END -->"
    text = re.sub(r"<!-- LAB-BENCH:BEGIN -->.*?<!-- LAB-BENCH:END -->", lambda _: block, text, flags=re.S)
    README.write_text(text)
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
