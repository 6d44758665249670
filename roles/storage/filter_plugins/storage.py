"""Decision logic of the storage role: which block devices qualify, what is refused, and the command plan.

Pure Python, no Ansible import: the role's tasks only read the node (``lsblk -J``, ``wipefs -n -J``, ``stat``)
and hand the outputs to ``storage_plan``; tests/unit/test_storage_hardening_monitoring.py calls the same functions
with captured and constructed outputs. Nothing here runs a command.

Safety rules (the reason this module exists):
- a device that is mounted, or that holds a mounted filesystem anywhere below it (partitions, arrays,
  dm devices), is never used, whatever the variables say;
- a device that holds a filesystem, a partition table, a RAID or LUKS signature is refused unless it is listed
  in ``storage_wipe_devices`` -- except signatures this role wrote itself (recognised by their UUIDs, which are
  derived from the host name), so that a second run finds its own array and changes nothing;
- discovery (no ``storage_devices``) only proposes whole disks matching the pattern; a matching disk in use is
  skipped (the reason is reported), a matching disk with foreign data is refused like an explicit one.

Every problem is one self-contained line: host, variable, device, what was found, the fix.
"""

from __future__ import annotations

import json
import re
import shlex
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Namespace of the role's deterministic UUIDs (uuid5 of host, array name and layer).
UUID_NAMESPACE = uuid.UUID("6f9c1d8e-2b4a-5e7f-9a3c-1d2e3f4a5b6c")
XFS_LABEL_MAX = 12


def storage_uuids(host: str, name: str) -> dict[str, str]:
    """The UUIDs the role gives its md array, LUKS header and XFS filesystem on ``host`` (stable across runs).

    ``md`` is in mdadm's notation (4 x 8 hex digits with colons), the others in the usual dashed form.
    """
    ids = {layer: uuid.uuid5(UUID_NAMESPACE, f"baremetal-ai:storage:{host}:{name}:{layer}") for layer in
           ("md", "luks", "fs")}
    hex_md = ids["md"].hex
    return {
        "md": ":".join(hex_md[i:i + 8] for i in range(0, 32, 8)),
        "luks": str(ids["luks"]),
        "fs": str(ids["fs"]),
    }


def _norm_uuid(value: Any) -> str:
    """A UUID without separators, lower case ('' for none): mdadm prints colons, blkid/lsblk dashes."""
    return re.sub(r"[^0-9a-f]", "", str(value or "").lower())


def _dev_path(name: str) -> str:
    return name if name.startswith("/") else f"/dev/{name}"


def _load(data: Any) -> Any:
    if isinstance(data, str | bytes):
        text = data.decode() if isinstance(data, bytes) else data
        return json.loads(text) if text.strip() else {}
    return data or {}


def _mountpoints(node: Mapping[str, Any]) -> list[str]:
    points = list(node.get("mountpoints") or [])
    if node.get("mountpoint"):
        points.append(node["mountpoint"])
    return sorted({p for p in points if p})


def parse_lsblk(data: Any) -> dict[str, dict[str, Any]]:
    """``lsblk -J`` output (text or parsed; any column set that has NAME) -> {kernel name: device}.

    Each device: name, path, type, size, fstype, pttype, uuid, model, mountpoints (own), children (names),
    tree_mounts (mountpoints of the device and everything below it). A child listed under several parents
    (an md array under each member) is one entry.
    """
    devices: dict[str, dict[str, Any]] = {}

    def walk(node: Mapping[str, Any]) -> list[str]:
        name = str(node["name"])
        children = [walk(child) for child in node.get("children") or []]
        below = sorted({m for child in children for m in child})
        entry = devices.setdefault(name, {
            "name": name,
            "path": node.get("path") or _dev_path(name),
            "type": node.get("type"),
            "size": node.get("size"),
            "fstype": node.get("fstype"),
            "pttype": node.get("pttype"),
            "uuid": node.get("uuid"),
            "label": node.get("label"),
            "model": (node.get("model") or "").strip() or None,
            "mountpoints": _mountpoints(node),
            "children": [],
            "tree_mounts": [],
        })
        entry["children"] = sorted(set(entry["children"]) | {str(c["name"]) for c in node.get("children") or []})
        entry["tree_mounts"] = sorted(set(entry["tree_mounts"]) | set(_mountpoints(node)) | set(below))
        return entry["tree_mounts"]

    for top in _load(data).get("blockdevices") or []:
        walk(top)
    return devices


