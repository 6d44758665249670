"""Writes `inventories/<lab>/` for a lab: hosts in group `gpu_nodes`, SSH settings with the lab's pinned
known_hosts, and the BMC variables (the password is a file lookup: it never appears in the inventory)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from baremetal_ai.lab.core import Lab

HEADER = "# Written by `baremetal lab up`; rewritten on every run. Do not edit: `baremetal lab down` removes it.\n"


def build(lab: Lab, state: dict[str, Any]) -> dict[str, Any]:
    sd = lab.state_dir
    hosts = {}
    for n in state["nodes"]:
        hosts[n["name"]] = {
            "ansible_host": n["mgmt_ip"],
            "node_mgmt_interface": n["mgmt_interface"],
            "node_fabric_interface": n["fabric_interface"],
            "node_fabric_address": n["fabric_ip"],
            "node_fabric_prefix": n["fabric_prefix"],
            "bmc_system_id": n["bmc_system_id"],
            "bmc_mac": n["mgmt_mac"],
        }
    lab_vars = {
        "ansible_user": "ansible",
        "ansible_ssh_private_key_file": str(sd / "id_ed25519"),
        "ansible_ssh_common_args": f"-o UserKnownHostsFile={sd / 'known_hosts'}",
        "ansible_python_interpreter": "/usr/bin/python3",
        "lab_name": lab.name,
        "node_fabric_mtu": state["networks"]["fabric"]["mtu"],
        "node_gpu_model": "none",
        "node_gpu_count": 0,
        "bmc_endpoint": state["bmc"]["endpoint"],
        "bmc_username": state["bmc"]["username"],
        "bmc_password": '{{ lookup("ansible.builtin.file", "' + str(lab.bmc_dir / "password") + '") }}',
        "bmc_ca_file": state["bmc"]["ca_file"],
    }
    return {"all": {"children": {
        "gpu_nodes": {"hosts": hosts},
        f"lab_{lab.name}": {"children": {"gpu_nodes": {}}, "vars": lab_vars},
    }}}


def write(lab: Lab, state: dict[str, Any]) -> None:
    lab.inventory_dir.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(build(lab, state), sort_keys=False, default_flow_style=False)
    (lab.inventory_dir / "hosts.yml").write_text(HEADER + text)
