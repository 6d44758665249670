"""library/gpu_facts.py, topology_facts.py, rdma_facts.py: pure functions on fake sysfs trees and fixtures,
main() with patched module arguments, ansible-doc, and an ad-hoc run of the three modules on this machine."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args

ROOT = Path(__file__).resolve().parents[2]
FIX = ROOT / "tests" / "fixtures"
MODULES = ("gpu_facts", "topology_facts", "rdma_facts")

# The modules import `ansible.module_utils.bm_parsers`; in a node run Ansible ships module_utils/bm_parsers.py
# under that name. Here the same file is registered under that name before the modules are loaded.
sys.path.insert(0, str(ROOT / "module_utils"))
import bm_parsers  # noqa: E402 - module_utils/ is put on sys.path just above

sys.modules.setdefault("ansible.module_utils.bm_parsers", bm_parsers)


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bm_library_{name}", ROOT / "library" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gpu_facts = load("gpu_facts")
topology_facts = load("topology_facts")
rdma_facts = load("rdma_facts")


# ------------------------------------------------------------------------------------------ fake sysfs

class FakeSys:
    """Builds a /sys look-alike: device directories under sys/devices/pci<dom:bus>/..., relative symlinks in
    sys/bus/pci/devices, sys/class/net and sys/class/infiniband, as the kernel lays them out."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sys = root / "sys"
        (self.sys / "bus" / "pci" / "devices").mkdir(parents=True)
        (self.sys / "class" / "net").mkdir(parents=True)

    def numa(self, node: int, cpulist: str) -> None:
        d = self.sys / "devices" / "system" / "node" / f"node{node}"
        d.mkdir(parents=True)
        (d / "cpulist").write_text(cpulist + "\n")

    def pci(self, root_bus: str, chain: list[str], cls: str, vendor: str = "0x8086", device: str = "0x0000",
            numa: int = -1, local_cpulist: str | None = None) -> Path:
        """Create every PCI function on ``chain`` (bridges get class 0x060400), the last one with ``cls``."""
        path = self.sys / "devices" / f"pci{root_bus}"
        for i, bdf in enumerate(chain):
            path = path / bdf
            if not path.exists():
                path.mkdir(parents=True)
                last = i == len(chain) - 1
                attrs = {"class": cls if last else "0x060400", "vendor": vendor if last else "0x1000",
                         "device": device if last else "0xc030", "numa_node": str(numa)}
                if local_cpulist:
                    attrs["local_cpulist"] = local_cpulist
                for k, v in attrs.items():
                    (path / k).write_text(v + "\n")
                link = self.sys / "bus" / "pci" / "devices" / bdf
                link.symlink_to(os.path.relpath(path, link.parent))
        return path

    def netdev(self, name: str, dev_path: Path | None, mtu: int = 1500, via: str | None = None) -> None:
        """A netdev whose ``device`` link points at ``dev_path`` (or at a ``via`` child such as virtio0)."""
        if dev_path is None:
            base = self.sys / "devices" / "virtual" / "net" / name
            base.mkdir(parents=True)
        else:
            parent = dev_path / via if via else dev_path
            parent.mkdir(exist_ok=True)
            base = parent / "net" / name
            base.mkdir(parents=True)
            (base / "device").symlink_to(os.path.relpath(parent, base))
        (base / "mtu").write_text(f"{mtu}\n")
        link = self.sys / "class" / "net" / name
        link.symlink_to(os.path.relpath(base, link.parent))

    def rdma(self, name: str, dev_path: Path, ports: dict[int, dict[str, Any]]) -> None:
        base = dev_path / "infiniband" / name
        base.mkdir(parents=True)
        (base / "device").symlink_to(os.path.relpath(dev_path, base))
        for k, v in {"node_guid": "a088:c203:0045:7e10", "fw_ver": "28.39.1002", "hca_type": "MT4129",
                     "board_id": "MT_0000000838", "node_type": "1: CA"}.items():
            (base / k).write_text(v + "\n")
        for port, spec in ports.items():
            pd = base / "ports" / str(port)
            for sub in ("gids", "gid_attrs/types", "gid_attrs/ndevs"):
                (pd / sub).mkdir(parents=True)
            for k in ("state", "phys_state", "link_layer", "rate"):
                (pd / k).write_text(spec[k] + "\n")
            for idx, (gid, typ, ndev) in enumerate(spec.get("gids", [])):
                (pd / "gids" / str(idx)).write_text(gid + "\n")
                if typ is not None:  # an empty slot's type file answers EINVAL: leave it out
                    (pd / "gid_attrs" / "types" / str(idx)).write_text(typ + "\n")
                    (pd / "gid_attrs" / "ndevs" / str(idx)).write_text(ndev + "\n")
        cls = self.sys / "class" / "infiniband"
        cls.mkdir(exist_ok=True)
        (cls / name).symlink_to(os.path.relpath(base, cls))


