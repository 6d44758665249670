#!/bin/sh
# Read-only snapshot of the PCIe/NUMA topology from sysfs, one fact per line, for the numa role's filter
# plugin (filter_plugins/numa.py parses it). Argument: a root prefix (default: none, i.e. the real /sys);
# tests/unit/test_numa_rdma_network.py runs this same script against fake sysfs trees.
#   node <id> <cpulist>
#   pci <bdf> <class> <vendor> <numa_node> <local_cpulist|-> <device path under /sys/devices>
#   net <ifname> <bdf|->
#   irq <ifname> <irq>
#   ib <rdma device> <bdf|->
R="${1:-}"
for n in "$R"/sys/devices/system/node/node[0-9]*; do
  [ -d "$n" ] || continue
  echo "node ${n##*/node} $(cat "$n/cpulist" 2>/dev/null)"
done
for d in "$R"/sys/bus/pci/devices/*; do
  [ -e "$d" ] || continue
  bdf=${d##*/}
  real=$(readlink -f "$d")
  lcpu=$(cat "$d/local_cpulist" 2>/dev/null)
  echo "pci $bdf $(cat "$d/class" 2>/dev/null) $(cat "$d/vendor" 2>/dev/null) $(cat "$d/numa_node" 2>/dev/null || echo -1) ${lcpu:--} ${real#"$R"}"
done
for i in "$R"/sys/class/net/*; do
  [ -e "$i" ] || continue
  name=${i##*/}
  if [ -e "$i/device" ]; then
    dev=$(readlink -f "$i/device"); dev=${dev##*/}
  else
    dev=-
  fi
  echo "net $name $dev"
  if [ -d "$i/device/msi_irqs" ]; then
    for q in "$i"/device/msi_irqs/*; do
      [ -e "$q" ] && echo "irq $name ${q##*/}"
    done
  fi
done
for i in "$R"/sys/class/infiniband/*; do
  [ -e "$i" ] || continue
  if [ -e "$i/device" ]; then
    dev=$(readlink -f "$i/device"); dev=${dev##*/}
  else
    dev=-
  fi
  echo "ib ${i##*/} $dev"
done
exit 0
