"""`baremetal checklist`: the provider evaluation before choosing a host, filled from what was measured.

Four sections (hardware, network, support, compliance) and the pilot's numbers. Every item has a question and
why it matters; the answer comes, in this order of trust, from

* ``measured``: Ansible facts of the nodes (the jsonfile fact cache, .cache/ansible-facts/), pilot results
  (results/pilot/<run>/<host>.json), validation results under results/ when they exist;
* ``declared``: the inventory says so (e.g. node_gpu_model), nothing here verified it;
* ``question``: nothing here can measure it: ask the provider, and keep the answer with the evaluation.

Validation results have no final schema yet: they are read defensively (any JSON under results/ whose keys
name a bandwidth, latency, NCCL or perftest measurement) and quoted with their file, never interpreted beyond.

Exit codes: 0 checklist written, 2 unusable input (an inventory that does not parse, an unreadable directory).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from baremetal_ai.errors import UserError

SECTIONS = ("hardware", "network", "support", "compliance", "pilot")
NETWORK_KEYS = re.compile(r"(bandwidth|busbw|algbw|latency|rtt|iperf|ib_write|ib_read|ib_send|perftest|nccl|"
                          r"all_?reduce|gbps|gb_s)", re.I)


def item(section: str, key: str, question: str, why: str, status: str = "question", answer: str = "",
         source: str = "") -> dict:
    return {"section": section, "key": key, "question": question, "why": why, "status": status,
            "answer": answer or "ask the provider", "source": source or "-"}


# --- inputs (pure parsers + thin readers) -----------------------------------------------------------------

def _unwrap(v: Any) -> Any:
    """ansible-inventory --list marks untrusted strings as {"__ansible_unsafe": "..."}; vaulted ones stay hidden."""
    if isinstance(v, dict):
        if set(v) == {"__ansible_unsafe"}:
            return v["__ansible_unsafe"]
        if "__ansible_vault" in v:
            return "<vaulted>"
        return {k: _unwrap(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_unwrap(x) for x in v]
    return v


def hosts_from_inventory_list(data: dict) -> dict[str, dict]:
    """`ansible-inventory --list` JSON -> {host: vars} for every host in any group."""
    hostvars = _unwrap(data.get("_meta", {}).get("hostvars", {}))
    names = set(hostvars)
    for group, body in data.items():
        if group != "_meta" and isinstance(body, dict):
            names.update(body.get("hosts", []))
    return {h: hostvars.get(h, {}) for h in sorted(names)}


def read_inventory(path: Path) -> dict[str, dict]:
    """Any inventory source Ansible reads (file, directory, plugin config), through `ansible-inventory`."""
    exe = Path(sys.executable).parent / "ansible-inventory"
    exe_s = str(exe) if exe.exists() else shutil.which("ansible-inventory")
    if not exe_s:
        raise UserError("ansible-inventory not found: run `make bootstrap` (it creates .venv)")
    if not path.exists():
        raise UserError(f"inventory {path}: no such file or directory")
    proc = subprocess.run([exe_s, "-i", str(path), "--list"], capture_output=True, text=True, timeout=120,
                          check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise UserError(f"inventory {path} does not parse: {last}")
    return hosts_from_inventory_list(json.loads(proc.stdout))


def parse_fact_file(text: str) -> dict:
    """One jsonfile fact-cache entry: plain facts, or ansible-core 2.19's {"__payload__": "<json>"} wrapper."""
    data = json.loads(text)
    if isinstance(data, dict) and isinstance(data.get("__payload__"), str):
        data = json.loads(data["__payload__"])
    return data if isinstance(data, dict) else {}


def match_cache_name(name: str, hosts: list[str] | None) -> str | None:
    """Cache file name -> host. Names are <prefix><host> (2.19 writes s1_<host>); a known host list wins."""
    if hosts is not None:
        cands = [h for h in hosts if name == h or name.endswith("_" + h)]
        return max(cands, key=len) if cands else None
    return re.sub(r"^(ansible_facts|s\d+)_", "", name)


