"""The lab's BMCs: one sushy-tools Redfish emulator per lab, one fake system per node, on 127.0.0.1 with
TLS (a per-lab CA) and HTTP basic auth (a generated password kept 0600)."""

from __future__ import annotations

import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from baremetal_ai.errors import UserError
from baremetal_ai.lab import procs, tls
from baremetal_ai.lab.redfish import Bmc

HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def port_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def pick_port(requested: int | None, taken: set[int]) -> int:
    """An explicit port must be free (else a clear error); with none, the first free port from 8000 up."""
    if requested:
        if requested in taken or not port_free(requested):
            raise UserError(f"port {requested} on {HOST} is taken: pass --bmc-port with a free port "
                            f"(or stop what listens there)")
        return requested
    for port in range(DEFAULT_PORT, DEFAULT_PORT + 100):
        if port not in taken and port_free(port):
            return port
    raise UserError(f"no free port for the BMC emulator in {DEFAULT_PORT}-{DEFAULT_PORT + 99}: pass --bmc-port")


def emulator_binary() -> str:
    cand = Path(sys.executable).with_name("sushy-emulator")
    if cand.exists():
        return str(cand)
    found = shutil.which("sushy-emulator")
    if not found:
        raise UserError("sushy-emulator is not installed: run `make bootstrap` (it comes with sushy-tools)")
    return found


def write_config(d: Path, port: int, systems: list[dict[str, Any]]) -> Path:
    conf = d / "emulator.conf"
    lines = [
        "# sushy-tools emulator config, written by `baremetal lab up`.",
        f"SUSHY_EMULATOR_LISTEN_IP = {HOST!r}",
        f"SUSHY_EMULATOR_LISTEN_PORT = {port}",
        f"SUSHY_EMULATOR_SSL_CERT = {str(d / 'server.pem')!r}",
        f"SUSHY_EMULATOR_SSL_KEY = {str(d / 'server.key')!r}",
        f"SUSHY_EMULATOR_AUTH_FILE = {str(d / 'htpasswd')!r}",
        f"SUSHY_EMULATOR_STATE_DIR = {str(d / 'state')!r}",
        "SUSHY_EMULATOR_FAKE_DRIVER = True",
        f"SUSHY_EMULATOR_FAKE_SYSTEMS = {systems!r}",
    ]
    conf.write_text("\n".join(lines) + "\n")
    return conf


def setup(d: Path, lab: str) -> tuple[str, str]:
    """TLS material and credentials for a new lab BMC. Returns (username, password)."""
    tls.make_ca_and_server_cert(d, lab)
    (d / "state").mkdir(parents=True, exist_ok=True)
    return tls.make_credentials(d)


def start(d: Path, port: int, systems: list[dict[str, Any]]) -> Bmc:
    conf = write_config(d, port, systems)
    pidfile = d / "emulator.pid"
    if not procs.alive(pidfile, str(d)):
        procs.start([emulator_binary(), "--config", str(conf)], pidfile, d / "emulator.log", str(d),
                    env={"SUSHY_EMULATOR_CONFIG": str(conf)})
    bmc = client(d, port)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if bmc.ready():
            return bmc
        if not procs.alive(pidfile, str(d)):
            break
        time.sleep(0.3)
    tail = (d / "emulator.log").read_text(errors="replace").strip().splitlines()[-3:]
    raise UserError(f"the Redfish emulator did not come up on {HOST}:{port}: {' | '.join(tail)} "
                    f"(see {d / 'emulator.log'})")


def client(d: Path, port: int, username: str = "admin") -> Bmc:
    return Bmc(f"https://{HOST}:{port}", username, (d / "password").read_text().strip(), str(d / "ca.pem"))


def stop(d: Path) -> bool:
    return procs.stop(d / "emulator.pid", str(d))
