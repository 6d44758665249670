"""The nccl role's real state (wheel source): the library in /opt/nccl/<version>/lib found by the dynamic linker
and reporting its version, headers, /etc/nccl.conf, and a check-mode run that reports no change."""

import os
import re
import sys
from pathlib import Path

# The shared check lives in tests/molecule/ (roles/<role>/molecule/<scenario> -> the repository root).
sys.path.insert(0, str(Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]).resolve().parents[3] / "tests" / "molecule"))
from scenario_checks import assert_check_mode_changes_nothing

VERSION = "2.21.5"
LIB = f"/opt/nccl/{VERSION}/lib/libnccl.so.2"


def test_library_installed(host):
    lib = host.file(LIB)
    assert lib.is_file and (lib.user, lib.mode) == ("root", 0o644)
    assert lib.size > 100_000_000  # the real library (about 250 MB), not a stand-in
    assert host.file(f"/opt/nccl/{VERSION}/lib/libnccl.so").linked_to == LIB
    assert host.file("/opt/nccl/current").linked_to == f"/opt/nccl/{VERSION}"
    assert "NCCL_MAJOR" in host.file(f"/opt/nccl/{VERSION}/include/nccl.h").content_string


def test_built_for_cuda_12(host):
    out = host.check_output(f"grep -a -o -m1 'NCCL version [0-9.]*+cuda[0-9.]*' {LIB}")
    assert out.splitlines()[0] == f"NCCL version {VERSION}+cuda12.4"


def test_dynamic_linker_finds_it(host):
    conf = host.file("/etc/ld.so.conf.d/nccl.conf")
    assert f"/opt/nccl/{VERSION}/lib" in conf.content_string.splitlines()
    entries = [line for line in host.check_output("ldconfig -p").splitlines() if "libnccl.so.2 " in line]
    assert entries and entries[0].endswith(f"=> {LIB}")


def test_nccl_loads_and_reports_version(host):
    out = host.check_output(
        "python3 -c 'import ctypes; l = ctypes.CDLL(\"libnccl.so.2\"); v = ctypes.c_int(); "
        "print(l.ncclGetVersion(ctypes.byref(v)), v.value)'"
    )
    assert out == "0 22105"


def test_nccl_conf(host):
    f = host.file("/etc/nccl.conf")
    assert (f.user, f.group, f.mode) == ("root", "root", 0o644)
    settings = [line for line in f.content_string.splitlines() if line and not line.startswith("#")]
    # NCCL_SOCKET_IFNAME: exactly the management interface of the inventory contract; NCCL_IB_GID_INDEX is not
    # written although the rdma fact says 3, because NCCL 2.21.5 selects the RoCEv2 GID itself
    assert settings == [
        "NCCL_SOCKET_IFNAME==eth0",
        "NCCL_IB_HCA==mlx5_0:1,mlx5_1:1",
        "NCCL_IB_TC=106",
        "NCCL_NET_GDR_LEVEL=PHB",
        "NCCL_DEBUG=WARN",
    ]
    assert "NCCL_IB_GID_INDEX not set: NCCL 2.21.5 (>= 2.21.0) selects the RoCEv2 GID itself" in f.content_string


def test_nccl_tests_not_built_when_source_unreachable(host):
    assert not host.file("/opt/nccl-tests").exists


def test_no_cuda_or_driver_package_dragged_in(host):
    out = host.check_output("dpkg-query -W -f '${Package}\\n'")
    assert not [p for p in out.splitlines() if re.match(r"^(cuda-|libcuda|nvidia-|libnccl)", p)]


def test_check_mode_on_converged_node_reports_no_change():
    """Honest check mode: --check --diff on the converged instance reports 0 changed."""
    assert_check_mode_changes_nothing()