def hgx_tree(root: Path) -> FakeSys:
    """2 sockets, 4 PCIe root buses; each holds one switch with 2 GPUs and 1 ConnectX NIC (8 GPUs, 4 NICs)."""
    fs = FakeSys(root)
    fs.numa(0, "0-51,104-155")
    fs.numa(1, "52-103,156-207")
    for sw, base in enumerate((0x15, 0x37, 0x97, 0xB7)):
        node = 0 if sw < 2 else 1
        cpus = "0-51,104-155" if node == 0 else "52-103,156-207"
        rb = f"0000:{base:02x}"
        rp, usp = f"{rb}:01.0", f"0000:{base + 1:02x}:00.0"
        for port, func in enumerate(("gpu", "gpu", "nic")):
            dsp = f"0000:{base + 2:02x}:{port:02x}.0"
            ep = f"0000:{base + 3 + port:02x}:00.0"
            if func == "gpu":
                fs.pci(rb, [rp, usp, dsp, ep], "0x030200", "0x10de", "0x2330", node, cpus)
            else:
                nic = fs.pci(rb, [rp, usp, dsp, ep], "0x020000", "0x15b3", "0x1021", node, cpus)
                fs.netdev(f"ens{sw}f0np0", nic, mtu=9000)
                fs.rdma(f"mlx5_{sw}", nic, {1: {"state": "4: ACTIVE", "phys_state": "5: LinkUp",
                                                "link_layer": "Ethernet", "rate": "400 Gb/sec (4X NDR)"}})
    # Things that must not be counted: the BMC's VGA (ASPEED), a management NIC behind virtio, lo.
    fs.pci("0000:00", ["0000:00:1c.0", "0000:02:00.0"], "0x030000", "0x1a03", "0x2000", 0)
    mgmt = fs.pci("0000:00", ["0000:00:03.0"], "0x020000", "0x1af4", "0x1041", -1)
    fs.netdev("eth0", mgmt, via="virtio2")
    fs.netdev("lo", None, mtu=65536)
    return fs


# ------------------------------------------------------------------------------------------ topology_facts

def test_topology_hgx_tree(tmp_path: Path) -> None:
    hgx_tree(tmp_path)
    t = topology_facts.gather_topology(str(tmp_path))
    assert t["numa_nodes"] == [{"id": 0, "cpulist": "0-51,104-155", "cpu_count": 104},
                               {"id": 1, "cpulist": "52-103,156-207", "cpu_count": 104}]
    assert t["gpu_count"] == 8 and t["nic_count"] == 5  # 4 ConnectX + the virtio management NIC
    g0 = t["gpus"][0]
    assert (g0["name"], g0["bdf"], g0["vendor"], g0["numa_node"], g0["root_bus"]) == (
        "GPU0", "0000:18:00.0", "NVIDIA", 0, "0000:15")
    assert g0["pcie_path"] == ["0000:15:01.0", "0000:16:00.0", "0000:17:00.0"]
    assert g0["local_cpulist"] == "0-51,104-155"
    nics = {n["bdf"]: n for n in t["nics"]}
    assert nics["0000:1a:00.0"]["netdevs"] == ["ens0f0np0"] and nics["0000:1a:00.0"]["rdma_devices"] == ["mlx5_0"]
    assert nics["0000:00:03.0"]["netdevs"] == ["eth0"] and nics["0000:00:03.0"]["numa_node"] is None
    name = {n["bdf"]: n["name"] for n in t["nics"]}
    nic0, nic1, nic2, mgmt = name["0000:1a:00.0"], name["0000:3c:00.0"], name["0000:9c:00.0"], name["0000:00:03.0"]
    row = t["gpu_nic"]["GPU0"]
    assert (row[nic0], row[nic1], row[nic2], row[mgmt]) == ("PIX", "NODE", "SYS", "NODE")
    assert t["gpu_nic"]["GPU5"][name["0000:9c:00.0"]] == "PIX"
    for g in t["gpus"]:
        assert g["nearest_link"] == "PIX" and len(g["nearest_nics"]) == 1
    assert t["gpus"][7]["nearest_nics"] == [name["0000:bc:00.0"]]
    gg = t["gpu_gpu"]
    assert [gg["GPU0"][g] for g in ("GPU0", "GPU1", "GPU2", "GPU4")] == ["X", "PIX", "NODE", "SYS"]
    assert all(not k.startswith("_") for d in t["gpus"] + t["nics"] for k in d)
    json.dumps(t)  # facts must be JSON


