"""Decisions of the GPU stack roles (nvidia_driver, cuda, nccl), called with plain values.

The filter plugins hold the logic; the tables come from each role's vars/main.yml, so these tests and the roles
decide with the same data. Fixture text is the documented format of each tool (sources in the role READMEs).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[2] / "roles"


def load_filter(role: str, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_filter", ROLES / role / "filter_plugins" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nd = load_filter("nvidia_driver", "nvidia_driver")
cu = load_filter("cuda", "cuda")
nc = load_filter("nccl", "nccl")

ND_VARS = yaml.safe_load((ROLES / "nvidia_driver" / "vars" / "main.yml").read_text())
ND_TABLES = {"branches": ND_VARS["_nvidia_driver_branches"], "gpu_archs": ND_VARS["_nvidia_driver_gpu_archs"],
             "arch_rules": ND_VARS["_nvidia_driver_arch_rules"], "pinning": ND_VARS["_nvidia_driver_pinning"]}
# Per-OS tables (vars/<OS>.yml), as preflight.yml hands them to the plan
ND_OS = {name: yaml.safe_load((ROLES / "nvidia_driver" / "vars" / f"{name}.yml").read_text())
         for name in ("Debian-12", "Ubuntu-22", "Ubuntu-24")}
CUDA_COMPAT = yaml.safe_load((ROLES / "cuda" / "vars" / "main.yml").read_text())["_cuda_driver_compat"]
NCCL_VARS = yaml.safe_load((ROLES / "nccl" / "vars" / "main.yml").read_text())

# /sys/bus/pci/devices listing as preflight.yml prints it: an HGX H100 board (GPUs class 0x030200, NVSwitches
# class 0x068000) and a PCIe node without NVSwitch
HGX_PCI = "\n".join(
    [f"0000:{bus:02x}:00.0 0x10de 0x030200" for bus in (0x18, 0x2a, 0x3a, 0x5d, 0x9a, 0xab, 0xba, 0xdb)]
    + [f"0000:{bus:02x}:00.0 0x10de 0x068000" for bus in (0x05, 0x06, 0x07, 0x08)]
    + ["0000:00:00.0 0x8086 0x060000", "0000:17:00.0 0x15b3 0x020700"]
)
PCIE_PCI = "0000:18:00.0 0x10de 0x030200\n0000:3b:00.0 0x10de 0x030200\n0000:00:00.0 0x8086 0x060000"
PROC_PROPRIETARY = ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 19:39:15 UTC 2024\n"
                    "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
PROC_OPEN = ("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.195.03  Release Build  "
             "(dvs-builder@U16-I3-B03-4-3)  Thu Sep 25 18:31:58 UTC 2025\n")
SMI_Q_NVSWITCH = """
    Fabric
        State                             : Completed
        Status                            : Success
    Processes                             : None
"""
SMI_Q_PCIE = """
    Fabric
        State                             : N/A
        Status                            : N/A
"""
MADISON_DEBIAN = """\
nvidia-kernel-dkms | 535.309.01-0+deb12u1 | http://deb.debian.org/debian bookworm-updates/non-free amd64 Packages
nvidia-kernel-dkms | 535.261.03-1 | http://deb.debian.org/debian bookworm/non-free amd64 Packages
       nvidia-smi | 535.309.01-0+deb12u1 | http://deb.debian.org/debian bookworm-updates/non-free amd64 Packages
       nvidia-smi | 535.261.03-1 | http://deb.debian.org/debian bookworm/non-free amd64 Packages
