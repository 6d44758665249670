"""The Redfish dynamic provider against a real BMC emulator (sushy-tools), on 127.0.0.1 only.

A module-scoped ``sushy-emulator`` (fake driver, TLS with a per-test CA, HTTP basic auth) serves two fake
systems: node-a (starts Off) and node-b (starts On). Provider methods are called directly, as the Pulumi
engine would (docs/pulumi-reference.md §2: dynamic providers are never run under mocks). Faults come from a
small HTTPS reverse proxy in this file that can answer 500 for the first N requests, or swallow a graceful
shutdown (an OS that ignores ACPI). ``sushy-static`` serves a mockup built from
tests/fixtures/redfish/derived/gpu-in-pcie-only.json: a BMC that lists GPUs only as PCIeDevices.

Emulator facts the tests lean on (docs/platform.md "Redfish", sushy-tools 2.2 fakedriver.py): a power change
shows 1-11 s later, applied lazily on the next read (the provider polls every 0.5 s); the boot override reads
back ``BootSourceOverrideEnabled: Continuous`` even when ``Once`` was sent, so only the target is asserted;
system names redirect (307) to UUID paths.

Tests run in file order and share the emulator: node-a goes Off -> On -> Off in the lifecycle test and is
left with a pending power change by the last test; node-b stays On until the forced-delete test.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dill
import pytest
import requests
from pulumi.dynamic.dynamic import serialize_provider

from baremetal_ai.declare.redfish import (
    RedfishAuthError,
    RedfishClient,
    RedfishError,
    RedfishServerProvider,
    RedfishTimeout,
)
from baremetal_ai.declare.redfish_inventory import read_inventory
from baremetal_ai.lab import bmc as labbmc
from baremetal_ai.lab import tls

NODE_A = "11111111-1111-1111-1111-111111111111"
NODE_B = "22222222-2222-2222-2222-222222222222"
MAC_B = "52:54:00:00:00:0b"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "redfish"
_ENV_DROP = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bin_next_to_python(name: str) -> str:
    path = Path(sys.executable).with_name(name)
    if not path.exists():
        pytest.skip(f"{name} is not installed next to {sys.executable} (sushy-tools)")
    return str(path)


@dataclass
class Bmc:
    endpoint: str
    username: str
    password: str
    ca: str
    cert: str
    key: str
    workdir: Path

    def props(self, **over: Any) -> dict[str, Any]:
        base = {"endpoint": self.endpoint, "username": self.username, "password": self.password,
                "ca_file": self.ca, "power_timeout_s": 30, "node_name": "gpu-node"}
        return {**base, **over}

    def client(self, system: str = "") -> RedfishClient:
        return RedfishClient(self.endpoint, self.username, self.password, self.ca, system=system)

    def system(self, uuid: str) -> dict[str, Any]:
        with self.client() as c:
            return c.get(f"/redfish/v1/Systems/{uuid}")


def wait_ready(url: str, verify: str, auth: tuple[str, str] | None, proc: subprocess.Popen[bytes], log: Path,
               deadline_s: float = 30) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            break
        try:
            if requests.get(url, auth=auth, verify=verify, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    proc.kill()
    pytest.fail(f"{url} did not come up: {log.read_text(errors='replace')[-2000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _ENV_DROP}
    return {**env, **extra}


@pytest.fixture(scope="module")
def bmc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bmc]:
    """sushy-emulator with the fake driver, TLS and basic auth, as `baremetal lab up` configures it."""
    exe = bin_next_to_python("sushy-emulator")
    d = tmp_path_factory.mktemp("bmc")
    ca, cert, key = tls.make_ca_and_server_cert(d, "test")
    user, password = tls.make_credentials(d)
    (d / "state").mkdir()
    port = free_port()
    systems = [
        {"uuid": NODE_A, "name": "node-a", "power_state": "Off", "external_notifier": False,
         "nics": [{"mac": "52:54:00:00:00:0a", "ip": "10.0.0.10"}]},
        {"uuid": NODE_B, "name": "node-b", "power_state": "On", "external_notifier": False,
         "nics": [{"mac": MAC_B, "ip": "10.0.0.11"}]},
    ]
    conf = labbmc.write_config(d, port, systems)
    log = d / "emulator.log"
    with log.open("wb") as out:
        # TMPDIR: the emulator downloads virtual-media images into tempfiles; keep them in the test dir.
        proc = subprocess.Popen([exe, "--config", str(conf)], stdout=out, stderr=subprocess.STDOUT,
                                env=child_env(SUSHY_EMULATOR_CONFIG=str(conf), TMPDIR=str(d)))
    endpoint = f"https://127.0.0.1:{port}"
    try:
        wait_ready(f"{endpoint}/redfish/v1/Systems", str(ca), (user, password), proc, log)
        yield Bmc(endpoint, user, password, str(ca), str(cert), str(key), d)
    finally:
        stop(proc)


class FaultProxy:
    """HTTPS reverse proxy to the emulator: answers 500 to the first ``fail_first`` requests, can swallow
    ``ComputerSystem.Reset`` requests of the types in ``swallow`` (answering 204), and logs every request."""

    def __init__(self, upstream: Bmc, fail_first: int = 0, swallow: tuple[str, ...] = ()) -> None:
        self.fail_first, self.swallow = fail_first, swallow
        self.log: list[tuple[str, str, dict[str, Any] | None]] = []
        self.failed = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                body = json.loads(raw) if raw else None
                with proxy._lock:
                    proxy.log.append((self.command, self.path, body))
                    fail = proxy.failed < proxy.fail_first
                    if fail:
                        proxy.failed += 1
                if fail:
                    self._send(500, {"error": {"code": "Base.1.0.InternalError", "message": "injected fault",
                                               "@Message.ExtendedInfo": [{"Message": "injected fault"}]}})
                    return
                if self.command == "POST" and isinstance(body, dict) and body.get("ResetType") in proxy.swallow:
                    self._send(204, None)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type",
                                                                                   "if-match")}
                r = requests.request(self.command, upstream.endpoint + self.path, data=raw or None, headers=headers,
                                     verify=upstream.ca, allow_redirects=False, timeout=30)
                self.send_response(r.status_code)
                for k in ("Content-Type", "Location", "ETag", "WWW-Authenticate"):
                    if k in r.headers:
                        self.send_header(k, r.headers[k])
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            def _send(self, code: int, doc: dict[str, Any] | None) -> None:
                data = json.dumps(doc).encode() if doc is not None else b""
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(upstream.cert, upstream.key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.endpoint = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy_factory(bmc: Bmc) -> Iterator[Any]:
    made: list[FaultProxy] = []

    def make(**kw: Any) -> FaultProxy:
        made.append(FaultProxy(bmc, **kw))
        return made[-1]

    yield make
    for p in made:
        p.close()


@pytest.fixture
def image_server(tmp_path: Path) -> Iterator[str]:
    """Plain HTTP on 127.0.0.1 serving a tiny "ISO": the emulator really downloads virtual media."""
    (tmp_path / "installer.iso").write_bytes(b"\0" * 4096)

    class Quiet(SimpleHTTPRequestHandler):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, directory=str(tmp_path), **kw)

        def log_message(self, *args: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/installer.iso"
    srv.shutdown()
    srv.server_close()


# --- tests -------------------------------------------------------------------------------------------------

def test_lifecycle_create_read_diff_update_delete(bmc: Bmc) -> None:
    """The whole life of a resource on node-a, as the engine drives it, with state checked in the emulator."""
    p = RedfishServerProvider()
    chk = p.check({}, bmc.props(system_id="node-a", boot_override="Pxe"))
    assert chk.failures == []
    inputs = chk.inputs
    assert inputs["power_state"] == "On" and inputs["verify_tls"] is True  # defaults filled in by check

    t0 = time.monotonic()
    created = p.create(inputs)
    took = time.monotonic() - t0
    # id: the canonical @odata.id after the emulator's 307 from the name "node-a"; nothing secret in it.
    assert created.id == f"/redfish/v1/Systems/{NODE_A}"
    assert bmc.password not in created.id
    outs = created.outs
    assert outs["password"] == bmc.password  # echoed under the input's name: the engine re-marks it secret
    assert outs["system_path"] == created.id
    assert outs["inventory"]["uuid"] == NODE_A and outs["inventory"]["manufacturer"] == "Sushy Emulator"
    assert outs["inventory"]["power_state"] == "On"
    assert outs["macs"] == ["52:54:00:00:00:0a"] and outs["gpu_count"] == 0
    assert outs["inventory"]["cpu"] == {"count": None, "model": "unknown"}  # emulator: summaries without counts
    # The power wait really waited for the emulator's 1-11 s delay, and never past the deadline.
    assert 0.5 < took < 30, took
    live = bmc.system(NODE_A)
    assert live["PowerState"] == "On"
    # Only the target: the emulator stores the device and always reads back Enabled=Continuous (Once ignored).
    assert live["Boot"]["BootSourceOverrideTarget"] == "Pxe"

    read = p.read(created.id, outs)
    assert read.id == created.id
    assert read.outs["power_state"] == "On" and read.outs["inventory"]["boot"]["target"] == "Pxe"
    assert read.inputs is not None and "inventory" not in read.inputs and read.inputs["password"] == bmc.password

    # diff receives old OUTPUTS: they repeat every input, so an unchanged program is no change.
    assert p.diff(created.id, read.outs, inputs).changes is False
    d = p.diff(created.id, read.outs, {**inputs, "power_state": "Off", "boot_override": "Cd"})
    assert d.changes is True and d.replaces == [] and not d.delete_before_replace
    d = p.diff(created.id, read.outs, {**inputs, "system_id": "node-b"})
    assert d.replaces == ["system_id"] and d.delete_before_replace is True
    d = p.diff(created.id, read.outs, {**inputs, "endpoint": bmc.endpoint.replace("127.0.0.1", "localhost")})
    assert d.replaces == ["endpoint"] and d.delete_before_replace is True
    assert p.diff(created.id, read.outs, {**inputs, "password": "rotated"}).replaces == []

    news = {**inputs, "power_state": "Off", "boot_override": "Cd"}
    upd = p.update(created.id, read.outs, news)
    assert upd.outs is not None
    assert upd.outs["power_state"] == "Off" and upd.outs["boot_override"] == "Cd"
    assert upd.outs["inventory"]["power_state"] == "Off" and upd.outs["password"] == bmc.password  # full outs
    live = bmc.system(NODE_A)
    assert live["PowerState"] == "Off" and live["Boot"]["BootSourceOverrideTarget"] == "Cd"

    t0 = time.monotonic()
    p.delete(created.id, upd.outs)  # already Off: releases without waiting
    assert time.monotonic() - t0 < 5
    assert bmc.system(NODE_A)["PowerState"] == "Off"


def test_create_by_mac_and_provider_pickles(bmc: Bmc) -> None:
    """No system_id: node-b is found by its NIC's MAC. The provider goes through dill as the SDK pickles it,
    and the copy (in the engine: another process) does the work."""
    s = serialize_provider(RedfishServerProvider())
    clone = dill.loads(base64.b64decode(s))
    props = clone.check({}, bmc.props(mac=MAC_B.upper(), node_name="n-b")).inputs
    res = clone.create(props)
    assert res.id == f"/redfish/v1/Systems/{NODE_B}"
    assert res.outs["inventory"]["nics"] == [{"id": MAC_B, "mac": MAC_B}]
    assert res.outs["power_state"] == "On"
    # Stateless: nothing on the instance, so the same bytes serialize again after use.
    assert serialize_provider(clone) == s


def test_virtual_media_boot_image(bmc: Bmc, image_server: str) -> None:
    """boot_image is inserted into the BMC's virtual CD (found through the Manager's VirtualMedia link, which
    on the emulator points at the System's collection), then ejected when the declaration drops it."""
    p = RedfishServerProvider()
    props = p.check({}, bmc.props(system_id="node-b", boot_override="Cd", boot_image=image_server)).inputs
    res = p.create(props)
    with bmc.client() as c:
        cd = c.get(f"/redfish/v1/Systems/{NODE_B}/VirtualMedia/Cd")
    assert cd["Inserted"] is True and cd["Image"] == image_server
    assert bmc.system(NODE_B)["Boot"]["BootSourceOverrideTarget"] == "Cd"

    news = p.check(props, {**props, "boot_override": "Pxe", "boot_image": None}).inputs
    upd = p.update(res.id, res.outs, news)
    assert upd.outs is not None and upd.outs["boot_image"] is None
    with bmc.client() as c:
        cd = c.get(f"/redfish/v1/Systems/{NODE_B}/VirtualMedia/Cd")
    assert not cd["Inserted"]
    assert bmc.system(NODE_B)["Boot"]["BootSourceOverrideTarget"] == "Pxe"
    assert bmc.system(NODE_B)["PowerState"] == "On"  # boot changes never power-cycle a running server


