#!/usr/bin/python
"""Ansible module: a flat snapshot of what a converged node should keep (versions, GPUs, MTU, kernel, services,
sysctls, mounts, packages), compared with a baseline."""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import re
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: drift_facts
short_description: Snapshot of a node's watched state as flat items, compared with a baseline
description:
  - Reads, without changing anything, the state the watch stage compares with the last good converge, as flat
    C(item -> value) pairs, for example C(mtu.eth1=9000), C(gpu.count=8), C(gpu.driver_version=570.86.15),
    C(cuda.version=12.4.1), C(nccl.version=2.21.5), C(kernel.cmdline=...), C(service.ssh=enabled/active),
    C(sysctl.net.core.rmem_max=...), C(sysctl_conf.net.core.rmem_max=...) (the value the files under
    C(/etc/sysctl.d) declare), C(mount./data=xfs /dev/md0 rw,noatime), C(package.numactl=2.0.16-1).
  - GPUs come from C(nvidia-smi --query-gpu) (count, models, driver version, PCIe link width current/max per
    bus id); a node without nvidia-smi has C(gpu.count=0). NICs with a PCIe device report their link width.
  - With I(baseline) (a document written by a converge, or C(null)) and/or I(declared) (items from inventory,
    which win over the baseline), returns every item whose value differs as C(differences), with
    C(changed=true), and a C(diff) for C(--diff). An item missing from the baseline is reported when it is new
    (a new mount, service, interface, GPU), except packages, which are reported when new only if they match
    I(watch_packages) (so installing a benchmark tool is not drift, a new driver package is).
  - Without a recorded baseline the difference C(baseline) says so (unless I(require_baseline=false)); a node
    that has never been recorded is not drift-free. Declared items are compared either way.
  - Reads only; check mode returns the same result.
version_added: "0.1.0"
author: baremetal-ai contributors
options:
  compare:
    description:
      - Compare the snapshot with I(baseline) and I(declared). Without it the module only takes the snapshot
        (what a converge records).
    type: bool
    default: false
  baseline:
    description:
      - The baseline document (C(schema_version), C(items)) or C(null) when none was recorded. Omit to take a
        snapshot only (what a converge records).
    type: dict
  declared:
    description:
      - Items declared in inventory (C(drift_baseline)); they win over the recorded baseline.
    type: dict
    default: {}
  ignore:
    description:
      - Shell patterns of items never compared (for example C(sysctl.kernel.random.*)).
    type: list
    elements: str
    default: []
  watch_packages:
    description:
      - Shell patterns of package names whose appearance counts as drift.
    type: list
    elements: str
    default: ["nvidia-*", "libnvidia-*", "cuda-*", "libcuda*", "libnccl*", "nvidia-cuda-toolkit", "linux-image-*"]
  require_baseline:
    description:
      - Without a recorded I(baseline), report the item C(baseline) as a difference (a node never recorded is not
        drift-free). Set false for inventories that declare every item they care about.
    type: bool
    default: true
  sysfs_root:
    description:
      - Directory holding C(sys/), C(proc/) and C(etc/) (tests point it at a fake tree).
    type: path
    default: /
"""

EXAMPLES = r"""
- name: Record the converged state
  drift_facts:
  register: _snapshot

- name: Compare with the baseline recorded by the last converge
  drift_facts:
    compare: true
    baseline: "{{ lookup('ansible.builtin.file', 'drift/baseline/' ~ inventory_hostname ~ '.json') | from_json }}"
    declared: "{{ drift_baseline | default({}) }}"
"""

RETURN = r"""
items:
  description: The snapshot, item name to value (string, integer or null).
  returned: always
  type: dict
  sample: {"mtu.eth1": 9000, "gpu.count": 0, "service.ssh": "enabled/active"}
differences:
  description: Items whose value differs from the baseline (or declared value); empty without a baseline.
  returned: with compare
  type: list
  elements: dict
  sample: [{"item": "mtu.eth1", "baseline": 9000, "current": 1500, "source": "baseline"}]
baseline_missing:
  description: True when no recorded baseline was given.
  returned: with compare
  type: bool