def read_fact_cache(directory: Path, hosts: list[str] | None = None) -> dict[str, dict]:
    facts: dict[str, dict] = {}
    if not directory.is_dir():
        return facts
    for f in sorted(directory.iterdir()):
        host = match_cache_name(f.name, hosts)
        if not host or not f.is_file():
            continue
        try:
            facts[host] = parse_fact_file(f.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue  # a cache entry being rewritten, or not JSON: skip it, the answer says "no facts"
    return facts


def latest_pilot_results(results_dir: Path) -> dict[str, dict]:
    """{host: newest pilot result} from results/pilot/<run id>/<host>.json (run ids sort by time)."""
    out: dict[str, dict] = {}
    for f in sorted((results_dir / "pilot").glob("*/*.json")):
        try:
            data = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and data.get("schema_version") == 1:
            data["_source"] = str(f)
            out[data.get("host") or f.stem] = data
    return out


def find_measurements(data: Any, pattern: re.Pattern = NETWORK_KEYS, path: str = "") -> list[tuple[str, Any]]:
    """(json path, value) of every number (or number-with-unit dict) whose key path matches ``pattern``."""
    found: list[tuple[str, Any]] = []
    if isinstance(data, dict):
        for k, v in data.items():
            p = f"{path}.{k}" if path else str(k)
            if isinstance(v, int | float) and not isinstance(v, bool) and pattern.search(p):
                unit = data.get("unit") or data.get("units")
                found.append((p, f"{v} {unit}" if isinstance(unit, str) else v))
            else:
                found.extend(find_measurements(v, pattern, p))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            name = v.get("name") or v.get("check") or v.get("metric") if isinstance(v, dict) else None
            found.extend(find_measurements(v, pattern, f"{path}[{name or i}]"))
    return found


def validation_measurements(results_dir: Path, limit: int = 40) -> list[dict]:
    """Network measurements in any JSON under results/ except pilot/ (schema not final: quoted, not judged)."""
    out: list[dict] = []
    if not results_dir.is_dir():
        return out
    for f in sorted(results_dir.rglob("*.json")):
        if "pilot" in f.relative_to(results_dir).parts[:1]:
            continue
        try:
            data = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        for p, v in find_measurements(data):
            out.append({"file": str(f), "path": p, "value": v})
            if len(out) >= limit:
                return out
    return out


# --- interpreting facts (pure) ----------------------------------------------------------------------------

_EPYC_GEN = {"1": "Naples (Zen 1)", "2": "Rome (Zen 2)", "3": "Milan (Zen 3)", "4": "Genoa/Bergamo/Siena (Zen 4)",
             "5": "Turin (Zen 5)"}
_XEON_GEN = {"1": "Skylake-SP (1st gen Xeon Scalable)", "2": "Cascade Lake (2nd gen)", "3": "Ice Lake / Cooper Lake "
             "(3rd gen)", "4": "Sapphire Rapids (4th gen)", "5": "Emerald Rapids (5th gen)"}


def cpu_generation(model: str) -> str | None:
    """Best-effort generation from the model string (None when the string has no model number)."""
    m = re.search(r"EPYC\s+(\d{4})", model)
    if m:
        return _EPYC_GEN.get(m.group(1)[3])
    m = re.search(r"Xeon\(?R?\)?\s+(?:\w+\s+)?6\d{3}[PE]\b", model)
    if m:
        return "Xeon 6 (Granite Rapids P-core / Sierra Forest E-core)"
    m = re.search(r"Xeon\(?R?\)?\s+(?:Platinum|Gold|Silver|Bronze)\s+\d(\d)\d\d", model)
    if m:
        return _XEON_GEN.get(m.group(1))
    if "Neoverse-V2" in model or "Grace" in model:
        return "NVIDIA Grace (Neoverse V2)"
    return None


def cpu_summary(f: dict) -> str:
    proc = f.get("ansible_processor") or []
    models = sorted({proc[i + 2] for i in range(0, len(proc) - 2, 3) if isinstance(proc[i + 2], str)}) or ["?"]
    gens = {cpu_generation(m) for m in models}
    gen = ", ".join(sorted(g for g in gens if g)) or f"unknown ('{models[0]}' carries no model number)"
    return (f"{'; '.join(models)}; {f.get('ansible_processor_count', '?')} socket(s), "
            f"{f.get('ansible_processor_vcpus', '?')} vCPUs; generation: {gen}")


def storage_summary(f: dict) -> str:
    devs = f.get("ansible_devices") or {}
    real = []
    for name, d in sorted(devs.items()):
        if not isinstance(d, dict) or name.startswith(("loop", "ram", "zram", "dm-", "sr")):
            continue
        kind = "NVMe" if name.startswith("nvme") else (
            "rotational (an HDD, or a virtual disk that reports itself so)" if str(d.get("rotational")) == "1"
            else "non-rotational")
        real.append(f"{name} {d.get('size', '?')} {kind} {d.get('model') or ''}".strip())
    if real:
        return "; ".join(real)
    return "no physical block device visible (a container or a VM without passthrough disks)"


def interfaces_summary(f: dict) -> list[str]:
    out = []
    for name in f.get("ansible_interfaces") or []:
        d = f.get(f"ansible_{name.replace('-', '_')}")
        if not isinstance(d, dict) or name == "lo" or d.get("type") == "loopback":
            continue
        speed = d.get("speed")
        out.append(f"{name} {d.get('type', '?')} mtu {d.get('mtu', '?')}"
                   f"{f' {speed} Mb/s' if isinstance(speed, int) and speed > 0 else ''}"
                   f"{' (down)' if d.get('active') is False else ''}")
    return out


def virtualization(f: dict) -> str:
    role, kind = f.get("ansible_virtualization_role"), f.get("ansible_virtualization_type")
    if role == "guest":
        return f"guest of {kind}: NOT bare metal"
    if role == "host" or kind in (None, "NA", "", "none"):
        return f"bare metal (virtualization role {role or 'none'})"
    return f"{role} {kind}"


def encrypted_volumes(f: dict) -> list[str]:
    found = set()
    for name, d in (f.get("ansible_devices") or {}).items():
        if isinstance(d, dict):
            for h in d.get("holders") or []:
                if "luks" in h or "crypt" in h:
                    found.add(f"{name} -> {h}")
    for m in f.get("ansible_mounts") or []:
        dev = str(m.get("device", ""))
        if "luks" in dev or "crypt" in dev:
            found.add(f"{m.get('mount')} on {dev}")
    return sorted(found)


# --- the checklist (pure) ---------------------------------------------------------------------------------

def _per_host(hosts: list[str], fn) -> str:
    return " · ".join(f"{h}: {fn(h)}" for h in hosts)


def hardware_items(hosts: list[str], inv: dict, facts: dict, pilots: dict) -> list[dict]:
    items = []
    with_facts = [h for h in hosts if h in facts]
    src_f = "Ansible fact cache"
    items.append(item("hardware", "cpu", "CPU model and generation per node",
                      "CPU generation sets PCIe generation and lanes (GPU and NIC bandwidth), memory channels and "
                      "the data-loader/tokenizer speed that feeds the GPUs.",
                      "measured" if with_facts else "question",
                      _per_host(with_facts, lambda h: cpu_summary(facts[h])), src_f if with_facts else ""))
    gpu_measured = {h: p["environment"]["gpu"] for h, p in pilots.items()
                    if isinstance(p.get("environment"), dict) and isinstance(p["environment"].get("gpu"), dict)}

    def gpu_answer(h: str) -> str:
        g = gpu_measured.get(h)
        v = inv.get(h, {})
        declared = (f"declared {v.get('node_gpu_count', '?')} × {v.get('node_gpu_model', '?')}"
                    if "node_gpu_model" in v or "node_gpu_count" in v else "not declared")
        if g and g.get("applicable"):
            names: dict[str, int] = {}
            for x in g.get("gpus", []):
                names[x.get("name", "?")] = names.get(x.get("name", "?"), 0) + 1
            return f"measured {', '.join(f'{n} × {k}' for k, n in names.items())} ({declared})"
        if g:
            return f"{g.get('reason', 'no GPU')} ({declared})"
        return f"{declared}; not measured (run the pilot)"

    measured_any = any(h in gpu_measured for h in hosts)
    items.append(item("hardware", "gpu", "GPU models and count per node",
                      "The GPU model and count decide what fits (VRAM) and how fast it trains; a node short of a GPU "
                      "or with a different SKU breaks homogeneous multi-node jobs.",
                      "measured" if measured_any else ("declared" if inv else "question"),
                      _per_host(hosts, gpu_answer), "pilot result (nvidia-smi), inventory" if measured_any else
                      "inventory"))
    items.append(item("hardware", "memory", "System memory per node",
                      "Host RAM holds the data pipeline, pinned buffers and CPU-offloaded optimizer state; "
                      "rule of thumb: at least the total GPU memory.",
                      "measured" if with_facts else "question",
                      _per_host(with_facts, lambda h: f"{facts[h].get('ansible_memtotal_mb', 0) / 1024:.1f} GiB"),
                      src_f if with_facts else ""))
    items.append(item("hardware", "storage", "Local storage: devices, type, size",
                      "Local NVMe feeds data and takes checkpoints; too little or too slow storage idles the GPUs.",
                      "measured" if with_facts else "question",
                      _per_host(with_facts, lambda h: storage_summary(facts[h])), src_f if with_facts else ""))
    items.append(item("hardware", "interconnect", "Network interfaces (type, speed, MTU) per node",
                      "Multi-node training needs a 100-400G RDMA fabric (InfiniBand or RoCEv2) per GPU or per "
                      "node; a 25G Ethernet-only host cannot scale past one node efficiently.",
                      "measured" if with_facts else "question",
                      _per_host(with_facts, lambda h: ", ".join(interfaces_summary(facts[h])) or "none seen"),
                      src_f if with_facts else ""))
    items.append(item("hardware", "gpu_interconnect", "GPU-to-GPU interconnect (NVLink/NVSwitch, PCIe topology)",
                      "Tensor parallelism needs NVLink/NVSwitch bandwidth; PCIe-only 8-GPU boxes all-reduce several "
                      "times slower. Check `nvidia-smi topo -m` on a node.", "question",
                      "not measured by the fact cache or the pilot: ask for the topology and check nvidia-smi topo -m"))
    items.append(item("hardware", "bare_metal", "Is it really bare metal (no hypervisor)?",
                      "The point of moving is to remove hypervisor overhead and noisy neighbours.",
                      "measured" if with_facts else "question",
                      _per_host(with_facts, lambda h: virtualization(facts[h])), src_f if with_facts else ""))
    bmc = {h: v.get("bmc_endpoint") for h, v in inv.items() if h in hosts and v.get("bmc_endpoint")}
    items.append(item("hardware", "bmc", "Out-of-band management (BMC/Redfish) access",
                      "Without BMC access you cannot power-cycle, reinstall or read hardware logs yourself; every "
                      "incident becomes a ticket.", "declared" if bmc else "question",
                      _per_host(sorted(bmc), lambda h: f"Redfish at {bmc[h]}") if bmc else "",
                      "inventory (bmc_endpoint)" if bmc else ""))
    return items


def network_items(hosts: list[str], inv: dict, facts: dict, validations: list[dict]) -> list[dict]:
    items = []
    quoted = "; ".join(f"{v['path']} = {v['value']} ({v['file']})" for v in validations)
    why_bw = ("All-reduce bandwidth between nodes bounds multi-node training speed; a fabric that delivers far "
              "below line rate (misconfigured PFC/ECN, MTU) wastes most of the GPUs.")
    bw = [v for v in validations if re.search(r"bandwidth|busbw|algbw|ib_write|ib_read|gbps|gb_s|iperf|nccl|"
                                              r"all_?reduce", v["path"], re.I)]
    lat = [v for v in validations if re.search(r"latency|rtt", v["path"], re.I)]
    items.append(item("network", "bandwidth", "Measured bandwidth between nodes (NCCL all_reduce, ib_write_bw)",
                      why_bw, "measured" if bw else "question",
                      "; ".join(f"{v['path']} = {v['value']} ({v['file']})" for v in bw) or
                      ("not measured: run the validation (issue 6) on 2 or more nodes" if len(hosts) > 1 else
                       "not measured: needs 2 or more nodes"), "results/" if bw else ""))
    items.append(item("network", "latency", "Measured latency between nodes",
                      "Small-message latency bounds pipeline-parallel and inference fan-out; RDMA should be a "
                      "few microseconds.", "measured" if lat else "question",
                      "; ".join(f"{v['path']} = {v['value']} ({v['file']})" for v in lat) or
                      "not measured: run the validation (perftest ib_write_lat / NCCL small messages)",
                      "results/" if lat else ""))

    def fabric(h: str) -> str:
        v, f = inv.get(h, {}), facts.get(h, {})
        iface = v.get("node_fabric_interface")
        if not iface:
            return "no fabric interface declared"
        d = f.get(f"ansible_{str(iface).replace('-', '_')}") if f else None
        if not isinstance(d, dict):
            return f"{iface} declared ({v.get('node_fabric_kind', '?')}), not seen in facts"
        want = v.get("node_fabric_mtu")
        ok = want is None or d.get("mtu") == want
        return (f"{iface} ({v.get('node_fabric_kind', '?')}) mtu {d.get('mtu')}"
                f"{'' if ok else f' (declared {want}: MISMATCH)'}{'' if d.get('active', True) else ' DOWN'}")

    ready_detail = _per_host(hosts, fabric) if hosts else ""
    n = len(hosts)
    items.append(item("network", "multinode", "Multi-node readiness (fabric interface up with the declared MTU on "
                      "every node, 2+ nodes, measured multi-node bandwidth)",
                      "A multi-node job fails or crawls if one node's fabric port is down or has a different MTU.",
                      "partial" if n and facts else "question",
                      f"{n} node(s); {ready_detail}; multi-node bandwidth "
                      f"{'measured (above)' if bw else 'not measured'}" if n else "", "inventory + facts"))
    items.append(item("network", "fabric_spec", "Fabric: InfiniBand or RoCEv2, switch model, oversubscription, "
                      "rail-optimized topology", "Oversubscribed or non-rail topologies cap all-reduce bandwidth "
                      "at scale whatever the NICs can do.", "question"))
    items.append(item("network", "egress", "Internet/egress bandwidth and price; private link to your storage",
                      "Datasets and checkpoints move in and out; egress fees can dominate the bill.", "question"))
    if validations and not (bw or lat):
        items.append(item("network", "other_results", "Other measurements found under results/",
                          "Quoted as found (the validation schema is not final).", "measured", quoted, "results/"))
    return items


def support_items() -> list[dict]:
    qs = [
        ("hw_sla", "Hardware replacement SLA (hours) for a failed GPU, NIC, PSU or disk; spares on site?",
         "A node down for days stalls a multi-node job; GPUs fail at a measurable rate in large fleets."),
        ("remote_hands", "Remote hands: availability (24/7?), response time, price",
         "Reseating a cable or a GPU needs someone on site."),
        ("escalation", "Escalation path and on-call for network/fabric incidents",
         "Fabric problems hit every node at once; you need a person, not a ticket queue."),
        ("firmware", "Who updates BIOS/BMC/NIC/GPU firmware, with what notice, and can you pin versions?",
         "Unannounced firmware changes cause drift that shows up as NCCL errors or lost throughput."),
        ("maintenance", "Maintenance windows and notice period",
         "Planned reboots must not land in the middle of a multi-day run without checkpoints."),
        ("capacity", "Can you get N more nodes of the same SKU, and how fast?",
         "Scaling later on a different GPU or CPU generation breaks homogeneous clusters."),
        ("contract", "Term (hourly/monthly/yearly), minimum commitment, exit terms",
         "Feeds `baremetal tco`; lock-in is a cost."),
        ("monitoring", "Provider-side monitoring and incident notifications (power, cooling, network)",
         "You cannot see their side; you need to be told."),
    ]
    return [item("support", k, q, w) for k, q, w in qs]


def compliance_items(hosts: list[str], inv: dict, facts: dict) -> list[dict]:
    items = []
    with_facts = [h for h in hosts if h in facts]

    def enc(h: str) -> str:
        vols = encrypted_volumes(facts[h])
        return ("LUKS/dm-crypt: " + ", ".join(vols)) if vols else "no encrypted volume seen"

    items.append(item("compliance", "encryption_at_rest", "Encryption at rest, and who holds the keys",
                      "Checkpoints and datasets are often the most valuable data you have; with provider-held keys "
                      "the provider can read them. Also ask: are disks wiped when hardware is returned?",
                      "partial" if with_facts else "question",
                      _per_host(with_facts, enc) + "; key management: ask the provider" if with_facts else "",
                      "Ansible fact cache" if with_facts else ""))
    bmc_tls = {h: v for h, v in inv.items() if h in hosts and str(v.get("bmc_endpoint", "")).startswith("https")}
    items.append(item("compliance", "tls", "TLS in transit: provider API/console, BMC, your own services",
                      "Credentials and model weights cross these links; a BMC over plain HTTP is a remote root "
                      "shell for anyone on its network. RDMA traffic itself is not encrypted: isolate it.",
                      "partial" if bmc_tls else "question",
                      (f"BMC over HTTPS declared for {len(bmc_tls)} node(s)"
                       f"{' with a pinned CA' if all(v.get('bmc_ca_file') for v in bmc_tls.values()) else ''}; "
                       "provider API/console: ask") if bmc_tls else "", "inventory" if bmc_tls else ""))

    def audit(h: str) -> str:
        pk = facts[h].get("packages")
        if not isinstance(pk, dict):
            return "package list not in the facts"
        return "auditd installed" if "auditd" in pk else "auditd NOT installed"

    items.append(item("compliance", "audit_logs", "Audit logs: on the nodes (auditd), and of provider staff access",
                      "You must be able to show who did what on a node, including the provider's own staff.",
                      "partial" if with_facts else "question",
                      _per_host(with_facts, audit) + "; provider-side access logs: ask" if with_facts else "",
                      "Ansible fact cache (packages)" if with_facts else ""))
    items.append(item("compliance", "isolation", "Tenant isolation: dedicated hardware, switches/VLANs, BMC network",
                      "Single tenancy is the reason for bare metal; a shared fabric or a reachable BMC network "
                      "undoes it.", "partial" if with_facts else "question",
                      _per_host(with_facts, lambda h: virtualization(facts[h])) + "; network isolation: ask"
                      if with_facts else ""))
    labels = {h: v.get("node_labels") for h, v in inv.items() if h in hosts and v.get("node_labels")}
    items.append(item("compliance", "residency", "Data residency: country, region, site of each node",
                      "Regulated data may not leave a jurisdiction; record the site per node.",
                      "declared" if labels else "question",
                      _per_host(sorted(labels), lambda h: json.dumps(labels[h])) if labels else "",
                      "inventory (node_labels)" if labels else ""))
    items.append(item("compliance", "certifications", "Certifications (ISO 27001, SOC 2 type II, ...) and their "
                      "scope", "Auditors ask for them; check that the certified scope covers the site you rent.",
                      "question"))
    return items


def pilot_items(hosts: list[str], pilots: dict) -> list[dict]:
    items = []
    for h in sorted(pilots) if not hosts else [h for h in hosts if h in pilots]:
        p = pilots[h]
        t, r, i = (p.get(k) if isinstance(p.get(k), dict) else {} for k in ("training", "recovery", "inference"))
        st, lat = t.get("step_time_s") or {}, i.get("latency_ms") or {}
        gpu = t.get("gpu_utilization") or {}
        parts = [f"backend {((p.get('backend') or {}).get('name'))}"]
        if st:
            parts.append(f"{t.get('tokens_per_s', 0):,.0f} tokens/s, step p50 {st.get('p50', 0) * 1000:.2f} ms / p95 "
                         f"{st.get('p95', 0) * 1000:.2f} ms, CV {st.get('cv', 0):.3f}")
        util = f"peak {gpu['peak_pct']:.0f} %" if gpu.get("applicable") else gpu.get("reason", "n/a")
        parts.append(f"GPU util {util}")
        if lat:
            parts.append(f"inference p50/p95/p99 {lat.get('p50', 0):.2f}/{lat.get('p95', 0):.2f}/"
                         f"{lat.get('p99', 0):.2f} ms, {i.get('throughput_rps', 0):.0f} req/s")
        parts.append(f"checkpoint recovery {r.get('verdict', 'not run')}")
        note = (p.get("backend") or {}).get("note")
        items.append(item("pilot", f"pilot_{h}", f"Pilot on {h}",
                          "The pilot measures what the node delivers to a real job (training, recovery, inference); "
                          "compare with `baremetal pilot report --baseline`.", "measured",
                          "; ".join(parts) + (f" ({note})" if note else ""), p.get("_source", "")))
    if not items:
        items.append(item("pilot", "pilot", "Pilot: training throughput, step-time stability, inference p95/p99, "
                          "checkpoint recovery", "Before scaling, prove the node does the job better than today's "
                          "environment.", "question", "not run: `ansible-playbook -i INVENTORY playbooks/pilot.yml`"))
    return items


def build_checklist(hosts: list[str], inv: dict, facts: dict, pilots: dict, validations: list[dict],
                    sources: dict | None = None) -> dict:
    items = (hardware_items(hosts, inv, facts, pilots) + network_items(hosts, inv, facts, validations)
             + support_items() + compliance_items(hosts, inv, facts) + pilot_items(hosts, pilots))
    counts: dict[str, int] = {}
    for it in items:
        counts[it["status"]] = counts.get(it["status"], 0) + 1
    return {"schema_version": 1, "kind": "baremetal-ai provider checklist", "hosts": hosts, "sources": sources or {},
            "summary": counts, "items": items}


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(cl: dict) -> str:
    out = ["# Provider evaluation checklist", ""]
    src = cl.get("sources", {})
    out.append(f"Nodes: {', '.join(cl['hosts']) or 'none'}. Sources: " +
               (", ".join(f"{k} `{v}`" for k, v in src.items()) or "none") + ".")
    out.append("Status: **measured** (facts, pilot, validation results), **declared** (the inventory says so, "
               "not verified), **partial** (part measured, part to ask), **question** (ask the provider).")
    out.append("Summary: " + ", ".join(f"{n} {k}" for k, n in sorted(cl["summary"].items())) + ".")
    for section in SECTIONS:
        rows = [it for it in cl["items"] if it["section"] == section]
        if not rows:
            continue
        out += ["", f"## {section.capitalize()}", "", "| item | status | answer | source |",
                "| --- | --- | --- | --- |"]
        out += [f"| {_cell(r['question'])} | {r['status']} | {_cell(r['answer'])} | {_cell(r['source'])} |"
                for r in rows]
        out += ["", "Why it matters:", ""] + [f"- *{_cell(r['question'])}*: {r['why']}" for r in rows]
    return "\n".join(out) + "\n"


# --- CLI --------------------------------------------------------------------------------------------------

def add_checklist_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "checklist", help="provider evaluation (hardware, network, support, compliance) filled from measurements",
        description="Fills the provider evaluation from the Ansible fact cache, pilot results, validation results "
                    "and the inventory; whatever cannot be measured is left as a question with why it matters. "
                    "Run from the project root after a converge and a pilot.")
    p.add_argument("--inventory", "-i", type=Path, default=None,
                   help="inventory (file, directory or plugin config); restricts the nodes and adds what it declares. "
                        "Without it: every host in the fact cache")
    p.add_argument("--facts-dir", type=Path, default=Path(".cache/ansible-facts"),
                   help="Ansible jsonfile fact cache (default .cache/ansible-facts, as in ansible.cfg)")
    p.add_argument("--results-dir", type=Path, default=Path("results"),
                   help="pilot results (results/pilot/) and validation results (default results/)")
    p.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    p.add_argument("--out", type=Path, default=None, help="also write the output to this file")
    return p


def run_checklist(args: argparse.Namespace) -> int:
    inv = read_inventory(args.inventory) if args.inventory else {}
    hosts_hint = sorted(inv) if args.inventory else None
    facts = read_fact_cache(args.facts_dir, hosts_hint)
    pilots = latest_pilot_results(args.results_dir)
    hosts = hosts_hint if hosts_hint is not None else sorted(set(facts) | set(pilots))
    if hosts_hint is not None:
        pilots = {h: p for h, p in pilots.items() if h in hosts}
    sources = {"inventory": str(args.inventory) if args.inventory else "none (all cached hosts)",
               "facts": str(args.facts_dir), "results": str(args.results_dir)}
    cl = build_checklist(hosts, inv, facts, pilots, validation_measurements(args.results_dir), sources)
    text = json.dumps(cl, indent=2) if args.json else render_markdown(cl)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text, end="" if text.endswith("\n") else "\n")
    return 0
