"""Decision logic of the storage, hardening and monitoring roles, called with real and constructed tool outputs.

- storage: roles/storage/filter_plugins/storage.py (which devices qualify, refusal, mdadm/cryptsetup/mkfs plans)
  on lsblk (tests/fixtures/lsblk/) and wipefs (tests/fixtures/wipefs/) outputs;
- hardening: roles/hardening/filter_plugins/hardening.py (variable checks, nftables/audit rule rendering inputs);
- monitoring: roles/monitoring/files/nvidia_smi_exporter.py (nvidia-smi CSV -> Prometheus text format).
Also static checks of the roles' tasks: every task that touches a secret has no_log: true.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


def load_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem + "_under_test", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


st = load_module(ROOT / "roles" / "storage" / "filter_plugins" / "storage.py")
STORAGE_DEFAULTS = yaml.safe_load((ROOT / "roles" / "storage" / "defaults" / "main.yml").read_text())
PATTERN = STORAGE_DEFAULTS["storage_discover_pattern"]


def fixture(*parts: str) -> str:
    return (FIXTURES.joinpath(*parts)).read_text()


def plan(lsblk: str, wipefs: dict[str, str] | None = None, host: str = "gpu01", **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("discover_pattern", PATTERN)
    return st.storage_plan(lsblk, wipefs or {}, host=host, **kwargs)


# ---------------------------------------------------------------------------------------------------- storage

def test_real_dev_vm_lsblk_parses() -> None:
    devices = st.parse_lsblk(fixture("lsblk", "dev-vm-debian12.json"))
    assert set(devices) == {"zram0", "vda"}
    assert devices["vda"]["mountpoints"] == ["/"] and devices["vda"]["fstype"] is None
    all_cols = st.parse_lsblk(fixture("lsblk", "dev-vm-debian12-all-columns.json"))
    assert all_cols["vda"]["path"] == "/dev/vda" and "/" in all_cols["vda"]["tree_mounts"]


def test_real_dev_vm_mounted_disk_is_refused_even_when_listed_for_wiping() -> None:
    # vda holds the root filesystem, but lsblk shows no FSTYPE for it: the mountpoint alone must stop us.
    p = plan(fixture("lsblk", "dev-vm-debian12.json"), host="devvm", devices=["/dev/vda"], wipe_devices=["vda"])
    assert p["problems"] == ["devvm: storage_devices: /dev/vda is in use: mounted at /. It is never wiped, even "
                             "when listed in storage_wipe_devices. Fix: remove it from storage_devices"]
    assert p["wipe"] == []


def test_real_dev_vm_has_nothing_to_discover() -> None:
    p = plan(fixture("lsblk", "dev-vm-debian12.json"), host="devvm")
    assert p["devices"] == []
    assert len(p["problems"]) == 1
    assert p["problems"][0].startswith("devvm: storage_devices: empty and no unused disk matches")


def test_missing_device_fails_naming_host_variable_and_device() -> None:
    p = plan(fixture("lsblk", "dev-vm-debian12.json"), devices=["/dev/nvme0n1"])
    assert p["problems"] == ["gpu01: storage_devices: /dev/nvme0n1 does not exist on this host (lsblk does not list "
                             "it). Fix: name an existing whole disk, e.g. /dev/nvme1n1"]


def test_plan_only_notes_missing_devices_instead_of_failing() -> None:
    p = plan('{"blockdevices": []}', devices=["/dev/nvme1n1", "/dev/nvme2n1"], plan_only=True, encrypt=True)
    assert p["problems"] == []
    assert p["unavailable"] == ["/dev/nvme1n1", "/dev/nvme2n1"]
    assert p["raid"] and p["target"] == "/dev/mapper/scratch"
    assert p["present"] == {"md": False, "luks": False, "fs": False}


def test_discovery_on_fresh_hgx_refuses_the_disk_with_an_old_filesystem() -> None:
    lsblk = fixture("lsblk", "hgx-fresh.json")
    data = [f"/dev/nvme{n}n1" for n in range(2, 10)]
    assert st.storage_candidates(lsblk, [], PATTERN) == ["/dev/nvme0n1", "/dev/nvme1n1", *data]
    p = plan(lsblk)
    # boot disks hold the mounted root RAID1 and EFI: skipped with the reason, not refused
    assert p["skipped"] == [{"device": "/dev/nvme0n1", "reason": "in use: mounted at /, /boot/efi"},
                            {"device": "/dev/nvme1n1", "reason": "in use: mounted at /"}]
    assert p["devices"] == data
    assert p["problems"] == [
        "gpu01: discovered device (pattern ^nvme\\d+n1$): refusing to touch /dev/nvme5n1: it holds xfs "
        "(UUID 0f4f2a9c-6a53-4c1e-9d7c-2b8e6c1d5a01, LABEL old-scratch). Fix: if its data may be destroyed, add it "
        "to storage_wipe_devices; otherwise remove it from storage_devices"]


def test_listing_the_old_disk_for_wiping_plans_wipefs_then_the_array() -> None:
    lsblk = fixture("lsblk", "hgx-fresh.json")
    probes = {"/dev/nvme5n1": fixture("wipefs", "xfs-image.json")}
    p = plan(lsblk, probes, wipe_devices=["nvme5n1"])
    assert p["problems"] == [] and p["wipe"] == ["/dev/nvme5n1"]
    uuids = st.storage_uuids("gpu01", "scratch")
    assert p["commands"]["mdadm_create"] == [
        "mdadm", "--create", "/dev/md/scratch", "--run", "--level=0", "--raid-devices=8", "--chunk=512K",
        "--metadata=1.2", "--name=scratch", f"--uuid={uuids['md']}", *[f"/dev/nvme{n}n1" for n in range(2, 10)]]
    assert p["commands"]["luks_format"] is None
    assert p["commands"]["mkfs"] == ["mkfs.xfs", "-L", "scratch", "-m", f"uuid={uuids['fs']}", "/dev/md/scratch"]
    assert p["mkfs_opts"] == f"-L scratch -m uuid={uuids['fs']}"
    assert p["mdadm_conf"] == f"ARRAY /dev/md/scratch metadata=1.2 UUID={uuids['md']} name=scratch"
    assert p["fstab"] == f"UUID={uuids['fs']} /scratch xfs noatime 0 0"
    assert p["crypttab"] == ""


@pytest.mark.parametrize(("image", "found"), [
    ("gpt-image.json", "gpt, PMBR"),
    ("luks-image.json", "crypto_LUKS (UUID 6b1f2d3e-4c5a-4b6c-8d7e-9f0a1b2c3d4e)"),
])
def test_wipefs_signatures_lsblk_cannot_see_are_refused(image: str, found: str) -> None:
    # the real capture has no PTTYPE column: a GPT without partitions is only visible to wipefs
    lsblk = json.dumps({"blockdevices": [{"name": "nvme3n1", "type": "disk", "size": "3.5T", "fstype": None,
                                          "mountpoint": None, "model": "SAMSUNG MZQL23T8HCLS-00A07"}]})
    p = plan(lsblk, {"/dev/nvme3n1": fixture("wipefs", image)}, devices=["/dev/nvme3n1"])
    assert p["problems"] == [f"gpu01: storage_devices: refusing to touch /dev/nvme3n1: it holds {found}. Fix: if its "
                             "data may be destroyed, add it to storage_wipe_devices; otherwise remove it from "
                             "storage_devices"]


def test_blank_device_by_wipefs_is_accepted_single_disk_without_raid() -> None:
    lsblk = json.dumps({"blockdevices": [{"name": "nvme3n1", "type": "disk"}]})
    p = plan(lsblk, {"/dev/nvme3n1": fixture("wipefs", "empty-image.json")}, devices=["nvme3n1"], encrypt=True,
             luks_format_options=["--type", "luks2"])
    assert p["problems"] == [] and not p["raid"] and p["mdadm_conf"] == ""
    assert p["commands"]["mdadm_create"] is None
    uuids = st.storage_uuids("gpu01", "scratch")
    assert p["commands"]["luks_format"] == ["cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2",
                                            f"--uuid={uuids['luks']}", "--key-file", "/etc/luks/scratch.key",
                                            "/dev/nvme3n1"]
    assert p["commands"]["luks_open"][-2:] == ["/dev/nvme3n1", "scratch"]
    assert p["crypttab"] == f"scratch UUID={uuids['luks']} /etc/luks/scratch.key luks,nofail"
    assert [argv[0] for argv in p["build"]] == ["cryptsetup", "cryptsetup", "mkfs.xfs"]


def test_converged_node_is_recognised_as_ours_and_needs_nothing() -> None:
    lsblk = fixture("lsblk", "hgx-converged.json")
    devices = [f"/dev/nvme{n}n1" for n in range(2, 6)]
    p = plan(lsblk, devices=devices, encrypt=True)
    assert p["problems"] == [] and p["wipe"] == []
    assert p["present"] == {"md": True, "luks": True, "fs": True}
    # discovery finds the same members again (their signatures are ours) and skips the boot disks
    d = plan(lsblk, encrypt=True)
    assert d["problems"] == [] and d["devices"] == devices
    assert d["skipped"] == [{"device": "/dev/nvme0n1", "reason": "in use: mounted at /, /boot/efi"},
                            {"device": "/dev/nvme1n1", "reason": "in use: mounted at /"}]


def test_switching_encryption_on_a_built_array_is_refused() -> None:
    lsblk = fixture("lsblk", "hgx-converged.json")
    p = plan(lsblk, devices=[f"/dev/nvme{n}n1" for n in range(2, 6)], encrypt=False)
    assert len(p["problems"]) == 1
    assert p["problems"][0].startswith("gpu01: storage_encrypt: false, but the array holds this role's LUKS container")


def test_foreign_array_member_is_refused() -> None:
    lsblk = fixture("lsblk", "hgx-converged.json")
    p = plan(lsblk, host="gpu02", devices=["/dev/nvme2n1"])  # gpu02's UUIDs differ: the array is not its own
    assert len(p["problems"]) == 1
    assert p["problems"][0].startswith("gpu02: storage_devices: /dev/nvme2n1 is in use: mounted at /scratch.")


def test_partition_and_duplicates_and_stray_wipe_entries_are_refused() -> None:
    lsblk = fixture("lsblk", "hgx-fresh.json")
    p = plan(lsblk, devices=["/dev/nvme1n1p2", "/dev/nvme2n1", "/dev/nvme2n1"], wipe_devices=["/dev/nvme9n1"])
    text = "\n".join(p["problems"])
    assert "storage_devices: /dev/nvme2n1 listed more than once" in text
    assert "/dev/nvme1n1p2 is a part, not a whole disk" in text
    assert "storage_wipe_devices: /dev/nvme9n1 is not one of the devices used" in text


def test_by_id_links_are_resolved_through_stat_results() -> None:
    link = "/dev/disk/by-id/nvme-SAMSUNG_MZQL23T8HCLS-00A07_S64HNE0T500001"
    resolved = st.storage_resolved([{"item": link, "stat": {"exists": True, "islnk": True,
                                                             "lnk_source": "/dev/nvme2n1"}},
                                    {"item": "nvme3n1", "stat": {"exists": False}}])
    assert resolved == {link: "/dev/nvme2n1", "nvme3n1": "/dev/nvme3n1"}
    p = plan(fixture("lsblk", "hgx-fresh.json"), devices=[link, "nvme3n1"], resolved=resolved)
    assert p["problems"] == [] and p["devices"] == ["/dev/nvme2n1", "/dev/nvme3n1"]


def test_uuids_are_stable_and_in_each_tool_notation() -> None:
    a = st.storage_uuids("gpu01", "scratch")
    assert a == st.storage_uuids("gpu01", "scratch") != st.storage_uuids("gpu02", "scratch")
    assert re.fullmatch(r"([0-9a-f]{8}:){3}[0-9a-f]{8}", a["md"])
    assert re.fullmatch(r"[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}", a["fs"])


def test_long_xfs_label_is_refused() -> None:
    p = plan(fixture("lsblk", "hgx-fresh.json"), devices=["/dev/nvme2n1"], fs_label="checkpoints-and-data")
    assert p["problems"] == ["gpu01: storage_fs_label: 'checkpoints-and-data' is longer than 12 characters (the XFS "
                             "limit). Fix: a shorter label"]


# -------------------------------------------------------------------------------------------------- hardening

hd = load_module(ROOT / "roles" / "hardening" / "filter_plugins" / "hardening.py")
HARDENING_DEFAULTS = yaml.safe_load((ROOT / "roles" / "hardening" / "defaults" / "main.yml").read_text())


def hardening_config(**overrides: Any) -> dict[str, Any]:
    config = {k: v for k, v in HARDENING_DEFAULTS.items()}
    config["hardening_firewall_fabric_interface"] = "ens1f0np0"
    config.update({"connection": "ssh", "remote_user": "ansible"}, **overrides)
    return config


def test_hardening_defaults_pass() -> None:
    assert hd.hardening_problems("gpu01", hardening_config()) == []


def test_hardening_refuses_to_lock_out_the_ansible_user() -> None:
    problems = hd.hardening_problems("gpu01", hardening_config(hardening_ssh_allow_users=["alice"]))
    assert problems == ["gpu01: hardening_ssh_allow_users=['alice']: does not list 'ansible', the user Ansible "
                        "connects as: the next connection would be refused. Fix: add it"]
    problems = hd.hardening_problems("gpu01", hardening_config(remote_user="root",
                                                               hardening_ssh_permit_root_login="no"))
    assert problems[0].startswith("gpu01: hardening_ssh_permit_root_login=no: Ansible connects as root")
    # not over SSH (podman, Molecule): nothing to lock out
    assert hd.hardening_problems("m", hardening_config(connection="podman", hardening_ssh_allow_users=["x"])) == []


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"hardening_ssh_permit_root_login": "yes"},
     "gpu01: hardening_ssh_permit_root_login=yes: must be prohibit-password or no (passwords are never allowed)"),
    ({"hardening_firewall_ssh_port": 70000}, "gpu01: hardening_firewall_ssh_port=70000: must be a port number"),
    ({"hardening_firewall_monitoring_ports": [9100, "9400"]},
     "gpu01: hardening_firewall_monitoring_ports=9400: must be a port number (1-65535), without quotes"),
    ({"hardening_firewall_mgmt_sources": ["10.0.0.0/33"]},
     "gpu01: hardening_firewall_mgmt_sources=10.0.0.0/33: must be an IPv4/IPv6 address or network"),
    ({"hardening_firewall_trusted_interfaces": ["a-very-long-interface-name"]},
     "gpu01: hardening_firewall_trusted_interfaces=a-very-long-interface-name: must be an interface name"),
    ({"hardening_audit_watches": [{"path": "etc/ssh", "key": "ssh"}]},
     "gpu01: hardening_audit_watches=etc/ssh: path must be absolute"),
])
def test_hardening_bad_values_name_variable_and_value(overrides: dict[str, Any], expected: str) -> None:
    problems = hd.hardening_problems("gpu01", hardening_config(**overrides))
    assert len(problems) == 1 and problems[0].startswith(expected)


def test_tls_private_key_modes_and_content_never_in_messages() -> None:
    secret = "-----BEGIN PRIVATE KEY-----\nTOP-SECRET-MATERIAL\n-----END PRIVATE KEY-----\n"
    files = [{"dest": "/etc/baremetal-ai/tls/node.key", "content": secret, "mode": "0644"},
             {"dest": "/etc/baremetal-ai/tls/other.pem", "content": secret, "mode": "0440"},
             {"dest": "/etc/baremetal-ai/tls/ok.key", "content": secret, "mode": "0400"},
             {"dest": "/etc/baremetal-ai/tls/node.crt", "content": "CERT", "mode": "644"},
             {"dest": "relative.crt", "content": "", "mode": 644}]
    problems = hd.hardening_problems("gpu01", hardening_config(hardening_tls_files=files))
    assert problems == [
        "gpu01: hardening_tls_files[dest=/etc/baremetal-ai/tls/node.key]: mode=0644: a private key must be 0600 or "
        "0400",
        "gpu01: hardening_tls_files[dest=/etc/baremetal-ai/tls/other.pem]: mode=0440: a private key must be 0600 or "
        "0400",
        "gpu01: hardening_tls_files[dest=relative.crt]: dest must be an absolute path",
        "gpu01: hardening_tls_files[dest=relative.crt]: content is empty (set it from Ansible Vault)",
        "gpu01: hardening_tls_files[dest=relative.crt]: mode=644: must be an octal string such as \"0644\" (quoted)",
    ]
    assert not any("TOP-SECRET" in p for p in problems)


def test_audit_rules_are_sorted_deduplicated_and_cover_the_required_watches() -> None:
    found = ["/usr/bin/sudo", "/usr/bin/passwd", "/usr/lib/openssh/ssh-keysign", "/usr/bin/chage"]
    watches = HARDENING_DEFAULTS["hardening_audit_watches"]
    rules = hd.hardening_audit_rules(found, ["/usr/bin/su", "/usr/bin/sudo"], watches, 1000, "x86_64")
    privileged = [r for r in rules if r.endswith("-k privileged")]
    assert privileged == [f"-a always,exit -F path={p} -F perm=x -F auid>=1000 -F auid!=unset -k privileged"
                          for p in sorted({*found, "/usr/bin/su"})]
    assert "-a always,exit -F arch=b32 -S execve -C uid!=euid -F euid=0 -k setuid" in rules
    for path in ("/etc/ssh/", "/etc/sudoers", "/etc/sudoers.d/", "/etc/modprobe.d/", "/etc/nccl.conf",
                 "/etc/baremetal-ai/"):
        assert any(r.startswith(f"-w {path} -p wa -k ") for r in rules), path
    assert "-e 2" not in rules
    arm = hd.hardening_audit_rules([], [], [], 1000, "aarch64", immutable=True)
    assert not any("b32" in r for r in arm) and arm[-1] == "-e 2"
    assert rules == hd.hardening_audit_rules(list(reversed(found)), ["/usr/bin/sudo", "/usr/bin/su"],
                                             HARDENING_DEFAULTS["hardening_audit_watches"], 1000, "x86_64")


# ------------------------------------------------------------------------------------------------- monitoring

ex = load_module(ROOT / "roles" / "monitoring" / "files" / "nvidia_smi_exporter.py")
CSV = fixture("nvidia-smi", "query-gpu-h100x8.csv")


def test_nvidia_smi_csv_parses_into_base_units() -> None:
    gpus = ex.parse_query_gpu(CSV)
    assert len(gpus) == 8
    busy = gpus[3]
    assert busy["labels"] == {"gpu": "3", "uuid": "GPU-00000003-8a51-4b7a-9d1e-2c4b6a8f0e03",
                              "name": "NVIDIA H100 80GB HBM3", "pci_bus_id": "00000000:5D:00.0"}
    assert busy["driver_version"] == "535.183.01"
    values = busy["values"]
    assert values["nvidia_smi_utilization_gpu_ratio"] == pytest.approx(0.97)
    assert values["nvidia_smi_memory_total_bytes"] == 81559 * 1048576
    assert values["nvidia_smi_memory_used_bytes"] == 74213 * 1048576
    assert values["nvidia_smi_power_draw_watts"] == pytest.approx(512.87)
    assert values["nvidia_smi_clock_sm_hertz"] == 1980e6
    assert values["nvidia_smi_pstate"] == 0


def test_nvidia_smi_unavailable_values_are_left_out_not_zero() -> None:
    gpus = ex.parse_query_gpu(CSV)
    assert "nvidia_smi_power_draw_watts" not in gpus[6]["values"]          # [N/A]
    assert "nvidia_smi_ecc_errors_uncorrected_volatile" not in gpus[7]["values"]  # [Not Supported]
    assert gpus[0]["values"]["nvidia_smi_ecc_errors_uncorrected_volatile"] == 0


def test_nvidia_smi_wrong_field_count_is_an_error() -> None:
    with pytest.raises(ValueError, match="expected 16 fields"):
        ex.parse_query_gpu("0, GPU-x, NVIDIA H100, 00000000:18:00.0\n")


def test_exporter_renders_valid_prometheus_text() -> None:
    text = ex.render(ex.parse_query_gpu(CSV), now=1795760000.5, duration=0.25)
    lines = text.splitlines()
    assert "nvidia_smi_up 1" in lines and "nvidia_smi_gpus 8" in lines
    assert 'nvidia_smi_memory_total_bytes{gpu="0",uuid="GPU-00000000-8a51-4b7a-9d1e-2c4b6a8f0e00"} 85520809984' in lines
    assert ('nvidia_smi_gpu_info{gpu="0",uuid="GPU-00000000-8a51-4b7a-9d1e-2c4b6a8f0e00",name="NVIDIA H100 80GB HBM3",'
            'pci_bus_id="00000000:18:00.0",driver_version="535.183.01"} 1') in lines
    sample = re.compile(r'^[a-z_:][a-z0-9_:]*(\{([a-z_]+="[^"]*",?)*\})? -?[0-9.e+]+$')
    for line in lines:
        assert line.startswith("# HELP ") or line.startswith("# TYPE ") or sample.match(line), line
    # one HELP/TYPE per metric, each before its samples
    types = [line.split()[2] for line in lines if line.startswith("# TYPE")]
    assert len(types) == len(set(types))
    assert sum(line.startswith("nvidia_smi_power_draw_watts{") for line in lines) == 7


def test_exporter_failure_writes_up_zero(tmp_path: Path) -> None:
    rc = ex.main(["--textfile-dir", str(tmp_path), "--nvidia-smi", str(tmp_path / "missing-nvidia-smi")])
    assert rc == 1
    text = (tmp_path / "nvidia_smi.prom").read_text()
    assert "nvidia_smi_up 0" in text and "nvidia_smi_gpus" not in text
    assert oct((tmp_path / "nvidia_smi.prom").stat().st_mode & 0o777) == "0o644"
    assert [p.name for p in tmp_path.iterdir()] == ["nvidia_smi.prom"]  # no temporary file left


def test_exporter_end_to_end_with_a_stand_in_nvidia_smi(tmp_path: Path) -> None:
    fake = tmp_path / "nvidia-smi"
    fake.write_text(f"#!/bin/sh\ncat {FIXTURES / 'nvidia-smi' / 'query-gpu-h100x8.csv'}\n")
    fake.chmod(0o755)
    out = tmp_path / "textfile"
    out.mkdir()
    assert ex.main(["--textfile-dir", str(out), "--nvidia-smi", str(fake)]) == 0
    assert "nvidia_smi_up 1" in (out / "nvidia_smi.prom").read_text()


# ------------------------------------------------------------------------------- static checks on the roles

# What carries a secret: the LUKS key variable, the commands that read the key file, the crypttab entry, TLS
# contents (hardening_tls_files, unless only its destinations or its length are used).
SECRET = re.compile(r"storage_luks_key\s*(\||}}|\)|==|!=)|_storage_plan\.commands\.luks_|"
                    r"community\.general\.crypttab|item\.content|"
                    r"hardening_tls_files(?!\[dest=| \| map\(attribute='(dest|mode)'\)| \| length)")


def _tasks(path: Path) -> list[dict[str, Any]]:
    found = []

    def walk(items: Any) -> None:
        for task in items or []:
            if isinstance(task, dict):
                if "block" in task:
                    walk(task["block"])
                else:
                    found.append(task)

    walk(yaml.safe_load(path.read_text()))
    return found


def test_the_secret_pattern_sees_what_it_must() -> None:
    assert SECRET.search("{{ storage_luks_key }}") and SECRET.search("{{ (storage_luks_key | length > 0) }}")
    assert not SECRET.search("{{ storage_luks_keyfile }}")
    assert SECRET.search("loop: {{ hardening_tls_files }}")
    assert not SECRET.search("{{ hardening_tls_files | map(attribute='dest') | list }}")


@pytest.mark.parametrize("role", ["storage", "hardening"])
def test_every_task_touching_a_secret_has_no_log(role: str) -> None:
    offenders, secret_tasks = [], 0
    for path in sorted((ROOT / "roles" / role).glob("*/*.yml")):
        if path.parent.name not in ("tasks", "handlers"):
            continue
        for task in _tasks(path):
            if SECRET.search(json.dumps({k: v for k, v in task.items() if k != "name"})):
                secret_tasks += 1
                if task.get("no_log") is not True:
                    offenders.append(f"{path.relative_to(ROOT)}: {task.get('name')}")
    assert secret_tasks >= 2  # the check looks at something
    assert offenders == []