def test_topology_phb_pxb_and_unknown_numa(tmp_path: Path) -> None:
    fs = FakeSys(tmp_path)
    fs.numa(0, "0-7")
    rb = "0000:40"
    # GPU A on root port 01.0 directly; NIC on root port 03.0 → same host bridge: PHB
    fs.pci(rb, ["0000:40:01.0", "0000:41:00.0"], "0x030200", "0x10de", "0x20b5")
    nic = fs.pci(rb, ["0000:40:03.0", "0000:43:00.0"], "0x020700", "0x15b3", "0x101b")
    fs.netdev("ib0", nic, mtu=4092)
    # GPU B behind two cascaded switches under root port 02.0, NIC2 behind the first switch → PXB
    fs.pci(rb, ["0000:40:02.0", "0000:50:00.0", "0000:51:00.0", "0000:52:00.0", "0000:53:01.0", "0000:54:00.0"],
           "0x030000", "0x1002", "0x740f")
    nic2 = fs.pci(rb, ["0000:40:02.0", "0000:50:00.0", "0000:51:01.0", "0000:55:00.0"], "0x020000", "0x8086", "0x1592")
    fs.netdev("eth5", nic2)
    t = topology_facts.gather_topology(str(tmp_path))
    gpus = {g["bdf"]: g for g in t["gpus"]}
    assert gpus["0000:54:00.0"]["vendor"] == "AMD" and gpus["0000:41:00.0"]["numa_node"] is None
    names = {n["bdf"]: n["name"] for n in t["nics"]}
    assert t["gpu_nic"][gpus["0000:41:00.0"]["name"]][names["0000:43:00.0"]] == "PHB"
    assert t["gpu_nic"][gpus["0000:54:00.0"]["name"]][names["0000:55:00.0"]] == "PXB"
    assert t["gpu_nic"][gpus["0000:54:00.0"]["name"]][names["0000:43:00.0"]] == "PHB"


def test_link_type_rules() -> None:
    def dev(bdf: str, rb: str, path: list[str], numa: int | None) -> dict[str, Any]:
        return {"bdf": bdf, "root_bus": rb, "pcie_path": path, "numa_node": numa}

    a = dev("0000:18:00.0", "0000:15", ["r", "u", "d1"], 0)
    assert topology_facts.link_type(a, a) == "X"
    assert topology_facts.link_type(a, dev("0000:19:00.0", "0000:15", ["r", "u", "d2"], 0)) == "PIX"
    assert topology_facts.link_type(a, dev("0000:9a:00.0", "0000:97", ["x"], 1)) == "SYS"
    assert topology_facts.link_type(a, dev("0000:9a:00.0", "0000:97", ["x"], None)) == "NODE"
    assert topology_facts.expand_cpulist("0-3,8,10-11") == [0, 1, 2, 3, 8, 10, 11]
    assert topology_facts.expand_cpulist("") == []


def test_topology_empty_tree(tmp_path: Path) -> None:
    (tmp_path / "sys").mkdir()
    t = topology_facts.gather_topology(str(tmp_path))
    assert (t["numa_count"], t["gpu_count"], t["nic_count"], t["gpu_nic"]) == (0, 0, 0, {})


# ------------------------------------------------------------------------------------------ rdma_facts

ROCE_GIDS = [
    ("fe80:0000:0000:0000:a288:c2ff:fe45:7e10", "IB/RoCE v1", "ens1f0np0"),
    ("fe80:0000:0000:0000:a288:c2ff:fe45:7e10", "RoCE v2", "ens1f0np0"),
    ("0000:0000:0000:0000:0000:ffff:0ac8:010b", "IB/RoCE v1", "ens1f0np0"),
    ("0000:0000:0000:0000:0000:ffff:0ac8:010b", "RoCE v2", "ens1f0np0"),
    ("0000:0000:0000:0000:0000:0000:0000:0000", None, None),  # empty slot
]


