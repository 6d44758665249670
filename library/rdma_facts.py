#!/usr/bin/python
# Copyright: baremetal-ai contributors
# Apache-2.0
"""Ansible module: RDMA devices, ports, GIDs and the RoCEv2 GID index, from /sys/class/infiniband."""

from __future__ import annotations

import glob
import os
import re
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.bm_parsers import parse_gid_table, roce_v2_gid_index

DOCUMENTATION = r"""
---
module: rdma_facts
short_description: RDMA devices, ports, link layer, MTU and GID table, read from sysfs
description:
  - Reads C(/sys/class/infiniband/<dev>/ports/<n>/) for each RDMA device and port. It reports
    C(state), C(phys_state), C(link_layer) and C(rate), plus the GID table (C(gids/<i>)) with
    each GID's type (C(gid_attrs/types/<i>), which reads C(IB/RoCE v1) or C(RoCE v2)) and netdev
    (C(gid_attrs/ndevs/<i>)).
  - Picks the RoCEv2 GID index per port, as NCCL (C(NCCL_IB_GID_INDEX)) and perftest (C(-x)) need it. It prefers
    an IPv4-mapped GID (C(::ffff:a.b.c.d)), then a global IPv6 one, then link-local.
  - For Ethernet (RoCE) ports, C(active_mtu) is derived from the netdev MTU. The derivation is the one the kernel
    uses (C(iboe_get_mtu)), the largest IB MTU that fits after the RoCE headers. InfiniBand ports do not expose
    their active MTU in sysfs (C(active_mtu=null)); C(ibv_devinfo) shows it.
  - No C(/sys/class/infiniband) or no device in it gives C(present=false) with a reason; nothing fails.
  - Reads only; check mode returns the same facts.
version_added: "0.1.0"
author: baremetal-ai contributors
options:
  sysfs_root:
    description:
      - Directory that holds C(sys/) (tests point it at a fake tree).
    type: path
    default: /
"""

EXAMPLES = r"""
- name: Gather RDMA facts
  rdma_facts:

- name: Use the RoCEv2 GID index of the fabric NIC for NCCL
  ansible.builtin.set_fact:
    nccl_ib_gid_index: "{{ ansible_facts.rdma.devices | map(attribute='ports') | flatten
                           | selectattr('netdevs', 'contains', node_fabric_interface)
                           | map(attribute='roce_v2_gid_index') | first }}"
  when: ansible_facts.rdma.present
"""

RETURN = r"""
ansible_facts:
  description: Facts added under C(rdma).
  returned: always
  type: complex
  contains:
    rdma:
      description: RDMA devices and ports; C(present=false) with C(reason) when there are none.
      type: dict
      returned: always
      sample:
        present: true
        reason: null
        device_count: 1
        devices:
          - name: mlx5_0
            pci_bdf: "0000:19:00.0"
            numa_node: 0
            node_guid: "a088:c203:0045:7e10"
            fw_ver: "28.39.1002"
            hca_type: MT4129
            board_id: MT_0000000838
            netdevs: [ens1f0np0]
            ports:
              - port: 1
                state: ACTIVE
                phys_state: LinkUp
                link_layer: Ethernet
                rate: "400 Gb/sec (4X NDR)"
                netdevs: [ens1f0np0]
                netdev_mtu: 9000
                active_mtu: 4096
                roce_v2_gid_index: 3
                gids:
                  - {index: 3, gid: "0000:0000:0000:0000:0000:ffff:0ac8:010b", ipv4: 10.200.1.11,
                     type: RoCE v2, version: v2, netdev: ens1f0np0, link_local: false}
"""

# Kernel iboe_get_mtu(): GRH 40 + UDP 8 + BTH 12 + XRC ext 4 + AtomicETH 28 + ICRC 4 bytes of RoCE overhead.
ROCE_OVERHEAD = 96
IB_MTUS = (4096, 2048, 1024, 512, 256)


def sys_path(root: str, *parts: str) -> str:
    return os.path.join(root, "sys", *parts)


