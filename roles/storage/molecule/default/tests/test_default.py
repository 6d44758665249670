"""The storage role's real state in a container: tools installed, plan and entries rendered, key file delivered,
and no block device, fstab, crypttab or mdadm.conf touched (plan-only mode, forced in containers)."""

import importlib.util
import json
import re
from pathlib import Path

import pytest

INSTANCE = "molecule-storage"
KEY = "molecule-only-luks-key-not-a-secret"
PLAN_DIR = "/etc/baremetal-ai/storage"

_spec = importlib.util.spec_from_file_location(
    "storage_filter", Path(__file__).resolve().parents[3] / "filter_plugins" / "storage.py")
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
UUIDS = _mod.storage_uuids(INSTANCE, "scratch")


@pytest.mark.parametrize("name", ["mdadm", "xfsprogs", "nvme-cli", "cryptsetup"])
def test_package_installed(host, name):
    assert host.package(name).is_installed


def test_tools_run(host):
    assert host.run("mdadm --version").rc == 0
    assert host.run("mkfs.xfs -V").rc == 0
    assert host.run("cryptsetup --version").rc == 0


def test_no_mail_transport_agent_pulled_in(host):
    # mdadm recommends an MTA; the role installs without recommends
    assert not host.package("exim4-base").is_installed


def test_plan(host):
    f = host.file(f"{PLAN_DIR}/plan.json")
    assert (f.user, f.group, f.mode) == ("root", "root", 0o644)
    plan = json.loads(f.content_string)
    assert plan["mode"] == "plan_only"
    assert plan["block_device_steps"].startswith("skipped: this node is a container (virtualization_type podman)")
    assert plan["devices"] == ["/dev/nvme1n1", "/dev/nvme2n1"]
    assert plan["raid"] == {"level": 0, "device": "/dev/md/scratch", "chunk_kib": 512, "uuid": UUIDS["md"]}
    assert plan["encryption"]["uuid"] == UUIDS["luks"]
    assert plan["filesystem"]["device"] == "/dev/mapper/scratch"
    assert plan["filesystem"]["options"] == ["defaults", "noatime", "nofail", "logbsize=256k"]
    assert [argv[:2] for argv in plan["build_commands"]] == [
        ["mdadm", "--create"], ["cryptsetup", "luksFormat"], ["cryptsetup", "open"], ["mkfs.xfs", "-L"]]
    assert KEY not in f.content_string


def test_rendered_entries(host):
    mdadm = host.file(f"{PLAN_DIR}/mdadm.conf").content_string
    assert re.search(r"^ARRAY /dev/md/scratch metadata=1\.2 UUID=([0-9a-f]{8}:){3}[0-9a-f]{8} name=scratch$", mdadm,
                     re.M)
    assert f"UUID={UUIDS['md']}" in mdadm
    crypttab = host.file(f"{PLAN_DIR}/crypttab").content_string
    assert f"\nscratch UUID={UUIDS['luks']} /etc/luks/scratch.key luks,nofail\n" in crypttab
    fstab = host.file(f"{PLAN_DIR}/fstab").content_string
    assert f"\nUUID={UUIDS['fs']} /scratch xfs defaults,noatime,nofail,logbsize=256k 0 0\n" in fstab
    for name in ("mdadm.conf", "crypttab", "fstab"):
        assert host.file(f"{PLAN_DIR}/{name}").mode == 0o644
        assert KEY not in host.file(f"{PLAN_DIR}/{name}").content_string


def test_system_files_untouched(host):
    # plan-only: nothing would assemble, unlock or mount at boot
    assert "scratch" not in host.file("/etc/fstab").content_string
    assert not host.file("/etc/crypttab").exists or "scratch" not in host.file("/etc/crypttab").content_string
    assert "ARRAY" not in host.file("/etc/mdadm/mdadm.conf").content_string
    assert not host.file("/dev/md/scratch").exists
    assert not host.mount_point("/scratch").exists


def test_key_file(host):
    d = host.file("/etc/luks")
    assert (d.user, d.group, d.mode) == ("root", "root", 0o700)
    f = host.file("/etc/luks/scratch.key")
    assert (f.user, f.group, f.mode) == ("root", "root", 0o400)
    assert f.content_string == KEY


@pytest.mark.parametrize("path", ["/scratch/datasets", "/scratch/checkpoints"])
def test_directories(host, path):
    d = host.file(path)
    assert d.is_directory
    assert (d.user, d.group, d.mode) == ("root", "root", 0o1777)
