"""RDMA decision logic of the rdma role: which QoS commands (iproute2 ``dcb`` or ``mlnx_qos``) realise the
configured DSCP/priority/PFC/ETS settings, and which GID of each RDMA port is the RoCE v2 one.

Pure Python, no Ansible import. The role renders the commands into a boot-time script and feeds the output of
files/rdma-sysfs-snapshot.sh through ``rdma_snapshot`` and ``rdma_gid_report``;
tests/unit/test_numa_rdma_network.py calls the same functions with fake sysfs trees.

Background (docs: gpu-node-reference.md section 3): DSCP sits in the upper six bits of the IP ToS byte, so the
RDMA-CM ToS for DSCP d is 4*d (DSCP 26 -> ToS 104). The default DSCP-to-priority map of mlx5 is
priority = DSCP >> 3, so DSCP 26 lands on priority 3 even before any remapping: the convention "DSCP 26 on
priority 3, PFC on priority 3" therefore agrees with the NIC's defaults and with the switch's RoCE profile.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

PRIORITIES = range(8)
ROCE_V2 = "RoCE v2"


def rdma_roce_tos(dscp: int) -> int:
    """IP ToS byte for a DSCP value (ECN bits 0: the NIC marks ECT itself when DCQCN is on)."""
    dscp = int(dscp)
    if not 0 <= dscp <= 63:
        raise ValueError(f"DSCP {dscp} is outside 0-63")
    return dscp << 2


def rdma_ets_bandwidth(rdma_tc: int, rdma_percent: int) -> list[int]:
    """ETS bandwidth shares of the 8 traffic classes: ``rdma_percent`` for the RDMA class, the rest split evenly
    (lower classes get the remainder), always summing to 100."""
    rdma_tc, rdma_percent = int(rdma_tc), int(rdma_percent)
    if not 1 <= rdma_percent <= 100 or rdma_tc not in PRIORITIES:
        raise ValueError(f"ETS share {rdma_percent}% for TC {rdma_tc} is not 1-100% on a TC 0-7")
    rest = 100 - rdma_percent
    others = [tc for tc in PRIORITIES if tc != rdma_tc]
    base, extra = divmod(rest, len(others))
    shares = {tc: base + (1 if i < extra else 0) for i, tc in enumerate(others)}
    shares[rdma_tc] = rdma_percent
    return [shares[tc] for tc in PRIORITIES]


def rdma_qos_commands(interface: str, qos: Mapping[str, Any], tool: str = "dcb") -> list[dict[str, Any]]:
    """The commands that set DSCP trust, the DSCP->priority entry, PFC and ETS on ``interface``.

    ``qos`` keys: trust (dscp|pcp), dscp, priority, pfc_enabled, ets_enabled, ets_bandwidth. Each command is
    ``{"what": ..., "argv": [...], "optional": bool}``; an optional one may be unsupported by the installed
    tool (``dcb apptrust`` needs iproute2 >= 6.2) and is skipped with a logged reason when it fails.
    """
    prio = int(qos["priority"])
    dscp = int(qos["dscp"])
    if prio not in PRIORITIES:
        raise ValueError(f"priority {prio} is outside 0-7")
    rdma_roce_tos(dscp)
    pfc = [1 if (qos.get("pfc_enabled", True) and p == prio) else 0 for p in PRIORITIES]
    cmds: list[dict[str, Any]] = []
    if tool == "mlnx_qos":
        # Options as parsed by mlnx-tools python/mlnx_qos; --trust and --dscp2prio must be separate invocations
        # ("trust and dscp2prio commands cannot be used at the same time"), --tcbw of a non-ETS TC must be 0.
        base = ["mlnx_qos", "-i", interface]
        cmds.append({"what": f"trust {qos['trust']}", "argv": [*base, f"--trust={qos['trust']}"], "optional": False})
        if qos["trust"] == "dscp":
            cmds.append({"what": f"DSCP {dscp} -> priority {prio}",
                         "argv": [*base, f"--dscp2prio=set,{dscp},{prio}"], "optional": False})
        cmds.append({"what": f"PFC {'on priority ' + str(prio) if any(pfc) else 'off'}",
                     "argv": [*base, "--pfc=" + ",".join(map(str, pfc))], "optional": False})
        if qos.get("ets_enabled"):
            bw = rdma_ets_bandwidth(prio, qos["ets_bandwidth"])
            cmds.append({"what": f"ETS {qos['ets_bandwidth']}% for TC {prio}",
                         "argv": [*base, "--prio_tc=" + ",".join(str(p) for p in PRIORITIES),
                                  "--tsa=" + ",".join("ets" for _ in PRIORITIES), "--tcbw=" + ",".join(map(str, bw))],
                         "optional": False})
        return cmds
    if tool != "dcb":
        raise ValueError(f"unknown QoS tool {tool!r} (dcb or mlnx_qos)")
    if qos["trust"] == "dscp":
        # mlx5 switches to DSCP trust when the first DSCP APP entry is added (linux drivers/net/ethernet/mellanox/
        # mlx5/core/en_dcbnl.c, mlx5e_dcbnl_ieee_setapp: "Check if need to switch to dscp trust state"); apptrust
        # (iproute2 >= 6.2, dcb-apptrust(8)) makes it explicit where iproute2 and the driver support it.
        cmds.append({"what": "trust dscp", "argv": ["dcb", "apptrust", "set", "dev", interface, "order", "dscp"],
                     "optional": True})
        cmds.append({"what": f"DSCP {dscp} -> priority {prio}",
                     "argv": ["dcb", "app", "replace", "dev", interface, "dscp-prio", f"{dscp}:{prio}"],
                     "optional": False})
    else:
        cmds.append({"what": "trust pcp", "argv": ["dcb", "apptrust", "set", "dev", interface, "order", "pcp"],
                     "optional": True})
    cmds.append({"what": f"PFC {'on priority ' + str(prio) if any(pfc) else 'off'}",
                 "argv": ["dcb", "pfc", "set", "dev", interface, "prio-pfc",
                          *[f"{p}:{'on' if on else 'off'}" for p, on in zip(PRIORITIES, pfc, strict=True)]],
                 "optional": False})
    if qos.get("ets_enabled"):
        bw = rdma_ets_bandwidth(prio, qos["ets_bandwidth"])
        cmds.append({"what": f"ETS {qos['ets_bandwidth']}% for TC {prio}",
                     "argv": ["dcb", "ets", "set", "dev", interface,
                              "prio-tc", *[f"{p}:{p}" for p in PRIORITIES],
                              "tc-tsa", "all:ets",
                              "tc-bw", *[f"{tc}:{b}" for tc, b in zip(PRIORITIES, bw, strict=True)]],
                     "optional": False})
    return cmds


def rdma_qos_tool(choice: str, mlnx_qos_present: bool) -> str:
    """auto -> mlnx_qos where the vendor tool is installed, else iproute2 dcb."""
    if choice == "auto":
        return "mlnx_qos" if mlnx_qos_present else "dcb"
    return choice


def rdma_snapshot(text: str) -> dict[str, Any]:
    """Parse files/rdma-sysfs-snapshot.sh output: {device: {port: {link_layer, state, gids: [...]}}}."""
    devices: dict[str, Any] = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0] == "port":
            port = devices.setdefault(parts[1], {}).setdefault(int(parts[2]), {"gids": []})
            port["link_layer"] = parts[3]
            port["state"] = " ".join(parts[4:])
        elif len(parts) >= 7 and parts[0] == "gid":
            port = devices.setdefault(parts[1], {}).setdefault(int(parts[2]), {"gids": []})
            port["gids"].append({"index": int(parts[3]), "gid": parts[4],
                                 "ndev": None if parts[5] == "-" else parts[5], "type": " ".join(parts[6:])})
    for ports in devices.values():
        for port in ports.values():
            port["gids"].sort(key=lambda g: g["index"])
    return devices


def _gid_family(gid: str) -> str:
    """ipv4 (IPv4-mapped ::ffff:a.b.c.d), ipv6-link-local, or ipv6."""
    addr = ipaddress.IPv6Address(gid)
    if addr.ipv4_mapped is not None:
        return "ipv4"
    if addr.is_link_local:
        return "ipv6-link-local"
    return "ipv6"


def rdma_select_gid(port: Mapping[str, Any], family: str = "ipv4", ndev: str | None = None) -> dict[str, Any]:
    """The RoCE v2 GID of a port for ``family`` (ipv4: IPv4-mapped; ipv6: global), lowest index first.

    NCCL 2.21+ picks the same one by itself (NCCL_IB_GID_INDEX=-1); the role reports it so that nothing
    hard-codes "3", which is right only for one particular address layout.
    """
    if family not in ("ipv4", "ipv6"):
        raise ValueError(f"family {family!r}: ipv4 or ipv6")
    v2 = [g for g in port["gids"] if g["type"] == ROCE_V2 and (ndev is None or g["ndev"] == ndev)]
    chosen = [g for g in v2 if _gid_family(g["gid"]) == family]
    if chosen:
        g = chosen[0]
        return {"gid_index": g["index"], "gid": g["gid"], "ndev": g["ndev"]}
    have = ", ".join(f"{g['index']}={g['type']}/{_gid_family(g['gid'])}" for g in port["gids"]) or "none"
    return {"gid_index": None,
            "problem": f"no RoCE v2 GID with an {family} address (GIDs: {have}); "
                       f"assign an {family} address to the port's netdev"}


def rdma_gid_report(devices: Mapping[str, Any], family: str = "ipv4") -> list[dict[str, Any]]:
    """One entry per RDMA port: Ethernet (RoCE) ports with their RoCE v2 GID or a problem; InfiniBand ports
    with their state (they have no RoCE GIDs)."""
    report = []
    for dev in sorted(devices):
        for num in sorted(devices[dev]):
            port = devices[dev][num]
            entry: dict[str, Any] = {"device": dev, "port": num, "link_layer": port.get("link_layer", "-"),
                                     "state": port.get("state", "")}
            if entry["link_layer"] == "Ethernet":
                entry.update(rdma_select_gid(port, family))
            report.append(entry)
    return report


def rdma_gid_index_fact(report: list[Mapping[str, Any]]) -> int | None:
    """The single RoCE v2 GID index shared by every RoCE port (what NCCL_IB_GID_INDEX would be), else None."""
    indexes = {e.get("gid_index") for e in report if e["link_layer"] == "Ethernet"}
    if len(indexes) == 1:
        (only,) = indexes
        return only
    return None


def rdma_port_problems(report: list[Mapping[str, Any]], required_state: str = "ACTIVE") -> list[str]:
    """Ports not in ``required_state``, and RoCE ports without a RoCE v2 GID, one line each."""
    problems = []
    for e in report:
        where = f"{e['device']} port {e['port']} ({e['link_layer']})"
        if required_state and required_state not in e["state"]:
            problems.append(f"{where} is {e['state'] or 'in an unknown state'}, not {required_state}")
        if e["link_layer"] == "Ethernet" and e.get("gid_index") is None:
            problems.append(f"{where}: {e.get('problem')}")
    return problems


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "rdma_roce_tos": rdma_roce_tos,
            "rdma_ets_bandwidth": rdma_ets_bandwidth,
            "rdma_qos_commands": rdma_qos_commands,
            "rdma_qos_tool": rdma_qos_tool,
            "rdma_snapshot": rdma_snapshot,
            "rdma_select_gid": rdma_select_gid,
            "rdma_gid_report": rdma_gid_report,
            "rdma_gid_index_fact": rdma_gid_index_fact,
            "rdma_port_problems": rdma_port_problems,
        }
