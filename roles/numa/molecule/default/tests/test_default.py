"""The numa role's real state in the Molecule instance: one NUMA node, no GPU, a virtual eth1 (no IRQs of its
own), read-only /proc/sys and /sys: the files and units are real, kernel-level steps are skipped with reasons."""

import json
import os
import sys
from pathlib import Path

import pytest

# The shared check lives in tests/molecule/ (roles/<role>/molecule/<scenario> -> the repository root).
sys.path.insert(0, str(Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"]).resolve().parents[3] / "tests" / "molecule"))
from scenario_checks import assert_check_mode_changes_nothing


@pytest.mark.parametrize("name", ["numactl", "hwloc-nox", "pciutils", "irqbalance", "linux-cpupower"])
def test_packages(host, name):
    assert host.package(name).is_installed


def test_topology_file(host):
    f = host.file("/etc/baremetal-ai/topology.json")
    assert (f.user, f.mode) == ("root", 0o644)
    topo = json.loads(f.content_string)
    assert topo["host"] == "molecule-numa"
    cpus = host.check_output("cat /sys/devices/system/node/node0/cpulist")
    assert topo["numa_nodes"] == [{"id": 0, "cpus": cpus, "cpu_count": int(host.check_output("nproc --all"))}]
    assert topo["gpus"] == []
    # eth1 is a veth: no PCI device, no IRQs of its own
    assert topo["irq_affinity"] == [{
        "interface": "eth1",
        "skipped": "eth1 is not a PCI network device (virtual interface: it has no IRQs of its own)"}]


def test_numa_launch(host):
    f = host.file("/usr/local/bin/numa-launch")
    assert f.mode == 0o755
    assert host.check_output("numa-launch --node 0 sh -c 'echo bound'") == "bound"
    r = host.run("numa-launch 0 true")
    assert r.rc == 2 and "no GPU 0" in r.stderr


def test_irq_affinity_unit_and_irqbalance(host):
    conf = host.file("/etc/baremetal-ai/irq-affinity.conf").content_string
    assert "# eth1 skipped: eth1 is not a PCI network device" in conf
    for name in ("baremetal-irq-affinity", "baremetal-numa-tuning"):
        assert host.service(name).is_enabled
        shown = host.check_output(f"systemctl show -p ActiveState,Result {name}").split()
        assert sorted(shown) == ["ActiveState=active", "Result=success"]
    status = host.file("/run/baremetal-ai/irq-affinity.status").content_string
    assert "nothing pinned" in status
    dropin = host.file("/etc/systemd/system/irqbalance.service.d/90-baremetal-ai.conf").content_string
    assert "EnvironmentFile=-/run/baremetal-ai/irqbalance.env" in dropin
    assert "After=baremetal-irq-affinity.service" in dropin
    assert host.file("/run/baremetal-ai/irqbalance.env").content_string.strip() == 'IRQBALANCE_ARGS=""'
    # enabled; systemd itself skips it in containers (ConditionVirtualization=!container in its unit)
    assert host.service("irqbalance").is_enabled
    assert "ConditionResult=no" in host.check_output("systemctl show -p ConditionResult irqbalance")


def test_tuning_skipped_with_reasons_in_a_container(host):
    status = host.file("/run/baremetal-ai/numa-tuning.status").content_string.splitlines()
    assert "governor skipped: no cpufreq here (container: the kernel is the host's)" in status
    # THP: the host's policy is madvise already (ok) or it is read-only here (skipped): never a fake "applied"
    assert next(line for line in status if line.startswith("thp ")) in (
        "thp madvise ok",
        "thp skipped: /sys/kernel/mm/transparent_hugepage/enabled is read-only here (container: the kernel is "
        "the host's); the kernel argument transparent_hugepage=madvise sets it at boot")


def test_sysctl_and_grub(host):
    sysctl = host.file("/etc/sysctl.d/90-baremetal-ai-numa.conf").content_string
    assert "kernel.numa_balancing=0" in sysctl.replace(" ", "").splitlines()
    grub = host.file("/etc/default/grub.d/90-baremetal-ai.cfg").content_string
    assert 'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX iommu=pt transparent_hugepage=madvise"' in grub


def test_acs_is_opt_in(host):
    unit = host.service("baremetal-pcie-acs")
    assert not unit.is_enabled and not unit.is_running
    script = host.file("/usr/local/sbin/baremetal-pcie-acs").content_string
    assert "none (no GPU behind a bridge on this host)" in script


def test_check_mode_after_converge_changes_nothing():
    """Honest check mode: --check --diff on the converged instance reports 0 changed."""
    assert_check_mode_changes_nothing()
