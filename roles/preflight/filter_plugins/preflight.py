"""Preflight checks of the inventory contract and of the facts a node reports.

Pure Python, no Ansible import: the role's tasks only gather facts, call ``preflight_report`` once per host and
fail with the problems it returns; tests/unit/test_preflight_filter.py calls the same functions with plain dicts.

Variables are read through ``hostvars``: the inventory (with group_vars/host_vars), extra vars, facts and
set_fact values; play and role vars are not visible there, which suits a check of the inventory itself.

Every problem is one self-contained line: host, variable, value (secrets redacted), what is wrong, and the fix.
Every check ends in exactly one state per host (passed, failed or skipped); a skip always says why.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

CHECKS = ("required_vars", "mtu", "unique_addresses", "os", "disk", "interfaces")
TYPES = ("str", "int", "bool", "ipv4", "list")
REDACTED = "<redacted>"
GB = 1000**3

_TYPE_WORDS = {
    "str": "a non-empty string",
    "int": "an integer",
    "bool": "a boolean",
    "ipv4": "an IPv4 address",
    "list": "a list",
}
_TYPE_FIXES = {
    "str": "set a non-empty string",
    "int": "write a whole number without quotes",
    "bool": "write true or false without quotes",
    "ipv4": "write a dotted-quad IPv4 address without a prefix length (e.g. 192.0.2.10)",
    "list": "write a YAML list",
}


class _Missing:
    """A variable that the host does not define."""


class _Unusable:
    """A variable that is defined but cannot be evaluated (undefined reference, failed lookup)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


MISSING = _Missing()


def _undefined_reason(value: Any) -> str | None:
    """Why ``value`` is an (Ansible) Jinja undefined or captured lookup error, or None for a real value."""
    try:
        import jinja2
    except ImportError:  # pragma: no cover - jinja2 ships with ansible-core
        return None
    if isinstance(value, jinja2.Undefined):
        reason = str(getattr(value, "_undefined_message", None) or "undefined")
        return reason.removeprefix("A captured exception marker was tripped: ").rstrip(". ")
    return None


def lookup_var(host_vars: Mapping[str, Any], name: str) -> Any:
    """A host variable, MISSING, or an _Unusable that carries the evaluation error."""
    try:
        if name not in host_vars:
            return MISSING
        value = host_vars[name]
    except Exception as exc:  # older ansible-core raises template errors here; report instead of crashing
        return _Unusable(f"{type(exc).__name__}: {str(exc).rstrip('. ')}")
    reason = _undefined_reason(value)
    if reason is not None:
        return _Unusable(reason)
    return value


def native(value: Any) -> Any:
    """Plain builtins (Ansible hands over tagged str/int subclasses)."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {native(k): native(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [native(v) for v in value]
    return value


def show(value: Any, secret: bool = False) -> str:
    """A value as it appears in a message."""
    if secret:
        return REDACTED
    return repr(native(value))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def type_error(value: Any, type_: str) -> str | None:
    """What is wrong with ``value`` for ``type_`` (one of TYPES), or None when it fits."""
    if type_ == "str":
        if not isinstance(value, str):
            return f"is {_kind(value)}, not a string"
        if not value.strip():
            return "is empty"
        return None
    if type_ == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"is {_kind(value)}, not an integer"
        return None
    if type_ == "bool":
        if not isinstance(value, bool):
            return f"is {_kind(value)}, not a boolean"
        return None
    if type_ == "ipv4":
        if not isinstance(value, str):
            return f"is {_kind(value)}, not an IPv4 address string"
        try:
            ipaddress.IPv4Address(str(value).strip())
        except ValueError:
            return "is not a valid IPv4 address"
        return None
    if type_ == "list":
        if isinstance(value, (str, Mapping)) or not isinstance(value, (list, tuple)):
            return f"is {_kind(value)}, not a list"
        return None
    raise ValueError(f"unknown type {type_!r}; use one of {', '.join(TYPES)}")


def check_required_vars(
    host: str, host_vars: Mapping[str, Any], required_vars: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Every spec entry present, evaluable, of its type and within its optional min/max."""
    problems = []
    for spec in required_vars:
        name = str(spec.get("name", ""))
        type_ = str(spec.get("type", "str"))
        desc = str(spec.get("description", "")).strip()
        secret = bool(spec.get("secret", False))
        what = f" ({desc})" if desc else ""
        if type_ not in TYPES:
            problems.append(
                f"{host}: preflight_required_vars entry {name!r} has type {type_!r}. "
                f"Fix: use one of {', '.join(TYPES)} in preflight_required_vars."
            )
            continue
        value = lookup_var(host_vars, name)
        if value is MISSING:
            problems.append(
                f"{host}: {name} is missing{what}. "
                f"Fix: define {name} ({_TYPE_WORDS[type_]}) for host {host} in the inventory."
            )
            continue
        if isinstance(value, _Unusable):
            problems.append(
                f"{host}: {name}{what} cannot be evaluated: {value.reason}. "
                f"Fix: correct the value or lookup of {name} for host {host} in the inventory."
            )
            continue
        err = type_error(value, type_)
        if err:
            problems.append(
                f"{host}: {name} = {show(value, secret)} {err}{what}. "
                f"Fix: for {name} of host {host}, {_TYPE_FIXES[type_]}."
            )
            continue
        bound = _bounds_error(value, spec.get("min"), spec.get("max")) if type_ == "int" else None
        if bound:
            wrong, allowed = bound
            problems.append(
                f"{host}: {name} = {show(value, secret)} {wrong}{what}. Fix: set {name} of host {host} to {allowed}."
            )
    return problems


