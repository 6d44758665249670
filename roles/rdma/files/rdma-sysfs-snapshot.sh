#!/bin/sh
# Read-only snapshot of the RDMA ports and their GID tables from sysfs (kernel ABI sysfs-class-infiniband),
# one fact per line, for filter_plugins/rdma.py. Argument: a root prefix (default: the real /sys);
# tests/unit/test_numa_rdma_network.py runs this same script against fake sysfs trees.
#   port <device> <port> <link_layer> <state...>          e.g. port mlx5_0 1 Ethernet 4: ACTIVE
#   gid <device> <port> <index> <gid> <ndev|-> <type...>   e.g. gid mlx5_0 1 3 0000:...:0a00:0001 eth2 RoCE v2
# Unused table entries (all-zero GID, or a type file that cannot be read) are left out.
R="${1:-}"
ZERO=0000:0000:0000:0000:0000:0000:0000:0000
for p in "$R"/sys/class/infiniband/*/ports/*; do
  [ -d "$p" ] || continue
  port=${p##*/}
  dev=${p%/ports/*}; dev=${dev##*/}
  echo "port $dev $port $(cat "$p/link_layer" 2>/dev/null || echo -) $(cat "$p/state" 2>/dev/null)"
  for t in "$p"/gid_attrs/types/*; do
    [ -e "$t" ] || continue
    idx=${t##*/}
    type=$(cat "$t" 2>/dev/null) || continue
    [ -n "$type" ] || continue
    gid=$(cat "$p/gids/$idx" 2>/dev/null) || continue
    [ "$gid" = "$ZERO" ] && continue
    ndev=$(cat "$p/gid_attrs/ndevs/$idx" 2>/dev/null) || ndev=-
    echo "gid $dev $port $idx $gid ${ndev:--} $type"
  done
done
exit 0
