"""Checks and rule building of the hardening role.

Pure Python, no Ansible import: tasks call ``hardening_problems`` in preflight and ``hardening_audit_rules`` when
rendering /etc/audit/rules.d/baremetal.rules; tests/unit/test_storage_hardening_monitoring.py calls them directly.
No function returns or formats the content of a TLS file: problems name the file (dest), never its content.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

PRIVATE_KEY_MODES = ("0600", "0400")
AUDIT_KEY = re.compile(r"^[A-Za-z0-9_-]{1,31}$")
SSH_CONNECTIONS = ("ssh", "smart", "paramiko", "paramiko_ssh", "ansible.builtin.ssh", "ansible.builtin.paramiko_ssh")


def _is_port(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


def _is_mode(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(r"0?[0-7]{3}", value) is not None


def _is_private_key(item: Mapping[str, Any]) -> bool:
    return str(item.get("dest", "")).endswith(".key") or "PRIVATE KEY" in str(item.get("content") or "")


def hardening_problems(host: str, config: Mapping[str, Any]) -> list[str]:
    """Problems with the role's variables for one host (``config``: {variable: value}, plus ``connection`` and
    ``remote_user``: how Ansible reaches the host). Each line names host, variable and value and says the fix."""
    problems: list[str] = []

    def bad(var: str, value: Any, want: str) -> None:
        problems.append(f"{host}: {var}={value}: {want}")

    root = config.get("hardening_ssh_permit_root_login")
    if root not in ("prohibit-password", "no"):
        bad("hardening_ssh_permit_root_login", root, "must be prohibit-password or no (passwords are never allowed)")
    connection = str(config.get("connection") or "ssh")
    user = str(config.get("remote_user") or "")
    if config.get("hardening_ssh_enabled", True) and connection in SSH_CONNECTIONS and user:
        allow = list(config.get("hardening_ssh_allow_users") or [])
        if allow and user not in allow:
            bad("hardening_ssh_allow_users", allow, f"does not list {user!r}, the user Ansible connects as: the "
                "next connection would be refused. Fix: add it")
        if user == "root" and root == "no":
            bad("hardening_ssh_permit_root_login", root, "Ansible connects as root: the next connection would be "
                "refused. Fix: connect as an unprivileged user with sudo, or use prohibit-password")

    for var in ("hardening_firewall_ssh_port",):
        if not _is_port(config.get(var)):
            bad(var, config.get(var), "must be a port number (1-65535)")
    for var in ("hardening_firewall_monitoring_ports", "hardening_firewall_fabric_udp_ports",
                "hardening_firewall_extra_tcp_ports"):
        for port in config.get(var) or []:
            if not _is_port(port):
                bad(var, port, "must be a port number (1-65535), without quotes")
    for var in ("hardening_firewall_mgmt_sources", "hardening_firewall_monitoring_sources"):
        for net in config.get(var) or []:
            try:
                ipaddress.ip_network(str(net), strict=False)
            except ValueError:
                bad(var, net, "must be an IPv4/IPv6 address or network (e.g. 192.0.2.0/24)")
    for var in ("hardening_firewall_fabric_interface",):
        value = str(config.get(var) or "")
        if value and not re.fullmatch(r"[A-Za-z0-9_.:@-]{1,15}", value):
            bad(var, value, "must be an interface name (at most 15 characters)")
    for iface in config.get("hardening_firewall_trusted_interfaces") or []:
        if not re.fullmatch(r"[A-Za-z0-9_.:@-]{1,15}", str(iface)):
            bad("hardening_firewall_trusted_interfaces", iface, "must be an interface name (at most 15 characters)")

    uid_min = config.get("hardening_audit_uid_min")
    if not isinstance(uid_min, int) or isinstance(uid_min, bool) or uid_min < 0:
        bad("hardening_audit_uid_min", uid_min, "must be a non-negative integer")
    for watch in config.get("hardening_audit_watches") or []:
        path, key = str(watch.get("path", "")), str(watch.get("key", ""))
        if not path.startswith("/") or " " in path:
            bad("hardening_audit_watches", path, "path must be absolute, without spaces")
        if not AUDIT_KEY.fullmatch(key):
            bad("hardening_audit_watches", f"{path} key {key}", "key must be 1-31 letters, digits, - or _")
    for cmd in config.get("hardening_audit_privileged_commands") or []:
        if not str(cmd).startswith("/"):
            bad("hardening_audit_privileged_commands", cmd, "must be an absolute path")

    tls_dir = str(config.get("hardening_tls_dir") or "")
    if not tls_dir.startswith("/"):
        bad("hardening_tls_dir", tls_dir, "must be an absolute path")
    dests = [str(item.get("dest", "")) for item in config.get("hardening_tls_files") or []]
    for item in config.get("hardening_tls_files") or []:
        dest = str(item.get("dest", ""))
        mode = item.get("mode")
        where = f"hardening_tls_files[dest={dest}]"
        if not dest.startswith("/"):
            problems.append(f"{host}: {where}: dest must be an absolute path")
        if dests.count(dest) > 1:
            problems.append(f"{host}: {where}: listed more than once")
        if not item.get("content"):
            problems.append(f"{host}: {where}: content is empty (set it from Ansible Vault)")
        if not _is_mode(mode):
            problems.append(f"{host}: {where}: mode={mode}: must be an octal string such as \"0644\" (quoted)")
        elif _is_private_key(item) and mode.zfill(4) not in PRIVATE_KEY_MODES:
            problems.append(f"{host}: {where}: mode={mode}: a private key must be 0600 or 0400")
    return problems


def hardening_audit_rules(setuid_binaries: Iterable[str], privileged_commands: Iterable[str],
                          watches: Sequence[Mapping[str, str]], uid_min: int, architecture: str = "x86_64",
                          immutable: bool = False) -> list[str]:
    """The audit rules (auditctl syntax, one per line) in a stable order, so a re-run renders the same file.

    - every setuid/setgid binary found and every listed privileged command that exists: executions by people
      (login UID >= uid_min, set) -- key ``privileged``;
    - any execve that gains root through setuid (euid 0, uid not 0), whoever runs it -- key ``setuid``;
    - writes and attribute changes of the watched paths -- their own keys.
    """
    commands = sorted(set(setuid_binaries) | set(privileged_commands))
    rules = ["## Privileged commands: setuid/setgid binaries found on this node, plus the listed ones"]
    rules += [f"-a always,exit -F path={path} -F perm=x -F auid>={int(uid_min)} -F auid!=unset -k privileged"
              for path in commands]
    rules.append("## Root gained through setuid (any program, any user)")
    arches = ["b64", "b32"] if architecture in ("x86_64", "amd64") else ["b64"]
    rules += [f"-a always,exit -F arch={arch} -S execve -C uid!=euid -F euid=0 -k setuid" for arch in arches]
    rules.append("## Configuration changes")
    rules += [f"-w {w['path']} -p wa -k {w['key']}" for w in watches]
    if immutable:
        rules += ["## Immutable until reboot", "-e 2"]
    return rules


class FilterModule:
    """Filters of the hardening role."""

    def filters(self) -> dict[str, Any]:
        return {"hardening_problems": hardening_problems, "hardening_audit_rules": hardening_audit_rules}