def _bounds_error(value: int, low: int | None, high: int | None) -> tuple[str, str] | None:
    """(what is wrong, what is allowed) when value is outside the optional [low, high], else None."""
    if low is not None and high is not None:
        if not int(low) <= value <= int(high):
            return f"is outside {low}..{high}", f"a value in {low}..{high}"
    elif low is not None and value < int(low):
        return f"is below the minimum {low}", f"a value of at least {low}"
    elif high is not None and value > int(high):
        return f"is above the maximum {high}", f"a value of at most {high}"
    return None


def check_mtu(host: str, host_vars: Mapping[str, Any], mtu_min: int, mtu_max: int) -> tuple[list[str], str | None]:
    """node_fabric_mtu within [mtu_min, mtu_max]. Returns (problems, skip reason)."""
    value = lookup_var(host_vars, "node_fabric_mtu")
    if value is MISSING or isinstance(value, _Unusable) or type_error(value, "int"):
        return [], "node_fabric_mtu has no integer value (see the required variables check)"
    if not mtu_min <= value <= mtu_max:
        return [
            f"{host}: node_fabric_mtu = {value} is outside {mtu_min}..{mtu_max} "
            "(the fabric MTU; IPv6 needs at least 1280, common NICs allow at most 9216). "
            f"Fix: set node_fabric_mtu of host {host} to a value in {mtu_min}..{mtu_max} "
            "(9000 for a jumbo-frame fabric, 1500 otherwise), or change preflight_mtu_min/preflight_mtu_max."
        ], None
    return [], None


def address_owners(
    hostvars: Mapping[str, Mapping[str, Any]], play_hosts: Iterable[str], unique_vars: Sequence[str]
) -> dict[str, list[tuple[str, str]]]:
    """address -> [(host, variable), ...] over every play host's usable address variables."""
    owners: dict[str, list[tuple[str, str]]] = {}
    for other in play_hosts:
        try:
            other_vars = hostvars[other]
        except KeyError:
            continue
        for var in unique_vars:
            value = lookup_var(other_vars, var)
            if isinstance(value, str) and value.strip():
                owners.setdefault(str(value).strip(), []).append((str(other), var))
    return owners


def check_unique_addresses(
    host: str,
    hostvars: Mapping[str, Mapping[str, Any]],
    play_hosts: Iterable[str],
    unique_vars: Sequence[str],
) -> list[str]:
    """Each of this host's addresses is used by no other (host, variable) pair in the play."""
    owners = address_owners(hostvars, play_hosts, unique_vars)
    problems = []
    for var in unique_vars:
        value = lookup_var(hostvars[host], var)
        if not (isinstance(value, str) and value.strip()):
            continue
        others = [(h, v) for h, v in owners.get(str(value).strip(), []) if (h, v) != (host, var)]
        if others:
            users = ", ".join(f"{h} ({v})" for h, v in others)
            problems.append(
                f"{host}: {var} = {show(value)} is also used by {users}. "
                f"Fix: give every host its own address; {', '.join(unique_vars)} must be unique across the play."
            )
    return problems


def _facts(host_vars: Mapping[str, Any]) -> Mapping[str, Any]:
    facts = lookup_var(host_vars, "ansible_facts")
    return facts if isinstance(facts, Mapping) else {}


