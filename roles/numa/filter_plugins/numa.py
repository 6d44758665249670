"""NUMA/PCIe topology logic of the numa role: parse a sysfs snapshot, map GPUs and NICs to NUMA nodes and CPUs,
plan NIC IRQ affinity and find the PCIe bridges above GPUs.

Pure Python, no Ansible import. The role runs files/numa-sysfs-snapshot.sh on the node (read-only) and passes
its output through ``numa_snapshot`` and the filters below; tests/unit/test_numa_rdma_network.py runs the same
script against fake sysfs trees (2 sockets, 8 GPUs, 4 NICs) and calls these functions.

Every item that cannot be handled carries a ``skipped`` reason instead of being dropped silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

NVIDIA_VENDOR = "0x10de"
# PCI class codes (base class, sub class): display controllers 0x03xx (3D controller 0x0302, VGA 0x0300),
# network 0x0200 (Ethernet) and 0x0207 (InfiniBand), PCI-to-PCI bridge 0x0604.
GPU_CLASSES = ("0x0302", "0x0300")
NIC_CLASSES = ("0x0200", "0x0207")
BRIDGE_CLASS = "0x0604"


def parse_cpulist(text: str) -> list[int]:
    """'0-3,8,10-11' -> [0, 1, 2, 3, 8, 10, 11]; '' or '-' -> []."""
    cpus: list[int] = []
    text = (text or "").strip()
    if text in ("", "-"):
        return cpus
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-", 1)
            cpus.extend(range(int(lo), int(hi) + 1))
        else:
            cpus.append(int(part))
    return sorted(set(cpus))


def format_cpulist(cpus: Iterable[int]) -> str:
    """[0, 1, 2, 3, 8, 10, 11] -> '0-3,8,10-11' (the kernel's cpulist format)."""
    items = sorted(set(int(c) for c in cpus))
    out: list[str] = []
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        out.append(str(items[i]) if i == j else f"{items[i]}-{items[j]}")
        i = j + 1
    return ",".join(out)


def numa_snapshot(text: str) -> dict[str, Any]:
    """Parse the output of files/numa-sysfs-snapshot.sh into plain data."""
    snap: dict[str, Any] = {"nodes": {}, "pci": {}, "net": {}, "irqs": {}, "ib": {}}
    for line in (text or "").splitlines():
        parts = line.split()
        if not parts:
            continue
        kind = parts[0]
        if kind == "node" and len(parts) >= 2:
            snap["nodes"][int(parts[1])] = parse_cpulist(parts[2] if len(parts) > 2 else "")
        elif kind == "pci" and len(parts) >= 7:
            bdf, cls, vendor, numa, lcpu, path = parts[1:7]
            snap["pci"][bdf] = {
                "class": cls.lower(),
                "vendor": vendor.lower(),
                "numa_node": int(numa),
                "local_cpus": parse_cpulist(lcpu),
                "path": path,
            }
        elif kind == "net" and len(parts) == 3:
            snap["net"][parts[1]] = None if parts[2] == "-" else parts[2]
        elif kind == "irq" and len(parts) == 3:
            snap["irqs"].setdefault(parts[1], []).append(int(parts[2]))
        elif kind == "ib" and len(parts) == 3:
            snap["ib"][parts[1]] = None if parts[2] == "-" else parts[2]
    for irqs in snap["irqs"].values():
        irqs.sort()
    return snap


def _ancestors(path: str) -> list[str]:
    """PCI BDFs above a device, nearest last: /sys/devices/pci0000:00/0000:00:01.0/0000:01:00.0 -> [00:01.0]."""
    parts = [p for p in path.split("/") if p]
    bdfs = [p for p in parts if len(p) == 12 and p[4] == ":" and p[7] == ":" and p[10] == "."]
    return bdfs[:-1]


def _numa_of(dev: Mapping[str, Any], nodes: Mapping[int, list[int]]) -> tuple[int | None, str | None]:
    """The device's NUMA node, or None with the reason. -1 on a one-node system means node 0."""
    node = dev["numa_node"]
    if node >= 0:
        return node, None
    if len(nodes) == 1:
        return next(iter(nodes)), None
    return None, "the kernel reports no NUMA affinity (numa_node -1) on a multi-node system: check the BIOS/ACPI SRAT"


def numa_topology(snap: Mapping[str, Any]) -> dict[str, Any]:
    """NUMA nodes with their CPUs; GPUs (index in PCI bus order) and NICs with NUMA node, local CPUs and PCIe path."""
    nodes = {int(k): v for k, v in snap["nodes"].items()}
    if not nodes:
        nodes = {0: sorted({c for d in snap["pci"].values() for c in d["local_cpus"]})}
    topo: dict[str, Any] = {
        "numa_nodes": [{"id": n, "cpus": format_cpulist(c), "cpu_count": len(c)} for n, c in sorted(nodes.items())],
        "gpus": [],
        "nics": [],
    }
    gpu_bdfs = sorted(
        bdf for bdf, d in snap["pci"].items() if d["vendor"] == NVIDIA_VENDOR and d["class"][:6] in GPU_CLASSES
    )
    for index, bdf in enumerate(gpu_bdfs):
        dev = snap["pci"][bdf]
        node, why = _numa_of(dev, nodes)
        cpus = dev["local_cpus"] or (nodes.get(node, []) if node is not None else [])
        topo["gpus"].append({
            "index": index, "pci": bdf, "numa_node": node, "local_cpus": format_cpulist(cpus),
            "pcie_path": _ancestors(dev["path"]), **({"numa_unknown": why} if why else {}),
        })
    rdma_by_bdf = {bdf: name for name, bdf in snap.get("ib", {}).items() if bdf}
    for name, bdf in sorted(snap["net"].items()):
        if not bdf or bdf not in snap["pci"] or snap["pci"][bdf]["class"][:6] not in NIC_CLASSES:
            continue
        dev = snap["pci"][bdf]
        node, why = _numa_of(dev, nodes)
        cpus = dev["local_cpus"] or (nodes.get(node, []) if node is not None else [])
        nic = {
            "name": name, "pci": bdf, "numa_node": node, "local_cpus": format_cpulist(cpus),
            "pcie_path": _ancestors(dev["path"]), "rdma_device": rdma_by_bdf.get(bdf),
        }
        if why:
            nic["numa_unknown"] = why
        nic["nearest_gpu"] = nearest_gpu(nic, topo["gpus"])
        topo["nics"].append(nic)
    return topo


def nearest_gpu(nic: Mapping[str, Any], gpus: Sequence[Mapping[str, Any]]) -> int | None:
    """Index of the GPU sharing the deepest PCIe ancestor with the NIC (same switch first), then same NUMA node."""
    best: tuple[int, int, int] | None = None
    for gpu in gpus:
        common = 0
        for a, b in zip(nic["pcie_path"], gpu["pcie_path"], strict=False):
            if a != b:
                break
            common += 1
        same_node = int(nic["numa_node"] is not None and nic["numa_node"] == gpu["numa_node"])
        key = (common, same_node, -gpu["index"])
        if best is None or key > best:
            best = key
    if best is None or (best[0] == 0 and best[1] == 0):
        return None
    return -best[2]


def numa_irq_plan(
    topo: Mapping[str, Any],
    snap: Mapping[str, Any],
    interfaces: Sequence[str],
    nic_gpu_map: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Which CPUs each listed NIC's IRQs go to: those of the NUMA node of the GPU the NIC serves.

    The GPU is ``nic_gpu_map[interface]`` when given, else the PCIe-nearest GPU; without GPUs, the NIC's own
    NUMA node. IRQ numbers are informative only: the boot-time script re-reads them (MSI vectors can change).
    """
    nic_gpu_map = dict(nic_gpu_map or {})
    nics = {n["name"]: n for n in topo["nics"]}
    gpus = {g["index"]: g for g in topo["gpus"]}
    cpus_of_node = {n["id"]: n["cpus"] for n in topo["numa_nodes"]}
    plan: list[dict[str, Any]] = []
    for name in interfaces:
        entry: dict[str, Any] = {"interface": name}
        if name not in snap["net"]:
            entry["skipped"] = f"interface {name} does not exist on this host"
        elif name not in nics:
            entry["skipped"] = f"{name} is not a PCI network device (virtual interface: it has no IRQs of its own)"
        else:
            nic = nics[name]
            gpu_index = nic_gpu_map.get(name, nic["nearest_gpu"])
            if gpu_index is not None and int(gpu_index) not in gpus:
                entry["skipped"] = f"GPU {gpu_index} named for {name} in numa_nic_gpu_map does not exist"
            else:
                node = gpus[int(gpu_index)]["numa_node"] if gpu_index is not None else nic["numa_node"]
                if node is None:
                    entry["skipped"] = nic.get("numa_unknown", "NUMA node unknown")
                else:
                    entry.update({
                        "pci": nic["pci"], "gpu": None if gpu_index is None else int(gpu_index),
                        "numa_node": node, "cpus": cpus_of_node[node], "irqs": snap["irqs"].get(name, []),
                        "basis": ("numa_nic_gpu_map" if name in nic_gpu_map else
                                  "PCIe-nearest GPU" if gpu_index is not None else "the NIC's own NUMA node (no GPU)"),
                    })
                    if not entry["irqs"]:
                        entry["skipped"] = f"{name} reports no MSI IRQs (driver not bound?)"
        plan.append(entry)
    return plan


def numa_acs_bridges(topo: Mapping[str, Any], snap: Mapping[str, Any]) -> list[str]:
    """PCI bridges (class 0x0604) on the path from the root complex to each GPU: where ACS is turned off."""
    out: set[str] = set()
    for gpu in topo["gpus"]:
        for bdf in gpu["pcie_path"]:
            dev = snap["pci"].get(bdf)
            if dev and dev["class"].startswith(BRIDGE_CLASS):
                out.add(bdf)
    return sorted(out)


def numa_gpu_nodes(topo: Mapping[str, Any]) -> dict[int, int]:
    """GPU index -> NUMA node (GPUs with an unknown node are left out), for the numa-launch wrapper."""
    return {g["index"]: g["numa_node"] for g in topo["gpus"] if g["numa_node"] is not None}


def numa_missing_kernel_args(cmdline: str, wanted: Sequence[str]) -> list[str]:
    """Kernel arguments from ``wanted`` that the running kernel's command line does not have."""
    have = set((cmdline or "").split())
    return [a for a in wanted if a not in have]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "numa_snapshot": numa_snapshot,
            "numa_topology": numa_topology,
            "numa_irq_plan": numa_irq_plan,
            "numa_acs_bridges": numa_acs_bridges,
            "numa_gpu_nodes": numa_gpu_nodes,
            "numa_missing_kernel_args": numa_missing_kernel_args,
            "numa_parse_cpulist": parse_cpulist,
            "numa_format_cpulist": format_cpulist,
        }
