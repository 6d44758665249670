"""Redfish backend of the declare stage: a Pulumi dynamic provider that takes an owned server under management.

What "under management" means here: the server is found on its BMC (by system id, serial number or a NIC's
MAC), its inventory is read, a one-time boot override (PXE, or CD with an ISO inserted as virtual media) is
set, and its power is driven to the declared state, waiting until the BMC shows it. Nothing here ever
touches disks: ``delete`` only releases the server (eject our media, clear a pending override, power off).

Design rules, each from a failure mode (docs/pulumi-reference.md §1, docs/platform.md "Redfish"):

* The provider instance is pickled by dill into the state (``__provider``), so it holds no client, session
  or lock: every method builds a short-lived :class:`RedfishClient` and closes it. BMCs also cap their
  session counts, another reason not to keep connections around.
* ``verify=`` goes on every request: ``requests`` lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` from the
  environment override ``Session.verify``, and the BMC's private CA would then be ignored.
* The Python dynamic provider server ignores ``custom_timeouts``, so every wait (power, tasks) has its own
  deadline, and retries are bounded in count and total time.
* ``diff`` receives the old *outputs*: outputs therefore repeat every input. ``update`` always returns the
  full outputs, since the SDK's default wipes them and any code change triggers an update.
* Secrets reach the provider in plaintext and are re-marked secret only when an output has the same name
  as a secret input: the password is echoed as ``password`` and also listed in ``additional_secret_outputs``.
  The resource id is the system's ``@odata.id`` path: ids are never secret, so nothing else goes in there.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pulumi.dynamic  # binds `pulumi` too; a plain `import pulumi` sorts as first-party (repo has pulumi/)
import requests

from baremetal_ai.declare.redfish_inventory import read_inventory
from baremetal_ai.errors import UserError

POWER_STATES = ("On", "Off")
BOOT_TARGETS = ("Pxe", "Cd", "UsbCd", "Hdd", "Usb", "UefiHttp", "BiosSetup")
MEDIA_TARGETS = ("Cd", "UsbCd")  # boot_image needs one of these: the ISO is inserted as a virtual CD
# Inputs whose change means another server (or the same one reached differently): replace, deleting first.
IDENTITY_KEYS = ("endpoint", "system_id", "serial", "mac")
INPUT_DEFAULTS: dict[str, Any] = {
    "endpoint": None, "username": None, "password": None, "system_id": None, "serial": None, "mac": None,
    "ca_file": None, "verify_tls": True, "power_state": "On", "boot_override": None, "boot_image": None,
    "power_timeout_s": 300.0, "shutdown_timeout_s": 120.0, "node_name": None,
}
POLL_S = 0.5
SYSTEMS = "/redfish/v1/Systems"
_UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # pulumi.runtime.rpc.UNKNOWN: a value known only after apply


class RedfishError(UserError):
    """A BMC answered with an error, or could not be reached; the message names the BMC and the system."""


class RedfishAuthError(RedfishError):
    """401/403: wrong credentials or a role without the privilege. Never retried: BMCs lock accounts."""


class RedfishNotFound(RedfishError):
    """404: the system (or a resource we need on it) does not exist on this BMC."""


class RedfishTimeout(RedfishError):
    """A state (power, task) did not show within the declared deadline."""


@dataclass(frozen=True)
class RetryPolicy:
    """Retries on 5xx and connection errors: ``attempts`` tries in all, exponential backoff from ``backoff_s``
    (doubling, capped at ``max_backoff_s``), and never sleeping past ``budget_s`` since the first try."""

    attempts: int = 4
    backoff_s: float = 0.25
    max_backoff_s: float = 2.0
    budget_s: float = 20.0


class RedfishClient:
    """A small Redfish client on ``requests`` with basic auth, bounded retries and errors that say where.

    Build one per provider call (``with RedfishClient(...) as c:``) and let it go: see the module docstring.
    ``system`` is a label used in error messages (system id or path) and can be set once it is known.
    """

    def __init__(self, endpoint: str, username: str, password: str, verify: bool | str = True, *,
                 system: str = "", timeout_s: tuple[float, float] = (5.0, 30.0),
                 retry: RetryPolicy | None = None) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.system = system
        self._auth = (username, password)
        self._verify = verify
        self._timeout = timeout_s
        self._retry = retry or RetryPolicy()
        self._session = requests.Session()
        self.requests_sent = 0  # for tests and logs: proves there is no retry storm

    def __enter__(self) -> RedfishClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    def where(self) -> str:
        return f"BMC {self.endpoint}" + (f" (system {self.system})" if self.system else "")

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.endpoint + path

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                headers: dict[str, str] | None = None, ok404: bool = False) -> requests.Response | None:
        """Send one request with retries; follow redirects (the emulator 307s names to UUID paths).

        Returns the response (2xx, or 404 when ``ok404``: then ``None``); raises :class:`RedfishError`
        subclasses otherwise. POSTs are retried too: the provider only POSTs actions that are idempotent
        at the target state (Reset to On/Off, InsertMedia of the same image, EjectMedia).
        """
        policy = self._retry
        start = time.monotonic()
        last = ""
        for attempt in range(1, policy.attempts + 1):
            try:
                self.requests_sent += 1
                r = self._session.request(method, self.url(path), json=body, headers=headers, auth=self._auth,
                                          verify=self._verify, timeout=self._timeout, allow_redirects=True)
            except requests.exceptions.SSLError as e:
                raise RedfishError(f"{self.where()}: TLS verification failed ({_short(e)}); pass ca_file with "
                                   f"the BMC's CA bundle (or verify_tls=False on a lab network)") from e
            except (requests.ConnectionError, requests.Timeout) as e:
                last = f"cannot connect ({_short(e)})"
            else:
                if r.status_code in (401, 403):
                    raise RedfishAuthError(f"{self.where()} refused the credentials for {method} {path} "
                                           f"(HTTP {r.status_code}): check username/password and the account's "
                                           f"role")
                if r.status_code == 404:
                    if ok404:
                        return None
                    raise RedfishNotFound(f"{self.where()} has no resource {path} (HTTP 404)")
                if r.status_code < 400:
                    return r
                if r.status_code < 500:
                    raise RedfishError(f"{self.where()}: {method} {path} failed (HTTP {r.status_code}): "
                                       f"{_redfish_message(r)}")
                last = f"HTTP {r.status_code}: {_redfish_message(r)}"
            delay = min(policy.backoff_s * 2 ** (attempt - 1), policy.max_backoff_s)
            if attempt == policy.attempts or time.monotonic() - start + delay > policy.budget_s:
                break
            time.sleep(delay)
        raise RedfishError(f"{self.where()}: {method} {path} failed after {attempt} attempts in "
                           f"{time.monotonic() - start:.1f} s: {last}")

    def get(self, path: str) -> dict[str, Any]:
        r = self.request("GET", path)
        assert r is not None
        return _json(r)

    def get_with_etag(self, path: str) -> tuple[dict[str, Any], str | None]:
        r = self.request("GET", path)
        assert r is not None
        doc = _json(r)
        return doc, (r.headers.get("ETag") or doc.get("@odata.etag") or None)

    def get_optional(self, path: str) -> dict[str, Any] | None:
        """GET where 404 means "this BMC has none" (inventory links to resources some BMCs don't serve)."""
        r = self.request("GET", path, ok404=True)
        return _json(r) if r is not None else None

    def patch(self, path: str, body: dict[str, Any], etag: str | None = None) -> requests.Response:
        headers = {"If-Match": etag} if etag else None
        try:
            r = self.request("PATCH", path, body, headers)
        except RedfishError as e:
            if not etag or "HTTP 412" not in str(e):
                raise
            r = self.request("PATCH", path, body)  # stale or weak ETag: once more without it (sushy does too)
        assert r is not None
        return r

    def post(self, path: str, body: dict[str, Any]) -> requests.Response:
        r = self.request("POST", path, body)
        assert r is not None
        return r

    def wait_task(self, r: requests.Response, deadline: float) -> None:
        """Follow a 202 Accepted task monitor (``Location``) until it stops answering 202, or the deadline."""
        location = r.headers.get("Location")
        while r.status_code == 202 and location:
            if time.monotonic() >= deadline:
                raise RedfishTimeout(f"{self.where()}: task {location} still running at the deadline")
            time.sleep(min(float(r.headers.get("Retry-After") or 1), max(deadline - time.monotonic(), 0)))
            nxt = self.request("GET", location)
            assert nxt is not None
            r = nxt


def _json(r: requests.Response) -> dict[str, Any]:
    try:
        doc = r.json()
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _short(e: Exception) -> str:
    s = str(e)
    return s if len(s) < 200 else s[:200] + "..."


def _redfish_message(r: requests.Response) -> str:
    err = _json(r).get("error")
    if isinstance(err, dict):
        info = err.get("@Message.ExtendedInfo")
        if isinstance(info, list) and info and isinstance(info[0], dict) and info[0].get("Message"):
            return str(info[0]["Message"])
        if err.get("message"):
            return str(err["message"])
    return (r.text or r.reason or "").strip()[:200]


# --- operations on one system (module functions: the provider pickles by value, with no state) -------------

def client_for(props: dict[str, Any], system: str = "", retry: RetryPolicy | None = None) -> RedfishClient:
    """The client a provider call uses: CA bundle when given, system trust store otherwise."""
    verify: bool | str = True
    if not props.get("verify_tls", True):
        verify = False
    elif props.get("ca_file"):
        verify = str(props["ca_file"])
    label = system or props.get("system_id") or props.get("serial") or props.get("mac") or ""
    return RedfishClient(str(props["endpoint"]), str(props["username"]), str(props["password"]), verify,
                         system=str(label), retry=retry)


def resolve_system(c: RedfishClient, props: dict[str, Any]) -> str:
    """The canonical ``@odata.id`` of the declared system: by id (redirects followed), else by serial/MAC."""
    if props.get("system_id"):
        doc = c.get(f"{SYSTEMS}/{props['system_id']}")
        path = doc.get("@odata.id") or f"{SYSTEMS}/{props['system_id']}"
        c.system = str(path)
        return str(path)
    serial = (props.get("serial") or "").strip()
    mac = (props.get("mac") or "").strip().lower()
    matches = []
    for member in c.get(SYSTEMS).get("Members") or []:
        path = member.get("@odata.id") if isinstance(member, dict) else None
        if not path:
            continue
        doc = c.get(path)
        if serial and str(doc.get("SerialNumber") or "").strip() != serial:
            continue
        if mac and mac not in {n["mac"] for n in read_inventory(c.get_optional, path)["nics"]}:
            continue
        matches.append(str(doc.get("@odata.id") or path))
    wanted = " and ".join(x for x in (f"serial {serial}" if serial else "", f"MAC {mac}" if mac else "") if x)
    if not matches:
        raise RedfishNotFound(f"BMC {c.endpoint}: no system with {wanted} among {SYSTEMS}")
    if len(matches) > 1:
        raise RedfishError(f"BMC {c.endpoint}: {len(matches)} systems match {wanted} ({', '.join(matches)}): "
                           f"set system_id")
    c.system = matches[0]
    return matches[0]


def inventory_of(c: RedfishClient, path: str) -> dict[str, Any]:
    return read_inventory(c.get_optional, path)


def power_state_of(c: RedfishClient, path: str) -> str:
    return str(c.get(path).get("PowerState") or "Unknown")


def set_boot(c: RedfishClient, path: str, target: str | None, image: str | None, deadline: float) -> None:
    """Insert ``image`` as virtual media (when given) and set a one-time boot override to ``target``.

    ``target`` None clears a pending override. The override takes effect at the next boot: nothing here
    power-cycles a running server (see ``RedfishServerProvider.update``).
    """
    system, etag = c.get_with_etag(path)
    if image:
        insert_media(c, path, system, image, deadline)
    boot = system.get("Boot") if isinstance(system.get("Boot"), dict) else {}
    if target is None:
        if boot.get("BootSourceOverrideEnabled") in (None, "Disabled"):
            return
        c.patch(path, {"Boot": {"BootSourceOverrideEnabled": "Disabled", "BootSourceOverrideTarget": "None"}}, etag)
        return
    allowed = boot.get("BootSourceOverrideTarget@Redfish.AllowableValues")
    if isinstance(allowed, list) and allowed and target not in allowed:
        # Supermicro X11/X12 boot virtual media as UsbCd, most others as Cd (sushy rewrites the same way).
        alt = {"Cd": "UsbCd", "UsbCd": "Cd"}.get(target)
        if alt not in allowed:
            raise RedfishError(f"{c.where()}: boot target {target} is not supported; the BMC allows "
                               f"{', '.join(map(str, allowed))}")
        target = alt
    r = c.patch(path, {"Boot": {"BootSourceOverrideEnabled": "Once", "BootSourceOverrideTarget": target}}, etag)
    c.wait_task(r, deadline)


def _vmedia_members(c: RedfishClient, system: dict[str, Any]) -> list[str]:
    """VirtualMedia slots: the System's collection first, then each Manager's (as ironic does)."""
    colls = []
    if isinstance(system.get("VirtualMedia"), dict):
        colls.append(system["VirtualMedia"].get("@odata.id"))
    for m in (system.get("Links") or {}).get("ManagedBy") or []:
        mgr = c.get_optional(m.get("@odata.id", "")) if isinstance(m, dict) else None
        if mgr and isinstance(mgr.get("VirtualMedia"), dict):
            colls.append(mgr["VirtualMedia"].get("@odata.id"))
    members: list[str] = []
    for coll_path in dict.fromkeys(p for p in colls if p):
        coll = c.get_optional(coll_path)
        for m in (coll or {}).get("Members") or []:
            if isinstance(m, dict) and m.get("@odata.id") and m["@odata.id"] not in members:
                members.append(m["@odata.id"])
    return members


def find_cd_slot(c: RedfishClient, system: dict[str, Any]) -> dict[str, Any] | None:
    for slot_path in _vmedia_members(c, system):
        slot = c.get_optional(slot_path) or {}
        types = {str(t).upper() for t in slot.get("MediaTypes") or []}
        if types & {"CD", "DVD"} and "#VirtualMedia.InsertMedia" in (slot.get("Actions") or {}):
            return slot
    return None


def insert_media(c: RedfishClient, path: str, system: dict[str, Any], image: str, deadline: float) -> None:
    slot = find_cd_slot(c, system)
    if slot is None:
        raise RedfishError(f"{c.where()} offers no virtual CD/DVD with an InsertMedia action (checked the "
                           f"System's and its Managers' VirtualMedia): cannot boot {image}; use "
                           f"boot_override Pxe, or mount the ISO another way")
    if slot.get("Inserted") and slot.get("Image") == image:
        return
    if slot.get("Inserted"):
        eject = slot["Actions"].get("#VirtualMedia.EjectMedia", {}).get("target")
        if eject:
            c.post(eject, {})
    target = slot["Actions"]["#VirtualMedia.InsertMedia"].get("target") or (
        f"{slot['@odata.id']}/Actions/VirtualMedia.InsertMedia")
    r = c.post(target, {"Image": image, "Inserted": True, "WriteProtected": True})
    c.wait_task(r, deadline)


def eject_media(c: RedfishClient, path: str, image: str) -> None:
    """Eject ``image`` if a slot holds it (what we inserted); leave other media alone."""
    for slot_path in _vmedia_members(c, c.get(path)):
        slot = c.get_optional(slot_path) or {}
        eject = (slot.get("Actions") or {}).get("#VirtualMedia.EjectMedia", {}).get("target")
        if slot.get("Inserted") and slot.get("Image") == image and eject:
            c.post(eject, {})


def _reset_type(system: dict[str, Any], wanted: tuple[str, ...]) -> str:
    action = (system.get("Actions") or {}).get("#ComputerSystem.Reset") or {}
    allowed = action.get("ResetType@Redfish.AllowableValues")
    if isinstance(allowed, list) and allowed:
        for w in wanted:
            if w in allowed:
                return w
    return wanted[0]


def reset(c: RedfishClient, path: str, system: dict[str, Any], wanted: tuple[str, ...]) -> str:
    action = (system.get("Actions") or {}).get("#ComputerSystem.Reset") or {}
    target = action.get("target") or f"{path}/Actions/ComputerSystem.Reset"
    reset_type = _reset_type(system, wanted)
    c.post(target, {"ResetType": reset_type})
    return reset_type


def wait_power(c: RedfishClient, path: str, desired: str, deadline: float, what: str) -> str:
    """Poll PowerState every 0.5 s until it reads ``desired``; read at least once even past the deadline.

    Polling is also what makes the sushy emulator apply a pending change (it applies them lazily on read).
    """
    while True:
        state = power_state_of(c, path)
        if state == desired:
            return state
        if time.monotonic() >= deadline:
            raise RedfishTimeout(f"{c.where()}: waited for PowerState {desired} after {what}, still {state} at "
                                 f"the deadline; raise power_timeout_s if this BMC is slow")
        time.sleep(min(POLL_S, max(deadline - time.monotonic(), 0.0)))


def drive_power(c: RedfishClient, path: str, desired: str, timeout_s: float, shutdown_timeout_s: float) -> str:
    """Bring the system to ``desired`` (On/Off) and wait until the BMC shows it.

    Off is graceful first (the OS gets ``shutdown_timeout_s`` to halt), then ForceOff with ``timeout_s``.
    """
    system = c.get(path)
    if system.get("PowerState") == desired:
        return desired
    if desired == "On":
        rt = reset(c, path, system, ("On", "ForceOn"))
        return wait_power(c, path, "On", time.monotonic() + timeout_s, f"ComputerSystem.Reset {rt}")
    rt = reset(c, path, system, ("GracefulShutdown", "ForceOff"))
    if rt != "ForceOff":
        try:
            return wait_power(c, path, "Off", time.monotonic() + min(shutdown_timeout_s, timeout_s),
                              f"ComputerSystem.Reset {rt}")
        except RedfishTimeout:
            pass  # the OS did not halt in time: cut the power
        reset(c, path, c.get(path), ("ForceOff",))
    return wait_power(c, path, "Off", time.monotonic() + timeout_s, "ComputerSystem.Reset ForceOff")


# --- provider ----------------------------------------------------------------------------------------------

def normalize_inputs(props: dict[str, Any]) -> dict[str, Any]:
    """Declared inputs only (no outputs, no ``__provider``), defaults filled in, numbers as floats.

    Used on both sides of ``diff`` so that a value left at its default compares equal to the default.
    """
    out = {k: props[k] if props.get(k) is not None else d for k, d in INPUT_DEFAULTS.items()}
    for k in ("power_timeout_s", "shutdown_timeout_s"):
        if isinstance(out[k], int | float) and not isinstance(out[k], bool):
            out[k] = float(out[k])
    if out["boot_override"] == "None":
        out["boot_override"] = None
    return out


def _check_failures(p: dict[str, Any]) -> list[tuple[str, str]]:
    """(property, reason) for every invalid input; values unknown at preview time are skipped."""
    fails: list[tuple[str, str]] = []

    def known(k: str) -> bool:
        return p.get(k) is not None and p.get(k) != _UNKNOWN

    if not known("endpoint") and p.get("endpoint") != _UNKNOWN:
        fails.append(("endpoint", "endpoint is required: the BMC URL, e.g. https://10.0.0.5"))
    elif known("endpoint"):
        u = urlsplit(str(p["endpoint"]))
        if u.scheme not in ("https", "http") or not u.hostname:
            fails.append(("endpoint", f"endpoint must start with https:// or http:// and name a host, got "
                                      f"{p['endpoint']!r}"))
        elif u.username or u.password:
            fails.append(("endpoint", "endpoint must not carry credentials: use username and password (secret)"))
    for k in ("username", "password"):
        if p.get(k) != _UNKNOWN and (not isinstance(p.get(k), str) or not p[k]):
            fails.append((k, f"{k} is required (a non-empty string)"))
    if not any(p.get(k) for k in ("system_id", "serial", "mac")):
        fails.append(("system_id", "set system_id, or serial or mac to find the system on the BMC"))
    if known("power_state") and p["power_state"] not in POWER_STATES:
        fails.append(("power_state", f"power_state must be On or Off, got {p['power_state']!r}"))
    if known("boot_override") and p["boot_override"] not in (*BOOT_TARGETS, "None"):
        fails.append(("boot_override", f"boot_override must be None or one of {', '.join(BOOT_TARGETS)}, got "
                                       f"{p['boot_override']!r}"))
    if known("boot_image"):
        if urlsplit(str(p["boot_image"])).scheme not in ("http", "https"):
            fails.append(("boot_image", "boot_image must be an http:// or https:// URL the BMC can fetch"))
        if p.get("boot_override") != _UNKNOWN and p.get("boot_override") not in MEDIA_TARGETS:
            fails.append(("boot_image", "boot_image is inserted as a virtual CD: set boot_override to Cd or UsbCd"))
    for k in ("power_timeout_s", "shutdown_timeout_s"):
        v = p.get(k)
        if known(k) and (isinstance(v, bool) or not isinstance(v, int | float) or v <= 0):
            fails.append((k, f"{k} must be a positive number of seconds, got {v!r}"))
    if known("verify_tls") and not isinstance(p["verify_tls"], bool):
        fails.append(("verify_tls", "verify_tls must be true or false"))
    if known("ca_file") and not os.path.isfile(str(p["ca_file"])):
        fails.append(("ca_file", f"ca_file {p['ca_file']} is not a readable file (a PEM CA bundle)"))
    return fails


class RedfishServerProvider(pulumi.dynamic.ResourceProvider):
    """CRUD for one server behind a Redfish BMC. Stateless: see the module docstring.

    Field effects (what ``diff`` reports and ``update`` does):

    * ``endpoint``, ``system_id``, ``serial``, ``mac``: identify the server, so a change **replaces** the
      resource, always **delete-before-replace**. A server is one of a kind: the "new" resource may be the
      very same box reached by another address, and create-then-delete would power it off right after
      taking it over.
    * ``power_state``: in-place update; the provider resets the server and waits for the state.
    * ``boot_override``, ``boot_image``: in-place update, but they only take effect at the **next boot**:
      a running server is *not* power-cycled by the provider (that would be a surprise reboot of a node in
      use). Cycle it deliberately (power_state Off then On), or rely on the next reboot.
    * ``username``, ``password``, ``ca_file``, ``verify_tls``, ``power_timeout_s``, ``shutdown_timeout_s``,
      ``node_name``: in-place update with no action on the server (new credentials are used from now on).

    ``read`` (refresh) records the observed power state in ``power_state``, so drift (a server switched off
    out of band) shows as a diff and ``up`` corrects it. It does **not** copy the observed boot override into
    ``boot_override``: one-time overrides are consumed by the boot, and copying that back would make the next
    ``up`` re-arm PXE and reinstall the node at its next reboot. The observed boot settings are in
    ``inventory.boot``.
    """

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.CheckResult:
        failures = [pulumi.dynamic.CheckFailure(k, why) for k, why in _check_failures(news)]
        inputs = {**{k: v for k, v in news.items() if k.startswith("__")}, **normalize_inputs(news)}
        return pulumi.dynamic.CheckResult(inputs, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        old, new = normalize_inputs(olds), normalize_inputs(news)
        changed = [k for k in INPUT_DEFAULTS if old[k] != new[k]]
        replaces = [k for k in changed if k in IDENTITY_KEYS]
        return pulumi.dynamic.DiffResult(changes=bool(changed), replaces=replaces,
                                         delete_before_replace=bool(replaces))

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        """Resolve the system, set the boot override (and ISO), drive power, wait, read the inventory.

        Every step is idempotent, so a create that failed half-way (the engine then records nothing) can simply
        be run again. A server that is already On is not rebooted: its override applies at the next boot.
        """
        p = normalize_inputs(props)
        with client_for(p) as c:
            path = resolve_system(c, p)
            deadline = time.monotonic() + p["power_timeout_s"]
            if p["boot_override"] or p["boot_image"]:
                set_boot(c, path, p["boot_override"], p["boot_image"], deadline)
            drive_power(c, path, p["power_state"], p["power_timeout_s"], p["shutdown_timeout_s"])
            return pulumi.dynamic.CreateResult(id_=path, outs=_outs(p, path, inventory_of(c, path)))

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        """Refresh power and inventory; also return ``inputs`` so the next diff sees observed power drift.

        Works from inputs alone too (the engine passes only inputs on an import/get).
        """
        p = normalize_inputs(props)
        with client_for(p, system=id_) as c:
            if c.get_optional(id_) is None:
                return pulumi.dynamic.ReadResult(None, {})  # gone from the BMC: the engine drops it from state
            inv = inventory_of(c, id_)
        observed = inv["power_state"] if inv["power_state"] in POWER_STATES else p["power_state"]
        inputs = {**p, "power_state": observed}
        return pulumi.dynamic.ReadResult(id_, _outs(inputs, id_, inv), inputs)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        """Apply boot and power changes (see the class docstring); always return the full outputs, because a
        bare ``UpdateResult()`` would wipe them and a mere provider-code change triggers an update."""
        old, new = normalize_inputs(olds), normalize_inputs(news)
        with client_for(new, system=id_) as c:
            deadline = time.monotonic() + new["power_timeout_s"]
            if (old["boot_override"], old["boot_image"]) != (new["boot_override"], new["boot_image"]):
                if old["boot_image"] and old["boot_image"] != new["boot_image"]:
                    eject_media(c, id_, old["boot_image"])
                set_boot(c, id_, new["boot_override"], new["boot_image"], deadline)
            if old["power_state"] != new["power_state"]:
                drive_power(c, id_, new["power_state"], new["power_timeout_s"], new["shutdown_timeout_s"])
            return pulumi.dynamic.UpdateResult(outs=_outs(new, id_, inventory_of(c, id_)))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Release the server: eject the ISO we inserted, clear a pending override we set, power off.

        Graceful shutdown first, ForceOff after ``shutdown_timeout_s``. Disks are never touched: no secure
        erase, no RAID/volume deletion, no BIOS reset. To leave the server running instead, declare the
        resource with ``retain_on_delete=True``.
        """
        p = normalize_inputs(props)
        with client_for(p, system=id_) as c:
            try:
                c.get(id_)
            except RedfishNotFound:
                return  # already gone from the BMC: nothing to release
            if p["boot_image"]:
                eject_media(c, id_, p["boot_image"])
            if p["boot_override"]:
                with contextlib.suppress(RedfishError):  # some BMCs refuse to clear one; it is one-time anyway
                    set_boot(c, id_, None, None, time.monotonic() + p["power_timeout_s"])
            drive_power(c, id_, "Off", p["power_timeout_s"], p["shutdown_timeout_s"])


def _outs(inputs: dict[str, Any], path: str, inventory: dict[str, Any]) -> dict[str, Any]:
    return {**inputs, "system_path": path, "inventory": inventory,
            "macs": [n["mac"] for n in inventory["nics"] if n["mac"] != "unknown"],
            "gpu_count": len(inventory["gpus"])}


@dataclass
class RedfishServerArgs:
    """Inputs of :class:`RedfishServer`. ``password`` is wrapped as a secret if given as a plain string."""

    endpoint: pulumi.Input[str]
    username: pulumi.Input[str]
    password: pulumi.Input[str]
    system_id: pulumi.Input[str] | None = None
    serial: pulumi.Input[str] | None = None
    mac: pulumi.Input[str] | None = None
    ca_file: pulumi.Input[str] | None = None
    verify_tls: pulumi.Input[bool] = True
    power_state: pulumi.Input[str] = "On"
    boot_override: pulumi.Input[str] | None = None
    boot_image: pulumi.Input[str] | None = None
    power_timeout_s: pulumi.Input[float] = 300
    shutdown_timeout_s: pulumi.Input[float] = 120
    node_name: pulumi.Input[str] | None = None


SECRET_OUTPUTS = ["password"]


class RedfishServer(pulumi.dynamic.Resource, module="redfish", name="Server"):
    """A bare-metal server taken under management through its BMC (type ``pulumi-python:dynamic/redfish:Server``).

    Hardware resources deserve ``protect=True`` or ``retain_on_delete=True`` in production stacks.
    """

    endpoint: pulumi.Output[str]
    username: pulumi.Output[str]
    password: pulumi.Output[str]
    system_id: pulumi.Output[str | None]
    power_state: pulumi.Output[str]
    boot_override: pulumi.Output[str | None]
    node_name: pulumi.Output[str | None]
    system_path: pulumi.Output[str]
    inventory: pulumi.Output[dict[str, Any]]
    macs: pulumi.Output[list[str]]
    gpu_count: pulumi.Output[int]

    def __init__(self, name: str, args: RedfishServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        props: dict[str, Any] = dict(vars(args))
        if isinstance(props["password"], str):
            props["password"] = pulumi.Output.secret(props["password"])
        props.update({"system_path": None, "inventory": None, "macs": None, "gpu_count": None})
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=SECRET_OUTPUTS))
        super().__init__(RedfishServerProvider(), name, props, opts)
