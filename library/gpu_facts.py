#!/usr/bin/python
# Copyright: baremetal-ai contributors
# Apache-2.0
"""Ansible module: GPU inventory and health counters from ``nvidia-smi -q -x`` (and ``nvidia-smi nvlink -s``)."""

from __future__ import annotations

import glob
import os
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.bm_parsers import ParseError, parse_nvlink_status, parse_nvsmi_xml

DOCUMENTATION = r"""
---
module: gpu_facts
short_description: GPUs, driver/CUDA versions, PCIe link, ECC, row remapping, clocks and NVLink from nvidia-smi
description:
  - Runs C(nvidia-smi -q -x) and parses it with C(bm_parsers.parse_nvsmi_xml). It reads both the old and
    the new tag names (C(clocks_throttle_reasons) or C(clocks_event_reasons), C(power_readings) or
    C(gpu_power_readings)).
  - With I(nvlink=true) it also runs C(nvidia-smi nvlink -s) and adds each GPU's link states. A failure there is
    a warning, not an error.
  - A node without nvidia-smi, or where nvidia-smi cannot reach a driver, gets C(present=false) and a C(reason).
    Nothing fails, so the same play runs on GPU and non-GPU nodes. The reason says whether NVIDIA PCI devices
    are visible in sysfs, which tells "no GPU" apart from "GPU without a working driver".
  - Reads only; check mode returns the same facts.
version_added: "0.1.0"
author: baremetal-ai contributors
options:
  nvidia_smi_path:
    description:
      - nvidia-smi to run; a bare name is looked up in C(PATH) (and C(/usr/bin), C(/usr/local/bin)).
    type: str
    default: nvidia-smi
  nvlink:
    description:
      - Also run C(nvidia-smi nvlink -s) and report per-GPU NVLink states.
    type: bool
    default: true
  sysfs_root:
    description:
      - Directory holding C(sys/), used only to count NVIDIA PCI devices when nvidia-smi is missing or fails.
    type: path
    default: /
"""

EXAMPLES = r"""
- name: Gather GPU facts
  gpu_facts:

- name: The declared GPUs are there
  ansible.builtin.assert:
    that:
      - ansible_facts.gpu.present
      - ansible_facts.gpu.count == node_gpu_count
  when: node_gpu_count | int > 0
"""

RETURN = r"""
ansible_facts:
  description: Facts added under C(gpu).
  returned: always
  type: complex
  contains:
    gpu:
      description: >-
        C(present=false) with C(reason) when there is no usable nvidia-smi; else what parse_nvsmi_xml
        returns (driver_version, cuda_version, schema, gpus[...]) plus count and, per GPU, C(nvlink_status).
      type: dict
      returned: always
      sample:
        present: true
        reason: null
        driver_version: "535.54.03"
        cuda_version: "12.2"
        schema: v12
        count: 8
        gpus:
          - index: 0
            name: NVIDIA H100 80GB HBM3
            uuid: GPU-5b7c9a1e-0d2f-4c4b-9d0e-1a2b3c4d5e6f
            pci_bus_id: "00000000:18:00.0"
            memory_total_mib: 81559
            pcie: {gen_current: 5, gen_max: 5, width_current: 16, width_max: 16}
            ecc_errors: {volatile: {correctable: 0, uncorrectable: 0}}
            remapped_rows: {correctable: 0, uncorrectable: 0, pending: false, failure: false}
            clocks_event_reasons_active: [gpu_idle]
            nvlink_status: {active_links: 18, inactive_links: 0}
"""

NVIDIA_VENDOR = "0x10de"


def count_nvidia_pci(sysfs_root: str) -> int:
    """NVIDIA display/3D controllers visible in sysfs (class 0x03xxxx, vendor 0x10de)."""
    n = 0
    for dev in glob.glob(os.path.join(sysfs_root, "sys", "bus", "pci", "devices", "*")):
        try:
            with open(os.path.join(dev, "vendor")) as v, open(os.path.join(dev, "class")) as c:
                if v.read().strip() == NVIDIA_VENDOR and c.read().strip().startswith("0x03"):
                    n += 1
        except OSError:
            continue
    return n