def test_check_rejects_bad_inputs(bmc: Bmc) -> None:
    p = RedfishServerProvider()
    bad = p.check({}, {"endpoint": "10.0.0.5", "username": "", "password": "x", "power_state": "Standby",
                       "boot_override": "Floppy", "boot_image": "file:///x.iso", "power_timeout_s": 0,
                       "ca_file": "/nonexistent/ca.pem"})
    by_key = {f.property: f.reason for f in bad.failures}
    assert "https:// or http://" in by_key["endpoint"] and "endpoint" in by_key["endpoint"]
    assert set(by_key) == {"endpoint", "username", "system_id", "power_state", "boot_override", "boot_image",
                           "power_timeout_s", "ca_file"}
    creds = p.check({}, bmc.props(system_id="x", endpoint="https://admin:pw@10.0.0.5"))
    assert [f.property for f in creds.failures] == ["endpoint"]
    # Values unknown at preview time are not judged.
    unknown = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
    assert p.check({}, bmc.props(system_id="x", endpoint=unknown, password=unknown)).failures == []


def test_wrong_password_fails_once_naming_bmc_and_system(bmc: Bmc, proxy_factory: Any) -> None:
    proxy = proxy_factory()
    p = RedfishServerProvider()
    t0 = time.monotonic()
    with pytest.raises(RedfishAuthError) as e:
        p.create({**bmc.props(system_id="node-a", password="wrong-password"), "endpoint": proxy.endpoint})
    assert time.monotonic() - t0 < 3
    msg = str(e.value)
    assert proxy.endpoint in msg and "node-a" in msg and "HTTP 401" in msg and "wrong-password" not in msg
    assert len(proxy.log) == 1  # no retry storm: a BMC may lock the account after a few failures


