"""The cuda role's real state against the stand-in repository (prepare.yml): pinned and held toolkit packages,
/usr/local/cuda alternatives, the profile script, nvcc, and a check-mode run that reports no change."""

import os
import re
import sys
from pathlib import Path

import pytest

# The shared check lives in tests/molecule/ (roles/<role>/molecule/<scenario> -> the repository root).
sys.path.insert(0, str(Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]).resolve().parents[3] / "tests" / "molecule"))
from scenario_checks import assert_check_mode_changes_nothing

PINNED = {"cuda-toolkit-12-4": "12.4.0-1", "cuda-toolkit-12-6": "12.6.3-1"}


@pytest.mark.parametrize(("name", "version"), PINNED.items())
def test_toolkit_at_pinned_version_and_held(host, name, version):
    assert host.package(name).version == version
    out = host.check_output(f"dpkg --get-selections {name}")
    assert re.fullmatch(rf"{name}\s+hold", out.strip()), out


def test_newer_12_4_offered_but_not_taken(host):
    policy = host.check_output("apt-cache policy cuda-toolkit-12-4")
    assert "Candidate: 12.4.1-1" in policy and "Installed: 12.4.0-1" in policy
    out = host.check_output("apt-get -s -o Debug::NoLocking=1 dist-upgrade")
    assert not [line for line in out.splitlines() if line.startswith("Inst cuda-toolkit")], out


def test_usr_local_cuda_selected(host):
    assert host.file("/usr/local/cuda").linked_to == "/usr/local/cuda-12.4"
    assert host.file("/usr/local/cuda-12").linked_to == "/usr/local/cuda-12.4"
    display = host.check_output("update-alternatives --display cuda")
    assert "link currently points to /usr/local/cuda-12.4" in display
    assert "manual mode" in display
    assert "/usr/local/cuda-12.6 - priority 1206" in display
    assert "/usr/local/cuda-12.4 - priority 1204" in display


def test_profile_script(host):
    f = host.file("/etc/profile.d/cuda.sh")
    assert (f.user, f.group, f.mode) == ("root", "root", 0o644)
    assert "export CUDA_HOME=/usr/local/cuda" in f.content_string
    env = host.check_output("bash -lc 'echo $CUDA_HOME; echo $PATH; echo $LD_LIBRARY_PATH; command -v nvcc'")
    home, path, ld_path, nvcc = env.splitlines()
    assert home == "/usr/local/cuda"
    assert path.split(":")[0] == "/usr/local/cuda/bin"
    assert ld_path.split(":")[0] == "/usr/local/cuda/lib64"
    assert nvcc == "/usr/local/cuda/bin/nvcc"
    # sourcing twice does not add the directories twice
    twice = host.check_output("bash -lc '. /etc/profile.d/cuda.sh; echo $PATH'")
    assert twice.split(":").count("/usr/local/cuda/bin") == 1


@pytest.mark.parametrize(("nvcc", "release"), [("/usr/local/cuda/bin/nvcc", "12.4"),
                                               ("/usr/local/cuda-12.6/bin/nvcc", "12.6")])
def test_nvcc_reports_version(host, nvcc, release):
    assert f"release {release}," in host.check_output(f"{nvcc} --version")


def test_check_mode_on_converged_node_reports_no_change():
    """Honest check mode: --check --diff on the converged instance reports 0 changed."""
    assert_check_mode_changes_nothing()