"""
REPO = "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2204/x86_64  Packages"
MADISON_CUDA_REPO = "".join(
    f"{name} | {version} | {REPO}\n"
    for name, version in [("nvidia-headless-570-open", "570.195.03-0ubuntu1"),
                          ("nvidia-headless-570-open", "570.172.08-0ubuntu1"),
                          ("nvidia-headless-570-open", "570.86.15-0ubuntu1"),
                          ("nvidia-fabricmanager-570", "570.195.03-1"),
                          ("nvidia-fabricmanager-570", "570.172.08-1")]
)


def settings(**overrides: Any) -> dict[str, Any]:
    base = {"source": "cuda_repo", "branch": "570", "version": "", "flavor": "auto", "build": "dkms",
            "headless": True, "fabricmanager": "auto", "allow_upgrade": False, "os": "Ubuntu-22.04",
            "source_branches": {"distro": [], "cuda_repo": []}, "precompiled_sources": ["distro"],
            "fabricmanager_packages": ["nvidia-fabricmanager-570"], "headless_min_branch": 0,
            "server_variant": True, "fabricmanager_needs_server": False}
    return base | overrides


def os_settings(os_vars: str, source: str, **overrides: Any) -> dict[str, Any]:
    """settings() with the OS tables of vars/<os_vars>.yml, as tasks/preflight.yml builds them."""
    v = ND_OS[os_vars]
    return settings(source=source, os=os_vars.replace("Ubuntu-22", "Ubuntu-22.04").replace("Ubuntu-24", "Ubuntu-24.04"),
                    source_branches=v["_nvidia_driver_source_branches"],
                    headless_min_branch=v["_nvidia_driver_headless_min_branch"].get(source, 0),
                    fabricmanager_needs_server=source in v["_nvidia_driver_fabricmanager_needs_server"],
                    precompiled_sources=v["_nvidia_driver_precompiled_sources"],
                    fabricmanager_packages=v["_nvidia_driver_os_fabricmanager_packages"][source]) | overrides


NO_GPU = {"pci": {"gpus": [], "nvswitches": []}, "gpu_model": "none", "expected_gpus": 0}


def facts(**overrides: Any) -> dict[str, Any]:
    base = {"gpu_model": "H100-SXM5-80GB", "pci": nd.nvidia_driver_parse_pci(HGX_PCI), "fabric_states": [],
            "installed": {}, "marker": "^libnvidia-compute-[0-9]+(-server)?$", "loaded_version": "",
            "in_container": False, "expected_gpus": 8}
    return base | overrides


def plan(s: dict | None = None, f: dict | None = None) -> dict[str, Any]:
    return nd.nvidia_driver_plan(s or settings(), f or facts(), ND_TABLES)


# --- nvidia_driver: parsing -------------------------------------------------------------------------------------

def test_pci_inventory_finds_gpus_and_nvswitches():
    assert nd.nvidia_driver_parse_pci(HGX_PCI) == {
        "gpus": [f"0000:{b:02x}:00.0" for b in (0x18, 0x2a, 0x3a, 0x5d, 0x9a, 0xab, 0xba, 0xdb)],
        "nvswitches": ["0000:05:00.0", "0000:06:00.0", "0000:07:00.0", "0000:08:00.0"],
    }
    assert nd.nvidia_driver_parse_pci(PCIE_PCI)["nvswitches"] == []
    assert nd.nvidia_driver_parse_pci("") == {"gpus": [], "nvswitches": []}


@pytest.mark.parametrize(("text", "version"), [(PROC_PROPRIETARY, "535.183.01"), (PROC_OPEN, "570.195.03"),
                                               ("", "")])
def test_proc_version(text, version):
    assert nd.nvidia_driver_parse_proc_version(text) == version


def test_fabric_states():
    assert nd.nvidia_driver_fabric_states(SMI_Q_NVSWITCH) == ["Completed"]
    assert nd.nvidia_driver_fabric_states(SMI_Q_PCIE) == ["N/A"]


def test_parse_smi():
    out = ("0, NVIDIA H100 80GB HBM3, 570.195.03, 00000000:18:00.0\n"
           "1, NVIDIA H100 80GB HBM3, 570.195.03, 00000000:2A:00.0")
    gpus = nd.nvidia_driver_parse_smi(out)
    assert [g["driver_version"] for g in gpus] == ["570.195.03", "570.195.03"]
    assert gpus[1]["bus_id"] == "00000000:2A:00.0"


@pytest.mark.parametrize(("deb", "upstream"), [("535.309.01-0+deb12u1", "535.309.01"),
                                               ("570.195.03-0ubuntu0.22.04.1", "570.195.03"),
                                               ("1:580.65.06-1", "580.65.06"), ("", "")])
def test_upstream(deb, upstream):
    assert nd.nvidia_driver_upstream(deb) == upstream


@pytest.mark.parametrize(("model", "arch"), [("H100-SXM5-80GB", "hopper"), ("H200", "hopper"), ("H20", "hopper"),
                                             ("GB200", "blackwell"), ("B200", "blackwell"), ("A100-80GB", "ampere"),
                                             ("A10", "ampere"), ("L40S", "ada"), ("L4", "ada"), ("V100", "volta"),
                                             ("GH200", "grace_hopper"), ("none", "none"), ("X1", "unknown")])
def test_gpu_arch(model, arch):
    assert nd.nvidia_driver_gpu_arch(model, ND_TABLES["gpu_archs"]) == arch


# --- nvidia_driver: preflight decisions ---------------------------------------------------------------------------

def test_clean_hgx_plan_installs_open_modules_with_fabric_manager():
    p = plan()
    assert p["problems"] == [] and p["warnings"] == []
    assert p["flavor"] == "open" and p["fabricmanager"] and p["nvswitch"]
    assert p["action"] == "install" and not p["adopted"] and not p["reboot_required"]


def test_unknown_branch_fails_with_choices():
    assert plan(settings(branch="545"))["problems"][0] == (
        "nvidia_driver_branch='545' is not a supported branch; valid choices: 535, 550, 570, 580")


def test_version_outside_branch_fails():
    assert "is not in branch 570" in plan(settings(version="550.127.05"))["problems"][0]


def test_fabric_manager_true_without_nvswitch_fails():
    p = plan(settings(fabricmanager="true"), facts(pci=nd.nvidia_driver_parse_pci(PCIE_PCI), gpu_model="L40S",
                                                   expected_gpus=2))
    assert len(p["problems"]) == 1
    assert p["problems"][0].startswith("nvidia_driver_fabricmanager_enabled=true but this node has no NVSwitch")
    assert p["problems"][0].endswith("valid choices here: auto, false")


def test_fabric_manager_auto():
    pcie = plan(f=facts(pci=nd.nvidia_driver_parse_pci(PCIE_PCI), gpu_model="L40S", expected_gpus=2))
    assert not pcie["fabricmanager"] and pcie["fabricmanager_reason"].startswith("auto: no NVSwitch")
    no_gpu = plan(f=facts(pci={"gpus": [], "nvswitches": []}, gpu_model="none", expected_gpus=0))
    assert not no_gpu["fabricmanager"] and no_gpu["fabricmanager_reason"] == "auto: no NVIDIA GPU on this node"
    # nvidia-smi -q facts alone (a board whose switches sysfs does not show) also count
    smi = plan(f=facts(pci=nd.nvidia_driver_parse_pci(PCIE_PCI), fabric_states=["Completed"], expected_gpus=2))
    assert smi["fabricmanager"]


def test_fabric_manager_needed_but_not_packaged_fails():
    p = plan(settings(source="distro", os="Debian-12", branch="535", distro_branches=["535"], precompiled_sources=[],
                      fabricmanager_packages=[]))
    assert any("has no nvidia-fabricmanager package" in x for x in p["problems"])


def test_debian_archive_has_only_535():
    p = plan(os_settings("Debian-12", "distro"), facts(**NO_GPU))
    assert p["problems"] == ["nvidia_driver_branch='570': the Debian-12 archive (nvidia_driver_source=distro) carries "
                             "only 535; valid choices: 535, or nvidia_driver_source=cuda_repo"]
    # the Molecule scenario's settings
    assert plan(os_settings("Debian-12", "distro", branch="535", version="535.309.01"), facts(**NO_GPU))[
        "problems"] == []


def test_debian12_cuda_repo_has_no_535():
    # NVIDIA's debian12 repository: 545 to 560 (and later), no 535 (elFarto/nvidia-vaapi-driver#312)
    p = plan(os_settings("Debian-12", "cuda_repo", branch="535", headless=False), facts(**NO_GPU))
    assert p["problems"] == ["nvidia_driver_branch='535': NVIDIA's CUDA repository for Debian-12 "
                             "(nvidia_driver_source=cuda_repo) carries only 550, 570, 580; valid choices: 550, 570, "
                             "580, or nvidia_driver_source=distro"]
    for branch in ("570", "580"):
        assert plan(os_settings("Debian-12", "cuda_repo", branch=branch), facts(**NO_GPU))["problems"] == []
    assert plan(os_settings("Debian-12", "cuda_repo", branch="550", headless=False), facts(**NO_GPU))[
        "problems"] == []


def test_debian12_cuda_repo_headless_needs_560():
    # nvidia-driver-cuda (the compute-only meta package) exists from 560 on
    p = plan(os_settings("Debian-12", "cuda_repo", branch="550"), facts(**NO_GPU))
    assert p["problems"] == ["nvidia_driver_headless=true with nvidia_driver_source=cuda_repo on Debian-12 needs "
                             "nvidia_driver_branch >= 560 (the compute-only package set exists from the 560 series "
                             "on); branch 550 has none; valid choices: nvidia_driver_branch 570, 580, or "
                             "nvidia_driver_headless=false (the full driver with its X stack)"]
    # 535 from cuda_repo: both refusals, each with its choices
    both = plan(os_settings("Debian-12", "cuda_repo", branch="535"), facts(**NO_GPU))["problems"]
    assert len(both) == 2
    assert both[0].startswith("nvidia_driver_branch='535'") and "valid choices: 550, 570, 580" in both[0]
    assert both[1].startswith("nvidia_driver_headless=true")
    assert "valid choices: nvidia_driver_branch 570, 580" in both[1]
    # Debian's own 535 headless set and Ubuntu's repository set have no such limit
    assert plan(os_settings("Debian-12", "distro", branch="535"), facts(**NO_GPU))["problems"] == []
    assert plan(os_settings("Ubuntu-22", "cuda_repo", branch="550"), facts(**NO_GPU))["problems"] == []


@pytest.mark.parametrize("os_vars", ["Ubuntu-22", "Ubuntu-24"])
def test_ubuntu_distro_fabric_manager_needs_server_variant(os_vars):
    # Canonical's nvidia-fabricmanager-<b> depends on the -server driver (LP: #2129682)
    p = plan(os_settings(os_vars, "distro", server_variant=False))
    assert len(p["problems"]) == 1 and p["fabricmanager"]
    assert p["problems"][0].startswith(f"nvidia_driver_ubuntu_server_variant=false with nvidia_driver_source=distro "
                                       f"on {os_vars}.04: fabric manager is needed (auto: NVSwitch found")
    assert p["problems"][0].endswith("nvidia-fabricmanager-570 depends on the -server driver; valid choices: "
                                     "nvidia_driver_ubuntu_server_variant=true, or nvidia_driver_source=cuda_repo")
    requested = plan(os_settings(os_vars, "distro", server_variant=False, fabricmanager="true"))["problems"]
    assert len(requested) == 1 and "(requested (nvidia_driver_fabricmanager_enabled=true))" in requested[0]
    assert requested[0].endswith("valid choices: nvidia_driver_ubuntu_server_variant=true, or "
                                 "nvidia_driver_source=cuda_repo")
    # fine: the -server variant, NVIDIA's repository (its fabric manager has no -server dependency), no NVSwitch
    assert plan(os_settings(os_vars, "distro"))["problems"] == []
    assert plan(os_settings(os_vars, "cuda_repo", server_variant=False))["problems"] == []
    pcie = facts(pci=nd.nvidia_driver_parse_pci(PCIE_PCI), gpu_model="L40S", expected_gpus=2)
    assert plan(os_settings(os_vars, "distro", server_variant=False), pcie)["problems"] == []


def test_precompiled_only_where_packaged():
    p = plan(settings(build="precompiled"))
    assert p["problems"][0].startswith("nvidia_driver_kernel_module_build=precompiled is not available for "
                                       "nvidia_driver_source=cuda_repo")
    assert plan(settings(build="precompiled", source="distro"))["problems"] == []


@pytest.mark.parametrize(("model", "branch", "requested", "flavor", "problem"), [
    ("B200", "570", "proprietary", "proprietary", "runs only with the open kernel modules"),
    ("GH200", "550", "proprietary", "proprietary", "runs only with the open kernel modules"),
    ("B200", "550", "auto", "open", "does not support B200 (blackwell); valid choices: 570, 580"),
    ("V100", "535", "open", "open", "older than Turing"),
    ("V100", "580", "auto", "proprietary", None),
    ("H100", "535", "auto", "open", None),
    ("H100", "570", "auto", "open", None),
    ("none", "550", "auto", "proprietary", None),
    ("none", "580", "auto", "open", None),
])
def test_kernel_module_flavor(model, branch, requested, flavor, problem):
    p = plan(settings(branch=branch, flavor=requested, fabricmanager_packages=["fm"]), facts(gpu_model=model))
    assert p["flavor"] == flavor
    if problem:
        assert any(problem in x for x in p["problems"]), p["problems"]
    else:
        assert p["problems"] == []


def test_proprietary_on_hopper_with_recent_branch_warns():
    p = plan(settings(flavor="proprietary"))
    assert p["problems"] == [] and "recommends the open kernel modules" in p["warnings"][0]


# --- nvidia_driver: adopt, upgrade, defer ---------------------------------------------------------------------------

def installed(version: str, name: str = "libnvidia-compute-570") -> dict[str, list[dict[str, str]]]:
    return {name: [{"version": version}], "bash": [{"version": "5.2-15"}]}


def test_matching_driver_is_adopted():
    p = plan(settings(version="570.195.03"), facts(installed=installed("570.195.03-0ubuntu1"),
                                                   loaded_version="570.195.03"))
    assert (p["action"], p["adopted"], p["target_version"], p["reboot_required"]) == ("adopt", True, "570.195.03",
                                                                                      False)


def test_unpinned_version_keeps_installed_driver_of_the_branch():
    p = plan(f=facts(installed=installed("570.172.08-0ubuntu1"), loaded_version="570.172.08"))
    assert p["action"] == "adopt" and p["target_version"] == "570.172.08"


def test_runfile_driver_is_adopted_unmanaged():
    p = plan(f=facts(loaded_version="570.195.03"))
    assert p["action"] == "adopt_unmanaged" and p["adopted"] and "runfile" in p["warnings"][0]


def test_branch_change_is_deferred_without_allow_upgrade():
    p = plan(f=facts(installed=installed("550.127.05-0ubuntu1", "libnvidia-compute-550"), loaded_version="550.127.05"))
    assert (p["action"], p["adopted"], p["upgrade_pending"], p["reboot_required"]) == ("deferred", False, True, True)
    assert p["target_version"] == "550.127.05"
    assert "nvidia_driver_allow_upgrade=true" in p["warnings"][0]


def test_branch_change_with_allow_upgrade():
    p = plan(settings(allow_upgrade=True, version="570.195.03"),
             facts(installed=installed("550.127.05-0ubuntu1", "libnvidia-compute-550"), loaded_version="550.127.05"))
    assert (p["action"], p["target_version"], p["reboot_required"]) == ("upgrade", "570.195.03", True)


def test_change_without_loaded_module_needs_no_reboot_yet():
    p = plan(f=facts(installed=installed("550.127.05-0ubuntu1", "libnvidia-compute-550"), in_container=True))
    assert p["action"] == "deferred" and not p["reboot_required"]


# --- nvidia_driver: package sets per OS and source (vars/<OS>.yml) -------------------------------------------------

@pytest.mark.parametrize("os_vars", ["Ubuntu-22", "Ubuntu-24"])
def test_ubuntu_cuda_repo_sets_never_use_server_names(os_vars):
    sets = ND_OS[os_vars]["_nvidia_driver_os_packages"]
    assert "_nvidia_driver_srv" not in yaml.safe_dump(sets["cuda_repo"])
    assert "_nvidia_driver_srv" in yaml.safe_dump(sets["distro"])
    # a documented NVIDIA name first: it picks the newest version of the branch
    first = sets["cuda_repo"]["dkms_headless"]["pinned"][0]
    assert first == "nvidia-dkms-{{ _nvidia_driver_b }}{{ _nvidia_driver_open }}"
    # no precompiled set from NVIDIA's repository (preflight refuses it: precompiled_sources)
    assert "precompiled_headless" not in sets["cuda_repo"]
    assert ND_OS[os_vars]["_nvidia_driver_precompiled_sources"] == ["distro"]


def test_ubuntu_22_and_24_share_the_tables():
    keep = ("_nvidia_driver_cuda_repo_distro",)
    u22, u24 = ({k: v for k, v in ND_OS[n].items() if k not in keep} for n in ("Ubuntu-22", "Ubuntu-24"))
    assert u22 == u24


def test_debian12_tables():
    deb = ND_OS["Debian-12"]
    assert deb["_nvidia_driver_source_branches"] == {"distro": ["535"], "cuda_repo": ["550", "570", "580"]}
    assert deb["_nvidia_driver_headless_min_branch"] == {"cuda_repo": 560}
    assert deb["_nvidia_driver_os_packages"]["cuda_repo"]["dkms_headless"]["pinned"][0] == "nvidia-driver-cuda"
    assert deb["_nvidia_driver_fabricmanager_needs_server"] == []
    for os_vars in ND_OS:
        for branches in ND_OS[os_vars]["_nvidia_driver_source_branches"].values():
            assert set(branches) <= set(ND_VARS["_nvidia_driver_branches"])


# --- nvidia_driver: NVIDIA's pinning packages -----------------------------------------------------------------------

@pytest.mark.parametrize(("source", "branch", "version", "pinning"), [
    ("cuda_repo", "570", "", ["nvidia-driver-pinning-570"]),
    ("cuda_repo", "580", "580.95.05", ["nvidia-driver-pinning-580.95.05"]),
    ("cuda_repo", "550", "", []),          # published for 570 and later only
    ("cuda_repo", "535", "535.247.01", []),
    ("distro", "570", "", []),             # NVIDIA's packages, NVIDIA's repository only
])
def test_pinning_package(source, branch, version, pinning):
    p = plan(settings(source=source, branch=branch, version=version, fabricmanager_packages=["fm"]))
    assert p["pinning_packages"] == pinning
    assert nd.nvidia_driver_pinning_packages(source, branch, version, ND_VARS["_nvidia_driver_pinning"]) == pinning


def test_pinning_package_follows_the_pin_not_the_adopted_version():
    # adopted without a version pin: the branch pinning package stays (a second run changes nothing)
    p = plan(f=facts(installed=installed("570.195.03-0ubuntu1") | {"nvidia-driver-pinning-570": [{"version": "1"}]},
                     loaded_version="570.195.03"))
    assert p["action"] == "adopt" and p["target_version"] == "570.195.03"
    assert p["pinning_packages"] == ["nvidia-driver-pinning-570"] and p["stale_pinning_packages"] == []


def test_stale_pinning_packages_are_listed_for_removal():
    have = installed("570.195.03-0ubuntu1") | {"nvidia-driver-pinning-570": [{"version": "1"}]}
    p = plan(settings(branch="580", allow_upgrade=True, fabricmanager_packages=["fm"]), facts(installed=have))
    assert p["action"] == "upgrade" and p["pinning_packages"] == ["nvidia-driver-pinning-580"]
    assert p["stale_pinning_packages"] == ["nvidia-driver-pinning-570"]
    distro = plan(settings(source="distro"), facts(installed=have | {"nvidia-driver-pinning-570.195.03": [{}]}))
    assert distro["stale_pinning_packages"] == ["nvidia-driver-pinning-570", "nvidia-driver-pinning-570.195.03"]


MADISON_PINNING = (f"nvidia-driver-pinning-580 | 580.95.05-1 | {REPO}\n"
                   f"nvidia-driver-pinning-580 | 580.82.07-1 | {REPO}\n")


def test_resolve_pinning_package():
    r = nd.nvidia_driver_resolve_available(MADISON_CUDA_REPO + MADISON_PINNING, ["nvidia-driver-pinning-580"])
    assert r == {"packages": {"nvidia-driver-pinning-580": "580.95.05-1"}, "problems": []}
    kept = nd.nvidia_driver_resolve_available(MADISON_PINNING, ["nvidia-driver-pinning-580"],
                                              {"nvidia-driver-pinning-580": [{"version": "580.82.07-1"}]})
    assert kept["packages"] == {"nvidia-driver-pinning-580": "580.82.07-1"}
    assert nd.nvidia_driver_resolve_available("", []) == {"packages": {}, "problems": []}


def test_resolve_missing_pinning_package_names_what_the_sources_have():
    names = "nvidia-driver-pinning-580\nnvidia-driver-pinning-570\nnvidia-driver-pinning-580.95.05\n"
    r = nd.nvidia_driver_resolve_available(MADISON_PINNING, ["nvidia-driver-pinning-580.65.06"], {}, names)
    assert r["packages"] == {}
    assert r["problems"] == ["nvidia-driver-pinning-580.65.06 is not in the configured apt sources (offered: "
                             "nvidia-driver-pinning-570, nvidia-driver-pinning-580, "
                             "nvidia-driver-pinning-580.95.05)"]
    assert nd.nvidia_driver_resolve_available("", ["nvidia-driver-pinning-570"])["problems"] == [
        "nvidia-driver-pinning-570 is not in the configured apt sources (offered: none)"]


# --- nvidia_driver: version resolution ------------------------------------------------------------------------------

def test_resolve_newest_of_branch_and_fabric_manager_at_same_version():
    r = nd.nvidia_driver_resolve(MADISON_CUDA_REPO, ["nvidia-headless-570-open", "nvidia-fabricmanager-570"], "570",
                                 "")
    assert r == {"version": "570.195.03", "problems": [],
                 "packages": {"nvidia-headless-570-open": "570.195.03-0ubuntu1",
                              "nvidia-fabricmanager-570": "570.195.03-1"}}


def test_resolve_fails_when_fabric_manager_lacks_the_driver_version():
    r = nd.nvidia_driver_resolve(MADISON_CUDA_REPO, ["nvidia-headless-570-open", "nvidia-fabricmanager-570"], "570",
                                 "570.86.15")
    assert r["problems"] == ["nvidia-fabricmanager-570 has no version 570.86.15 in the configured apt sources "
                             "(offered: 570.172.08, 570.195.03)"]


def test_resolve_exact_pin_and_installed_versions():
    r = nd.nvidia_driver_resolve(MADISON_DEBIAN, ["nvidia-kernel-dkms", "nvidia-smi"], "535", "535.261.03")
    assert r["packages"] == {"nvidia-kernel-dkms": "535.261.03-1", "nvidia-smi": "535.261.03-1"}
    gone = nd.nvidia_driver_resolve("", ["nvidia-smi"], "535", "535.183.01",
                                    {"nvidia-smi": [{"version": "535.183.01-1~deb12u1"}]})
    assert gone["packages"] == {"nvidia-smi": "535.183.01-1~deb12u1"}
    none = nd.nvidia_driver_resolve("", ["nvidia-smi"], "535", "")
    assert "is the repository or component configured?" in none["problems"][0]


def test_pin_list_held_and_mismatches():
    assert nd.nvidia_driver_pin_list({"a": "1-1"}) == ["a=1-1"]
    selections = "nvidia-smi\t\t\t\thold\nlibcuda1:amd64\t\t\thold\nbash\t\t\t\t\tinstall\nvim\t\t\thold\n"
    assert nd.nvidia_driver_held(selections, "^(nvidia-|libcuda1$)") == ["nvidia-smi", "libcuda1"]


# --- cuda ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("cuda", "branch", "status"), [
    ("12.4", "550", "full"), ("12.4", "570", "full"), ("12.4", "535", "minor"), ("12.8", "535", "minor"),
    ("13.0", "570", "unsupported"), ("13.0", "580", "full"), ("12.2", "515", "unsupported"),
    ("11.8", "535", "full"), ("12.4", "", "unknown"), ("14.0", "580", "unknown"),
])
def test_cuda_driver_compat(cuda, branch, status):
    assert cu.cuda_driver_compat(cuda, branch, CUDA_COMPAT)["status"] == status


def cuda_settings(**overrides: Any) -> dict[str, Any]:
    base = {"source": "cuda_repo", "version": "12.4", "additional_versions": [], "package_version": "",
            "driver_branch": "570", "strict": False, "os": "Debian-12", "distro_version": "11.8", "packages": []}
    return base | overrides


def test_cuda_plan_unsupported_driver_fails_with_valid_branches():
    p = cu.cuda_plan(cuda_settings(version="13.0"), {}, CUDA_COMPAT)
    assert p["problems"] == ["cuda_version='13.0' with driver branch 570 (cuda_driver_branch / nvidia_driver_branch): "
                             "CUDA 13.0 needs driver branch >= 580 (CUDA 13.x minimum); branch 570 cannot run it; "
                             "valid driver branches: 580"]


def test_cuda_plan_minor_compat_warns_or_fails_when_strict():
    assert cu.cuda_plan(cuda_settings(driver_branch="535"), {}, CUDA_COMPAT)["problems"] == []
    assert "minor version compatibility" in cu.cuda_plan(cuda_settings(driver_branch="535"), {},
                                                         CUDA_COMPAT)["warnings"][0]
    assert cu.cuda_plan(cuda_settings(driver_branch="535", strict=True), {}, CUDA_COMPAT)["problems"]


def test_cuda_plan_reads_loaded_driver_when_no_branch_declared():
    proc = cu.cuda_driver_branch_from_proc(PROC_PROPRIETARY)
    p = cu.cuda_plan(cuda_settings(driver_branch="", version="13.0"), {"loaded_driver_branch": proc}, CUDA_COMPAT)
    assert proc == "535" and "branch 535 cannot run it" in p["problems"][0]
    unknown = cu.cuda_plan(cuda_settings(driver_branch=""), {"loaded_driver_branch": ""}, CUDA_COMPAT)
    assert unknown["problems"] == [] and "not checked" in unknown["warnings"][0]


def test_cuda_plan_packages_and_distro_rules():
    p = cu.cuda_plan(cuda_settings(additional_versions=["12.6"]), {}, CUDA_COMPAT)
    assert p["packages"] == ["cuda-toolkit-12-4", "cuda-toolkit-12-6"] and p["versions"] == ["12.4", "12.6"]
    d = cu.cuda_plan(cuda_settings(source="distro"), {}, CUDA_COMPAT)
    assert d["problems"][0].endswith("cuda_source=distro: 11.8 (other versions: cuda_source=cuda_repo)")
    ok = cu.cuda_plan(cuda_settings(source="distro", version="11.8"), {}, CUDA_COMPAT)
    assert ok["problems"] == [] and ok["packages"] == ["nvidia-cuda-toolkit"]
    bad = cu.cuda_plan(cuda_settings(version="12", package_version="12.6.1-1"), {}, CUDA_COMPAT)
    assert any("not a CUDA major.minor" in x for x in bad["problems"])


def test_cuda_resolve_pin_installed_newest():
    madison = "".join(f"{name} | {version} | file:/r ./ Packages\n" for name, version in [
        ("cuda-toolkit-12-4", "12.4.1-1"), ("cuda-toolkit-12-4", "12.4.0-1"),
        ("cuda-toolkit-12-6", "12.6.3-1"), ("cuda-toolkit-12-6", "12.6.10-1")])
    pkgs = ["cuda-toolkit-12-4", "cuda-toolkit-12-6"]
    assert cu.cuda_resolve(madison, pkgs, "12.4.0-1")["packages"] == {"cuda-toolkit-12-4": "12.4.0-1",
                                                                       "cuda-toolkit-12-6": "12.6.10-1"}
    kept = cu.cuda_resolve(madison, pkgs, "", {"cuda-toolkit-12-6": [{"version": "12.6.3-1"}]})
    assert kept["packages"] == {"cuda-toolkit-12-4": "12.4.1-1", "cuda-toolkit-12-6": "12.6.3-1"}
    assert cu.cuda_resolve(madison, pkgs, "12.4.9-1")["problems"][0].startswith("cuda-toolkit-12-4 has no version")


def test_nvcc_and_alternatives():
    nvcc = ("nvcc: NVIDIA (R) Cuda compiler driver\nCopyright (c) 2005-2024 NVIDIA Corporation\n"
            "Cuda compilation tools, release 12.4, V12.4.131\nBuild cuda_12.4.r12.4/compiler.34097967_0\n")
    assert cu.cuda_parse_nvcc(nvcc) == "12.4" and cu.cuda_parse_nvcc("bash: nvcc: not found") == ""
    assert cu.cuda_alternative_priority("12.10") > cu.cuda_alternative_priority("12.9")
    assert cu.cuda_package_suffix("12.4") == "12-4"


# --- nccl ---------------------------------------------------------------------------------------------------------

def nccl_settings(**overrides: Any) -> dict[str, Any]:
    base = {"source": "cuda_repo", "version": "2.21.5", "cuda_version": "12.4", "package_version": "",
            "wheel_name": "", "toolkit_cuda_version": "12.4"}
    return base | overrides


def test_nccl_versions():
    assert nc.nccl_package_version("2.21.5", "12.4") == "2.21.5-1+cuda12.4"
    assert nc.nccl_package_version("2.21.5", "12.4", "2.21.5-2+cuda12.5") == "2.21.5-2+cuda12.5"
    assert nc.nccl_wheel_name("12.4") == "nvidia-nccl-cu12"
    assert nc.nccl_plan(nccl_settings()) == {"problems": [], "warnings": []}
    assert nc.nccl_plan(nccl_settings(source="wheel")) == {"problems": [], "warnings": []}


@pytest.mark.parametrize(("overrides", "problem"), [
    ({"package_version": "2.21.5-1+cuda11.8"}, "is built for CUDA 11.x but nccl_cuda_version is 12.4; valid "
                                               "choices: a +cuda12.x build"),
    ({"source": "wheel", "wheel_name": "nvidia-nccl-cu11"}, "valid choices: nvidia-nccl-cu12"),
    ({"cuda_version": "11.8"}, "nccl_cuda_version='11.8' is CUDA 11.x but the toolkit (cuda_version) is 12.4"),
    ({"package_version": "2.20.5-1+cuda12.4"}, "is NCCL 2.20.5, not nccl_version=2.21.5"),
    ({"version": "2.21"}, "is not an NCCL version"),
])
def test_nccl_cuda_major_mismatch_fails(overrides, problem):
    problems = nc.nccl_plan(nccl_settings(**overrides))["problems"]
    assert any(problem in p for p in problems), problems


def test_nccl_same_major_other_minor_warns():
    p = nc.nccl_plan(nccl_settings(package_version="2.21.5-1+cuda12.6"))
    assert p["problems"] == [] and "same major" in p["warnings"][0]


@pytest.mark.parametrize(("version", "override", "fact", "value"), [
    ("2.21.5", -1, 3, None),   # NCCL chooses the RoCEv2 GID itself
    ("2.26.2", -1, None, None),
    ("2.20.5", -1, 3, 3),      # older NCCL defaults to GID 0: the rdma role's fact is written
    ("2.20.5", -1, None, None),
    ("2.21.5", 5, 3, 5),       # an explicit setting always wins
    ("2.18.3", 0, 3, 0),
])
def test_nccl_gid_index_rule(version, override, fact, value):
    assert nc.nccl_gid_index(version, override, fact, NCCL_VARS["_nccl_gid_auto_from"])["value"] == value


def test_nccl_conf_settings_leave_out_unset_values():
    conf = {"NCCL_SOCKET_IFNAME": "=eno1", "NCCL_IB_HCA": "", "NCCL_IB_TC": -1, "NCCL_IB_GID_INDEX": None,
            "NCCL_NET_GDR_LEVEL": "PHB", "NCCL_DEBUG": "WARN", "NCCL_IB_QPS_PER_CONNECTION": 4}
    assert nc.nccl_conf_settings(conf) == [["NCCL_SOCKET_IFNAME", "=eno1"], ["NCCL_NET_GDR_LEVEL", "PHB"],
                                           ["NCCL_DEBUG", "WARN"], ["NCCL_IB_QPS_PER_CONNECTION", "4"]]
    assert nc.nccl_conf_settings({"NCCL_IB_GID_INDEX": 0}) == [["NCCL_IB_GID_INDEX", "0"]]


def test_nccl_simulation_guard():
    sim = ("NOTE: This is only a simulation!\n"
           "Inst libnccl2 (2.21.5-1+cuda12.4 cuda-repo [amd64])\n"
           "Inst cuda-cudart-12-8 (12.8.90-1 cuda-repo [amd64])\n"
           "Inst libnccl-dev (2.21.5-1+cuda12.4 cuda-repo [amd64])\n"
           "Conf libnccl2 (2.21.5-1+cuda12.4 cuda-repo [amd64])\n")
    assert nc.nccl_simulated_others(sim, ["libnccl2", "libnccl-dev"]) == ["Inst cuda-cudart-12-8"]


def test_nccl_wheel_file_and_version_code():
    files = ["/c/nvidia_nccl_cu12-2.21.5-py3-none-manylinux2014_aarch64.whl",
             "/c/nvidia_nccl_cu12-2.21.5-py3-none-manylinux2014_x86_64.whl",
             "/c/nvidia_nccl_cu12-2.20.5-py3-none-manylinux2014_x86_64.whl"]
    assert nc.nccl_wheel_file(files, "nvidia-nccl-cu12", "2.21.5", "x86_64") == files[1]
    assert nc.nccl_wheel_file(files, "nvidia-nccl-cu12", "2.22.3", "x86_64") == ""
    assert nc.nccl_version_from_lib("22105") == "2.21.5"
    assert nc.nccl_version_from_lib(2903) == "2.9.3"
