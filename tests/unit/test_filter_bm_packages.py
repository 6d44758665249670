"""plugins/filter/bm_packages.py: dpkg-query output -> package_facts-shaped dict (real captures)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures" / "dpkg-query"
_spec = importlib.util.spec_from_file_location("bm_packages", ROOT / "plugins" / "filter" / "bm_packages.py")
bm_packages = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bm_packages)


def test_real_debian_capture_parses_every_line():
    text = (FIX / "debian12-dev.txt").read_text()
    pk = bm_packages.dpkg_packages(text)
    lines = [ln.split("\t") for ln in text.splitlines() if ln.strip()]
    assert len(pk) == len({ln[0].split(":")[0] for ln in lines})
    # Multi-Arch suffixes are dropped, as package_facts reports names.
    assert "binutils-common" in pk and "binutils-common:amd64" not in pk
    libc = pk["libc6"][0]
    assert libc["version"].startswith("2.36-") and libc["arch"] == "amd64"
    assert pk["podman"][0]["version"] == next(ln[1] for ln in lines if ln[0] == "podman")


def test_only_installed_states_count():
    # Status-Abbrev: desired state, current state, error flag. 'hi' = held and installed; 'rc' = removed,
    # config files left; 'un' = unknown, not installed; 'iU' = unpacked, not configured.
    text = ("nvidia-driver\t535.216.01-1\tamd64\thi \n"
            "old-kernel\t6.1.0-1\tamd64\trc \n"
            "never\t\tamd64\tun \n"
            "half\t1.0\tamd64\tiU \n")
    pk = bm_packages.dpkg_packages(text)
    assert list(pk) == ["nvidia-driver"]
    assert pk["nvidia-driver"] == [{"name": "nvidia-driver", "version": "535.216.01-1", "arch": "amd64",
                                    "source": "apt"}]


def test_two_architectures_of_one_package_are_both_listed():
    pk = bm_packages.dpkg_packages("libfoo1:amd64\t1.0\tamd64\tii \nlibfoo1:i386\t1.0\ti386\tii \n")
    assert [p["arch"] for p in pk["libfoo1"]] == ["amd64", "i386"]


def test_empty_output_is_no_packages():
    assert bm_packages.dpkg_packages("") == {}


@pytest.mark.parametrize("bad", ["just text\n", "a\tb\tc\n"])
def test_malformed_line_names_the_line(bad):
    with pytest.raises(ValueError, match="line 1 is not"):
        bm_packages.dpkg_packages(bad)


def test_not_a_string_is_a_type_error():
    with pytest.raises(TypeError, match="dpkg-query's stdout"):
        bm_packages.dpkg_packages(None)


def _filter_module(role: str):
    spec = importlib.util.spec_from_file_location(f"_{role}_filters", ROOT / "roles" / role / "filter_plugins" /
                                                  f"{role}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_real_gpu_image_capture_held_packages_and_nvidia_naming():
    """tests/fixtures/dpkg-query/ubuntu2404-gpu.txt: the H200 machine's CUDA 13.0 image (NVIDIA's repository)."""
    pk = bm_packages.dpkg_packages((FIX / "ubuntu2404-gpu.txt").read_text())
    assert pk["libcublas-13-0"][0]["version"] == "13.1.0.3-1"  # held ('hi') counts as installed
    # The nccl role pins exactly the version string NVIDIA's repository uses.
    nccl = _filter_module("nccl")
    real = pk["libnccl2"][0]["version"]
    assert real == "2.28.3-1+cuda13.0" == nccl.nccl_package_version("2.28.3", "13.0")
    assert nccl.nccl_plan({"source": "cuda_repo", "version": "2.28.3", "cuda_version": "13.0", "package_version": "",
                           "wheel_name": "", "toolkit_cuda_version": "13.0"})["problems"] == []
    # The cuda role's <name>-<major>-<minor> scheme matches the image's packages.
    suffix = _filter_module("cuda").cuda_package_suffix("13.0")
    assert {f"cuda-nvcc-{suffix}", f"cuda-cudart-{suffix}", f"cuda-toolkit-{suffix}-config-common"} <= set(pk)


def test_version_mismatches_name_package_installed_and_pinned():
    installed = bm_packages.dpkg_packages((FIX / "ubuntu2404-gpu.txt").read_text())
    pinned = {"libnccl2": "2.28.3-1+cuda13.0", "libcublas-13-0": "13.1.0.2-1", "cuda-toolkit-13-0": "13.0.2-1"}
    assert bm_packages.dpkg_version_mismatches(pinned, installed) == [
        "libcublas-13-0: installed 13.1.0.3-1, pinned 13.1.0.2-1",
        "cuda-toolkit-13-0: installed nothing, pinned 13.0.2-1"]
    assert bm_packages.dpkg_version_mismatches({}, installed) == []


def test_packages_missing_against_a_real_capture():
    # What a role's apt task asks for, against dpkg-query output captured on a real Debian 12 machine: the check
    # mode skip of playbooks/converge.yml runs apt only where this list is not empty.
    installed = bm_packages.dpkg_packages((FIX / "debian12-dev.txt").read_text())
    assert bm_packages.packages_missing(["podman", "libc6"], installed) == []
    assert bm_packages.packages_missing(["podman", "no-such-package-bmai"], installed) == ["no-such-package-bmai"]
    # a version, release, architecture or pattern is for apt to judge: always "missing"
    for name in ("podman=4.3.1+ds1-8+deb12u1", "podman/bookworm", "libc6:amd64", "libc*"):
        assert bm_packages.packages_missing([name], installed) == [name]
    # without a package read (outside check mode, or a role run alone) everything is missing: apt decides
    assert bm_packages.packages_missing(["podman"], {}) == ["podman"]
    assert bm_packages.packages_missing(["podman"], None) == ["podman"]
    assert bm_packages.packages_missing("podman", installed) == []
    with pytest.raises(TypeError, match="packages_missing: expected a list"):
        bm_packages.packages_missing({"podman": 1}, installed)


def test_packages_not_held_against_a_real_capture():
    # The H200 image's capture holds libnccl2/libnccl-dev and libcublas ('hi'); libc6 is installed, not held.
    out = (FIX / "ubuntu2404-gpu.txt").read_text()
    assert bm_packages.packages_not_held(["libnccl2", "libnccl-dev"], out) == []
    assert bm_packages.packages_not_held(["libnccl2", "libc6", "not-installed-bmai"], out) == [
        "libc6", "not-installed-bmai"]  # not installed when read: it may be by the time the hold task runs
    assert bm_packages.packages_not_held("libcublas-13-0", out) == []
    assert bm_packages.packages_not_held(["libnccl2"], "") == ["libnccl2"]
    # a hold on another architecture's instance of a Multi-Arch package counts for the name
    assert bm_packages.packages_not_held(["libfoo"], "libfoo:i386\t1\ti386\thi \n") == []
    with pytest.raises(ValueError, match="packages_not_held: line 1 is not"):  # read as dpkg_packages reads it
        bm_packages.packages_not_held(["libnccl2"], "libnccl2 hi\n")
    with pytest.raises(TypeError, match="packages_not_held: expected dpkg-query's stdout"):
        bm_packages.packages_not_held(["libnccl2"], None)
    with pytest.raises(TypeError, match="packages_not_held: expected a list"):
        bm_packages.packages_not_held({"libnccl2": 1}, out)
