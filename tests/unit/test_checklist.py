"""`baremetal checklist`: fact-cache and inventory parsing, CPU generations, and how measured, declared and
unanswerable items are told apart (pure functions on fixtures; no Ansible run)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from baremetal_ai import checklist as cl

# Trimmed from a real lab fact cache entry (.cache/ansible-facts/s1_lab-node1, ansible-core 2.19, podman node).
LAB_FACTS = {
    "ansible_processor": ["0", "AuthenticAMD", "AMD EPYC", "1", "AuthenticAMD", "AMD EPYC"],
    "ansible_processor_count": 1, "ansible_processor_vcpus": 2, "ansible_memtotal_mb": 24105,
    "ansible_virtualization_role": "guest", "ansible_virtualization_type": "podman",
    "ansible_interfaces": ["eth1", "eth0", "lo"],
    "ansible_eth0": {"device": "eth0", "mtu": 1500, "active": True, "type": "ether", "speed": 10000},
    "ansible_eth1": {"device": "eth1", "mtu": 9000, "active": True, "type": "ether", "speed": 10000},
    "ansible_lo": {"device": "lo", "mtu": 65536, "active": True, "type": "loopback"},
    "ansible_devices": {"loop1": {"virtual": 1, "size": "0.00 Bytes", "holders": [], "rotational": "0"},
                        "vda": {"virtual": 1, "size": "256.00 GB", "holders": [], "rotational": "1", "model": None}},
    "ansible_mounts": [{"mount": "/", "device": "overlay"}],
    "packages": {"openssh-server": [{"version": "1:9.2p1-2"}]},
}

# An invented bare-metal node: what the facts of a GPU server look like (not from a real machine).
METAL_FACTS = {
    "ansible_processor": ["0", "GenuineIntel", "Intel(R) Xeon(R) Platinum 8480+"] * 2,
    "ansible_processor_count": 2, "ansible_processor_vcpus": 224, "ansible_memtotal_mb": 2063000,
    "ansible_virtualization_role": "host", "ansible_virtualization_type": "kvm",
    "ansible_interfaces": ["ens1f0np0", "ib0"],
    "ansible_ens1f0np0": {"mtu": 4200, "active": True, "type": "ether", "speed": 400000},
    "ansible_ib0": {"mtu": 4092, "active": False, "type": "infiniband", "speed": 400000},
    "ansible_devices": {"nvme0n1": {"size": "3.49 TB", "model": "SAMSUNG MZQL23T8HCLS", "rotational": "0",
                                    "holders": ["luks-0b1c"]}},
    "ansible_mounts": [{"mount": "/data", "device": "/dev/mapper/luks-0b1c"}],
    "packages": {"auditd": [{"version": "1:3.0.9"}]},
}

PILOT = {"schema_version": 1, "host": "n1", "backend": {"name": "cpu-numpy", "note": "cpu-numpy, tiny model: not "
                                                        "representative of GPU throughput"},
         "environment": {"gpu": {"applicable": False, "reason": "not applicable: no GPU (nvidia-smi not found)"}},
         "training": {"status": "ran", "tokens_per_s": 45902.2, "step_time_s": {"p50": 0.01, "p95": 0.016, "cv": 0.23},
                      "gpu_utilization": {"applicable": False, "reason": "not applicable: no GPU"}},
         "recovery": {"status": "ran", "verdict": "pass"},
         "inference": {"status": "ran", "latency_ms": {"p50": 12.8, "p95": 25.2, "p99": 55.0}, "throughput_rps": 541}}


def by_key(checklist: dict) -> dict[str, dict]:
    return {i["key"]: i for i in checklist["items"]}


def test_fact_file_with_and_without_the_219_payload_wrapper():
    assert cl.parse_fact_file(json.dumps({"__payload__": json.dumps(LAB_FACTS)})) == LAB_FACTS
    assert cl.parse_fact_file(json.dumps(LAB_FACTS)) == LAB_FACTS


def test_cache_names_map_to_hosts():
    assert cl.match_cache_name("s1_lab-node1", None) == "lab-node1"
    assert cl.match_cache_name("lab-node1", None) == "lab-node1"
    assert cl.match_cache_name("s1_lab-node1", ["node1", "lab-node1"]) == "lab-node1"
    assert cl.match_cache_name("s1_e2e-node1", ["lab-node1"]) is None


def test_fact_cache_skips_broken_entries(tmp_path):
    (tmp_path / "s1_n1").write_text(json.dumps({"__payload__": json.dumps(LAB_FACTS)}))
    (tmp_path / "s1_n2").write_text("{half")
    assert list(cl.read_fact_cache(tmp_path)) == ["n1"]
    assert cl.read_fact_cache(tmp_path / "absent") == {}


def test_inventory_list_unwraps_unsafe_and_hides_vault():
    data = {"_meta": {"hostvars": {"n1": {"ansible_host": {"__ansible_unsafe": "10.0.0.1"},
                                          "bmc_password": {"__ansible_vault": "$ANSIBLE_VAULT;1.1;AES256..."}}}},
            "all": {"children": ["ungrouped", "gpu_nodes"]}, "gpu_nodes": {"hosts": ["n1", "n2"]}}
    hosts = cl.hosts_from_inventory_list(data)
    assert hosts == {"n1": {"ansible_host": "10.0.0.1", "bmc_password": "<vaulted>"}, "n2": {}}


@pytest.mark.parametrize(("model", "generation"), [
    ("AMD EPYC 9654 96-Core Processor", "Genoa/Bergamo/Siena (Zen 4)"),
    ("AMD EPYC 7763 64-Core Processor", "Milan (Zen 3)"),
    ("AMD EPYC 9575F 64-Core Processor", "Turin (Zen 5)"),
    ("Intel(R) Xeon(R) Platinum 8480+", "Sapphire Rapids (4th gen)"),
    ("Intel(R) Xeon(R) Platinum 8592+", "Emerald Rapids (5th gen)"),
    ("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", "Ice Lake / Cooper Lake (3rd gen)"),
    ("Intel(R) Xeon(R) 6980P", "Xeon 6 (Granite Rapids P-core / Sierra Forest E-core)"),
    ("AMD EPYC", None),
])
def test_cpu_generation(model, generation):
    assert cl.cpu_generation(model) == generation


def test_fact_interpretation_on_the_lab_and_on_metal():
    assert "generation: unknown ('AMD EPYC' carries no model number)" in cl.cpu_summary(LAB_FACTS)
    assert "2 socket(s), 224 vCPUs; generation: Sapphire Rapids" in cl.cpu_summary(METAL_FACTS)
    assert cl.storage_summary(LAB_FACTS).startswith("vda 256.00 GB rotational")
    assert cl.storage_summary(METAL_FACTS) == "nvme0n1 3.49 TB NVMe SAMSUNG MZQL23T8HCLS"
    assert cl.interfaces_summary(LAB_FACTS) == ["eth1 ether mtu 9000 10000 Mb/s", "eth0 ether mtu 1500 10000 Mb/s"]
    assert cl.interfaces_summary(METAL_FACTS)[1] == "ib0 infiniband mtu 4092 400000 Mb/s (down)"
    assert cl.virtualization(LAB_FACTS) == "guest of podman: NOT bare metal"
    assert cl.virtualization(METAL_FACTS).startswith("bare metal")
    assert cl.encrypted_volumes(METAL_FACTS) == ["/data on /dev/mapper/luks-0b1c", "nvme0n1 -> luks-0b1c"]
    assert cl.encrypted_volumes(LAB_FACTS) == []


def test_defensive_reading_of_validation_results():
    data = {"checks": [{"name": "nccl_all_reduce", "busbw_gbps": 452.1, "unit": "GB/s"},
                       {"name": "gpu_count", "value": 8}],
            "fabric": {"latency_us": 2.1, "note": "text", "flag": True}, "junk": [None, "x", 3]}
    found = dict(cl.find_measurements(data))
    assert found == {"checks[nccl_all_reduce].busbw_gbps": "452.1 GB/s", "fabric.latency_us": 2.1}


def test_checklist_measured_declared_and_questions():
    inv = {"n1": {"node_gpu_model": "H100-SXM5-80GB", "node_gpu_count": 8, "node_fabric_interface": "ens1f0np0",
                  "node_fabric_mtu": 9000, "node_fabric_kind": "roce", "bmc_endpoint": "https://192.0.2.211",
                  "bmc_ca_file": "/etc/ssl/bmc.pem"}}
    vals = [{"file": "results/validate/n1.json", "path": "checks[nccl_all_reduce].busbw_gbps", "value": "452 GB/s"}]
    c = cl.build_checklist(["n1"], inv, {"n1": METAL_FACTS}, {"n1": PILOT}, vals)
    items = by_key(c)
    assert items["cpu"]["status"] == "measured" and "Sapphire Rapids" in items["cpu"]["answer"]
    assert items["gpu"]["status"] == "measured"
    assert "no GPU" in items["gpu"]["answer"] and "declared 8 × H100-SXM5-80GB" in items["gpu"]["answer"]
    assert items["memory"]["answer"] == "n1: 2014.6 GiB"
    assert items["bandwidth"]["status"] == "measured" and "452 GB/s" in items["bandwidth"]["answer"]
    assert items["latency"]["status"] == "question"
    assert "mtu 4200 (declared 9000: MISMATCH)" in items["multinode"]["answer"]
    assert "LUKS/dm-crypt" in items["encryption_at_rest"]["answer"]
    assert "auditd installed" in items["audit_logs"]["answer"]
    assert items["tls"]["status"] == "partial" and "pinned CA" in items["tls"]["answer"]
    assert items["bmc"]["status"] == "declared"
    assert items["pilot_n1"]["status"] == "measured" and "45,902 tokens/s" in items["pilot_n1"]["answer"]
    assert all(items[k]["status"] == "question" for k in ("hw_sla", "remote_hands", "certifications", "fabric_spec"))
    assert all(i["why"] for i in c["items"])


def test_nothing_measured_leaves_questions_not_guesses():
    c = cl.build_checklist(["n1"], {}, {}, {}, [])
    items = by_key(c)
    for key in ("cpu", "memory", "storage", "interconnect", "bandwidth", "encryption_at_rest", "audit_logs"):
        assert items[key]["status"] == "question", key
    assert items["gpu"]["answer"] == "n1: not declared; not measured (run the pilot)"
    assert items["pilot"]["answer"].startswith("not run")


def test_markdown_has_every_section_with_why(tmp_path):
    c = cl.build_checklist(["n1"], {}, {"n1": LAB_FACTS}, {}, [])
    md = cl.render_markdown(c)
    for section in ("## Hardware", "## Network", "## Support", "## Compliance", "## Pilot"):
        assert section in md
    assert "| item | status | answer | source |" in md and "Why it matters:" in md
    assert "guest of podman: NOT bare metal" in md


def test_cli_without_inventory_reads_cache_and_results(tmp_path, capsys):
    facts = tmp_path / "facts"
    facts.mkdir()
    (facts / "s1_n1").write_text(json.dumps({"__payload__": json.dumps(LAB_FACTS)}))
    run = tmp_path / "results" / "pilot" / "20260101T000000Z"
    run.mkdir(parents=True)
    (run / "n1.json").write_text(json.dumps(PILOT))
    p = argparse.ArgumentParser()
    cl.add_checklist_parser(p.add_subparsers(dest="cmd"))
    args = p.parse_args(["checklist", "--facts-dir", str(facts), "--results-dir", str(tmp_path / "results"),
                         "--json", "--out", str(tmp_path / "out.json")])
    assert cl.run_checklist(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["hosts"] == ["n1"] and json.loads(Path(tmp_path / "out.json").read_text()) == data
    assert by_key(data)["pilot_n1"]["source"].endswith("n1.json")
