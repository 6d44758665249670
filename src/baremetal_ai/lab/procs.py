"""Background host processes of a lab (BMC emulator, power bridge, apt cache), tracked by PID files.

The host may not run systemd as PID 1, so the lab starts and stops its own daemons. A PID file is only
trusted when the process's command line still mentions the lab's state directory: a recycled PID is never
killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def start(cmd: Sequence[str], pidfile: Path, logfile: Path, marker: str, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> int:
    """Start `cmd` in its own session (survives the CLI, ignores the CLI's Ctrl-C); write its PID.

    Returns once the child has exec'd (its command line shows `marker`): until then /proc still shows the
    parent's command line, and `alive()` would wrongly report the new daemon dead."""
    if marker not in " ".join(cmd):
        raise ValueError(f"marker {marker!r} must appear in the command line")
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as log:
        proc = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True)
    pidfile.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + 10
    while proc.poll() is None and marker not in _cmdline(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc.pid


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pidfile: Path, marker: str) -> int | None:
    """The PID from `pidfile` if that process runs and its command line contains `marker`."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    if marker not in _cmdline(pid):
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return None
    except OSError:
        return None
    return pid


def stop(pidfile: Path, marker: str, timeout: float = 10.0) -> bool:
    """SIGTERM the process (and its session), then SIGKILL after `timeout`. True if one was stopped."""
    pid = alive(pidfile, marker)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return _forget(pidfile)
    except PermissionError:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pidfile, marker):
        time.sleep(0.1)
    if alive(pidfile, marker):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)
    return True


def _forget(pidfile: Path) -> bool:
    pidfile.unlink(missing_ok=True)
    return True


def pids_with_marker(marker: str) -> list[int]:
    """Every process whose command line mentions `marker` (finds daemons whose PID file was lost)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid() and marker in _cmdline(int(d.name)):
            out.append(int(d.name))
    return out
