"""Decisions of the nccl role, as pure functions (no Ansible import): version pins, the CUDA major check, the
NCCL_IB_GID_INDEX rule, the /etc/nccl.conf settings, and the apt dry-run guard. tests/unit/test_gpu_stack_roles.py
calls them with plain values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

_NCCL_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_PACKAGE_VERSION = re.compile(r"^(\d+\.\d+\.\d+)-\d+\+cuda(\d+)\.(\d+)$")
_WHEEL = re.compile(r"^nvidia-nccl-cu(\d+)$")


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", str(version)))


def nccl_package_version(nccl_version: str, cuda_version: str, override: str = "") -> str:
    """Full apt version of libnccl2/libnccl-dev: '2.21.5' + '12.4' -> '2.21.5-1+cuda12.4' (or the override)."""
    return str(override) if override else f"{nccl_version}-1+cuda{cuda_version}"


def nccl_wheel_name(cuda_version: str, override: str = "") -> str:
    """PyPI wheel of the CUDA major: '12.4' -> 'nvidia-nccl-cu12' (or the override)."""
    return str(override) if override else f"nvidia-nccl-cu{str(cuda_version).split('.')[0]}"


def nccl_plan(settings: Mapping[str, Any]) -> dict:
    """Preflight: problems (fail) and warnings.

    settings: source, version, cuda_version, package_version (override), wheel_name (override),
              toolkit_cuda_version (the cuda role's cuda_version when it is in the play, else '').
    """
    problems: list[str] = []
    warnings: list[str] = []
    version = str(settings["version"])
    cuda_version = str(settings["cuda_version"])
    if not _NCCL_VERSION.match(version):
        problems.append(f"nccl_version={version!r} is not an NCCL version (e.g. '2.21.5')")
    if not re.match(r"^\d+\.\d+$", cuda_version):
        problems.append(f"nccl_cuda_version={cuda_version!r} is not a CUDA major.minor version (e.g. '12.4')")
        return {"problems": problems, "warnings": warnings}
    cuda_major = cuda_version.split(".")[0]
    toolkit = str(settings.get("toolkit_cuda_version") or "")
    if toolkit and toolkit.split(".")[0] != cuda_major:
        problems.append(f"nccl_cuda_version={cuda_version!r} is CUDA {cuda_major}.x but the toolkit (cuda_version) "
                        f"is {toolkit}; valid choices: a {toolkit.split('.')[0]}.x version (e.g. {toolkit})")
    if settings["source"] == "cuda_repo":
        package_version = nccl_package_version(version, cuda_version, str(settings.get("package_version") or ""))
        match = _PACKAGE_VERSION.match(package_version)
        if not match:
            problems.append(f"nccl_package_version={package_version!r} is not of the form "
                            "<nccl>-<rev>+cuda<major>.<minor> (e.g. 2.21.5-1+cuda12.4)")
        else:
            if match.group(1) != version:
                problems.append(f"nccl_package_version={package_version!r} is NCCL {match.group(1)}, not "
                                f"nccl_version={version}")
            if match.group(2) != cuda_major:
                problems.append(f"nccl_package_version={package_version!r} is built for CUDA {match.group(2)}.x "
                                f"but nccl_cuda_version is {cuda_version}; valid choices: a +cuda{cuda_major}.x "
                                "build")
            elif f"{match.group(2)}.{match.group(3)}" != cuda_version:
                warnings.append(f"libnccl2 {package_version} is built for CUDA {match.group(2)}.{match.group(3)}, "
                                f"nccl_cuda_version is {cuda_version} (same major: compatible)")
    else:
        wheel = nccl_wheel_name(cuda_version, str(settings.get("wheel_name") or ""))
        match = _WHEEL.match(wheel)
        if not match:
            problems.append(f"nccl_wheel_name={wheel!r} is not an nvidia-nccl-cu<major> wheel")
        elif match.group(1) != cuda_major:
            problems.append(f"nccl_wheel_name={wheel!r} is built for CUDA {match.group(1)}.x but nccl_cuda_version "
                            f"is {cuda_version}; valid choices: nvidia-nccl-cu{cuda_major}")
    return {"problems": problems, "warnings": warnings}


def nccl_gid_index(nccl_version: str, override: int, rdma_fact: Any, auto_from: str) -> dict:
    """NCCL_IB_GID_INDEX: {'value': int or None, 'reason': str}.

    NCCL >= auto_from (2.21) selects the RoCEv2 GID itself (default -1): nothing is written unless the operator
    sets nccl_ib_gid_index. Older NCCL defaults to GID 0 (usually RoCEv1 / link-local): the rdma role's fact
    rdma_roce_v2_gid_index is written then.
    """
    if override is not None and int(override) >= 0:
        return {"value": int(override), "reason": "set by nccl_ib_gid_index"}
    if _key(nccl_version) >= _key(auto_from):
        return {"value": None,
                "reason": f"not set: NCCL {nccl_version} (>= {auto_from}) selects the RoCEv2 GID itself"}
    if rdma_fact is not None and str(rdma_fact).lstrip("-").isdigit() and int(rdma_fact) >= 0:
        return {"value": int(rdma_fact),
                "reason": f"from rdma_roce_v2_gid_index: NCCL {nccl_version} (< {auto_from}) defaults to GID 0"}
    return {"value": None,
            "reason": f"not set: NCCL {nccl_version} (< {auto_from}) defaults to GID 0 and no rdma_roce_v2_gid_index "
                      "fact is known (run the rdma role, or set nccl_ib_gid_index)"}


def nccl_conf_settings(config: Mapping[str, Any]) -> list[list[str]]:
    """Ordered [name, value] pairs for /etc/nccl.conf; unset values (empty string, -1, None) are left out, so
    NCCL's own default applies to them."""
    pairs: list[list[str]] = []
    for name, value in config.items():
        if value is None or value == "" or (isinstance(value, int) and not isinstance(value, bool) and value < 0):
            continue
        pairs.append([str(name), str(value)])
    return pairs


def nccl_simulated_others(simulation: str, allowed: Sequence[str]) -> list[str]:
    """Packages an ``apt-get -s install`` would install, upgrade or remove besides ``allowed`` (NCCL must not drag
    CUDA or the driver)."""
    others = []
    for line in (simulation or "").splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] in ("Inst", "Remv") and fields[1] not in allowed:
            others.append(f"{fields[0]} {fields[1]}")
    return others


