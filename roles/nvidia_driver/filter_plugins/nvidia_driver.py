"""Decisions of the nvidia_driver role, as pure functions (no Ansible import).

The role's tasks gather read-only facts (PCI devices from sysfs, installed packages, /proc/driver/nvidia/version,
``nvidia-smi`` output, ``apt-cache madison``) and hand them to these filters; tests/unit/test_gpu_stack_roles.py
calls the same functions with plain values. Every problem is one line that names the variable, its value and the
valid choices, so the preflight phase can fail before anything is installed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

NVIDIA_VENDOR = "0x10de"
# PCI class codes (base class + subclass): 0x0300 VGA, 0x0302 3D controller (data-centre GPUs), 0x0680 "other
# bridge" (NVSwitch shows up as an NVIDIA bridge of this class).
GPU_CLASSES = ("0x0300", "0x0302")
NVSWITCH_CLASS = "0x0680"

_PROC_VERSION = re.compile(r"NVRM version:.*?\s(\d{3,}\.\d+(?:\.\d+)?)\s")


def nvidia_driver_upstream(deb_version: str) -> str:
    """Upstream part of a Debian version: ``1:570.195.03-0ubuntu1`` -> ``570.195.03``."""
    version = str(deb_version or "").strip()
    if ":" in version:
        version = version.split(":", 1)[1]
    return version.rsplit("-", 1)[0] if "-" in version else version


def _branch_of(version: str) -> str:
    return version.split(".", 1)[0] if version else ""


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in re.split(r"[.+~]", version))


def nvidia_driver_parse_pci(text: str) -> dict[str, list[str]]:
    """Lines ``<bdf> <vendor> <class>`` (read from /sys/bus/pci/devices) -> NVIDIA GPUs and NVSwitches."""
    gpus: list[str] = []
    switches: list[str] = []
    for line in (text or "").splitlines():
        fields = line.split()
        if len(fields) != 3 or fields[1].lower() != NVIDIA_VENDOR:
            continue
        bdf, pci_class = fields[0], fields[2].lower()[:6]
        if pci_class in GPU_CLASSES:
            gpus.append(bdf)
        elif pci_class == NVSWITCH_CLASS:
            switches.append(bdf)
    return {"gpus": sorted(gpus), "nvswitches": sorted(switches)}


def nvidia_driver_parse_proc_version(text: str) -> str:
    """Version of the loaded kernel module from /proc/driver/nvidia/version ('' when none)."""
    match = _PROC_VERSION.search(text or "")
    return match.group(1) if match else ""


def nvidia_driver_fabric_states(text: str) -> list[str]:
    """``State`` values of the ``Fabric`` sections of ``nvidia-smi -q`` (one per GPU; N/A without NVSwitch)."""
    states: list[str] = []
    in_fabric = False
    for line in (text or "").splitlines():
        stripped = line.strip()
        if stripped == "Fabric":
            in_fabric = True
            continue
        if in_fabric and ":" in stripped:
            key, value = (s.strip() for s in stripped.split(":", 1))
            if key == "State":
                states.append(value)
                in_fabric = False
        elif in_fabric and stripped and ":" not in stripped:
            in_fabric = False
    return states


def nvidia_driver_parse_smi(text: str) -> list[dict[str, str]]:
    """``nvidia-smi --query-gpu=index,name,driver_version,pci.bus_id --format=csv,noheader`` -> one dict per GPU."""
    gpus = []
    for line in (text or "").splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) >= 3 and fields[0].isdigit():
            gpus.append({"index": fields[0], "name": fields[1], "driver_version": fields[2],
                         "bus_id": fields[3] if len(fields) > 3 else ""})
    return gpus


def nvidia_driver_gpu_arch(model: str, archs: Sequence[Mapping[str, str]]) -> str:
    """Architecture of a declared GPU model (first matching substring of the table in vars/main.yml)."""
    name = str(model or "").upper()
    if name in ("", "NONE"):
        return "none"
    for row in archs:
        if str(row["match"]).upper() in name:
            return str(row["arch"])
    return "unknown"


def nvidia_driver_flavor(requested: str, branch: str, arch: str, rules: Mapping[str, Any]) -> str:
    """Kernel module flavour: the requested one, or for ``auto`` what NVIDIA recommends for the GPU and branch."""
    if requested in ("open", "proprietary"):
        return requested
    if arch in rules["open_required"]:
        return "open"
    if arch in rules["open_unsupported"]:
        return "proprietary"
    # Turing and newer, or an undeclared GPU: NVIDIA's own default (open from the 560 series on).
    if branch.isdigit() and int(branch) >= int(rules["open_default_from_branch"]):
        return "open"
    return "open" if arch in rules["open_recommended"] else "proprietary"


def _installed_version(installed: Mapping[str, Sequence[Mapping[str, Any]]], marker: str) -> tuple[str, str]:
    """(package, upstream version) of the first installed package whose name matches ``marker``."""
    pattern = re.compile(marker)
    for name in sorted(installed):
        if pattern.search(name) and installed[name]:
            return name, nvidia_driver_upstream(str(installed[name][0].get("version", "")))
    return "", ""


def nvidia_driver_plan(settings: Mapping[str, Any], facts: Mapping[str, Any], tables: Mapping[str, Any]) -> dict:
    """Everything preflight decides, before anything changes: problems, flavour, fabric manager, what to do.

    settings: source, branch, version, flavor, build, headless, fabricmanager (auto|true|false), allow_upgrade,
              os (e.g. Debian-12), source_branches ({source: branches it carries on this OS}; empty or absent =
              every supported branch), precompiled_sources, fabricmanager_packages (names for this OS and source;
              empty = not packaged), headless_min_branch (lowest branch with a compute-only set for this source
              on this OS; 0 = any), server_variant (nvidia_driver_ubuntu_server_variant),
              fabricmanager_needs_server (this source's fabric manager depends on the -server driver).
    facts:    gpu_model, pci ({gpus, nvswitches}), fabric_states, installed (package_facts), marker (regex),
              loaded_version, in_container, virtualization_type, expected_gpus.
    tables:   branches, gpu_archs, arch_rules, pinning ({sources, from_branch, prefix}; optional).
    """
    problems: list[str] = []
    warnings: list[str] = []
    branch = str(settings["branch"])
    version = str(settings.get("version") or "")
    branches = [str(b) for b in tables["branches"]]
    rules = tables["arch_rules"]
    arch = nvidia_driver_gpu_arch(str(facts.get("gpu_model", "none")), tables["gpu_archs"])

    if branch not in branches:
        problems.append(f"nvidia_driver_branch={branch!r} is not a supported branch; valid choices: "
                        f"{', '.join(branches)}")
    if version and _branch_of(version) != branch:
        problems.append(f"nvidia_driver_version={version!r} is not in branch {branch} "
                        f"(nvidia_driver_branch); set a {branch}.x version or leave it empty")
    source = str(settings["source"])
    source_branches = {str(k): [str(b) for b in v or []] for k, v in (settings.get("source_branches") or {}).items()}
    carried = source_branches.get(source, [])
    if carried and branch not in carried:
        where = (f"the {settings['os']} archive" if source == "distro"
                 else f"NVIDIA's CUDA repository for {settings['os']}")
        others = [s for s, b in sorted(source_branches.items()) if s != source and (not b or branch in b)]
        problems.append(f"nvidia_driver_branch={branch!r}: {where} (nvidia_driver_source={source}) carries only "
                        f"{', '.join(carried)}; valid choices: {', '.join(carried)}"
                        + "".join(f", or nvidia_driver_source={s}" for s in others))
    headless_min = int(settings.get("headless_min_branch") or 0)
    if settings.get("headless", True) and headless_min and branch.isdigit() and int(branch) < headless_min:
        valid = [b for b in (carried or branches) if b.isdigit() and int(b) >= headless_min]
        problems.append(f"nvidia_driver_headless=true with nvidia_driver_source={source} on {settings['os']} needs "
                        f"nvidia_driver_branch >= {headless_min} (the compute-only package set exists from the "
                        f"{headless_min} series on); branch {branch} has none; valid choices: nvidia_driver_branch "
                        f"{', '.join(valid)}, or nvidia_driver_headless=false (the full driver with its X stack)")
    precompiled_sources = list(settings.get("precompiled_sources") or [])
    if settings["build"] == "precompiled":
        if settings["source"] not in precompiled_sources:
            problems.append(f"nvidia_driver_kernel_module_build=precompiled is not available for "
                            f"nvidia_driver_source={settings['source']} on {settings['os']}; valid choices here: dkms"
                            + (f" (precompiled modules: nvidia_driver_source={precompiled_sources[0]})"
                               if precompiled_sources else ""))
        elif not settings.get("headless", True):
            problems.append("nvidia_driver_kernel_module_build=precompiled needs nvidia_driver_headless=true "
                            "(the precompiled set is the headless no-DKMS one); valid choices: dkms, or headless")

    requested = str(settings.get("flavor", "auto"))
    flavor = nvidia_driver_flavor(requested, branch, arch, rules)
    if flavor == "proprietary" and arch in rules["open_required"]:
        problems.append(f"nvidia_driver_kernel_module_flavor={requested!r}: {facts.get('gpu_model')} ({arch}) "
                        "runs only with the open kernel modules; valid choices: open, auto")
    if flavor == "open" and arch in rules["open_unsupported"]:
        problems.append(f"nvidia_driver_kernel_module_flavor={requested!r}: {facts.get('gpu_model')} ({arch}) is "
                        "older than Turing, which the open kernel modules do not support; valid choices: "
                        "proprietary, auto")
    min_branch = rules.get("min_branch", {}).get(arch)
    if min_branch and branch.isdigit() and int(branch) < int(min_branch):
        valid = [b for b in branches if int(b) >= int(min_branch)]
        problems.append(f"nvidia_driver_branch={branch!r} does not support {facts.get('gpu_model')} ({arch}); "
                        f"valid choices: {', '.join(valid)}")
    if flavor == "proprietary" and arch in rules["open_recommended"] and branch.isdigit() \
            and int(branch) >= int(rules["open_default_from_branch"]):
        warnings.append(f"{facts.get('gpu_model')} ({arch}) with branch {branch}: NVIDIA recommends the open "
                        "kernel modules from the 560 series on (nvidia_driver_kernel_module_flavor=open or auto)")

    # Fabric manager: only where NVSwitch is present (PCI class 0x0680 from NVIDIA, or a Fabric state that is not
    # N/A in nvidia-smi -q); without any NVIDIA GPU it is never needed.
    pci = facts.get("pci") or {"gpus": [], "nvswitches": []}
    fabric_states = [s for s in facts.get("fabric_states") or [] if s and s.upper() != "N/A"]
    nvswitch = bool(pci.get("nvswitches")) or bool(fabric_states)
    evidence = (f"NVIDIA PCI bridges of class 0x0680: {len(pci.get('nvswitches', []))}, "
                f"nvidia-smi Fabric states: {', '.join(facts.get('fabric_states') or []) or 'none'}")
    fm_setting = str(settings["fabricmanager"]).lower()
    if fm_setting == "true":
        fabricmanager = True
        reason = "requested (nvidia_driver_fabricmanager_enabled=true)"
        if not nvswitch:
            problems.append("nvidia_driver_fabricmanager_enabled=true but this node has no NVSwitch "
                            f"({evidence}); fabric manager fails on such nodes (NV_WARN_NOTHING_TO_DO); "
                            "valid choices here: auto, false")
    elif fm_setting == "false":
        fabricmanager = False
        reason = "disabled (nvidia_driver_fabricmanager_enabled=false)"
        if nvswitch:
            warnings.append(f"NVSwitch present ({evidence}) but fabric manager is disabled: GPUs on NVSwitch "
                            "systems are unusable without it")
    elif not pci.get("gpus") and not fabric_states:
        fabricmanager = False
        reason = "auto: no NVIDIA GPU on this node"
    else:
        fabricmanager = nvswitch
        reason = f"auto: {'NVSwitch found' if nvswitch else 'no NVSwitch'} ({evidence})"
    if fabricmanager and not settings.get("fabricmanager_packages"):
        problems.append(f"fabric manager is needed ({reason}) but nvidia_driver_source={settings['source']} on "
                        f"{settings['os']} has no nvidia-fabricmanager package; valid choices: "
                        "nvidia_driver_source=cuda_repo")
    elif fabricmanager and settings.get("fabricmanager_needs_server") and not settings.get("server_variant", True):
        problems.append(f"nvidia_driver_ubuntu_server_variant=false with nvidia_driver_source={source} on "
                        f"{settings['os']}: fabric manager is needed ({reason}) and this archive's "
                        f"nvidia-fabricmanager-{branch} depends on the -server driver; valid choices: "
                        "nvidia_driver_ubuntu_server_variant=true, or nvidia_driver_source=cuda_repo")

    expected = int(facts.get("expected_gpus") or 0)
    if not facts.get("in_container") and expected and len(pci.get("gpus", [])) != expected:
        warnings.append(f"node_gpu_count={expected} but {len(pci.get('gpus', []))} NVIDIA GPUs are on the PCI bus")

    marker_package, installed = _installed_version(facts.get("installed") or {}, str(facts.get("marker") or "^$"))
    loaded = str(facts.get("loaded_version") or "")
    current = installed or loaded

    def matches(candidate: str) -> bool:
        return bool(candidate) and _branch_of(candidate) == branch and (not version or candidate == version)

    upgrade_pending = False
    if not current:
        action, target, adopted = "install", version, False
    elif matches(current):
        action, target, adopted = ("adopt" if installed else "adopt_unmanaged"), current, True
        if not installed:
            warnings.append(f"driver {loaded} is loaded but not installed from packages (runfile?): adopted as is; "
                            "it cannot be held against upgrades")
    elif settings.get("allow_upgrade"):
        action, target, adopted = "upgrade", version, False
    else:
        action, target, adopted, upgrade_pending = "deferred", current, False, True
        warnings.append(f"the node has driver {current} ({marker_package or 'loaded module'}) but the pin is "
                        f"branch {branch}{' version ' + version if version else ''}: nothing changed; set "
                        "nvidia_driver_allow_upgrade=true to install it (needs a reboot)")
    pinning = nvidia_driver_pinning_packages(source, branch, version, tables.get("pinning") or {})
    prefix = _pinning_prefix(tables.get("pinning") or {})
    stale_pinning = sorted(n for n in (facts.get("installed") or {}) if n.startswith(prefix) and n not in pinning)
    return {
        "problems": problems,
        "warnings": warnings,
        "pinning_packages": pinning,
        "stale_pinning_packages": stale_pinning,
        "arch": arch,
        "flavor": flavor,
        "nvswitch": nvswitch,
        "fabricmanager": fabricmanager,
        "fabricmanager_reason": reason,
        "action": action,
        "target_version": target,
        "adopted": adopted,
        "upgrade_pending": upgrade_pending,
        "installed_version": installed,
        "installed_package": marker_package,
        "loaded_version": loaded,
        "reboot_required": bool(loaded) and action in ("upgrade", "deferred"),
    }


def nvidia_driver_pinning_packages(source: str, branch: str, version: str, rules: Mapping[str, Any]) -> list[str]:
    """NVIDIA's apt pinning package to install before the driver: ``<prefix><version>`` when a version is pinned,
    ``<prefix><branch>`` otherwise; none for another source or an older branch (rules: sources, from_branch, prefix).

    The name follows nvidia_driver_version (the user's pin), not the adopted version, so that a driver adopted
    without a version pin keeps its branch pinning package on the next run.
    """
    if not rules or source not in (rules.get("sources") or []) or not str(branch).isdigit():
        return []
    if int(branch) < int(rules.get("from_branch") or 0):
        return []
    return [f"{_pinning_prefix(rules)}{version or branch}"]


def _pinning_prefix(rules: Mapping[str, Any]) -> str:
    """The pinning packages' name prefix (vars/main.yml _nvidia_driver_pinning.prefix)."""
    return str(rules.get("prefix") or "nvidia-driver-pinning-")


def nvidia_driver_madison(text: str) -> dict[str, list[str]]:
    """``apt-cache madison`` output -> {package: [versions, in the order apt lists them]}."""
    found: dict[str, list[str]] = {}
    for line in (text or "").splitlines():
        fields = [f.strip() for f in line.split("|")]
        if len(fields) >= 3 and fields[0] and fields[1]:
            versions = found.setdefault(fields[0], [])
            if fields[1] not in versions:
                versions.append(fields[1])
    return found


def nvidia_driver_resolve(madison_text: str, packages: Sequence[str], branch: str, target: str,
                          installed: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> dict:
    """Exact package versions for one driver version.

    ``target`` '' = the newest version of ``branch`` that the first package offers. Every package must exist at
    that upstream version (the CUDA repository's fabric manager, for instance, carries its own Debian revision).
    Versions already installed count as available (an adopted driver no longer in the repository).
    """
    available = nvidia_driver_madison(madison_text)
    for name, entries in (installed or {}).items():
        for entry in entries:
            version = str(entry.get("version", ""))
            if version and version not in available.setdefault(name, []):
                available[name].append(version)
    problems: list[str] = []
    if not packages:
        return {"version": target, "packages": {}, "problems": ["no driver packages for this OS and source"]}
    if not target:
        in_branch = [nvidia_driver_upstream(v) for v in available.get(packages[0], [])
                     if _branch_of(nvidia_driver_upstream(v)) == str(branch)]
        if not in_branch:
            offered = sorted({nvidia_driver_upstream(v) for v in available.get(packages[0], [])}, key=_version_key)
            return {"version": "", "packages": {}, "problems": [
                f"{packages[0]} has no version in branch {branch} in the configured apt sources"
                f" (offered: {', '.join(offered) or 'none - is the repository or component configured?'})"]}
        target = max(in_branch, key=_version_key)
    resolved: dict[str, str] = {}
    for name in packages:
        candidates = [v for v in available.get(name, []) if nvidia_driver_upstream(v) == target]
        if candidates:
            resolved[name] = candidates[0]
        else:
            offered = sorted({nvidia_driver_upstream(v) for v in available.get(name, [])}, key=_version_key)
            problems.append(f"{name} has no version {target} in the configured apt sources"
                            f" (offered: {', '.join(offered) or 'none'})")
    return {"version": target, "packages": resolved, "problems": problems}


def nvidia_driver_resolve_available(madison_text: str, packages: Sequence[str],
                                    installed: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                                    known_names: str | Sequence[str] = "") -> dict:
    """Exact versions for packages that only have to exist (NVIDIA's pinning packages carry their own version).

    An installed version is kept (so a second run changes nothing); otherwise the first version ``apt-cache
    madison`` lists (apt's newest). A package the apt sources do not have is a problem that says what they offer:
    ``known_names`` (e.g. ``apt-cache pkgnames nvidia-driver-pinning-`` output) lists the names that do exist.
    """
    available = nvidia_driver_madison(madison_text)
    names = sorted(set(known_names.split() if isinstance(known_names, str) else known_names or []))
    resolved: dict[str, str] = {}
    problems: list[str] = []
    for name in packages:
        have = [str(e.get("version", "")) for e in (installed or {}).get(name, []) if e.get("version")]
        if have:
            resolved[name] = have[0]
        elif available.get(name):
            resolved[name] = available[name][0]
        else:
            problems.append(f"{name} is not in the configured apt sources (offered: "
                            f"{', '.join(names) if names else 'none'})")
    return {"packages": resolved, "problems": problems}


def nvidia_driver_pin_list(resolved: Mapping[str, str]) -> list[str]:
    """{name: version} -> ['name=version', ...] for ansible.builtin.apt."""
    return [f"{name}={version}" for name, version in resolved.items()]


def nvidia_driver_held(selections: str, pattern: str) -> list[str]:
    """Packages on hold (``dpkg --get-selections`` output) whose name matches ``pattern``."""
    regex = re.compile(pattern)
    held = []
    for line in (selections or "").splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[1] == "hold" and regex.search(fields[0].split(":")[0]):
            held.append(fields[0].split(":")[0])
    return held



class FilterModule:
    """nvidia_driver_* filters: PCI/proc/nvidia-smi parsing, the preflight plan, version resolution."""

    def filters(self) -> dict[str, Any]:
        return {
            "nvidia_driver_upstream": nvidia_driver_upstream,
            "nvidia_driver_parse_pci": nvidia_driver_parse_pci,
            "nvidia_driver_parse_proc_version": nvidia_driver_parse_proc_version,
            "nvidia_driver_fabric_states": nvidia_driver_fabric_states,
            "nvidia_driver_parse_smi": nvidia_driver_parse_smi,
            "nvidia_driver_gpu_arch": nvidia_driver_gpu_arch,
            "nvidia_driver_flavor": nvidia_driver_flavor,
            "nvidia_driver_plan": nvidia_driver_plan,
            "nvidia_driver_madison": nvidia_driver_madison,
            "nvidia_driver_resolve": nvidia_driver_resolve,
            "nvidia_driver_resolve_available": nvidia_driver_resolve_available,
            "nvidia_driver_pin_list": nvidia_driver_pin_list,
            "nvidia_driver_held": nvidia_driver_held,
        }
