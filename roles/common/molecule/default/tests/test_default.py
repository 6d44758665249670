"""The common role's real state on the node: packages, identity file, motd."""

import pytest
import yaml

INSTANCE = "molecule-common"
PACKAGES = ["ca-certificates", "curl", "jq", "lsof", "pciutils"]


@pytest.mark.parametrize("name", PACKAGES)
def test_package_installed(host, name):
    assert host.package(name).is_installed


def test_tools_run(host):
    assert host.run("lspci -n").rc == 0
    assert host.check_output("echo '{\"a\": 1}' | jq .a") == "1"
    assert host.file("/etc/ssl/certs/ca-certificates.crt").size > 0


def test_config_dir(host):
    d = host.file("/etc/baremetal-ai")
    assert d.is_directory
    assert (d.user, d.group, d.mode) == ("root", "root", 0o755)


def test_node_identity_file(host):
    f = host.file("/etc/baremetal-ai/node.yml")
    assert f.is_file
    assert (f.user, f.group, f.mode) == ("root", "root", 0o644)
    text = f.content_string
    assert text.startswith("# Ansible managed")
    # the inventory contract of .config/molecule/config.yml
    assert yaml.safe_load(text) == {
        "node": {
            "name": INSTANCE,
            "mgmt": {"interface": "eth0", "address": "192.0.2.10"},
            "fabric": {"interface": "eth1", "address": "198.51.100.10", "prefix": 24, "mtu": 9000},
            "gpu": {"model": "none", "count": 0},
        },
        "managed_by": {"role": "common", "version": "0.1.0"},
    }


def test_motd(host):
    f = host.file("/etc/motd")
    assert (f.user, f.mode) == ("root", 0o644)
    assert f.content_string.startswith(f"{INSTANCE}: bare-metal GPU node managed by baremetal-ai (Ansible).")