def nccl_wheel_file(files: Sequence[str], wheel_name: str, version: str, arch: str) -> str:
    """The downloaded wheel for this version and architecture among ``files`` ('' when none)."""
    stem = wheel_name.replace("-", "_") + f"-{version}-"
    for path in sorted(files):
        base = path.rsplit("/", 1)[-1]
        if base.startswith(stem) and base.endswith(f"_{arch}.whl"):
            return path
    return ""


def nccl_version_from_lib(value: Any) -> str:
    """ncclGetVersion() integer -> '2.21.5' (22105 -> 2.21.5; 2.9 and older: 2903 -> 2.9.3)."""
    code = int(str(value).strip())
    if code >= 10000:
        return f"{code // 10000}.{code % 10000 // 100}.{code % 100}"
    return f"{code // 1000}.{code % 1000 // 100}.{code % 100}"


class FilterModule:
    """nccl_* filters."""

    def filters(self) -> dict[str, Any]:
        return {
            "nccl_package_version": nccl_package_version,
            "nccl_wheel_name": nccl_wheel_name,
            "nccl_plan": nccl_plan,
            "nccl_gid_index": nccl_gid_index,
            "nccl_conf_settings": nccl_conf_settings,
            "nccl_simulated_others": nccl_simulated_others,
            "nccl_wheel_file": nccl_wheel_file,
            "nccl_version_from_lib": nccl_version_from_lib,
        }
