"""Writes `inventories/<lab>/` for a lab the way a real cluster gets it from the declare stage:

- `.lab/<lab>/stack-outputs.json`: the same `nodes` contract (schema version 1) a Pulumi stack exports,
  built from the lab's state and what the Redfish provider read from each node's BMC;
- `inventories/<lab>/lab.baremetal_pulumi.yml`: the `baremetal_pulumi` inventory plugin reading it;
- `inventories/<lab>/group_vars/all.yml`: SSH settings with the lab's pinned known_hosts, the BMC
  credentials (the password is a file lookup: it never appears in the inventory), and the storage declaration
  of a real 8-GPU node (two NVMe data disks, LUKS2 with the lab's key file `.lab/<lab>/storage-luks.key`,
  named by path only).
"""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING, Any

import yaml

from baremetal_ai.lab import standin_repo

if TYPE_CHECKING:
    from baremetal_ai.lab.core import Lab

NODES_SCHEMA_VERSION = 1
# The data disks of a typical 8-GPU server's scratch array (not present in a lab container).
LAB_STORAGE_DEVICES = ("/dev/nvme1n1", "/dev/nvme2n1")
HEADER = "# Written by `baremetal lab up`; rewritten on every run. Do not edit: `baremetal lab down` removes it.\n"


def stack_outputs(lab: Lab, state: dict[str, Any]) -> dict[str, Any]:
    """The lab's equivalent of `pulumi stack output --json` (see docs/nodes-contract.md)."""
    nodes = []
    for n in state["nodes"]:
        nodes.append({
            "name": n["name"],
            "mgmt_address": n["mgmt_ip"],
            "fabric_address": f"{n['fabric_ip']}/{n['fabric_prefix']}",
            "bmc_endpoint": state["bmc"]["endpoint"],
            "bmc_system_id": n["bmc_system_id"],
            "gpu_model": "none",
            "gpu_count": 0,
            "nic_names": {"mgmt": n["mgmt_interface"], "fabric": n["fabric_interface"]},
            "fabric_kind": "roce",
            "mtu": state["networks"]["fabric"]["mtu"],
            "labels": {"lab": lab.name},
        })
    return {"nodes_schema_version": NODES_SCHEMA_VERSION, "nodes": nodes,
            "provisioned": state.get("provisioned", {})}


# The GPU software stack on lab nodes (`lab up` without --no-gpu-stack). The nodes have no GPU, so this is the
# stack an image build host installs: the driver from Debian's own non-free archive (real packages, DKMS module
# not built: a container shares the host's kernel), CUDA from the lab's stand-in of NVIDIA's repository
# (standin_repo.py; the apt source is the lab's, hence cuda_repo_manage false), NCCL from NVIDIA's PyPI wheel
# (the real library; the controller downloads it once, checksum pinned). 12.2 is the newest CUDA that driver
# branch 535 runs without compatibility packages.
LAB_NCCL_WHEEL_SHA256 = {"x86_64": "8579076d30a8c24988834445f8d633c697d42397e92ffc3f63fa26766d25e0a0"}


def gpu_stack_vars(enabled: bool) -> dict[str, Any]:
    if not enabled:
        return {"gpu_stack_enabled": False}
    return {
        "gpu_stack_enabled": True,
        "nvidia_driver_source": "distro",
        "nvidia_driver_branch": "535",
        "cuda_source": "cuda_repo",
        "cuda_repo_manage": False,
        "cuda_version": standin_repo.LAB_TOOLKITS[0][0],
        "cuda_package_version": standin_repo.LAB_TOOLKITS[0][1],
        "nccl_source": "wheel",
        "nccl_version": "2.21.5",
        "nccl_wheel_sha256": dict(LAB_NCCL_WHEEL_SHA256),
    }


def group_vars(lab: Lab, state: dict[str, Any]) -> dict[str, Any]:
    sd = lab.state_dir
    return {
        "ansible_user": "ansible",
        "ansible_ssh_private_key_file": str(sd / "id_ed25519"),
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={sd / 'known_hosts'}",
        "ansible_python_interpreter": "/usr/bin/python3",
        "lab_name": lab.name,
        # Validation floors for lab nodes (veth links have no speed; overlay disks): validation/thresholds.yml
        "validation_node_class": "lab",
        # Storage declared as on a real 8-GPU node: a RAID0 of two NVMe data disks, LUKS2-encrypted. Lab nodes
        # are containers without these disks, so the role runs in its forced plan-only mode (renders the plan
        # and the mdadm.conf/crypttab/fstab entries, delivers the key file, touches no block device, says why).
        # The key is the lab's own random key file (written 0600 by `lab up`); only its path is here.
        "storage_enabled": True,
        "storage_devices": list(LAB_STORAGE_DEVICES),
        "storage_encrypt": True,
        "storage_luks_key_src": str(lab.storage_key_file),
        "bmc_username": state["bmc"]["username"],
        "bmc_password": '{{ lookup("ansible.builtin.file", "' + str(lab.bmc_dir / "password") + '") }}',
        "bmc_ca_file": state["bmc"]["ca_file"],
        **gpu_stack_vars(state.get("gpu_stack", False)),  # absent: a lab from before (no repository mount)
    }


def write(lab: Lab, state: dict[str, Any]) -> None:
    outputs = lab.state_dir / "stack-outputs.json"
    outputs.write_text(json.dumps(stack_outputs(lab, state), indent=2) + "\n")
    if lab.inventory_dir.exists():
        shutil.rmtree(lab.inventory_dir)
    (lab.inventory_dir / "group_vars").mkdir(parents=True)
    plugin_cfg = {"plugin": "baremetal_pulumi", "outputs_file": str(outputs)}
    (lab.inventory_dir / "lab.baremetal_pulumi.yml").write_text(HEADER + yaml.safe_dump(plugin_cfg, sort_keys=False))
    (lab.inventory_dir / "group_vars" / "all.yml").write_text(
        HEADER + yaml.safe_dump(group_vars(lab, state), sort_keys=False, default_flow_style=False))
