# Copyright: baremetal-ai contributors
# Apache-2.0
"""Filter `dpkg_packages`: installed packages from dpkg-query, in the shape ansible.builtin.package_facts gives.

The GPU stack roles read packages with `dpkg-query` instead of package_facts, because package_facts' apt
manager needs the python3-apt bindings for the interpreter Ansible uses, and images built for GPU work often
lack them (a PyTorch virtualenv's Python never has them). dpkg-query needs nothing.

    dpkg-query -W -f='${binary:Package}\\t${Version}\\t${Architecture}\\t${db:Status-Abbrev}\\n'
"""

from __future__ import annotations

from typing import Any

DPKG_QUERY_FORMAT = "${binary:Package}\t${Version}\t${Architecture}\t${db:Status-Abbrev}\n"


def _dpkg_lines(stdout: Any, caller: str) -> list[tuple[str, str, str, str]]:
    """(name without ':arch', version, arch, db:Status-Abbrev) per line of the dpkg-query output above. Names lose a
    ':arch' suffix (Multi-Arch: same packages), as package_facts reports them. A line that is not four tab-separated
    fields is an error naming the line, not a silently missing package."""
    if not isinstance(stdout, str):
        raise TypeError(f"{caller}: expected dpkg-query's stdout (a string), got {type(stdout).__name__}")
    out = []
    for n, line in enumerate(stdout.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 4:
            raise ValueError(f"{caller}: line {n} is not 'package<TAB>version<TAB>arch<TAB>status': {line!r}")
        name, version, arch, status = fields
        out.append((name.split(":", 1)[0], version, arch, status))
    return out


def _names(wanted: Any, caller: str) -> list[str]:
    """A list of package names (one name alone is a list of one)."""
    if isinstance(wanted, str):
        wanted = [wanted]
    if not isinstance(wanted, (list, tuple)):
        raise TypeError(f"{caller}: expected a list of package names, got {type(wanted).__name__}")
    return [str(n) for n in wanted]


def dpkg_packages(stdout: Any) -> dict[str, list[dict[str, str]]]:
    """{name: [{name, version, arch, source}]} for every installed package (status 'ii', 'hi', ...)."""
    out: dict[str, list[dict[str, str]]] = {}
    for name, version, arch, status in _dpkg_lines(stdout, "dpkg_packages"):
        # db:Status-Abbrev: desired (u/i/h/r/p), then state (n/c/H/U/F/W/t/i), then error flag. Only 'i' is installed.
        if len(status) < 2 or status[1] != "i":
            continue
        out.setdefault(name, []).append({"name": name, "version": version, "arch": arch, "source": "apt"})
    return out


def dpkg_version_mismatches(resolved: dict[str, str], installed: dict[str, list[dict[str, Any]]]) -> list[str]:
    """'name: installed X, pinned Y' for every resolved package (name -> exact version) that `installed` (the
    dpkg_packages shape) does not have at that version. Used by the verify steps of nvidia_driver and cuda."""
    wrong = []
    for name, version in resolved.items():
        have = [str(entry.get("version", "")) for entry in installed.get(name, [])]
        if version not in have:
            wrong.append(f"{name}: installed {', '.join(have) or 'nothing'}, pinned {version}")
    return wrong


def packages_missing(wanted: Any, installed: Any) -> list[str]:
    """The names in `wanted` (a list of apt package names) that `installed` (the dpkg_packages shape) lacks.

    A name with a version or release (`foo=1.2`, `foo/bookworm`) or an architecture (`foo:amd64`) is always
    returned: only apt can tell whether it is satisfied. With `installed` empty or undefined, everything is."""
    have = installed if isinstance(installed, dict) else {}
    return [n for n in _names(wanted, "packages_missing") if any(c in n for c in "=/:*?[") or n not in have]


def packages_not_held(wanted: Any, stdout: Any) -> list[str]:
    """The names in `wanted` that dpkg-query's output (the format above) does not show on hold (desired state
    'h'), names it does not list included (not installed when it was read). A hold task loops over these only: a
    package already on hold needs no dpkg_selections call (one module run per package and node, on every run)."""
    names = _names(wanted, "packages_not_held")
    held = {name for name, _, _, status in _dpkg_lines(stdout, "packages_not_held") if status[:1] == "h"}
    return [n for n in names if n not in held]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"dpkg_packages": dpkg_packages, "dpkg_version_mismatches": dpkg_version_mismatches,
                "packages_missing": packages_missing, "packages_not_held": packages_not_held}