def _os_names(supported_os: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(f"{os_['name']} {v}" for os_ in supported_os for v in os_.get("versions", []))


def check_os(
    host: str, facts: Mapping[str, Any], supported_os: Sequence[Mapping[str, Any]]
) -> tuple[list[str], str | None]:
    """The distribution and version are in supported_os ([{name, versions}])."""
    dist = facts.get("distribution")
    if not dist:
        return [], "no distribution facts (gather facts first, or set preflight_gather_facts: true)"
    version = str(facts.get("distribution_version", ""))
    major = str(facts.get("distribution_major_version", ""))
    for entry in supported_os:
        versions = [str(v) for v in entry.get("versions", [])]
        if str(entry.get("name")) == str(dist) and (version in versions or major in versions):
            return [], None
    return [
        f"{host}: ansible_distribution = {show(dist)} version {show(version)} is not supported "
        f"(supported: {_os_names(supported_os)}). "
        "Fix: install a supported OS on this host, or add it to preflight_supported_os once the roles "
        "have been tested on it."
    ], None


def covering_mount(path: str, mounts: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The mount with the longest mount point that contains ``path``."""
    best = None
    for mount in mounts:
        point = str(mount.get("mount", ""))
        if not point:
            continue
        inside = path == point or point == "/" or path.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) > len(str(best["mount"]))):
            best = mount
    return best


def parse_df(output: str) -> dict[str, Any] | None:
    """`df -P -B1 PATH` output -> {mount, size_available} (bytes), or None when it cannot be read."""
    lines = [ln for ln in str(output or "").splitlines() if ln.strip()]
    if len(lines) < 2:
        return None
    fields = lines[-1].split()
    if len(fields) < 6 or not fields[3].isdigit():
        return None
    return {"mount": fields[-1], "size_available": int(fields[3])}


def check_disk(
    host: str, facts: Mapping[str, Any], path: str, min_free_gb: float, df_output: str | None = None
) -> tuple[list[str], str | None]:
    """The filesystem holding ``path`` has at least ``min_free_gb`` GB (10^9 bytes) available.

    Read from ansible_mounts; where no listed mount covers the path (a container's overlay root is not
    listed), from the host's own `df -P -B1 PATH` output."""
    if min_free_gb <= 0:
        return [], "disabled (preflight_min_free_gb is 0)"
    mounts = facts.get("mounts") or []
    mount = covering_mount(path, mounts)
    if mount is None or mount.get("size_available") is None:
        mount = parse_df(df_output) if df_output else None
    if mount is None:
        if not mounts:
            return [], "no mount facts and no df output (gather facts first, or set preflight_gather_facts: true)"
        return [], (
            f"no mount in ansible_mounts covers {path} and df gave no usable output "
            "(Ansible lists block-device and network mounts only)"
        )
    free_gb = int(mount["size_available"]) / GB
    if free_gb < min_free_gb:
        return [
            f"{host}: free space on {path} (mount {mount['mount']}) = {free_gb:.1f} GB is below "
            f"preflight_min_free_gb = {min_free_gb}. "
            f"Fix: free space on {mount['mount']} of host {host}, or lower preflight_min_free_gb."
        ], None
    return [], None


def check_interfaces(
    host: str, host_vars: Mapping[str, Any], facts: Mapping[str, Any], interface_vars: Sequence[str]
) -> tuple[list[str], str | None]:
    """Every interface named by interface_vars exists on the host (ansible_interfaces)."""
    interfaces = facts.get("interfaces")
    if interfaces is None:
        return [], "no interface facts (gather facts first, or set preflight_gather_facts: true)"
    found = sorted(str(i) for i in interfaces)
    problems = []
    for var in interface_vars:
        value = lookup_var(host_vars, var)
        if not isinstance(value, str) or not value:
            continue  # missing or mistyped: the required variables check reports it
        if str(value) not in found:
            problems.append(
                f"{host}: {var} = {show(value)} does not exist on the host "
                f"(ansible_interfaces: {', '.join(found)}). "
                f"Fix: set {var} of host {host} to one of its interfaces."
            )
    return problems, None


def preflight_report(
    hostvars: Mapping[str, Mapping[str, Any]],
    host: str,
    play_hosts: Sequence[str],
    required_vars: Sequence[Mapping[str, Any]],
    mtu_min: int = 1280,
    mtu_max: int = 9216,
    supported_os: Sequence[Mapping[str, Any]] = (),
    min_free_gb: float = 0,
    disk_path: str = "/",
    interface_vars: Sequence[str] = ("node_mgmt_interface", "node_fabric_interface"),
    unique_vars: Sequence[str] = ("ansible_host", "node_fabric_address"),
    df_output: str | None = None,
) -> dict[str, Any]:
    """All checks for one host: {host, problems: [str], skipped: [str], checks: {name: passed|failed|skipped}}."""
    host = str(host)
    host_vars = hostvars[host]
    facts = _facts(host_vars)
    problems: list[str] = []
    skipped: list[str] = []
    checks: dict[str, str] = {}

    def record(name: str, found: list[str], skip: str | None = None) -> None:
        problems.extend(found)
        if found:
            checks[name] = "failed"
        elif skip:
            checks[name] = "skipped"
            skipped.append(f"{host}: {name} check skipped: {skip}")
        else:
            checks[name] = "passed"

    record("required_vars", check_required_vars(host, host_vars, required_vars))
    record("mtu", *check_mtu(host, host_vars, int(mtu_min), int(mtu_max)))
    record("unique_addresses", check_unique_addresses(host, hostvars, [str(h) for h in play_hosts], unique_vars))
    record("os", *check_os(host, facts, supported_os))
    record("disk", *check_disk(host, facts, str(disk_path), native(min_free_gb), df_output))
    record("interfaces", *check_interfaces(host, host_vars, facts, interface_vars))
    return {"host": host, "problems": problems, "skipped": skipped, "checks": checks}


def preflight_problems(*args: Any, **kwargs: Any) -> list[str]:
    """Only the problems of preflight_report (same arguments)."""
    return preflight_report(*args, **kwargs)["problems"]


class FilterModule:
    """preflight_report / preflight_problems: inventory and fact checks before anything changes."""

    def filters(self) -> dict[str, Any]:
        return {"preflight_report": preflight_report, "preflight_problems": preflight_problems}