def test_read_of_a_vanished_system_drops_it(bmc: Bmc) -> None:
    """Refresh of a system the BMC no longer has: a blank id, which tells the engine the resource is gone."""
    res = RedfishServerProvider().read("/redfish/v1/Systems/decommissioned", bmc.props(system_id="decommissioned"))
    assert res.id is None and res.outs == {}


def test_bmc_down_fails_fast_after_bounded_retries(bmc: Bmc) -> None:
    endpoint = f"https://127.0.0.1:{free_port()}"  # nothing listens: connection refused
    t0 = time.monotonic()
    with pytest.raises(RedfishError) as e:
        RedfishServerProvider().create({**bmc.props(system_id="node-a"), "endpoint": endpoint})
    took = time.monotonic() - t0
    msg = str(e.value)
    assert endpoint in msg and "node-a" in msg and "after 4 attempts" in msg and "cannot connect" in msg
    assert 1.0 < took < 5, took  # 0.25 + 0.5 + 1 s of backoff between 4 tries


def test_transient_500s_are_retried(bmc: Bmc, proxy_factory: Any) -> None:
    """A BMC that answers 500 three times (busy, rebooting its web server) and then recovers."""
    proxy = proxy_factory(fail_first=3)
    p = RedfishServerProvider()
    props = {**bmc.props(system_id="node-b"), "endpoint": proxy.endpoint}
    res = p.read(f"/redfish/v1/Systems/{NODE_B}", props)
    assert res.outs["inventory"]["uuid"] == NODE_B
    assert proxy.failed == 3
    assert [m for m, _, _ in proxy.log[:4]] == ["GET"] * 4  # the same GET, tried until it got through


