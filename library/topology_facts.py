#!/usr/bin/python
# Copyright: baremetal-ai contributors
# Apache-2.0
"""Ansible module: NUMA nodes, GPUs, NICs and their PCIe paths and GPU↔NIC closeness, from sysfs."""

from __future__ import annotations

import glob
import os
import re
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: topology_facts
short_description: NUMA, PCIe tree and GPU/NIC affinity of a node, read from sysfs
description:
  - Reads C(/sys/devices/system/node/node*/cpulist) for the NUMA nodes and their CPUs.
  - Finds GPUs (PCI class C(0x0300) or C(0x0302) with the NVIDIA C(0x10de) or AMD C(0x1002) vendor id) in
    C(/sys/bus/pci/devices) and NICs (C(/sys/class/net/*/device) and C(/sys/class/infiniband/*/device), PCI class
    C(0x0200) Ethernet or C(0x0207) InfiniBand).
  - For each device, its NUMA node, local CPUs and PCIe path (the chain of bridges from the root bus, taken from the
    device's real path in sysfs).
  - Classifies every GPU/NIC pair the way C(nvidia-smi topo -m) does. C(PIX) means at most one PCIe switch
    (one upstream and two downstream bridge ports). C(PXB) means several switches, without the host bridge.
    C(PHB) means the same PCIe host bridge (root bus), through the host bridge. C(NODE) means different host
    bridges in the same NUMA node. C(SYS) means across NUMA nodes (sockets).
  - Reads only; nothing is changed, so check mode returns the same facts.
version_added: "0.1.0"
author: baremetal-ai contributors
options:
  sysfs_root:
    description:
      - Directory that holds C(sys/) (tests point it at a fake tree).
    type: path
    default: /
notes:
  - NVLink is not visible in sysfs; C(gpu_facts) reports it from nvidia-smi. A device whose C(numa_node) reads
    C(-1) gets C(numa_node=null); for closeness two devices on different root buses then count as C(NODE), unless
    both NUMA nodes are known and differ.
"""

EXAMPLES = r"""
- name: Gather the node's PCIe/NUMA topology
  topology_facts:

- name: Every GPU has a NIC under the same PCIe switch (GPUDirect RDMA)
  ansible.builtin.assert:
    that: item.nearest_link in ['PIX', 'PXB']
    fail_msg: "{{ item.name }} ({{ item.bdf }}): nearest NIC is {{ item.nearest_link }}"
  loop: "{{ ansible_facts.topology.gpus }}"
  loop_control:
    label: "{{ item.name }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts added under C(topology).
  returned: always
  type: complex
  contains:
    topology:
      description: The node's topology.
      type: dict
      returned: always
      sample:
        numa_nodes: [{id: 0, cpulist: "0-51,104-155", cpu_count: 104}]
        gpus:
          - name: GPU0
            bdf: "0000:18:00.0"
            vendor_id: "0x10de"
            device_id: "0x2330"
            class: "0x030200"
            numa_node: 0
            local_cpulist: "0-51,104-155"
            root_bus: "0000:15"
            pcie_path: ["0000:15:01.0", "0000:16:00.0", "0000:17:01.0"]
            nearest_nics: [NIC0]
            nearest_link: PIX
        nics:
          - name: NIC0
            bdf: "0000:19:00.0"
            netdevs: [ens1f0np0]
            rdma_devices: [mlx5_0]
            class: "0x020000"
            numa_node: 0
        gpu_nic: {GPU0: {NIC0: PIX, NIC1: NODE}}
        gpu_gpu: {GPU0: {GPU0: X, GPU1: PIX}}
        legend: {PIX: at most one PCIe switch}
"""

GPU_VENDORS = {"0x10de": "NVIDIA", "0x1002": "AMD"}
GPU_CLASSES = ("0x0300", "0x0302")
NIC_CLASSES = ("0x0200", "0x0207")
BDF_RE = re.compile(r"^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
ROOT_BUS_RE = re.compile(r"^pci([0-9a-f]{4,8}:[0-9a-f]{2})$")
LEGEND = {
    "X": "self",
    "PIX": "at most one PCIe switch",
    "PXB": "several PCIe switches, without the host bridge",
    "PHB": "the same PCIe host bridge (root bus), through it",
    "NODE": "different host bridges in the same NUMA node",
    "SYS": "across NUMA nodes (the SMP interconnect)",
}
# Closeness order, best first: used to pick the nearest NICs.
LINK_RANK = {"X": 0, "PIX": 1, "PXB": 2, "PHB": 3, "NODE": 4, "SYS": 5}


def sys_path(root: str, *parts: str) -> str:
    return os.path.join(root, "sys", *parts)


def read_attr(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return None


def expand_cpulist(cpulist: str | None) -> list[int]:
    """``"0-3,8,10-11"`` → ``[0, 1, 2, 3, 8, 10, 11]``."""
    cpus: list[int] = []
    for part in (cpulist or "").split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            cpus.extend(range(int(lo), int(hi) + 1))
        else:
            cpus.append(int(part))
    return cpus


def read_numa_nodes(root: str) -> list[dict[str, Any]]:
    nodes = []
    for path in glob.glob(sys_path(root, "devices", "system", "node", "node[0-9]*")):
        m = re.search(r"node(\d+)$", path)
        if not m:
            continue
        cpulist = read_attr(os.path.join(path, "cpulist")) or ""
        nodes.append({"id": int(m.group(1)), "cpulist": cpulist, "cpu_count": len(expand_cpulist(cpulist))})
    return sorted(nodes, key=lambda n: n["id"])


def numa_of(value: str | None) -> int | None:
    try:
        n = int(value) if value is not None else -1
    except ValueError:
        return None
    return n if n >= 0 else None


def pci_location(real_path: str) -> tuple[str | None, list[str]]:
    """Root bus and chain of PCI addresses (root port first, the device last) from a device's real path."""
    root_bus = None
    chain: list[str] = []
    for comp in real_path.split(os.sep):
        m = ROOT_BUS_RE.match(comp)
        if m:
            root_bus, chain = m.group(1), []
        elif BDF_RE.match(comp) and root_bus is not None:
            chain.append(comp)
    return root_bus, chain


def pci_device(root: str, real_path: str) -> dict[str, Any] | None:
    """Attributes of the nearest PCI device at or above ``real_path`` (a netdev's parent may be virtio)."""
    path = real_path
    while path and path != os.sep:
        if BDF_RE.match(os.path.basename(path)) and os.path.exists(os.path.join(path, "class")):
            break
        path = os.path.dirname(path)
    else:
        return None
    root_bus, chain = pci_location(path)
    return {
        "bdf": os.path.basename(path),
        "vendor_id": read_attr(os.path.join(path, "vendor")),
        "device_id": read_attr(os.path.join(path, "device")),
        "class": read_attr(os.path.join(path, "class")),
        "numa_node": numa_of(read_attr(os.path.join(path, "numa_node"))),
        "local_cpulist": read_attr(os.path.join(path, "local_cpulist")),
        "root_bus": root_bus,
        "pcie_path": chain[:-1],
        "_path": path,
    }


def find_gpus(root: str) -> list[dict[str, Any]]:
    gpus = []
    for link in sorted(glob.glob(sys_path(root, "bus", "pci", "devices", "*"))):
        dev = pci_device(root, os.path.realpath(link))
        if not dev or not (dev["class"] or "").startswith(GPU_CLASSES):
            continue
        if dev["vendor_id"] not in GPU_VENDORS:
            continue
        dev["vendor"] = GPU_VENDORS[dev["vendor_id"]]
        gpus.append(dev)
    return sorted(gpus, key=lambda d: d["bdf"])


def find_nics(root: str) -> list[dict[str, Any]]:
    nics: dict[str, dict[str, Any]] = {}
    sources = (("net", "netdevs"), ("infiniband", "rdma_devices"))
    for cls, key in sources:
        for entry in sorted(glob.glob(sys_path(root, "class", cls, "*"))):
            dev_link = os.path.join(entry, "device")
            if not os.path.exists(dev_link):  # virtual interfaces (lo, bridges, veth) have no device
                continue
            dev = pci_device(root, os.path.realpath(dev_link))
            if not dev or not (dev["class"] or "").startswith(NIC_CLASSES):
                continue
            nic = nics.setdefault(dev["bdf"], {**dev, "netdevs": [], "rdma_devices": []})
            nic[key].append(os.path.basename(entry))
    return sorted(nics.values(), key=lambda d: d["bdf"])


def link_type(a: dict[str, Any], b: dict[str, Any]) -> str:
    """``nvidia-smi topo -m`` vocabulary for the PCIe path between two devices (see DOCUMENTATION)."""
    if a["bdf"] == b["bdf"]:
        return "X"
    if a["root_bus"] != b["root_bus"] or a["root_bus"] is None:
        if a["numa_node"] is not None and b["numa_node"] is not None and a["numa_node"] != b["numa_node"]:
            return "SYS"
        return "NODE"
    pa, pb = a["pcie_path"], b["pcie_path"]
    common = 0
    for x, y in zip(pa, pb, strict=False):
        if x != y:
            break
        common += 1
    if common == 0:
        return "PHB"
    # A switch is one upstream + n downstream bridge ports: going through one crosses at most three.
    crossed = (len(pa) - common) + (len(pb) - common) + 1
    return "PIX" if crossed <= 3 else "PXB"


def gather_topology(root: str) -> dict[str, Any]:
    numa = read_numa_nodes(root)
    gpus = find_gpus(root)
    nics = find_nics(root)
    for i, g in enumerate(gpus):
        g["name"] = f"GPU{i}"
    for i, n in enumerate(nics):
        n["name"] = f"NIC{i}"
    gpu_nic: dict[str, dict[str, str]] = {}
    for g in gpus:
        row = {n["name"]: link_type(g, n) for n in nics}
        gpu_nic[g["name"]] = row
        if row:
            best = min(LINK_RANK[v] for v in row.values())
            g["nearest_link"] = next(k for k, v in LINK_RANK.items() if v == best)
            g["nearest_nics"] = [name for name, v in row.items() if LINK_RANK[v] == best]
        else:
            g["nearest_link"], g["nearest_nics"] = None, []
    gpu_gpu = {g["name"]: {h["name"]: link_type(g, h) for h in gpus} for g in gpus}
    for d in gpus + nics:
        d.pop("_path", None)
    return {
        "numa_nodes": numa,
        "numa_count": len(numa),
        "gpus": gpus,
        "nics": nics,
        "gpu_count": len(gpus),
        "nic_count": len(nics),
        "gpu_nic": gpu_nic,
        "gpu_gpu": gpu_gpu,
        "legend": LEGEND,
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={"sysfs_root": {"type": "path", "default": "/"}},
        supports_check_mode=True,
    )
    root = module.params["sysfs_root"]
    if not os.path.isdir(sys_path(root)):
        module.fail_json(msg=f"no sys/ directory under sysfs_root {root!r}")
    module.exit_json(changed=False, ansible_facts={"topology": gather_topology(root)})


if __name__ == "__main__":
    main()