def rdma_tree(root: Path) -> FakeSys:
    fs = FakeSys(root)
    nic = fs.pci("0000:15", ["0000:15:01.0", "0000:16:00.0"], "0x020000", "0x15b3", "0x1021", 0)
    fs.netdev("ens1f0np0", nic, mtu=9000)
    fs.rdma("mlx5_0", nic, {1: {"state": "4: ACTIVE", "phys_state": "5: LinkUp", "link_layer": "Ethernet",
                                "rate": "400 Gb/sec (4X NDR)", "gids": ROCE_GIDS}})
    hca = fs.pci("0000:37", ["0000:37:01.0", "0000:38:00.0"], "0x020700", "0x15b3", "0x1021", 1)
    fs.rdma("mlx5_1", hca, {1: {"state": "1: DOWN", "phys_state": "3: Disabled", "link_layer": "InfiniBand",
                                "rate": "10 Gb/sec (4X SDR)",
                                "gids": [("fe80:0000:0000:0000:a088:c203:0045:7e11", "IB/RoCE v1", "")]}})
    return fs


def test_rdma_roce_and_ib(tmp_path: Path) -> None:
    rdma_tree(tmp_path)
    r = rdma_facts.gather_rdma(str(tmp_path))
    assert r["present"] is True and r["reason"] is None and r["device_count"] == 2
    d0, d1 = r["devices"]
    assert (d0["name"], d0["pci_bdf"], d0["numa_node"], d0["fw_ver"], d0["netdevs"]) == (
        "mlx5_0", "0000:16:00.0", 0, "28.39.1002", ["ens1f0np0"])
    (p,) = d0["ports"]
    assert (p["state"], p["phys_state"], p["link_layer"], p["rate"]) == ("ACTIVE", "LinkUp", "Ethernet",
                                                                         "400 Gb/sec (4X NDR)")
    assert [g["index"] for g in p["gids"]] == [0, 1, 2, 3]  # empty slot 4 dropped
    assert [g["type"] for g in p["gids"]] == ["RoCE v1", "RoCE v2", "RoCE v1", "RoCE v2"]
    assert p["gids"][3]["ipv4"] == "10.200.1.11" and p["gids"][3]["netdev"] == "ens1f0np0"
    assert p["roce_v2_gid_index"] == 3
    assert (p["netdevs"], p["netdev_mtu"], p["active_mtu"]) == (["ens1f0np0"], 9000, 4096)
    (q,) = d1["ports"]
    assert (q["state"], q["link_layer"], q["active_mtu"], q["roce_v2_gid_index"]) == ("DOWN", "InfiniBand", None, None)
    json.dumps(r)


def test_roce_active_mtu_like_the_kernel() -> None:
    # iboe_get_mtu: netdev MTU minus 96 bytes of RoCE headers, rounded down to an IB MTU
    assert [rdma_facts.roce_active_mtu(m) for m in (9000, 4192, 4191, 1500, 300, None)] == [
        4096, 4096, 2048, 1024, None, None]


def test_rdma_absent(tmp_path: Path) -> None:
    (tmp_path / "sys" / "class").mkdir(parents=True)
    r = rdma_facts.gather_rdma(str(tmp_path))
    assert r["present"] is False and "no RDMA driver" in r["reason"] and r["devices"] == []
    (tmp_path / "sys" / "class" / "infiniband").mkdir()
    r = rdma_facts.gather_rdma(str(tmp_path))
    assert r["present"] is False and "empty" in r["reason"]


# ------------------------------------------------------------------------------------------ gpu_facts

def test_gpu_build_facts_from_fixtures() -> None:
    xml = (FIX / "nvidia-smi" / "h100-2gpu-v12.xml").read_text()
    nvlink = (FIX / "nvidia-smi" / "nvlink-status.txt").read_text()
    f = gpu_facts.build_facts(0, xml, "", nvlink)
    assert f["present"] is True and f["count"] == 2 and f["driver_version"] == "535.54.03"
    assert f["gpus"][0]["nvlink_status"]["active_links"] == 18
    assert f["gpus"][1]["nvlink_status"]["inactive_links"] == 2
    assert f["gpus"][1]["remapped_rows"]["pending"] is True
    assert "nvlink_status" not in gpu_facts.build_facts(0, xml, "")["gpus"][0]


