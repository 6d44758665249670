"""Decisions of the cuda role, as pure functions (no Ansible import).

The compatibility table lives in vars/main.yml (with its source); these functions only apply it. The role's
preflight calls ``cuda_plan`` with plain values and fails with its problems before anything is installed;
tests/unit/test_gpu_stack_roles.py calls the same functions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

_VERSION = re.compile(r"^(\d+)\.(\d+)$")
_NVCC = re.compile(r"release (\d+\.\d+)")
_PROC_VERSION = re.compile(r"NVRM version:.*?\s(\d{3,})\.\d+(?:\.\d+)?\s")


def cuda_split(version: str) -> tuple[int, int] | None:
    """'12.4' -> (12, 4); None for anything else."""
    match = _VERSION.match(str(version or "").strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def cuda_package_suffix(version: str) -> str:
    """'12.4' -> '12-4' (NVIDIA's versioned package names: cuda-toolkit-12-4)."""
    return str(version).replace(".", "-")


def cuda_parse_nvcc(text: str) -> str:
    """``nvcc --version`` -> '12.4' ('' when it is not nvcc output)."""
    match = _NVCC.search(text or "")
    return match.group(1) if match else ""


def cuda_driver_branch_from_proc(text: str) -> str:
    """Branch of the loaded driver from /proc/driver/nvidia/version ('' when none)."""
    match = _PROC_VERSION.search(text or "")
    return match.group(1) if match else ""


def cuda_driver_compat(cuda_version: str, driver_branch: str, table: Mapping[str, Any]) -> dict[str, str]:
    """Can driver ``branch`` run CUDA ``cuda_version``?

    status: full (the branch is at least the one the toolkit ships with), minor (CUDA minor version
    compatibility: runs, with the limits NVIDIA documents, e.g. no PTX JIT of newer PTX), unsupported (below the
    major's minimum: cannot run), unknown (no branch known, or a CUDA major the table does not list).
    """
    parts = cuda_split(cuda_version)
    branch = str(driver_branch or "")
    if not parts or not branch.isdigit():
        return {"status": "unknown", "message": f"CUDA {cuda_version} vs driver branch {branch or 'unknown'}: "
                                                "not checked (no driver branch known)"}
    major = str(parts[0])
    minimum = table["minimum_branch_by_major"].get(major)
    if minimum is None:
        return {"status": "unknown",
                "message": f"CUDA {cuda_version}: major {major} is not in the compatibility table"}
    if int(branch) < int(minimum):
        return {"status": "unsupported",
                "message": f"CUDA {cuda_version} needs driver branch >= {minimum} (CUDA {major}.x minimum); "
                           f"branch {branch} cannot run it"}
    full = table["toolkit_branch"].get(f"{parts[0]}.{parts[1]}")
    if full is not None and int(branch) < int(full):
        return {"status": "minor",
                "message": f"CUDA {cuda_version} runs on branch {branch} through minor version compatibility only "
                           f"(its toolkit driver is branch {full}; PTX JIT of newer PTX and some features need "
                           f">= {full})"}
    return {"status": "full", "message": f"CUDA {cuda_version} is fully supported by driver branch {branch}"}


def cuda_plan(settings: Mapping[str, Any], facts: Mapping[str, Any], tables: Mapping[str, Any]) -> dict:
    """Preflight decisions: problems (fail), warnings, the versions and packages to install.

    settings: source, version, additional_versions, package_version, driver_branch, strict, os,
              distro_version (the distribution's nvidia-cuda-toolkit CUDA version), packages (override).
    facts:    loaded_driver_branch (from /proc, '' when none).
    tables:   minimum_branch_by_major, toolkit_branch, branches (valid driver branches, for messages).
    """
    problems: list[str] = []
    warnings: list[str] = []
    version = str(settings["version"])
    extra = [str(v) for v in settings.get("additional_versions") or []]
    source = settings["source"]
    for name, value in [("cuda_version", version)] + [("cuda_additional_versions", v) for v in extra]:
        if not cuda_split(value):
            problems.append(f"{name}={value!r} is not a CUDA major.minor version (e.g. '12.4')")
    if version in extra:
        problems.append(f"cuda_additional_versions lists {version}, which is cuda_version itself")
    if source == "distro":
        distro = str(settings.get("distro_version") or "")
        if version != distro:
            problems.append(f"cuda_version={version!r}: the {settings.get('os')} archive's nvidia-cuda-toolkit is "
                            f"CUDA {distro}; valid choices with cuda_source=distro: {distro} "
                            "(other versions: cuda_source=cuda_repo)")
        if extra:
            problems.append("cuda_additional_versions needs cuda_source=cuda_repo (the distribution has one CUDA)")
    package_version = str(settings.get("package_version") or "")
    if package_version and source == "cuda_repo" and not package_version.startswith(version + "."):
        problems.append(f"cuda_package_version={package_version!r} is not a CUDA {version} package version "
                        f"(e.g. {version}.1-1)")

    branch = str(settings.get("driver_branch") or "") or str(facts.get("loaded_driver_branch") or "")
    compat = []
    for value in [version, *extra]:
        if not cuda_split(value):
            continue
        result = cuda_driver_compat(value, branch, tables)
        compat.append({"version": value, **result})
        if result["status"] == "unsupported":
            valid = [b for b in tables.get("branches", [])
                     if int(b) >= int(tables["minimum_branch_by_major"][value.split(".")[0]])]
            problems.append(f"cuda_version={value!r} with driver branch {branch} (cuda_driver_branch / "
                            f"nvidia_driver_branch): {result['message']}; valid driver branches: "
                            f"{', '.join(valid) or 'none of the supported ones'}")
        elif result["status"] == "minor" and settings.get("strict"):
            problems.append(f"cuda_version={value!r}: {result['message']}; cuda_driver_compat_strict=true needs "
                            "the toolkit's own branch or newer")
        elif result["status"] in ("minor", "unknown"):
            warnings.append(result["message"])

    if settings.get("packages"):
        packages = list(settings["packages"])
    elif source == "distro":
        packages = ["nvidia-cuda-toolkit"]
    else:
        packages = [f"cuda-toolkit-{cuda_package_suffix(v)}" for v in [version, *extra]]
    return {"problems": problems, "warnings": warnings, "compat": compat, "driver_branch": branch,
            "versions": [version, *extra], "packages": packages}


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version))


