"""Process helpers shared by the modules that start short-lived benchmark servers (network_bench: iperf3,
rdma_bench: perftest). Stdlib only: Ansible ships this file to the nodes with those modules."""

from __future__ import annotations

import os


def listening(port: int, proc_net: str = "/proc/net") -> bool:
    """Whether something listens on TCP `port` (IPv4 or IPv6), from /proc/net/tcp{,6}."""
    for f in ("tcp", "tcp6"):
        try:
            with open(os.path.join(proc_net, f), encoding="utf-8") as fh:
                next(fh, None)
                for line in fh:
                    parts = line.split()
                    if len(parts) > 3 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        return True
        except OSError:
            continue
    return False