def absent(reason: str, nvidia_pci_devices: int | None = None) -> dict[str, Any]:
    return note_pci({"present": False, "reason": reason, "count": 0, "gpus": []}, nvidia_pci_devices)


def note_pci(facts: dict[str, Any], nvidia_pci_devices: int | None) -> dict[str, Any]:
    """Record how many NVIDIA PCI devices sysfs shows; say so in the reason when nvidia-smi sees none."""
    facts["nvidia_pci_devices"] = nvidia_pci_devices
    if nvidia_pci_devices and not facts["present"]:
        facts["reason"] += f"; {nvidia_pci_devices} NVIDIA PCI device(s) are visible in sysfs (driver problem?)"
    return facts


def first_line(*texts: str | None) -> str:
    for t in texts:
        for line in (t or "").splitlines():
            if line.strip():
                return line.strip()
    return ""


def build_facts(rc: int, stdout: str, stderr: str, nvlink_text: str | None = None) -> dict[str, Any]:
    """Facts from the result of ``nvidia-smi -q -x`` (and optionally ``nvidia-smi nvlink -s``)."""
    if rc != 0:
        return absent(f"nvidia-smi -q -x failed (rc={rc}): {first_line(stderr, stdout) or 'no output'}")
    try:
        parsed = parse_nvsmi_xml(stdout)
    except ParseError as exc:
        return absent(f"could not parse nvidia-smi -q -x: {exc.message}")
    facts: dict[str, Any] = {"present": bool(parsed["gpus"]), "reason": None if parsed["gpus"] else
                             "nvidia-smi reports no GPU", **parsed, "count": len(parsed["gpus"])}
    if nvlink_text:
        try:
            links = {g["index"]: g for g in parse_nvlink_status(nvlink_text)["gpus"]}
        except ParseError:
            links = {}
        for g in facts["gpus"]:
            nv = links.get(g["index"])
            g["nvlink_status"] = (
                {"links": nv["links"], "active_links": nv["active_links"], "inactive_links": nv["inactive_links"]}
                if nv else None
            )
    return facts


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "nvidia_smi_path": {"type": "str", "default": "nvidia-smi"},
            "nvlink": {"type": "bool", "default": True},
            "sysfs_root": {"type": "path", "default": "/"},
        },
        supports_check_mode=True,
    )
    p = module.params
    path = p["nvidia_smi_path"]
    if os.sep in path:
        binary = path if os.access(path, os.X_OK) else None
    else:
        binary = module.get_bin_path(path, opt_dirs=["/usr/bin", "/usr/local/bin", "/usr/local/nvidia/bin"])
    if not binary:
        facts = absent(f"{path} not found (no NVIDIA driver installed)", count_nvidia_pci(p["sysfs_root"]))
        module.exit_json(changed=False, ansible_facts={"gpu": facts})
    rc, out, err = module.run_command([binary, "-q", "-x"])
    nvlink_text = None
    if rc == 0 and p["nvlink"]:
        nrc, nout, nerr = module.run_command([binary, "nvlink", "-s"])
        if nrc == 0:
            nvlink_text = nout
        else:
            module.warn(f"nvidia-smi nvlink -s failed (rc={nrc}): {first_line(nerr, nout)}")
    facts = build_facts(rc, out, err, nvlink_text)
    if not facts["present"]:
        note_pci(facts, count_nvidia_pci(p["sysfs_root"]))
        if rc == 0:  # nvidia-smi ran but its output was not understood, or it lists no GPU
            module.warn(f"gpu_facts: {facts['reason']}")
    module.exit_json(changed=False, ansible_facts={"gpu": facts})


if __name__ == "__main__":
    main()