def test_gpu_build_facts_failures_never_raise() -> None:
    f = gpu_facts.build_facts(9, "", "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.")
    assert f["present"] is False and f["reason"].startswith("nvidia-smi -q -x failed (rc=9): NVIDIA-SMI has failed")
    f = gpu_facts.build_facts(0, "No devices were found\n", "")
    assert f["present"] is False and f["reason"].startswith("could not parse nvidia-smi -q -x")
    empty = '<?xml version="1.0" ?>\n<nvidia_smi_log><driver_version>535.54.03</driver_version></nvidia_smi_log>'
    f = gpu_facts.build_facts(0, empty, "")
    assert f["present"] is False and f["reason"] == "nvidia-smi reports no GPU" and f["driver_version"] == "535.54.03"
    f = gpu_facts.build_facts(0, (FIX / "nvidia-smi" / "a100-mig-v11.xml").read_text(), "", "garbage")
    assert f["present"] is True and f["gpus"][0]["nvlink_status"] is None


def test_gpu_count_nvidia_pci(tmp_path: Path) -> None:
    hgx_tree(tmp_path)
    assert gpu_facts.count_nvidia_pci(str(tmp_path)) == 8
    f = gpu_facts.note_pci(gpu_facts.absent("nvidia-smi not found"), 8)
    assert f["reason"] == "nvidia-smi not found; 8 NVIDIA PCI device(s) are visible in sysfs (driver problem?)"


# ------------------------------------------------------------------------------------------ main()

def run_main(mod: ModuleType, args: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        mod.main()
    out = json.loads(capsys.readouterr().out)
    assert exc.value.code == (1 if out.get("failed") else 0)
    return out


def fake_nvidia_smi(tmp_path: Path, rc: int = 0) -> Path:
    script = tmp_path / "nvidia-smi"
    xml = FIX / "nvidia-smi" / "h100-2gpu-v12.xml"
    nvl = FIX / "nvidia-smi" / "nvlink-status.txt"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-q" ]; then cat "{xml}"; exit {rc}; fi\n'
        f'if [ "$1" = "nvlink" ]; then cat "{nvl}"; exit 0; fi\n'
        "exit 2\n"
    )
    script.chmod(0o755)
    return script


def test_main_gpu_facts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_main(gpu_facts, {"nvidia_smi_path": str(fake_nvidia_smi(tmp_path))}, capsys)
    gpu = out["ansible_facts"]["gpu"]
    assert out["changed"] is False and gpu["present"] is True and gpu["count"] == 2
    assert gpu["gpus"][1]["nvlink_status"]["inactive_links"] == 2
    # check mode reads the same
    out = run_main(gpu_facts, {"nvidia_smi_path": str(fake_nvidia_smi(tmp_path)), "nvlink": False,
                               "_ansible_check_mode": True}, capsys)
    assert out["ansible_facts"]["gpu"]["count"] == 2 and "nvlink_status" not in out["ansible_facts"]["gpu"]["gpus"][0]