def test_persistent_500_gives_clear_error(bmc: Bmc, proxy_factory: Any) -> None:
    proxy = proxy_factory(fail_first=10_000)
    t0 = time.monotonic()
    with pytest.raises(RedfishError) as e:
        RedfishServerProvider().create({**bmc.props(system_id="node-b"), "endpoint": proxy.endpoint})
    assert time.monotonic() - t0 < 5
    msg = str(e.value)
    assert proxy.endpoint in msg and "node-b" in msg and "HTTP 500" in msg and "injected fault" in msg
    assert len(proxy.log) == 4  # bounded


def test_served_bmc_with_gpus_only_in_pcie_devices(bmc: Bmc, tmp_path: Path) -> None:
    """sushy-static serves derived/gpu-in-pcie-only.json over TLS; the reader finds both GPUs in PCIeDevices,
    the provider takes the server, and asking for an ISO fails clearly: this BMC has no virtual media."""
    exe = bin_next_to_python("sushy-static")
    docs = json.loads((FIXTURES / "derived" / "gpu-in-pcie-only.json").read_text())
    root = tmp_path / "mockup"
    for path, doc in docs.items():
        target = root / path.removeprefix("/redfish/v1").strip("/") / "index.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(doc))
    port = free_port()
    log = tmp_path / "static.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([exe, "-i", "127.0.0.1", "-p", str(port), "-m", str(root), "-c", bmc.cert,
                                 "-k", bmc.key], stdout=out, stderr=subprocess.STDOUT, env=child_env())
    endpoint = f"https://127.0.0.1:{port}"
    try:
        wait_ready(f"{endpoint}/redfish/v1/Systems", bmc.ca, None, proc, log)
        with RedfishClient(endpoint, "admin", "unused", bmc.ca) as c:
            inv = read_inventory(c.get_optional, "/redfish/v1/Systems/GPU-PCIE-1")
        assert [(g["source"], g["model"]) for g in inv["gpus"]] == [("PCIeDevices", "H100-SXM5-80GB")] * 2

        p = RedfishServerProvider()
        props = p.check({}, {**bmc.props(serial="S123456X4000001", boot_override="Pxe"),
                             "endpoint": endpoint}).inputs
        res = p.create(props)  # found by serial; PATCH/POST answer 204; PowerState already On
        assert res.id == "/redfish/v1/Systems/GPU-PCIE-1" and res.outs["gpu_count"] == 2

        with pytest.raises(RedfishError, match="no virtual CD/DVD") as e:
            p.create({**props, "boot_override": "UsbCd", "boot_image": "http://127.0.0.1:9/x.iso"})
        assert endpoint in str(e.value) and "GPU-PCIE-1" in str(e.value)
    finally:
        stop(proc)


