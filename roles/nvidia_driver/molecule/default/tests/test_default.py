"""The nvidia_driver role's real state on a Debian 12 node (container, no GPU): packages at the pinned version,
holds, modprobe files, services, and a check-mode run that reports no change."""

import os
import re
import sys
from pathlib import Path

import pytest

# The shared check lives in tests/molecule/ (roles/<role>/molecule/<scenario> -> the repository root).
sys.path.insert(0, str(Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]).resolve().parents[3] / "tests" / "molecule"))
from scenario_checks import assert_check_mode_changes_nothing

VERSION = "535.309.01"
PINNED = ["nvidia-kernel-dkms", "firmware-nvidia-gsp", "nvidia-smi", "libcuda1", "libnvidia-ml1"]
COMPANIONS = ["nvidia-persistenced"]


@pytest.mark.parametrize("name", PINNED)
def test_pinned_package_at_exact_version(host, name):
    pkg = host.package(name)
    assert pkg.is_installed
    assert pkg.version.startswith(f"{VERSION}-"), pkg.version


@pytest.mark.parametrize("name", PINNED + COMPANIONS)
def test_package_held(host, name):
    out = host.check_output(f"dpkg --get-selections {name}")
    assert re.fullmatch(rf"{re.escape(name)}(:amd64)?\s+hold", out.strip()), out


def test_apt_would_not_move_held_driver(host):
    # a simulated upgrade never lists a held driver package as upgraded
    out = host.check_output("apt-get -s -o Debug::NoLocking=1 dist-upgrade")
    moved = [line for line in out.splitlines() if line.startswith("Inst ") and line.split()[1] in PINNED]
    assert moved == []


def test_headless_no_xorg(host):
    assert not host.package("xserver-xorg-core").is_installed
    assert not host.package("nvidia-driver").is_installed


def test_fabricmanager_not_installed_without_nvswitch(host):
    assert host.run("dpkg-query -W 'nvidia-fabricmanager*'").rc != 0
    assert host.run("systemctl cat nvidia-fabricmanager").rc != 0


def test_nouveau_blacklisted(host):
    f = host.file("/etc/modprobe.d/blacklist-nouveau.conf")
    assert (f.user, f.group, f.mode) == ("root", "root", 0o644)
    lines = [line for line in f.content_string.splitlines() if line and not line.startswith("#")]
    assert lines == ["blacklist nouveau", "options nouveau modeset=0"]


def test_peermem_loaded_at_boot(host):
    f = host.file("/etc/modules-load.d/nvidia-peermem.conf")
    assert [line for line in f.content_string.splitlines() if line and not line.startswith("#")] == ["nvidia-peermem"]


def test_persistenced_enabled_with_persistence_mode(host):
    assert host.check_output("systemctl is-enabled nvidia-persistenced") == "enabled"
    unit = host.check_output("systemctl cat nvidia-persistenced")
    exec_lines = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    assert exec_lines[-1] == "ExecStart=/usr/bin/nvidia-persistenced --user root --persistence-mode --verbose"


def test_no_kernel_module_in_container(host):
    # the container shares the host's kernel: no NVIDIA module, and the role must not have claimed one
    assert not host.file("/proc/driver/nvidia/version").exists


def test_check_mode_on_converged_node_reports_no_change():
    """Honest check mode: --check --diff on the converged instance reports 0 changed."""
    assert_check_mode_changes_nothing()