def cuda_resolve(madison_text: str, packages: Sequence[str], primary_version: str,
                 installed: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> dict:
    """Exact versions: ``primary_version`` for the first package when given; otherwise the installed version
    (an installed toolkit is kept), else the newest the apt sources offer."""
    offered: dict[str, list[str]] = {}
    for line in (madison_text or "").splitlines():
        fields = [f.strip() for f in line.split("|")]
        if len(fields) >= 3 and fields[0] and fields[1]:
            offered.setdefault(fields[0], []).append(fields[1])
    resolved: dict[str, str] = {}
    problems: list[str] = []
    for index, name in enumerate(packages):
        have = [str(e.get("version", "")) for e in (installed or {}).get(name, [])]
        choices = offered.get(name, []) + [v for v in have if v not in offered.get(name, [])]
        if index == 0 and primary_version:
            if primary_version in choices:
                resolved[name] = primary_version
            else:
                problems.append(f"{name} has no version {primary_version} (offered: {', '.join(choices) or 'none'})")
        elif have:
            resolved[name] = have[0]
        elif choices:
            resolved[name] = max(choices, key=_key)
        else:
            problems.append(f"{name} is not offered by the configured apt sources")
    return {"packages": resolved, "problems": problems}


def cuda_pin_list(resolved: Mapping[str, str]) -> list[str]:
    return [f"{name}={version}" for name, version in resolved.items()]



def cuda_alternative_priority(version: str) -> int:
    """update-alternatives priority of /usr/local/cuda-<version>: newer versions rank higher (12.4 -> 1204)."""
    parts = cuda_split(version) or (0, 0)
    return parts[0] * 100 + parts[1]


class FilterModule:
    """cuda_* filters: driver compatibility, preflight plan, version resolution, nvcc parsing."""

    def filters(self) -> dict[str, Any]:
        return {
            "cuda_split": cuda_split,
            "cuda_package_suffix": cuda_package_suffix,
            "cuda_parse_nvcc": cuda_parse_nvcc,
            "cuda_driver_branch_from_proc": cuda_driver_branch_from_proc,
            "cuda_driver_compat": cuda_driver_compat,
            "cuda_plan": cuda_plan,
            "cuda_resolve": cuda_resolve,
            "cuda_pin_list": cuda_pin_list,
            "cuda_alternative_priority": cuda_alternative_priority,
        }