def test_delete_forces_off_when_graceful_shutdown_is_ignored(bmc: Bmc, proxy_factory: Any) -> None:
    """node-b is On. The proxy swallows GracefulShutdown (an OS that ignores ACPI): after shutdown_timeout_s
    the provider sends ForceOff and waits for Off. Never anything that touches disks."""
    proxy = proxy_factory(swallow=("GracefulShutdown",))
    props = {**bmc.props(system_id="node-b", shutdown_timeout_s=1), "endpoint": proxy.endpoint}
    t0 = time.monotonic()
    RedfishServerProvider().delete(f"/redfish/v1/Systems/{NODE_B}", props)
    assert time.monotonic() - t0 < 30
    resets = [b["ResetType"] for m, _, b in proxy.log if m == "POST" and b and "ResetType" in b]
    assert resets == ["GracefulShutdown", "ForceOff"]
    assert {m for m, _, _ in proxy.log} <= {"GET", "POST"}  # no PATCH/DELETE of storage, no BIOS reset
    assert bmc.system(NODE_B)["PowerState"] == "Off"


def test_power_wait_respects_the_deadline(bmc: Bmc) -> None:
    """node-a is Off; power_timeout_s=0.2 against the emulator's 1-11 s delay: a timeout error naming the system
    and the state waited for, after about the deadline (not the whole transition)."""
    # The emulator applies the change at int(now) + randint(1, 11) s: starting in the first 0.3 s of a second
    # guarantees at least 0.7 s of delay, so a 0.2 s deadline always expires first.
    while time.time() % 1 > 0.3:
        time.sleep(0.02)
    t0 = time.monotonic()
    with pytest.raises(RedfishTimeout) as e:
        RedfishServerProvider().create(bmc.props(system_id="node-a", power_timeout_s=0.2))
    took = time.monotonic() - t0
    msg = str(e.value)
    assert NODE_A in msg and "PowerState On" in msg and bmc.endpoint in msg
    assert took < 2, took