def read_attr(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read().strip()
    except OSError:  # e.g. gid_attrs/types/<i> of an empty GID slot answers EINVAL
        return None


def state_name(value: str | None) -> str | None:
    """``"4: ACTIVE"`` → ``"ACTIVE"``; ``"5: LinkUp"`` → ``"LinkUp"``."""
    if not value:
        return None
    return value.split(":", 1)[1].strip() if ":" in value else value.strip()


def roce_active_mtu(netdev_mtu: int | None) -> int | None:
    if not netdev_mtu:
        return None
    usable = netdev_mtu - ROCE_OVERHEAD
    return next((m for m in IB_MTUS if usable >= m), None)


def _index_sort(names: list[str]) -> list[str]:
    return sorted(names, key=lambda n: int(n) if n.isdigit() else 1 << 30)


def read_port(root: str, dev: str, port_dir: str) -> dict[str, Any]:
    port = os.path.basename(port_dir)
    rows = []
    gids_dir = os.path.join(port_dir, "gids")
    for idx in _index_sort(os.listdir(gids_dir)) if os.path.isdir(gids_dir) else []:
        gid = read_attr(os.path.join(gids_dir, idx))
        if not gid or not idx.isdigit():
            continue
        rows.append({
            "dev": dev,
            "port": int(port),
            "index": int(idx),
            "gid": gid,
            "type": read_attr(os.path.join(port_dir, "gid_attrs", "types", idx)),
            "netdev": read_attr(os.path.join(port_dir, "gid_attrs", "ndevs", idx)),
        })
    gids = parse_gid_table(rows)
    link_layer = read_attr(os.path.join(port_dir, "link_layer"))
    netdevs = sorted({g["netdev"] for g in gids if g["netdev"]})
    netdev_mtu = None
    for nd in netdevs:
        mtu = read_attr(sys_path(root, "class", "net", nd, "mtu"))
        if mtu and mtu.isdigit():
            netdev_mtu = int(mtu)
            break
    return {
        "port": int(port),
        "state": state_name(read_attr(os.path.join(port_dir, "state"))),
        "phys_state": state_name(read_attr(os.path.join(port_dir, "phys_state"))),
        "link_layer": link_layer,
        "rate": read_attr(os.path.join(port_dir, "rate")),
        "lid": read_attr(os.path.join(port_dir, "lid")),
        "netdevs": netdevs,
        "netdev_mtu": netdev_mtu,
        "active_mtu": roce_active_mtu(netdev_mtu) if link_layer == "Ethernet" else None,
        "gids": gids,
        "roce_v2_gid_index": roce_v2_gid_index(gids) if link_layer == "Ethernet" else None,
    }


def read_device(root: str, dev_dir: str) -> dict[str, Any]:
    name = os.path.basename(dev_dir)
    pci = os.path.realpath(os.path.join(dev_dir, "device"))
    bdf = os.path.basename(pci) if re.match(r"^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$", os.path.basename(pci)) \
        else None
    numa = read_attr(os.path.join(pci, "numa_node")) if bdf else None
    net_dir = os.path.join(pci, "net")
    ports = [read_port(root, name, p) for p in
             sorted(glob.glob(os.path.join(dev_dir, "ports", "*")), key=lambda p: int(os.path.basename(p))
                    if os.path.basename(p).isdigit() else 0)
             if os.path.basename(p).isdigit()]
    return {
        "name": name,
        "pci_bdf": bdf,
        "numa_node": int(numa) if numa and numa.lstrip("-").isdigit() and int(numa) >= 0 else None,
        "node_guid": read_attr(os.path.join(dev_dir, "node_guid")),
        "fw_ver": read_attr(os.path.join(dev_dir, "fw_ver")),
        "hca_type": read_attr(os.path.join(dev_dir, "hca_type")),
        "board_id": read_attr(os.path.join(dev_dir, "board_id")),
        "node_type": read_attr(os.path.join(dev_dir, "node_type")),
        "netdevs": sorted(os.listdir(net_dir)) if os.path.isdir(net_dir) else [],
        "ports": ports,
    }


def gather_rdma(root: str) -> dict[str, Any]:
    base = sys_path(root, "class", "infiniband")
    if not os.path.isdir(base):
        return {"present": False, "reason": f"no {base} (no RDMA driver loaded)", "device_count": 0,
                "devices": []}
    names = sorted(os.listdir(base))
    if not names:
        return {"present": False, "reason": f"{base} is empty (no RDMA device)", "device_count": 0,
                "devices": []}
    devices = [read_device(root, os.path.join(base, n)) for n in names]
    return {"present": True, "reason": None, "device_count": len(devices), "devices": devices}


def main() -> None:
    module = AnsibleModule(
        argument_spec={"sysfs_root": {"type": "path", "default": "/"}},
        supports_check_mode=True,
    )
    module.exit_json(changed=False, ansible_facts={"rdma": gather_rdma(module.params["sysfs_root"])})


if __name__ == "__main__":
    main()