def parse_wipefs(data: Any) -> list[dict[str, Any]]:
    """``wipefs -n -J DEVICE`` output -> its signatures ({type, offset, uuid, label}); empty for a blank device."""
    return [{k: sig.get(k) for k in ("type", "offset", "uuid", "label")}
            for sig in _load(data).get("signatures") or []]


def _describe(sigs: Iterable[Mapping[str, Any]]) -> str:
    parts = []
    for sig in sigs:
        text = str(sig.get("type"))
        extra = [f"{k.upper()} {sig[k]}" for k in ("uuid", "label") if sig.get(k)]
        if extra:
            text += f" ({', '.join(extra)})"
        if text not in parts:
            parts.append(text)
    return ", ".join(parts)


def _signatures(dev: Mapping[str, Any], wipefs: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """What the device holds: wipefs' signatures plus what lsblk saw (some lsblk column sets lack PTTYPE)."""
    sigs = [dict(s) for s in wipefs or []]
    seen = {s.get("type") for s in sigs}
    if dev.get("fstype") and dev["fstype"] not in seen:
        sigs.append({"type": dev["fstype"], "uuid": dev.get("uuid"), "label": dev.get("label")})
    if dev.get("pttype") and dev["pttype"] not in seen:
        sigs.append({"type": f"{dev['pttype']} partition table"})
    return sigs


def _ours(sigs: Sequence[Mapping[str, Any]], own_uuids: Iterable[str]) -> bool:
    own = {_norm_uuid(u) for u in own_uuids}
    return bool(sigs) and all(_norm_uuid(s.get("uuid")) in own for s in sigs if s.get("type") != "PMBR")


def _used_children(devices: Mapping[str, Mapping[str, Any]], dev: Mapping[str, Any]) -> list[str]:
    return [f"{c} ({devices[c]['type']})" if c in devices else c for c in dev.get("children") or []]


def storage_resolved(stat_results: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """{name as written: kernel path} from the results of a ``stat`` loop over device names (links resolved)."""
    resolved = {}
    for result in stat_results or []:
        item = str(result.get("item"))
        stat = result.get("stat") or {}
        source = stat.get("lnk_source") if stat.get("islnk") else None
        resolved[item] = source or _dev_path(item)
    return resolved


def storage_candidates(lsblk: Any, devices: Sequence[str] = (), discover_pattern: str = r"^nvme\d+n1$",
                       resolved: Mapping[str, str] | None = None) -> list[str]:
    """The existing devices to probe with ``wipefs -n``: the explicit ones that exist, or the discovered ones."""
    found = parse_lsblk(lsblk)
    by_path = {d["path"]: d for d in found.values()}
    if devices:
        paths = [(resolved or {}).get(d, _dev_path(d)) for d in devices]
        return [p for p in paths if p in by_path]
    pattern = re.compile(discover_pattern)
    return sorted(d["path"] for d in found.values() if d.get("type") == "disk" and pattern.search(d["name"]))


def storage_plan(lsblk: Any, wipefs: Mapping[str, Any] | None = None, *, host: str,
                 devices: Sequence[str] = (), wipe_devices: Sequence[str] = (),
                 discover_pattern: str = r"^nvme\d+n1$", resolved: Mapping[str, str] | None = None,
                 plan_only: bool = False, name: str = "scratch", md_device: str = "/dev/md/scratch",
                 chunk_kib: int = 512, encrypt: bool = False, luks_name: str = "scratch",
                 keyfile: str = "/etc/luks/scratch.key", luks_format_options: Sequence[str] = (),
                 crypttab_options: Sequence[str] = ("luks", "nofail"), fs_label: str = "scratch",
                 mkfs_options: Sequence[str] = (), mount_point: str = "/scratch",
                 mount_options: Sequence[str] = ("noatime",)) -> dict[str, Any]:
    """The storage layout for one host and what stands in its way.

    ``lsblk``: ``lsblk -J`` output; ``wipefs``: {device path: ``wipefs -n -J`` output} for the probed devices;
    ``resolved``: {name as written in the variables: kernel path} for /dev/disk/by-* symlinks (from stat).
    With ``plan_only`` a declared device that does not exist is noted in ``unavailable`` instead of failing
    (a container has no block devices); devices that do exist are checked as usual.

    Returns devices, raid (more than one device), uuids, target (the device XFS goes on), commands (argv
    lists by step; build: those of a
    blank start, in order), wipe (devices whose signatures ``wipefs --all`` removes first), what is
    already present (md / luks / fs, from lsblk), the mdadm.conf, crypttab and fstab lines, skipped (discovery),
    unavailable and problems.
    """
    found = parse_lsblk(lsblk)
    by_path = {d["path"]: d for d in found.values()}
    probes = {path: parse_wipefs(out) for path, out in (wipefs or {}).items()}
    uuids = storage_uuids(host, name)
    own = uuids.values()
    resolved = dict(resolved or {})
    wipe_paths = {resolved.get(w, _dev_path(w)) for w in wipe_devices}
    problems: list[str] = []
    skipped: list[dict[str, str]] = []
    unavailable: list[str] = []
    wipe: list[str] = []
    selected: list[str] = []
    fix_wipe = ("Fix: if its data may be destroyed, add it to storage_wipe_devices; otherwise remove it from "
                "storage_devices")

    if devices:
        origin = "storage_devices"
        duplicates = sorted({d for d in devices if list(devices).count(d) > 1})
        if duplicates:
            problems.append(f"{host}: storage_devices: {', '.join(duplicates)} listed more than once. Fix: list each "
                            "disk once")
        for given in dict.fromkeys(devices):
            path = resolved.get(given, _dev_path(given))
            if path not in by_path:
                if plan_only:
                    unavailable.append(path)
                    selected.append(path)
                else:
                    problems.append(f"{host}: storage_devices: {given} does not exist on this host (lsblk does not "
                                    "list it). Fix: name an existing whole disk, e.g. /dev/nvme1n1")
                continue
            selected.append(path)
    else:
        origin = "discovered"
        pattern = re.compile(discover_pattern)
        for dev in sorted(found.values(), key=lambda d: d["path"]):
            if dev.get("type") != "disk" or not pattern.search(dev["name"]):
                continue
            if _ours(_signatures(dev, probes.get(dev["path"])), own):
                selected.append(dev["path"])  # our own array: mounted below, as it should be
                continue
            if dev["tree_mounts"]:
                skipped.append({"device": dev["path"],
                                "reason": f"in use: mounted at {', '.join(dev['tree_mounts'])}"})
                continue
            selected.append(dev["path"])

    for path in selected:
        dev = by_path.get(path)
        if dev is None:
            continue
        label = "storage_devices" if origin == "storage_devices" else f"discovered device (pattern {discover_pattern})"
        if dev.get("type") not in ("disk",):
            problems.append(f"{host}: {label}: {path} is a {dev.get('type')}, not a whole disk. Fix: name the "
                            "disk itself (e.g. /dev/nvme1n1), not a partition or a virtual device")
            continue
        sigs = _signatures(dev, probes.get(path))
        if sigs and _ours(sigs, own):
            continue
        if dev["tree_mounts"]:
            problems.append(f"{host}: {label}: {path} is in use: mounted at {', '.join(dev['tree_mounts'])}. "
                            "It is never wiped, even when listed in storage_wipe_devices. Fix: remove it from "
                            "storage_devices")
            continue
        if not sigs and not dev.get("children"):
            continue
        what = _describe(sigs) or "no signature"
        if dev.get("children"):
            what += f"; holds {', '.join(_used_children(found, dev))}"
        if path in wipe_paths:
            wipe.append(path)
            continue
        problems.append(f"{host}: {label}: refusing to touch {path}: it holds {what}. {fix_wipe}")

    for path in sorted(wipe_paths - set(selected)):
        problems.append(f"{host}: storage_wipe_devices: {path} is not one of the devices used "
                        f"({', '.join(selected) or 'none'}). Fix: list only devices that are also in storage_devices "
                        "(or discovered)")
    if not selected and not problems:
        skips = "; ".join(f"{s['device']} {s['reason']}" for s in skipped)
        problems.append(f"{host}: storage_devices: empty and no unused disk matches {discover_pattern!r}"
                        f"{f' (skipped: {skips})' if skips else ''}"
                        ". Fix: list the data disks in storage_devices, or set storage_enabled: false for this host")
    if len(fs_label) > XFS_LABEL_MAX:
        problems.append(f"{host}: storage_fs_label: {fs_label!r} is longer than {XFS_LABEL_MAX} characters "
                        "(the XFS limit). Fix: a shorter label")

    raid = len(selected) > 1
    base = md_device if raid else (selected[0] if selected else "")
    target = f"/dev/mapper/{luks_name}" if encrypt else base
    mkfs_args = ["-L", fs_label, "-m", f"uuid={uuids['fs']}", *mkfs_options]
    commands: dict[str, list[str] | None] = {
        "mdadm_create": ["mdadm", "--create", md_device, "--run", "--level=0", f"--raid-devices={len(selected)}",
                         f"--chunk={int(chunk_kib)}K", "--metadata=1.2", f"--name={name}",
                         f"--uuid={uuids['md']}", *selected] if raid else None,
        "luks_format": ["cryptsetup", "luksFormat", "--batch-mode", *luks_format_options,
                        f"--uuid={uuids['luks']}", "--key-file", keyfile, base] if encrypt else None,
        "luks_open": ["cryptsetup", "open", "--type", "luks", "--key-file", keyfile, base, luks_name]
        if encrypt else None,
        "mkfs": ["mkfs.xfs", *mkfs_args, target],
    }
    def has(layer: str, uuid_value: str) -> bool:
        return any(_norm_uuid(d.get("uuid")) == _norm_uuid(uuid_value) and (d.get("fstype") or "") == layer
                   for d in found.values())

    present = {"md": has("linux_raid_member", uuids["md"]), "luks": has("crypto_LUKS", uuids["luks"]),
               "fs": has("xfs", uuids["fs"])}
    if encrypt and present["fs"] and not present["luks"]:
        problems.append(f"{host}: storage_encrypt: true, but {mount_point} was built unencrypted (XFS UUID "
                        f"{uuids['fs']} found): encrypting now would destroy it. Fix: keep storage_encrypt false, or "
                        "back up, wipe the devices (storage_wipe_devices) and rebuild")
    if not encrypt and present["luks"]:
        problems.append(f"{host}: storage_encrypt: false, but the array holds this role's LUKS container (UUID "
                        f"{uuids['luks']}): dropping encryption would destroy it. Fix: keep storage_encrypt true, or "
                        "back up, wipe the devices (storage_wipe_devices) and rebuild")

    return {
        "host": host,
        "origin": origin,
        "devices": selected,
        "raid": raid,
        "uuids": uuids,
        "base": base,
        "target": target,
        "commands": commands,
        "build": [argv for argv in commands.values() if argv],
        "mkfs_opts": " ".join(shlex.quote(a) for a in mkfs_args),
        "wipe": wipe,
        "present": present,
        "mdadm_conf": f"ARRAY {md_device} metadata=1.2 UUID={uuids['md']} name={name}" if raid else "",
        "crypttab": (f"{luks_name} UUID={uuids['luks']} {keyfile} {','.join(crypttab_options)}"
                     if encrypt else ""),
        "fstab": f"UUID={uuids['fs']} {mount_point} xfs {','.join(mount_options)} 0 0",
        "skipped": skipped,
        "unavailable": unavailable,
        "problems": problems,
    }


class FilterModule:
    """Filters of the storage role."""

    def filters(self) -> dict[str, Any]:
        return {
            "storage_candidates": storage_candidates,
            "storage_plan": storage_plan,
            "storage_resolved": storage_resolved,
            "storage_uuids": storage_uuids,
        }