_MOCKS_PROGRAM = """
import asyncio, json, pulumi
from pulumi.runtime.mocks import Mocks
seen = {}
class M(Mocks):
    def new_resource(self, args):
        seen.update(typ=args.typ, inputs=sorted(k for k in args.inputs if k != "__provider"))
        return "/redfish/v1/Systems/1", {**args.inputs, "gpu_count": 2}
    def call(self, args):
        return {}
pulumi.runtime.set_mocks(M(), project="p", stack="s", preview=False)
from baremetal_ai.declare.redfish import RedfishServer, RedfishServerArgs
r = RedfishServer("n1", RedfishServerArgs(endpoint="https://10.0.0.5", username="admin", password="pw",
                                          system_id="1"))
@pulumi.runtime.test
def run():
    return pulumi.Output.all(r.gpu_count, r.id).apply(lambda a: seen.update(gpu_count=a[0], id=a[1]))
run()
seen["password_secret"] = asyncio.get_event_loop().run_until_complete(r.password.is_secret())
print(json.dumps(seen))
"""


def test_resource_under_mocks_keeps_password_secret() -> None:
    """The Resource wrapper under pulumi mocks, in a child process (set_mocks is process-global and must not
    leak into other test modules): type token, inputs, typed outputs, and a plain-string password that comes
    back as a secret Output. The provider itself never runs under mocks (reference §2)."""
    from baremetal_ai.declare import redfish

    assert redfish.SECRET_OUTPUTS == ["password"]  # passed as additional_secret_outputs
    out = subprocess.run([sys.executable, "-c", _MOCKS_PROGRAM], capture_output=True, text=True, timeout=60,
                         env=child_env())
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["typ"] == "pulumi-python:dynamic/redfish:Server"
    assert {"endpoint", "username", "password", "system_id", "power_state", "power_timeout_s"} <= set(seen["inputs"])
    assert seen["gpu_count"] == 2 and seen["id"] == "/redfish/v1/Systems/1" and seen["password_secret"] is True
