"""Small decisions of the network role, kept out of Jinja so tests/unit/test_numa_rdma_network.py can call them."""

from __future__ import annotations

from typing import Any

IPV4_ICMP_OVERHEAD = 28  # 20 bytes IPv4 header + 8 bytes ICMP echo header
IPV6_ICMP_OVERHEAD = 48  # 40 bytes IPv6 header + 8 bytes ICMPv6 echo header
ROCE_MTUS = (4096, 2048, 1024, 512, 256)
# Linux include/rdma/ib_addr.h iboe_get_mtu(): the netdev MTU minus GRH 40 + UDP 8 + BTH 12 + XRC ext 4 +
# AtomicETH 28 + ICRC 4 bytes is what RoCE payloads get.
ROCE_HEADERS = 96


def network_sysctl_conf(text: str) -> dict[str, str]:
    """A sysctl.d file's settings: 'key = value' or 'key=value' lines, comments and blanks ignored, the last
    setting of a key wins (as systemd-sysctl applies them); values with whitespace normalised."""
    out: dict[str, str] = {}
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;" or "=" not in line:
            continue
        key, value = line.split("=", 1)
        out[key.strip().lstrip("-")] = " ".join(value.split())
    return out


def network_ping_payload(mtu: int, family: str = "ipv4") -> int:
    """Largest don't-fragment ICMP echo payload that fits ``mtu``: 8972 for 9000 over IPv4, 8952 over IPv6."""
    overhead = IPV4_ICMP_OVERHEAD if family == "ipv4" else IPV6_ICMP_OVERHEAD
    return int(mtu) - overhead


def network_roce_mtu(mtu: int) -> int | None:
    """The RoCE MTU a netdev MTU allows, as the kernel's iboe_get_mtu() derives it: the largest IB MTU not
    above MTU-96 (9000 -> 4096, 4200 -> 4096, 4191 -> 2048, 1500 -> 1024)."""
    for roce in ROCE_MTUS:
        if int(mtu) - ROCE_HEADERS >= roce:
            return roce
    return None


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "network_sysctl_conf": network_sysctl_conf,
            "network_ping_payload": network_ping_payload,
            "network_roce_mtu": network_roce_mtu,
        }
