"""Decision logic of the numa, rdma and network roles (their filter_plugins/), on fake sysfs trees.

The roles read sysfs on the node with a small read-only shell script (roles/<role>/files/*-sysfs-snapshot.sh)
and hand its output to their filter plugins. These tests build fake sysfs trees, run the *same* scripts against
them (the scripts take a root prefix) and check what the filters conclude:

- numa: a 2-socket HGX-like node, 8 GPUs behind 4 PCIe switches (2 GPUs + 1 NIC per switch), 4 rail NICs, an
  on-board management NIC and a virtual interface;
- rdma: GID tables laid out like the `ibv_devinfo -vvv` listing in Juniper's JVD appendix A (GID 0/1 link-local
  RoCE v1/v2, 2/3 IPv4-mapped v1/v2, 4/5 global IPv6 v1/v2; docs: gpu-node-reference.md section 3), a port whose
  IPv6 address came first (so "index 3" is wrong there), an InfiniBand port and a port without an IPv4 address.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load(role: str) -> ModuleType:
    path = ROOT / "roles" / role / "filter_plugins" / f"{role}.py"
    spec = importlib.util.spec_from_file_location(f"{role}_filter", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


numa = load("numa")
rdma = load("rdma")
network = load("network")


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def snapshot(script: str, root: Path) -> str:
    return subprocess.run(["sh", str(ROOT / "roles" / script), str(root)], capture_output=True, text=True,
                          check=True).stdout


# --------------------------------------------------------------------------------------------------- numa tree
NODE_CPUS = {0: "0-31,64-95", 1: "32-63,96-127"}


def pci_dev(root: Path, path: str, cls: str, vendor: str, node: int) -> Path:
    """A PCI device directory under sys/devices plus its sys/bus/pci/devices link."""
    d = root / "sys" / "devices" / path
    bdf = d.name
    write(d / "class", cls)
    write(d / "vendor", vendor)
    write(d / "numa_node", str(node))
    write(d / "local_cpulist", NODE_CPUS.get(node, ""))
    link = root / "sys" / "bus" / "pci" / "devices" / bdf
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(d)
    return d


def netdev(root: Path, name: str, device: Path | None, irqs: range = range(0)) -> None:
    n = root / "sys" / "class" / "net" / name
    n.mkdir(parents=True)
    if device is not None:
        (n / "device").symlink_to(device)
        for irq in irqs:
            write(device / "msi_irqs" / str(irq), "msix")


@pytest.fixture
def hgx(tmp_path: Path) -> Path:
    """2 sockets; per socket 2 root ports, each with a PCIe switch holding 2 GPUs and 1 rail NIC."""
    root = tmp_path.resolve()
    for node, cpus in NODE_CPUS.items():
        write(root / "sys" / "devices" / "system" / "node" / f"node{node}" / "cpulist", cpus)
    gpu = 0
    nic = 0
    for node, domain in ((0, "00"), (1, "80")):
        base = int(domain, 16)
        for sw in range(2):
            rp = f"pci0000:{domain}/0000:{domain}:0{sw + 1}.0"
            bus = base + 1 + sw * 8
            up = f"{rp}/0000:{bus:02x}:00.0"
            pci_dev(root, rp, "0x060400", "0x8086", node)
            pci_dev(root, up, "0x060400", "0x1000", node)
            for slot in range(3):
                down = f"{up}/0000:{bus + 1:02x}:{slot:02x}.0"
                pci_dev(root, down, "0x060400", "0x1000", node)
                ep = f"{down}/0000:{bus + 2 + slot:02x}:00.0"
                if slot < 2:
                    pci_dev(root, ep, "0x030200", "0x10de", node)
                    gpu += 1
                else:
                    d = pci_dev(root, ep, "0x020000", "0x15b3", node)
                    netdev(root, f"ens{nic + 1}f0np0", d, range(100 + nic * 16, 108 + nic * 16))
                    ib = root / "sys" / "class" / "infiniband" / f"mlx5_{nic}"
                    ib.mkdir(parents=True)
                    (ib / "device").symlink_to(d)
                    nic += 1
    mgmt = pci_dev(root, "pci0000:00/0000:00:1c.0/0000:60:00.0", "0x020000", "0x8086", 0)
    netdev(root, "eno1", mgmt, range(50, 52))
    netdev(root, "veth0", None)
    assert (gpu, nic) == (8, 4)
    return root


def test_cpulist_round_trip() -> None:
    assert numa.parse_cpulist("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11]
    assert numa.parse_cpulist("") == numa.parse_cpulist("-") == []
    assert numa.format_cpulist([11, 10, 8, 3, 2, 1, 0]) == "0-3,8,10-11"
    assert numa.format_cpulist(numa.parse_cpulist(NODE_CPUS[1])) == NODE_CPUS[1]


def test_topology_maps_gpus_and_nics_to_their_numa_nodes(hgx: Path) -> None:
    snap = numa.numa_snapshot(snapshot("numa/files/numa-sysfs-snapshot.sh", hgx))
    topo = numa.numa_topology(snap)
    assert topo["numa_nodes"] == [{"id": 0, "cpus": "0-31,64-95", "cpu_count": 64},
                                  {"id": 1, "cpus": "32-63,96-127", "cpu_count": 64}]
    assert [g["numa_node"] for g in topo["gpus"]] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [g["index"] for g in topo["gpus"]] == list(range(8))
    # GPU index = PCI bus order (nvidia-smi's default order)
    assert [g["pci"] for g in topo["gpus"]] == sorted(g["pci"] for g in topo["gpus"])
    assert topo["gpus"][4]["local_cpus"] == "32-63,96-127"
    nics = {n["name"]: n for n in topo["nics"]}
    assert set(nics) == {"eno1", "ens1f0np0", "ens2f0np0", "ens3f0np0", "ens4f0np0"}  # veth0 is not a PCI NIC
    # each rail NIC is nearest to the first GPU behind its own PCIe switch
    assert [nics[f"ens{i}f0np0"]["nearest_gpu"] for i in range(1, 5)] == [0, 2, 4, 6]
    assert [nics[f"ens{i}f0np0"]["numa_node"] for i in range(1, 5)] == [0, 0, 1, 1]
    assert nics["ens3f0np0"]["rdma_device"] == "mlx5_2"
    # the management NIC shares no switch with a GPU: nearest by NUMA node only
    assert nics["eno1"]["nearest_gpu"] == 0 and nics["eno1"]["rdma_device"] is None


def test_irq_plan_pins_to_the_served_gpus_node(hgx: Path) -> None:
    snap = numa.numa_snapshot(snapshot("numa/files/numa-sysfs-snapshot.sh", hgx))
    topo = numa.numa_topology(snap)
    plan = numa.numa_irq_plan(topo, snap, ["ens3f0np0", "ens1f0np0", "veth0", "nope0"],
                              {"ens1f0np0": 5})
    by = {p["interface"]: p for p in plan}
    assert by["ens3f0np0"]["gpu"] == 4 and by["ens3f0np0"]["cpus"] == "32-63,96-127"
    assert by["ens3f0np0"]["irqs"] == list(range(132, 140)) and by["ens3f0np0"]["basis"] == "PCIe-nearest GPU"
    # an explicit map wins: NIC on socket 0 serving GPU 5 on socket 1 gets socket 1's CPUs
    assert by["ens1f0np0"]["gpu"] == 5 and by["ens1f0np0"]["numa_node"] == 1
    assert by["ens1f0np0"]["basis"] == "numa_nic_gpu_map"
    assert "not a PCI network device" in by["veth0"]["skipped"]
    assert "does not exist" in by["nope0"]["skipped"]
    bad = numa.numa_irq_plan(topo, snap, ["ens1f0np0"], {"ens1f0np0": 9})
    assert "GPU 9" in bad[0]["skipped"]


def test_acs_bridges_are_the_bridges_above_gpus(hgx: Path) -> None:
    snap = numa.numa_snapshot(snapshot("numa/files/numa-sysfs-snapshot.sh", hgx))
    bridges = numa.numa_acs_bridges(numa.numa_topology(snap), snap)
    # per switch: root port, upstream port, 2 GPU downstream ports (not the NIC's downstream port) -> 4 x 4
    assert len(bridges) == 16
    assert "0000:00:01.0" in bridges and "0000:02:00.0" in bridges and "0000:02:02.0" not in bridges
    assert "0000:00:1c.0" not in bridges  # above the management NIC only


def test_single_node_host_without_numa_affinity(tmp_path: Path) -> None:
    """What a VM/container shows: numa_node -1 everywhere, one node: everything is on node 0, nothing skipped."""
    root = tmp_path.resolve()
    write(root / "sys" / "devices" / "system" / "node" / "node0" / "cpulist", "0-1")
    d = pci_dev(root, "pci0000:00/0000:00:03.0", "0x020000", "0x1af4", -1)
    netdev(root, "eth0", d, range(24, 27))
    snap = numa.numa_snapshot(snapshot("numa/files/numa-sysfs-snapshot.sh", root))
    topo = numa.numa_topology(snap)
    assert topo["gpus"] == [] and topo["nics"][0]["numa_node"] == 0
    plan = numa.numa_irq_plan(topo, snap, ["eth0"])
    assert plan[0]["cpus"] == "0-1" and plan[0]["basis"] == "the NIC's own NUMA node (no GPU)"


def test_unknown_numa_node_on_a_multi_node_host_is_reported(hgx: Path) -> None:
    (hgx / "sys" / "devices" / "pci0000:80" / "0000:80:01.0" / "0000:81:00.0" / "0000:82:02.0" / "0000:85:00.0"
     / "numa_node").write_text("-1\n")
    (hgx / "sys" / "devices" / "pci0000:80" / "0000:80:01.0" / "0000:81:00.0" / "0000:82:02.0" / "0000:85:00.0"
     / "local_cpulist").write_text("\n")
    snap = numa.numa_snapshot(snapshot("numa/files/numa-sysfs-snapshot.sh", hgx))
    topo = numa.numa_topology(snap)
    nic = next(n for n in topo["nics"] if n["pci"] == "0000:85:00.0")
    assert nic["numa_node"] is None and "SRAT" in nic["numa_unknown"]
    # the IRQ plan still follows the nearest GPU's node
    plan = numa.numa_irq_plan(topo, snap, [nic["name"]])
    assert plan[0]["numa_node"] == 1


def test_missing_kernel_args() -> None:
    assert numa.numa_missing_kernel_args("BOOT_IMAGE=/vmlinuz ro iommu=pt quiet", ["iommu=pt", "x=1"]) == ["x=1"]
    assert numa.numa_gpu_nodes({"gpus": [{"index": 0, "numa_node": 1}, {"index": 1, "numa_node": None}]}) == {0: 1}


# --------------------------------------------------------------------------------------------------- rdma tree
def rdma_port(root: Path, dev: str, port: int, link_layer: str, state: str, gids: list[tuple[str, str, str]]) -> None:
    p = root / "sys" / "class" / "infiniband" / dev / "ports" / str(port)
    write(p / "link_layer", link_layer)
    write(p / "state", state)
    for idx in range(16):
        gid, ndev, typ = gids[idx] if idx < len(gids) else ("0000:0000:0000:0000:0000:0000:0000:0000", "", "")
        write(p / "gids" / str(idx), gid)
        write(p / "gid_attrs" / "ndevs" / str(idx), ndev)
        write(p / "gid_attrs" / "types" / str(idx), typ)


V1, V2 = "IB/RoCE v1", "RoCE v2"
LL = "fe80:0000:0000:0000:5265:f0ff:fe00:1234"
V4 = "0000:0000:0000:0000:0000:ffff:0ac8:010a"  # ::ffff:10.200.1.10
G6 = "fd00:0000:0000:0000:0000:0000:0000:0010"


@pytest.fixture
def rdma_tree(tmp_path: Path) -> Path:
    root = tmp_path.resolve()
    # Juniper JVD appendix A layout: 0/1 link-local, 2/3 IPv4-mapped, 4/5 global IPv6 (v1, v2 each)
    rdma_port(root, "mlx5_0", 1, "Ethernet", "4: ACTIVE",
              [(LL, "ens1f0np0", V1), (LL, "ens1f0np0", V2), (V4, "ens1f0np0", V1), (V4, "ens1f0np0", V2),
               (G6, "ens1f0np0", V1), (G6, "ens1f0np0", V2)])
    # IPv6 address configured before the IPv4 one: the IPv4 RoCE v2 GID is at 5, not 3
    rdma_port(root, "mlx5_1", 1, "Ethernet", "4: ACTIVE",
              [(LL, "ens2f0np0", V1), (LL, "ens2f0np0", V2), (G6, "ens2f0np0", V1), (G6, "ens2f0np0", V2),
               (V4, "ens2f0np0", V1), (V4, "ens2f0np0", V2)])
    return root


def test_gid_selection_from_sysfs(rdma_tree: Path) -> None:
    devices = rdma.rdma_snapshot(snapshot("rdma/files/rdma-sysfs-snapshot.sh", rdma_tree))
    assert len(devices["mlx5_0"][1]["gids"]) == 6  # zero GIDs and empty types are not table entries
    report = rdma.rdma_gid_report(devices, "ipv4")
    assert [(e["device"], e["gid_index"]) for e in report] == [("mlx5_0", 3), ("mlx5_1", 5)]
    assert report[0]["gid"] == V4 and report[0]["ndev"] == "ens1f0np0"
    # ports disagree: no single NCCL_IB_GID_INDEX (leave NCCL's auto-selection on)
    assert rdma.rdma_gid_index_fact(report) is None
    assert rdma.rdma_gid_index_fact(report[:1]) == 3
    v6 = rdma.rdma_gid_report(devices, "ipv6")
    assert [e["gid_index"] for e in v6] == [5, 3]  # global, never the link-local one
    assert rdma.rdma_port_problems(report) == []


def test_port_problems(rdma_tree: Path) -> None:
    rdma_port(rdma_tree, "mlx5_2", 1, "Ethernet", "1: DOWN", [(LL, "ens3f0np0", V1), (LL, "ens3f0np0", V2)])
    rdma_port(rdma_tree, "mlx5_3", 1, "InfiniBand", "4: ACTIVE", [(LL, "", V1)])
    devices = rdma.rdma_snapshot(snapshot("rdma/files/rdma-sysfs-snapshot.sh", rdma_tree))
    report = rdma.rdma_gid_report(devices, "ipv4")
    ib = next(e for e in report if e["device"] == "mlx5_3")
    assert "gid_index" not in ib  # InfiniBand ports have no RoCE GIDs to select
    problems = rdma.rdma_port_problems(report)
    assert problems == [
        "mlx5_2 port 1 (Ethernet) is 1: DOWN, not ACTIVE",
        "mlx5_2 port 1 (Ethernet): no RoCE v2 GID with an ipv4 address (GIDs: 0=IB/RoCE v1/ipv6-link-local, "
        "1=RoCE v2/ipv6-link-local); assign an ipv4 address to the port's netdev",
    ]


def test_no_rdma_devices(tmp_path: Path) -> None:
    assert snapshot("rdma/files/rdma-sysfs-snapshot.sh", tmp_path) == ""
    report = rdma.rdma_gid_report(rdma.rdma_snapshot(""), "ipv4")
    assert report == [] and rdma.rdma_gid_index_fact(report) is None and rdma.rdma_port_problems(report) == []


QOS: dict[str, Any] = {"trust": "dscp", "dscp": 26, "priority": 3, "pfc_enabled": True, "ets_enabled": True,
                       "ets_bandwidth": 50}


def test_dcb_commands_for_the_default_settings() -> None:
    cmds = rdma.rdma_qos_commands("ens1f0np0", QOS, "dcb")
    assert [(c["what"], c["optional"]) for c in cmds] == [
        ("trust dscp", True), ("DSCP 26 -> priority 3", False), ("PFC on priority 3", False),
        ("ETS 50% for TC 3", False)]
    assert cmds[1]["argv"] == ["dcb", "app", "replace", "dev", "ens1f0np0", "dscp-prio", "26:3"]
    assert cmds[2]["argv"] == ["dcb", "pfc", "set", "dev", "ens1f0np0", "prio-pfc", "0:off", "1:off", "2:off",
                               "3:on", "4:off", "5:off", "6:off", "7:off"]
    assert cmds[3]["argv"] == ["dcb", "ets", "set", "dev", "ens1f0np0", "prio-tc", "0:0", "1:1", "2:2", "3:3", "4:4",
                               "5:5", "6:6", "7:7", "tc-tsa", "all:ets", "tc-bw", "0:8", "1:7", "2:7", "3:50", "4:7",
                               "5:7", "6:7", "7:7"]


def test_lossy_pcp_and_no_ets() -> None:
    cmds = rdma.rdma_qos_commands("eth1", {**QOS, "trust": "pcp", "pfc_enabled": False, "ets_enabled": False}, "dcb")
    assert [c["what"] for c in cmds] == ["trust pcp", "PFC off"]
    assert cmds[1]["argv"][-8:] == [f"{p}:off" for p in range(8)]


def test_mlnx_qos_commands() -> None:
    cmds = rdma.rdma_qos_commands("ens1f0np0", QOS, "mlnx_qos")
    assert [c["argv"][3:] for c in cmds] == [
        ["--trust=dscp"], ["--dscp2prio=set,26,3"], ["--pfc=0,0,0,1,0,0,0,0"],
        ["--prio_tc=0,1,2,3,4,5,6,7", "--tsa=ets,ets,ets,ets,ets,ets,ets,ets", "--tcbw=8,7,7,50,7,7,7,7"]]
    assert rdma.rdma_qos_tool("auto", True) == "mlnx_qos" and rdma.rdma_qos_tool("auto", False) == "dcb"
    assert rdma.rdma_qos_tool("dcb", True) == "dcb"


@pytest.mark.parametrize(("field", "value"), [("priority", 8), ("dscp", 64), ("dscp", -1)])
def test_out_of_range_qos_is_refused(field: str, value: int) -> None:
    with pytest.raises(ValueError):
        rdma.rdma_qos_commands("eth1", {**QOS, field: value})


def test_tos_and_ets_shares() -> None:
    assert rdma.rdma_roce_tos(26) == 104  # NCCL_IB_TC / default_roce_tos for DSCP 26
    assert rdma.rdma_roce_tos(48) == 192
    for prio in range(8):
        for pct in (1, 33, 50, 100):
            shares = rdma.rdma_ets_bandwidth(prio, pct)
            assert sum(shares) == 100 and shares[prio] == pct
    with pytest.raises(ValueError):
        rdma.rdma_ets_bandwidth(3, 0)


# ------------------------------------------------------------------------------------------------- network
def test_ping_payload_and_roce_mtu() -> None:
    assert network.network_ping_payload(9000) == 8972 and network.network_ping_payload(1500) == 1472
    assert network.network_ping_payload(9000, "ipv6") == 8952
    # kernel iboe_get_mtu(): MTU - 96 bytes of RoCE headers, then the largest IB MTU that fits
    assert [network.network_roce_mtu(m) for m in (9000, 4200, 4192, 4191, 1500, 1280)] == [
        4096, 4096, 4096, 2048, 1024, 1024]


def test_sysctl_conf_parsing() -> None:
    text = "# comment\nnet.core.rmem_max=134217728\n; other\nnet.ipv4.tcp_rmem = 4096\t87380  134217728\n" \
           "-net.core.somaxconn = 1\nnet.core.rmem_max = 1\n"
    assert network.network_sysctl_conf(text) == {
        "net.core.rmem_max": "1", "net.ipv4.tcp_rmem": "4096 87380 134217728", "net.core.somaxconn": "1"}
