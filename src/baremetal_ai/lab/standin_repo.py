"""A stand-in for NVIDIA's CUDA apt repository, for the lab and the cuda role's Molecule scenario.

NVIDIA's repository is not reachable from here and the real toolkit is gigabytes. This builds a flat apt
repository of small packages with the repository's names, versions and file layout: `cuda-toolkit-<M>-<m>` at
`<version>-1`, each a `/usr/local/cuda-<M>.<m>` tree with `bin/nvcc` (prints what nvcc --version prints, nothing
else), `lib64/libcudart.so.<M>.<m>` (empty) and `version.json`. Every package's Description says it is a stand-in.
The cuda role then runs its real repository path against it (apt-cache madison, exact pin, hold, alternatives,
profile script, the nvcc check); only the keyring step is off (`cuda_repo_manage: false`: "a mirror manages it").

    {usage}

The repository is rebuilt only when what it should hold changes (a stamp file records it).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from baremetal_ai.errors import UserError

USAGE = "python -m baremetal_ai.lab.standin_repo DEST [VERSION:PACKAGE_VERSION:NVCC_BUILD ...]"
__doc__ = (__doc__ or "").replace("{usage}", USAGE)
# (CUDA major.minor, package version, nvcc build string). The lab's default: 12.2, the newest CUDA that
# Debian 12's driver branch (535) runs without compatibility packages.
LAB_TOOLKITS: tuple[tuple[str, str, str], ...] = (("12.2", "12.2.2-1", "V12.2.140"),)
STAMP = ".standin-stamp"
# Where lab nodes see the repository (a read-only bind mount) and the apt source line that names it.
NODE_PATH = "/srv/baremetal-lab-nvidia-repo"
SOURCE_LINE = f"deb [trusted=yes] file:{NODE_PATH} ./\n"


def package_name(cuda_version: str) -> str:
    major, _, minor = cuda_version.partition(".")
    return f"cuda-toolkit-{major}-{minor}"


def parse_spec(spec: str) -> tuple[str, str, str]:
    parts = spec.split(":")
    if len(parts) != 3 or not all(parts):
        raise UserError(f"toolkit {spec!r} is not VERSION:PACKAGE_VERSION:NVCC_BUILD, e.g. 12.4:12.4.0-1:V12.4.99")
    return parts[0], parts[1], parts[2]


def _build_deb(work: Path, out: Path, cuda_version: str, pkg_version: str, nvcc_build: str) -> Path:
    name = package_name(cuda_version)
    root = work / f"{name}_{pkg_version}"
    prefix = root / "usr" / "local" / f"cuda-{cuda_version}"
    (root / "DEBIAN").mkdir(parents=True)
    (prefix / "bin").mkdir(parents=True)
    (prefix / "lib64").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {pkg_version}\nArchitecture: all\nMaintainer: baremetal-ai lab\n"
        f"Description: stand-in for NVIDIA's CUDA {cuda_version} toolkit (baremetal-ai lab; no compiler)\n")
    nvcc = prefix / "bin" / "nvcc"
    nvcc.write_text("#!/bin/sh\n# Stand-in: prints what NVIDIA's nvcc --version prints; compiles nothing.\n"
                    "echo 'nvcc: NVIDIA (R) Cuda compiler driver'\n"
                    f"echo 'Cuda compilation tools, release {cuda_version}, {nvcc_build}'\n")
    nvcc.chmod(0o755)
    (prefix / "version.json").write_text(
        json.dumps({"cuda": {"name": "CUDA SDK", "version": pkg_version.rsplit("-", 1)[0]}}) + "\n")
    (prefix / "lib64" / f"libcudart.so.{cuda_version}").touch()
    deb = out / f"{name}_{pkg_version}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-b", str(root), str(deb)],
                   check=True, capture_output=True, text=True)
    return deb


def build(dest: Path, toolkits: tuple[tuple[str, str, str], ...] = LAB_TOOLKITS) -> bool:
    """Build the repository in `dest` (debs + Packages). Returns False when it already held exactly this."""
    stamp = hashlib.sha256(json.dumps([list(t) for t in toolkits]).encode() + Path(__file__).read_bytes())
    if (dest / STAMP).is_file() and (dest / STAMP).read_text().strip() == stamp.hexdigest():
        return False
    if not shutil.which("dpkg-deb"):
        raise UserError("dpkg-deb is missing (it builds the lab's stand-in CUDA repository): apt-get install dpkg")
    tmp_out = Path(tempfile.mkdtemp(prefix=".standin-", dir=dest.parent if dest.parent.exists() else None))
    try:
        index = []
        with tempfile.TemporaryDirectory() as work:
            for version, pkg_version, build_id in toolkits:
                deb = _build_deb(Path(work), tmp_out, version, pkg_version, build_id)
                control = subprocess.run(["dpkg-deb", "-f", str(deb)], check=True, capture_output=True,
                                         text=True).stdout
                data = deb.read_bytes()
                index.append(control.rstrip("\n") + f"\nFilename: ./{deb.name}\nSize: {len(data)}\n"
                             f"SHA256: {hashlib.sha256(data).hexdigest()}\n")
        (tmp_out / "Packages").write_text("\n".join(index))
        (tmp_out / STAMP).write_text(stamp.hexdigest() + "\n")
        tmp_out.chmod(0o755)
        for f in tmp_out.iterdir():
            f.chmod(0o644)
        if dest.exists():
            shutil.rmtree(dest)
        tmp_out.rename(dest)
    finally:
        shutil.rmtree(tmp_out, ignore_errors=True)
    return True


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print(f"usage: {USAGE}", file=sys.stderr)
        return 2
    try:
        toolkits = tuple(parse_spec(s) for s in args[1:]) or LAB_TOOLKITS
        dest = Path(args[0]).resolve()
        built = build(dest, toolkits)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    listed = ", ".join(f"{package_name(t[0])} {t[1]}" for t in toolkits)
    print(f"{'built' if built else 'up to date'}: {dest} ({listed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
