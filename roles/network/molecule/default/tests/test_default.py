"""The network role's real state in the Molecule instance (stand-in veth eth1, inventory MTU 9000)."""

import os
import sys
from pathlib import Path

import pytest

# The shared check lives in tests/molecule/ (roles/<role>/molecule/<scenario> -> the repository root).
sys.path.insert(0, str(Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]).resolve().parents[3] / "tests" / "molecule"))
from scenario_checks import assert_check_mode_changes_nothing

IFACE = "eth1"
SYSCTLS = {
    "net.core.rmem_max": "134217728",
    "net.core.wmem_max": "134217728",
    "net.ipv4.tcp_rmem": "4096 87380 134217728",
    "net.ipv4.tcp_wmem": "4096 65536 134217728",
    "net.core.netdev_max_backlog": "10000",
}


@pytest.mark.parametrize("name", ["ethtool", "iproute2", "iputils-ping"])
def test_packages(host, name):
    assert host.package(name).is_installed


def test_live_mtu_and_address(host):
    assert host.file(f"/sys/class/net/{IFACE}/mtu").content_string.strip() == "9000"
    # systemd-networkd configured the inventory address from our .network file
    assert "198.51.100.10/24" in host.check_output(f"ip -4 -o addr show dev {IFACE}")


def test_networkd_file(host):
    f = host.file(f"/etc/systemd/network/60-baremetal-ai-{IFACE}.network")
    assert (f.user, f.mode) == ("root", 0o644)
    text = f.content_string
    assert text.startswith("# Ansible managed")
    for line in (f"Name={IFACE}", "MTUBytes=9000", "Address=198.51.100.10/24", "KeepConfiguration=static"):
        assert line in text.splitlines()
    svc = host.service("systemd-networkd")
    assert svc.is_enabled and svc.is_running
    assert "configured" in host.check_output(f"networkctl list {IFACE} --no-legend")


def test_sysctl_file(host):
    f = host.file("/etc/sysctl.d/90-baremetal-ai-network.conf")
    assert f.mode == 0o644
    values = {}
    for line in f.content_string.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values[key.strip()] = " ".join(value.split())
    assert values == SYSCTLS


def test_tuning_unit_and_status(host):
    unit = host.service("baremetal-network-tuning")
    assert unit.is_enabled
    shown = host.check_output("systemctl show -p ActiveState,Result baremetal-network-tuning").split()
    assert sorted(shown) == ["ActiveState=active", "Result=success"]
    script = host.file("/usr/local/sbin/baremetal-network-tuning")
    assert script.mode == 0o755 and f"tune {IFACE} 9000" in script.content_string
    status = host.file("/run/baremetal-ai/network-tuning.status").content_string.splitlines()
    assert f"{IFACE} mtu 9000 ok" in status or f"{IFACE} mtu 9000 applied (was 1500)" in status
    # veth has no ring parameters: skipped with the reason, not faked
    assert f"{IFACE} rings skipped: driver veth does not report ring parameters (ethtool -g unsupported)" in status
    assert not [line for line in status if "failed" in line]


def test_offloads_live(host):
    features = host.check_output(f"ethtool -k {IFACE}")
    assert "generic-receive-offload: on" in features
    assert "large-receive-offload: off" in features


def test_check_mode_after_converge_changes_nothing():
    """Honest check mode: --check --diff on the converged instance reports 0 changed."""
    assert_check_mode_changes_nothing()
