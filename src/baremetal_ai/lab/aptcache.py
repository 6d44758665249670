"""A per-lab apt cache (apt-cacher-ng) on the lab's management bridge, so repeated converges don't
re-download packages. The cache directory outlives the lab (it is a cache); `lab down --purge-cache`
removes it."""

from __future__ import annotations

import shutil
import socket
import time
import urllib.request
from pathlib import Path

from baremetal_ai.errors import UserError
from baremetal_ai.lab import procs
from baremetal_ai.lab.image import Mirrors

BINARY = "/usr/sbin/apt-cacher-ng"
CACHE_ROOT = Path("/var/cache/baremetal-ai/apt-cacher-ng")


def free_port(address: str, start: int = 3142, tries: int = 50) -> int:
    for port in range(start, start + tries):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((address, port))
            except OSError:
                continue
            return port
    raise UserError(f"no free port for the apt cache on {address} in {start}-{start + tries - 1}")


def address_present(address: str) -> bool:
    """Whether `address` is configured on this host (a bind to it succeeds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, 0))
        except OSError:
            return False
        return True


def write_config(conf_dir: Path, mirrors: Mirrors) -> None:
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "backends_debian").write_text(mirrors.main.rstrip("/") + "/\n")
    (conf_dir / "backends_debian_security").write_text(mirrors.security.rstrip("/") + "/\n")
    (conf_dir / "acng.conf").write_text(
        "# Written by baremetal-ai for one lab. Backends pinned to the host's own mirrors: the built-in\n"
        "# mirror lists name hosts that may not resolve here (503 Host not found).\n"
        "SupportDir: /usr/lib/apt-cacher-ng\n"
        "Remap-debrep: file:deb_mirror*.gz /debian ; file:backends_debian\n"
        "Remap-secdeb: security.debian.org security.debian.org/debian-security deb.debian.org/debian-security"
        " /debian-security ; file:backends_debian_security\n"
        "ExThreshold: 4\n"
    )


def start_on(state_dir: Path, lab: str, bind: str, port: int, mirrors: Mirrors) -> int:
    """Start the cache on `bind`:`port` (the management bridge's gateway). Returns the port."""
    if not Path(BINARY).exists():
        raise UserError("apt-cacher-ng is not installed: run `make bootstrap` (or `apt-get install apt-cacher-ng`)")
    d = state_dir / "aptcache"
    pidfile = d / "pid"
    if procs.alive(pidfile, str(d)):
        return int((d / "port").read_text())
    cache = CACHE_ROOT / lab
    for sub in (cache, d / "log", d / "run"):
        sub.mkdir(parents=True, exist_ok=True)
    write_config(d / "conf", mirrors)
    (d / "port").write_text(f"{port}\n")
    procs.start([BINARY, "-c", str(d / "conf"), "ForeGround=1", f"CacheDir={cache}", f"LogDir={d / 'log'}",
                 f"Port={port}", f"BindAddress={bind}", f"SocketPath={d / 'run' / 'socket'}",
                 f"PidFile={d / 'run' / 'acng.pid'}"], pidfile, d / "daemon.log", str(d))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((bind, port), timeout=1):
                return port
        except OSError:
            if not procs.alive(pidfile, str(d)):
                break
            time.sleep(0.2)
    tail = (d / "daemon.log").read_text(errors="replace").strip().splitlines()[-2:]
    raise UserError(f"apt-cacher-ng did not start on {bind}:{port}: {' '.join(tail)} (see {d / 'daemon.log'})")


def stop(state_dir: Path) -> bool:
    d = state_dir / "aptcache"
    return procs.stop(d / "pid", str(d))


def purge(lab: str) -> None:
    shutil.rmtree(CACHE_ROOT / lab, ignore_errors=True)


def probe(bind: str, port: int, url: str) -> int:
    """HTTP status of `url` fetched through the cache (used by tests and `lab status`)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": f"http://{bind}:{port}"}))
    with opener.open(url, timeout=20) as r:
        return r.status