"""

SCHEMA_VERSION = 1
ABSENT = None
PSEUDO_FS = {"proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "securityfs", "debugfs", "tracefs",
             "pstore", "bpf", "fusectl", "configfs", "binfmt_misc", "autofs", "hugetlbfs", "rpc_pipefs", "nsfs",
             "efivarfs", "devtmpfs"}
GPU_QUERY = "index,pci.bus_id,name,driver_version,pcie.link.width.current,pcie.link.width.max"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _int(text: str | None) -> int | str | None:
    if text is None:
        return None
    t = text.strip()
    return int(t) if re.fullmatch(r"-?\d+", t) else t


def net_items(root: str) -> dict[str, Any]:
    """MTU of every interface but lo; PCIe link width of those with a PCI device."""
    items: dict[str, Any] = {}
    base = os.path.join(root, "sys", "class", "net")
    for path in sorted(glob.glob(os.path.join(base, "*"))):
        name = os.path.basename(path)
        if name == "lo":
            continue
        items[f"mtu.{name}"] = _int(_read(os.path.join(path, "mtu")))
        cur = _read(os.path.join(path, "device", "current_link_width"))
        mx = _read(os.path.join(path, "device", "max_link_width"))
        if cur is not None:
            items[f"pcie.{name}.width"] = f"x{cur.strip()}/x{(mx or '?').strip()}"
    return items


def kernel_items(root: str) -> dict[str, Any]:
    cmdline = _read(os.path.join(root, "proc", "cmdline"))
    release = _read(os.path.join(root, "proc", "sys", "kernel", "osrelease"))
    return {"kernel.cmdline": cmdline.strip() if cmdline is not None else None,
            "kernel.release": release.strip() if release is not None else None}


def parse_sysctl_conf(texts: list[str]) -> dict[str, str]:
    """key -> value from sysctl.conf-format texts, later ones winning (as systemd-sysctl applies them)."""
    out: dict[str, str] = {}
    for text in texts:
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line[0] in "#;" or "=" not in line:
                continue
            key, value = (p.strip() for p in line.split("=", 1))
            key = key.lstrip("-").replace("/", ".")
            out[key] = " ".join(value.split())
    return out


def sysctl_items(root: str) -> dict[str, Any]:
    """Declared values (files under /etc/sysctl.d, /etc/sysctl.conf) and the live value of each declared key."""
    files = sorted(glob.glob(os.path.join(root, "etc", "sysctl.d", "*.conf")), key=os.path.basename)
    files += [os.path.join(root, "etc", "sysctl.conf")]
    declared = parse_sysctl_conf([t for t in (_read(f) for f in files) if t is not None])
    items: dict[str, Any] = {}
    for key, value in sorted(declared.items()):
        items[f"sysctl_conf.{key}"] = value
        live = _read(os.path.join(root, "proc", "sys", *key.split(".")))
        items[f"sysctl.{key}"] = " ".join(live.split()) if live is not None else None
    return items


def parse_mountinfo(text: str) -> dict[str, str]:
    """mountpoint -> 'fstype source options' for real filesystems (pseudo filesystems, /proc and /sys left out;
    overlay's options name layer directories, so they are left out too)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        f = left.split()
        r = right.split()
        if len(f) < 6 or len(r) < 2:
            continue
        mountpoint = f[4].replace("\\040", " ")
        fstype, source = r[0], r[1]
        if fstype in PSEUDO_FS or mountpoint.startswith(("/proc/", "/sys/")) or mountpoint in ("/proc", "/sys"):
            continue
        opts = "" if fstype == "overlay" else f[5]
        out[mountpoint] = " ".join(x for x in (fstype, source, opts) if x)
    return out


def parse_dpkg(text: str) -> dict[str, str]:
    """package -> version (' hold' appended when held) for installed packages, from
    dpkg-query -W -f '${Package}\\t${Version}\\t${db:Status-Abbrev}\\n'."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        name, version, status = parts[0], parts[1], parts[2].strip()
        if len(status) < 2 or status[1] not in "iU" or status[0] not in "ih":
            continue
        if status[1] != "i":
            continue
        out[name] = version + (" hold" if status[0] == "h" else "")
    return out


def parse_services(list_text: str, show_text: str) -> dict[str, str]:
    """service name -> 'enabled/<ActiveState>' for enabled, non-template service units."""
    enabled = []
    for line in list_text.splitlines():
        parts = line.split()
        if parts and parts[0].endswith(".service") and "@" not in parts[0]:
            enabled.append(parts[0])
    states: dict[str, str] = {}
    cur: dict[str, str] = {}
    for line in (show_text + "\n").splitlines():
        if not line.strip():
            if "Id" in cur:
                states[cur["Id"]] = cur.get("ActiveState", "unknown")
            cur = {}
            continue
        k, _, v = line.partition("=")
        cur[k] = v
    return {u.removesuffix(".service"): f"enabled/{states.get(u, 'unknown')}" for u in sorted(enabled)}


def parse_gpu_csv(text: str) -> dict[str, Any]:
    """Items from nvidia-smi --query-gpu=<GPU_QUERY> --format=csv,noheader,nounits."""
    gpus = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 6:
            continue
        gpus.append(cells)
    items: dict[str, Any] = {"gpu.count": len(gpus),
                             "gpu.models": ", ".join(sorted({g[2] for g in gpus})) or None,
                             "gpu.driver_version": gpus[0][3] if gpus else None}
    for g in gpus:
        items[f"gpu.{g[1].lower()}.pcie_width"] = f"x{g[4]}/x{g[5]}"
    return items


def library_versions(root: str) -> dict[str, Any]:
    """CUDA toolkit version (version.json), NCCL version (libnccl.so.2.x.y file name, or the nccl role's
    /opt/nccl/current link for the wheel source), loaded driver module."""
    items: dict[str, Any] = {}
    cuda = None
    vj = _read(os.path.join(root, "usr", "local", "cuda", "version.json"))
    if vj:
        try:
            cuda = json.loads(vj).get("cuda", {}).get("version")
        except ValueError:
            cuda = None
    items["cuda.version"] = cuda
    nccl = set()
    for d in ("usr/lib/x86_64-linux-gnu", "usr/lib/aarch64-linux-gnu", "usr/local/lib", "opt/nccl/lib"):
        for path in glob.glob(os.path.join(root, d, "libnccl.so.2.*")):
            m = re.search(r"libnccl\.so\.(2\.\d+\.\d+)$", path)
            if m:
                nccl.add(m.group(1))
    # The nccl role's wheel source: <prefix>/<version>/lib/libnccl.so.2 (the wheel's file has no x.y.z suffix),
    # <prefix>/current -> <version> (default prefix /opt/nccl).
    current = os.path.join(root, "opt", "nccl", "current")
    if os.path.islink(current) and os.path.isfile(os.path.join(current, "lib", "libnccl.so.2")):
        m = re.fullmatch(r"(2\.\d+\.\d+)", os.path.basename(os.readlink(current).rstrip("/")))
        if m:
            nccl.add(m.group(1))
    items["nccl.version"] = ", ".join(sorted(nccl)) or None
    mod = _read(os.path.join(root, "sys", "module", "nvidia", "version"))
    items["gpu.driver_module_version"] = mod.strip() if mod else None
    return items


def compare(baseline: dict[str, Any] | None, declared: dict[str, Any], current: dict[str, Any],
            ignore: list[str], watch_packages: list[str], require_baseline: bool = True) -> list[dict[str, Any]]:
    """Items whose current value differs from the baseline, declared items winning over recorded ones."""
    diffs: list[dict[str, Any]] = []
    if not baseline and require_baseline:
        diffs.append({"item": "baseline", "baseline": None, "current": "none recorded", "source": "none",
                      "reason": "no baseline for this host: converge it (site.yml records one), or declare every "
                                "item in drift_baseline and set drift_baseline_required: false"})
    recorded = dict((baseline or {}).get("items", {}))
    expected = {**{k: (v, "baseline") for k, v in recorded.items()},
                **{str(k): (v, "inventory") for k, v in declared.items()}}
    def skip(key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, p) for p in ignore)

    for key in sorted(expected):
        if skip(key):
            continue
        want, source = expected[key]
        have = current.get(key, ABSENT)
        if _norm(want) != _norm(have):
            diffs.append({"item": key, "baseline": want, "current": have, "source": source})
    if recorded:
        for key in sorted(set(current) - set(expected)):
            if skip(key) or current[key] is None:
                continue
            if key.startswith("package.") and not any(fnmatch.fnmatchcase(key[8:], p) for p in watch_packages):
                continue
            diffs.append({"item": key, "baseline": ABSENT, "current": current[key], "source": "baseline"})
    return diffs


def _norm(value: Any) -> Any:
    """Inventory values may arrive as strings ('9000'); compare numbers as numbers."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return value
    s = str(value).strip()
    return int(s) if re.fullmatch(r"-?\d+", s) else s


def snapshot(module: AnsibleModule, root: str) -> dict[str, Any]:
    items: dict[str, Any] = {}
    items.update(kernel_items(root))
    items.update(net_items(root))
    items.update(sysctl_items(root))
    mounts = _read(os.path.join(root, "proc", "self", "mountinfo")) or ""
    items.update({f"mount.{mp}": v for mp, v in parse_mountinfo(mounts).items()})
    items.update(library_versions(root))
    smi = module.get_bin_path("nvidia-smi", opt_dirs=["/usr/bin", "/usr/local/bin"])
    if smi:
        rc, out, err = module.run_command([smi, f"--query-gpu={GPU_QUERY}", "--format=csv,noheader,nounits"])
        items.update(parse_gpu_csv(out) if rc == 0 else
                     {"gpu.count": 0, "gpu.models": None, "gpu.driver_version": None,
                      "gpu.nvidia_smi_error": (err or out).strip().splitlines()[0][:200] if (err or out) else rc})
    else:
        items.update({"gpu.count": 0, "gpu.models": None, "gpu.driver_version": None})
    dpkg = module.get_bin_path("dpkg-query")
    if dpkg:
        rc, out, _ = module.run_command([dpkg, "-W", "-f", "${Package}\t${Version}\t${db:Status-Abbrev}\n"])
        if rc == 0:
            items.update({f"package.{k}": v for k, v in parse_dpkg(out).items()})
    systemctl = module.get_bin_path("systemctl")
    if systemctl:
        rc, listed, _ = module.run_command([systemctl, "list-unit-files", "--type=service", "--state=enabled",
                                            "--no-legend", "--no-pager"])
        units = [ln.split()[0] for ln in listed.splitlines() if ln.split() and "@" not in ln.split()[0]]
        shown = ""
        if units:
            _, shown, _ = module.run_command([systemctl, "show", "-p", "Id,ActiveState", "--", *units])
        items.update({f"service.{k}": v for k, v in parse_services(listed, shown).items()})
    return items


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "compare": {"type": "bool", "default": False},
            "baseline": {"type": "dict"},
            "declared": {"type": "dict", "default": {}},
            "ignore": {"type": "list", "elements": "str", "default": []},
            "watch_packages": {"type": "list", "elements": "str",
                               "default": ["nvidia-*", "libnvidia-*", "cuda-*", "libcuda*", "libnccl*",
                                           "nvidia-cuda-toolkit", "linux-image-*"]},
            "require_baseline": {"type": "bool", "default": True},
            "sysfs_root": {"type": "path", "default": "/"},
        },
        supports_check_mode=True,
    )
    p = module.params
    baseline = p["baseline"]
    if baseline and baseline.get("schema_version") != SCHEMA_VERSION:
        module.fail_json(msg=f"baseline.schema_version: expected {SCHEMA_VERSION}, "
                             f"got {baseline.get('schema_version')!r}")
    if baseline and not isinstance(baseline.get("items"), dict):
        module.fail_json(msg="baseline.items: expected a mapping of item name to value")
    items = snapshot(module, p["sysfs_root"])
    result: dict[str, Any] = {"changed": False, "items": items, "schema_version": SCHEMA_VERSION}
    if p["compare"]:
        diffs = compare(baseline, p["declared"], items, p["ignore"], p["watch_packages"], p["require_baseline"])
        result.update(differences=diffs, baseline_missing=not baseline,
                      changed=bool(diffs))
        if diffs:
            result["diff"] = {
                "before_header": "baseline", "after_header": "now",
                "before": "".join(f"{d['item']}: {d['baseline']}\n" for d in diffs),
                "after": "".join(f"{d['item']}: {d['current']}\n" for d in diffs),
            }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