def test_main_gpu_facts_missing_and_failing_nvidia_smi(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hgx_tree(tmp_path / "root")
    out = run_main(gpu_facts, {"nvidia_smi_path": "nvidia-smi-does-not-exist",
                               "sysfs_root": str(tmp_path / "root")}, capsys)
    gpu = out["ansible_facts"]["gpu"]
    assert out.get("failed") is not True and gpu["present"] is False and gpu["nvidia_pci_devices"] == 8
    assert gpu["reason"].startswith("nvidia-smi-does-not-exist not found") and "8 NVIDIA PCI device(s)" in gpu["reason"]
    out = run_main(gpu_facts, {"nvidia_smi_path": str(fake_nvidia_smi(tmp_path, rc=9))}, capsys)
    assert out["ansible_facts"]["gpu"]["present"] is False and "rc=9" in out["ansible_facts"]["gpu"]["reason"]


def test_main_topology_and_rdma(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hgx_tree(tmp_path)
    out = run_main(topology_facts, {"sysfs_root": str(tmp_path)}, capsys)
    assert out["changed"] is False and out["ansible_facts"]["topology"]["gpu_count"] == 8
    out = run_main(rdma_facts, {"sysfs_root": str(tmp_path)}, capsys)
    rdma = out["ansible_facts"]["rdma"]
    assert rdma["present"] is True and [d["name"] for d in rdma["devices"]] == [f"mlx5_{i}" for i in range(4)]
    out = run_main(topology_facts, {"sysfs_root": str(tmp_path / "nope")}, capsys)
    assert out["failed"] is True and "no sys/ directory" in out["msg"]


# ------------------------------------------------------------------------------------------ ansible CLI

def ansible_bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.skip(f"{name} is not installed next to {sys.executable}")
    return str(path)


def test_ansible_doc_renders_all_three() -> None:
    proc = subprocess.run([ansible_bin("ansible-doc"), "-M", "library", "--json", *MODULES], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    docs = json.loads(proc.stdout)
    for name in MODULES:
        doc = docs[name]
        assert doc["doc"]["module"] == name and doc["doc"]["short_description"]
        assert doc["examples"] and doc["return"]["ansible_facts"]
    assert "sysfs_root" in docs["topology_facts"]["doc"]["options"]


def test_adhoc_run_on_this_machine(tmp_path: Path) -> None:
    """`ansible localhost -m <module>` (connection local) on the machine running the tests."""
    env = dict(os.environ, ANSIBLE_BECOME="False", ANSIBLE_CACHE_PLUGIN="memory", ANSIBLE_STDOUT_CALLBACK="json",
               ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_LOCAL_TEMP=str(tmp_path / "local"),
               ANSIBLE_REMOTE_TEMP=str(tmp_path / "remote"))
    facts: dict[str, Any] = {}
    for name in MODULES:
        proc = subprocess.run(
            [ansible_bin("ansible"), "localhost", "-i", "localhost,", "-c", "local", "-m", name,
             "-e", f"ansible_python_interpreter={sys.executable}"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False,
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        result = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
        assert result.get("failed") is not True
        facts.update(result["ansible_facts"])
    numa_dirs = glob.glob("/sys/devices/system/node/node[0-9]*")
    assert facts["topology"]["numa_count"] == len(numa_dirs)
    if not shutil.which("nvidia-smi"):
        assert facts["gpu"]["present"] is False and "not found" in facts["gpu"]["reason"]
    if not os.path.isdir("/sys/class/infiniband") or not os.listdir("/sys/class/infiniband"):
        assert facts["rdma"]["present"] is False and facts["rdma"]["reason"]


# ------------------------------------------------------------------------------- real listing, H200 machine

def _tree_from_listing(root: Path, name: str) -> None:
    """Rebuild tests/fixtures/sysfs/<name>-*.txt (real sysfs listings) as a tree under root/sys."""
    sysd = root / "sys"
    (sysd / "bus" / "pci" / "devices").mkdir(parents=True)
    for line in (FIX / "sysfs" / f"{name}-pci-devices.txt").read_text().splitlines():
        bdf, real, *attrs = line.split("|")
        path = root / real.lstrip("/")
        path.mkdir(parents=True, exist_ok=True)
        for attr in attrs:
            key, _, value = attr.partition("=")
            if value:  # empty: the file did not exist there
                (path / key).write_text(value.strip() + "\n")
        link = sysd / "bus" / "pci" / "devices" / bdf
        link.symlink_to(os.path.relpath(path, link.parent))
    for line in (FIX / "sysfs" / f"{name}-nodes.txt").read_text().splitlines():
        node, _, cpulist = line.partition(" cpulist=")
        d = sysd / "devices" / "system" / "node" / node
        d.mkdir(parents=True)
        (d / "cpulist").write_text(cpulist + "\n")
    for line in (FIX / "sysfs" / f"{name}-class.txt").read_text().splitlines():
        cls, entry, real, device = line.split(" ")
        if entry == "*":  # the glob matched nothing: no such class entries
            continue
        base = root / real.lstrip("/")
        base.mkdir(parents=True, exist_ok=True)
        target = device.partition("=")[2]
        if target and not target.endswith(f"/{entry}/device"):  # a device link that resolves (virtual ones don't)
            (base / "device").symlink_to(os.path.relpath(root / target.lstrip("/"), base))
        link = sysd / "class" / cls / entry
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(base, link.parent))


def test_topology_of_the_real_h200_machine(tmp_path: Path) -> None:
    """The listing captured on the H200 VM, rebuilt, gives exactly what topology_facts returned there."""
    _tree_from_listing(tmp_path, "h200-vm")
    expected = json.loads((FIX / "sysfs" / "h200-vm-topology_facts.json").read_text())
    got = topology_facts.gather_topology(str(tmp_path))
    assert json.loads(json.dumps(got)) == expected
    assert got["gpus"][0]["bdf"] == "0000:00:06.0" and got["gpus"][0]["numa_node"] is None  # sysfs said -1
    assert got["nics"][0]["netdevs"] == ["eth0"] and got["gpu_nic"] == {"GPU0": {"NIC0": "PHB"}}
