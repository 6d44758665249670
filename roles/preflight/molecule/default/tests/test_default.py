"""The preflight scenario's node: the premises of its green result hold, and preflight wrote nothing."""

import json


def test_supported_os(host):
    assert host.system_info.distribution == "debian"
    assert host.system_info.release.split(".")[0] == "12"


def test_declared_interfaces_exist(host):
    # node_mgmt_interface / node_fabric_interface of the scenario's inventory
    links = {link["ifname"] for link in json.loads(host.check_output("ip -j link show"))}
    assert {"eth0", "eth1"} <= links


def test_root_has_free_space(host):
    # preflight_min_free_gb default: 10 GB on /
    avail_bytes = int(host.check_output("df -B1 --output=avail / | tail -n 1").strip())
    assert avail_bytes >= 10 * 1000**3


def test_nothing_written(host):
    assert not host.file("/etc/baremetal-ai").exists
    assert not host.file("/etc/motd").contains("baremetal-ai")
