"""Builds the lab node image without a registry: debootstrap → `podman import` → `podman build`.

The image tag carries a content hash of the recipe (this package's node-image/ directory, the base image
and the mirror URLs), so the image is rebuilt exactly when its recipe changes and never otherwise.
"""

from __future__ import annotations

import fcntl
import hashlib
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from baremetal_ai.errors import UserError
from baremetal_ai.lab import podman

RECIPE_DIR = Path(__file__).with_name("node-image")
SUITE = "bookworm"
BASE_REPO = "localhost/baremetal-ai-base"
NODE_REPO = "localhost/baremetal-ai-node"
LOCK = Path("/var/tmp/baremetal-ai-image.lock")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECMIRROR = "http://deb.debian.org/debian-security"


@dataclass(frozen=True)
class Mirrors:
    main: str
    security: str


def _uris_from_sources(text: str) -> list[tuple[str, str]]:
    """(uri, suites) pairs from deb822 `.sources` text or one-line `sources.list` text."""
    pairs: list[tuple[str, str]] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, flags=re.M))
        if "URIs" in fields:
            pairs += [(u, fields.get("Suites", "")) for u in fields["URIs"].split()]
    for line in text.splitlines():
        m = re.match(r"^\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
        if m:
            pairs.append((m.group(1), m.group(2)))
    return pairs


def host_mirrors(apt_dir: Path = Path("/etc/apt")) -> Mirrors:
    """The Debian mirrors this host already uses, so no host name is hard-coded in the lab."""
    texts = []
    for p in [apt_dir / "sources.list", *sorted((apt_dir / "sources.list.d").glob("*"))]:
        if p.is_file() and p.suffix in (".list", ".sources", ""):
            texts.append(p.read_text(errors="replace"))
    main = security = None
    for uri, suites in _uris_from_sources("\n\n".join(texts)):
        uri = uri.rstrip("/")
        if "security" in suites or uri.endswith("debian-security"):
            security = security or uri
        elif uri.endswith("/debian"):
            main = main or uri
    main = main or DEFAULT_MIRROR
    return Mirrors(main=main, security=security or main.rsplit("/", 1)[0] + "/debian-security")


def recipe_hash(mirrors: Mirrors) -> str:
    h = hashlib.sha256()
    h.update(f"{SUITE}\n{mirrors.main}\n{mirrors.security}\n".encode())
    for p in sorted(RECIPE_DIR.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            h.update(p.relative_to(RECIPE_DIR).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:12]


def base_tag(mirrors: Mirrors) -> str:
    digest = hashlib.sha256(f"minbase {SUITE} {mirrors.main}".encode()).hexdigest()[:12]
    return f"{BASE_REPO}:{SUITE}-{digest}"


def node_tag(mirrors: Mirrors | None = None) -> str:
    mirrors = mirrors or host_mirrors()
    return f"{NODE_REPO}:{SUITE}-{recipe_hash(mirrors)}"


def _log(msg: str) -> None:
    print(f"[lab image] {msg}", flush=True)


def _build_base(tag: str, mirrors: Mirrors) -> None:
    if not shutil.which("debootstrap"):
        raise UserError("debootstrap is not installed: run `make bootstrap` (or `apt-get install debootstrap`)")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bmai-rootfs-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        _log(f"debootstrap {SUITE} from {mirrors.main} (about 30 s)")
        proc = subprocess.run(["debootstrap", "--variant=minbase", SUITE, str(rootfs), mirrors.main],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise UserError(f"debootstrap failed ({'; '.join(tail)}): check that {mirrors.main} is reachable")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imp = subprocess.run([podman.require_podman(), "import", "--change", f"LABEL {podman.LABEL}.image=base",
                              "-", tag], stdin=tar.stdout, capture_output=True, text=True, check=False)
        tar.wait()
        if imp.returncode != 0 or tar.returncode != 0:
            raise UserError(f"podman import of the base image failed: {imp.stderr.strip()}")
    _log(f"base image {tag} built in {time.monotonic() - t0:.0f} s")


def ensure_image(force: bool = False) -> str:
    """Return the node image tag, building the base and node images only if missing or forced.

    Builds are serialized by a lock file, so two labs (or a lab and Molecule) never build at once; rootfs
    directories left by an interrupted build are removed under that lock."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for stale in Path("/var/tmp").glob("bmai-rootfs-*"):
            shutil.rmtree(stale, ignore_errors=True)
        return _ensure_image_locked(force)


def _ensure_image_locked(force: bool) -> str:
    mirrors = host_mirrors()
    tag = node_tag(mirrors)
    if podman.exists("image", tag) and not force:
        _log(f"{tag} is up to date")
        return tag
    btag = base_tag(mirrors)
    if force or not podman.exists("image", btag):
        _build_base(btag, mirrors)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bmai-build-") as tmp:
        ctx = Path(tmp)
        for p in RECIPE_DIR.iterdir():
            if p.is_file():
                shutil.copy2(p, ctx / p.name)
        cf = ctx / "Containerfile"
        cf.write_text(cf.read_text().replace("{{BASE_IMAGE}}", btag))
        _log(f"building {tag} (about 25 s)")
        proc = subprocess.run([podman.require_podman(), "build", "--label", f"{podman.LABEL}.image=node",
                               "--build-arg", f"MIRROR={mirrors.main}", "--build-arg",
                               f"SECMIRROR={mirrors.security}", "-t", tag, str(ctx)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = "; ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise UserError(f"building the node image failed: {tail}")
    _log(f"node image {tag} built in {time.monotonic() - t0:.0f} s")
    _prune_old(tag)
    return tag


def _prune_old(keep: str) -> None:
    """Remove node images of older recipes (not in use by any container)."""
    rows = podman.run_json(["images", "--filter", f"reference={NODE_REPO}", "--format", "json"])
    for r in rows:
        names = r.get("Names") or []
        if keep not in names:
            podman.run(["rmi", r["Id"]], check=False)
