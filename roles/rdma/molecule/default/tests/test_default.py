"""The rdma role's real state in the Molecule instance: no RDMA devices (the host kernel has none), so the
packages, rendered files and units are real, and the device steps are skipped with their reasons."""

import json
import os
import sys
from pathlib import Path

import pytest

# The shared check lives in tests/molecule/ (roles/<role>/molecule/<scenario> -> the repository root).
sys.path.insert(0, str(Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]).resolve().parents[3] / "tests" / "molecule"))
from scenario_checks import assert_check_mode_changes_nothing

PACKAGES = ["rdma-core", "ibverbs-utils", "perftest", "infiniband-diags", "iproute2"]


@pytest.mark.parametrize("name", PACKAGES)
def test_packages(host, name):
    assert host.package(name).is_installed


def test_tools_run(host):
    help_text = host.run("ib_write_bw --help")
    assert "Usage:" in help_text.stdout + help_text.stderr
    # without /sys/class/infiniband the verbs library says so (and ibv_devinfo exits non-zero): it is installed
    devinfo = host.run("ibv_devinfo")
    assert devinfo.rc != 0
    assert "Failed to get IB devices list" in devinfo.stderr or "No IB devices found" in devinfo.stdout
    assert host.run("dcb help").rc == 0


def test_qos_record(host):
    f = host.file("/etc/baremetal-ai/rdma-qos.json")
    assert (f.user, f.mode) == ("root", 0o644)
    record = json.loads(f.content_string)
    assert record["tool"] == "dcb"
    assert (record["dscp"], record["priority"], record["trust"]) == (26, 3, "dscp")
    assert record["rdma_cm"] == {"default_roce_mode": "RoCE v2", "default_roce_tos": 104}
    assert record["ets_bandwidth"] == [8, 7, 7, 50, 7, 7, 7, 7]
    argvs = [c["argv"] for c in record["commands"]["eth1"]]
    assert ["dcb", "app", "replace", "dev", "eth1", "dscp-prio", "26:3"] in argvs
    assert ["dcb", "pfc", "set", "dev", "eth1", "prio-pfc", "0:off", "1:off", "2:off", "3:on", "4:off", "5:off",
            "6:off", "7:off"] in argvs


def test_qos_script_and_unit(host):
    script = host.file("/usr/local/sbin/baremetal-rdma-qos")
    assert script.mode == 0o755
    text = script.content_string
    assert "dcb app replace dev eth1 dscp-prio 26:3" in text
    assert "dcb pfc set dev eth1 prio-pfc 0:off 1:off 2:off 3:on" in text
    assert "dcb ets set dev eth1 prio-tc" in text and "tc-bw 0:8 1:7 2:7 3:50" in text
    unit = host.file("/etc/systemd/system/baremetal-rdma-qos.service").content_string
    assert "After=network-online.target" in unit and "Type=oneshot" in unit
    for name in ("baremetal-rdma-qos", "baremetal-rdma-cm"):
        svc = host.service(name)
        assert svc.is_enabled
        shown = host.check_output(f"systemctl show -p ActiveState,Result {name}").split()
        assert sorted(shown) == ["ActiveState=active", "Result=success"]


def test_device_steps_skipped_with_reason(host):
    qos = host.file("/run/baremetal-ai/rdma-qos.status").content_string
    assert qos.strip() == ("eth1 skipped: driver veth has no DCB netlink (dcbnl) support, "
                           "so there is no PFC/ETS/APP table to set")
    cm = host.file("/run/baremetal-ai/rdma-cm.status").content_string
    assert cm.startswith("skipped: no RDMA devices")


def test_check_mode_after_converge_changes_nothing():
    """Honest check mode: --check --diff on the converged instance reports 0 changed."""
    assert_check_mode_changes_nothing()
