#!/usr/bin/python
# Copyright: baremetal-ai contributors
# Apache-2.0
"""Ansible module: fio sequential read/write and random 4k read on a scratch path, judged against thresholds."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.bm_parsers import ParseError, parse_fio_json
from ansible.module_utils.bm_validation import failed, judge, not_applicable, with_retry

DOCUMENTATION = r"""
---
module: storage_bench
short_description: Measure local storage with fio (sequential read/write MB/s, random 4k read IOPS)
description:
  - Runs up to three fio jobs on one scratch file under I(path) (sequential 1 MiB write, sequential 1 MiB read,
    random 4 KiB read), parses fio's JSON with C(bm_parsers.parse_fio_json) and judges each value against the
    threshold given for it (C(bm_validation.judge), warn band above the floor).
  - A job that fails its floor is run once more after I(retry_cooldown_s); both attempts are recorded, and a
    pass on the retry is reported as C(warn).
  - The scratch file is removed afterwards, also when fio fails. A directory the module created is removed too.
  - fio missing gives every check C(not_applicable) with the install command, never a pass.
  - Refuses a scratch path on tmpfs/ramfs (it would measure memory, not the disk) unless I(allow_tmpfs=true).
  - In check mode nothing runs; the checks are C(not_applicable) and C(commands) lists what would run.
options:
  path:
    description: Directory for the scratch file, on the filesystem to measure. Never C(/tmp) in the lab (tmpfs).
    type: path
    default: /var/tmp/baremetal-validation
  size:
    description: Size of the scratch file (fio size syntax, e.g. C(256M), C(4G)). Larger than the disk cache.
    type: str
    default: 1G
  runtime_s:
    description: Seconds each job runs (time based).
    type: int
    default: 10
  jobs:
    description: Which jobs to run.
    type: list
    elements: str
    choices: [seq_write, seq_read, randread_4k]
    default: [seq_write, seq_read, randread_4k]
  direct:
    description: Use O_DIRECT. When the filesystem refuses it, the module falls back to buffered I/O and says so.
    type: bool
    default: true
  ioengine:
    description: fio I/O engine.
    type: str
    default: libaio
  iodepth:
    description: Queue depth of the sequential jobs (the random job uses twice this).
    type: int
    default: 32
  thresholds:
    description: Threshold per check name (as C(validation_report mode=resolve) returns them); a check with no
      threshold is reported as C(warn), never pass.
    type: dict
    default: {}
  warn_band:
    description: Fraction above the floor that is still C(warn).
    type: float
    default: 0.05
  retries:
    description: Extra attempts for a job that fails its floor.
    type: int
    default: 1
  retry_cooldown_s:
    description: Seconds to wait before a retry.
    type: float
    default: 10
  allow_tmpfs:
    description: Allow a scratch path on tmpfs/ramfs (only to test the module).
    type: bool
    default: false
  keep_raw:
    description: Keep fio's JSON in passing checks too (failing ones always keep it).
    type: bool
    default: false
  fio:
    description: fio executable (name or path).
    type: str
    default: fio
author: baremetal-ai contributors
"""

EXAMPLES = r"""
- name: Measure the scratch disk
  storage_bench:
    path: /var/lib/baremetal-ai/scratch
    size: 4G
    runtime_s: 20
    thresholds: "{{ _validation_resolved.thresholds }}"
  register: storage

- name: Quick look in the lab (overlay filesystem, small file)
  storage_bench:
    path: /var/tmp/baremetal-validation
    size: 128M
    runtime_s: 3
"""

RETURN = r"""
checks:
  description: One result per job (bm_validation check dicts, docs/validation.md).
  returned: always
  type: list
  elements: dict
  sample:
    - check: storage_seq_read_mbps
      area: storage
      value: 1830.2
      unit: MB/s
      verdict: pass
      reason: 1830 MB/s >= 525 MB/s (floor 500 + 5%)
      duration_s: 10.4
commands:
  description: The fio command lines (run, or that would run in check mode).
  returned: always
  type: list
  elements: list
filesystem:
  description: Filesystem type under I(path), from /proc/mounts.
  returned: always
  type: str
  sample: xfs
direct:
  description: Whether O_DIRECT was used (false after a fallback).
  returned: always
  type: bool
fio_version:
  description: fio's version, when fio is installed.
  returned: when fio is installed
  type: str
"""

JOBS = {
    # job: (check, fio rw, block size, direction, value key, unit)
    "seq_write": ("storage_seq_write_mbps", "write", "1M", "write", "mbps", "MB/s"),
    "seq_read": ("storage_seq_read_mbps", "read", "1M", "read", "mbps", "MB/s"),
    "randread_4k": ("storage_randread_4k_iops", "randread", "4k", "read", "iops", "IOPS"),
}
# Writing first lays the file out, so the read jobs read data that is on the disk.
ORDER = ("seq_write", "seq_read", "randread_4k")
INSTALL_HINT = "apt-get install fio  (dnf install fio on RHEL-family nodes)"
MEMORY_FS = {"tmpfs", "ramfs"}
SCRATCH_NAME = "baremetal-storage-bench.dat"


def fio_command(job: str, filename: str, size: str, runtime_s: int, direct: bool, ioengine: str, iodepth: int,
                fio: str = "fio") -> list[str]:
    """The fio command line for one job (JSON on stdout)."""
    _check, rw, bs, direction, _key, _unit = JOBS[job]
    cmd = [fio, f"--name={job}", f"--filename={filename}", f"--rw={rw}", f"--bs={bs}", f"--size={size}",
           f"--runtime={int(runtime_s)}", "--time_based", f"--ioengine={ioengine}",
           f"--iodepth={iodepth * 2 if rw == 'randread' else iodepth}", f"--direct={1 if direct else 0}",
           "--group_reporting", "--output-format=json"]
    if direction == "write":
        cmd.append("--end_fsync=1")
    if rw == "randread":
        cmd.append("--randrepeat=0")
    return cmd


def fio_value(job: str, parsed: dict) -> float | None:
    """The job's measured value: MB/s (10^6 bytes) for sequential jobs, IOPS for the random one."""
    _check, _rw, _bs, direction, key, _unit = JOBS[job]
    sec = (parsed.get("totals") or {}).get(direction) or {}
    if key == "mbps":
        return None if sec.get("bw_bytes") is None else round(sec["bw_bytes"] / 1e6, 2)
    return None if sec.get("iops") is None else round(float(sec["iops"]), 1)


def judge_fio(job: str, rc: int, stdout: str, stderr: str, threshold: dict | None, warn_band: float,
              duration_s: float, keep_raw: bool = False) -> dict:
    """One job's check from fio's exit status and output."""
    check, _rw, _bs, _direction, _key, unit = JOBS[job]
    raw = (stdout + ("\n--- stderr ---\n" + stderr if stderr.strip() else "")).strip()
    if rc != 0:
        return failed(check, f"fio exited with {rc}: {last_line(stderr) or last_line(stdout)}", raw, duration_s,
                      threshold)
    try:
        parsed = parse_fio_json(stdout)
    except ParseError as exc:
        return failed(check, f"fio output not parseable: {exc.message}", raw, duration_s, threshold)
    errors = [j for j in parsed["jobs"] if j.get("error")]
    if errors:
        return failed(check, f"fio job {errors[0]['name']} reported error {errors[0]['error']}", raw, duration_s,
                      threshold)
    return judge(check, fio_value(job, parsed), unit, threshold, warn_band, duration_s, raw, keep_raw)


def last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def direct_unsupported(rc: int, stdout: str, stderr: str) -> bool:
    """fio's complaint when the filesystem refuses O_DIRECT (EINVAL on open)."""
    text = (stdout + stderr).lower()
    return rc != 0 and any(k in text for k in ("o_direct", "direct=1", "invalid argument", "err=22"))


def filesystem_of(path: str, mounts: str) -> str | None:
    """Filesystem type of the mount holding `path` (longest mount point prefix in /proc/mounts text)."""
    best, fstype = "", None
    path = os.path.abspath(path)
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        mnt = parts[1].replace("\\040", " ")
        if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
            best, fstype = mnt, parts[2]
    return fstype


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "default": "/var/tmp/baremetal-validation"},
            "size": {"type": "str", "default": "1G"},
            "runtime_s": {"type": "int", "default": 10},
            "jobs": {"type": "list", "elements": "str", "choices": list(ORDER), "default": list(ORDER)},
            "direct": {"type": "bool", "default": True},
            "ioengine": {"type": "str", "default": "libaio"},
            "iodepth": {"type": "int", "default": 32},
            "thresholds": {"type": "dict", "default": {}},
            "warn_band": {"type": "float", "default": 0.05},
            "retries": {"type": "int", "default": 1},
            "retry_cooldown_s": {"type": "float", "default": 10.0},
            "allow_tmpfs": {"type": "bool", "default": False},
            "keep_raw": {"type": "bool", "default": False},
            "fio": {"type": "str", "default": "fio"},
        },
        supports_check_mode=True,
    )
    p = module.params
    jobs = [j for j in ORDER if j in p["jobs"]]
    path = p["path"]
    filename = os.path.join(path, SCRATCH_NAME)
    try:
        with open("/proc/mounts", encoding="utf-8") as fh:
            fstype = filesystem_of(path, fh.read())
    except OSError:
        fstype = None
    result = {"changed": False, "filesystem": fstype, "direct": p["direct"], "path": path}
    if fstype in MEMORY_FS and not p["allow_tmpfs"]:
        module.fail_json(msg=f"storage_bench: {path} is on {fstype}: fio would measure memory, not a disk. Set "
                             "validation_storage_path to a directory on the disk to measure (e.g. /var/tmp/...)",
                         **result)
    fio = shutil.which(p["fio"]) or (p["fio"] if os.path.isabs(p["fio"]) and os.access(p["fio"], os.X_OK) else None)
    commands = [fio_command(j, filename, p["size"], p["runtime_s"], p["direct"], p["ioengine"], p["iodepth"],
                            fio or p["fio"]) for j in jobs]
    result["commands"] = commands
    if fio is None:
        checks = [not_applicable(JOBS[j][0], f"fio is not installed ({p['fio']} not found)", INSTALL_HINT)
                  for j in jobs]
        module.exit_json(checks=checks, **result)
    result["fio_version"] = subprocess.run([fio, "--version"], capture_output=True, text=True,
                                           check=False).stdout.strip()
    if module.check_mode:
        checks = [not_applicable(JOBS[j][0], "check mode: not run; would run: " + " ".join(cmd))
                  for j, cmd in zip(jobs, commands, strict=False)]
        module.exit_json(checks=checks, **result)

    created_dir = not os.path.isdir(path)
    direct = p["direct"]
    checks = []
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        for job in jobs:
            def measure(job: str = job) -> dict:
                nonlocal direct
                cmd = fio_command(job, filename, p["size"], p["runtime_s"], direct, p["ioengine"], p["iodepth"], fio)
                t0 = time.monotonic()
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if direct and direct_unsupported(proc.returncode, proc.stdout, proc.stderr):
                    direct = False
                    cmd = fio_command(job, filename, p["size"], p["runtime_s"], direct, p["ioengine"],
                                      p["iodepth"], fio)
                    t0 = time.monotonic()
                    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
                out = judge_fio(job, proc.returncode, proc.stdout, proc.stderr,
                                p["thresholds"].get(JOBS[job][0]), p["warn_band"], time.monotonic() - t0,
                                p["keep_raw"])
                out["command"] = " ".join(cmd)
                out["direct"] = direct
                if not direct:
                    out["note"] = f"buffered I/O: {fstype or 'the filesystem'} refused O_DIRECT"
                return out

            checks.append(with_retry(measure, p["retry_cooldown_s"], p["retries"]))
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(filename)
        if created_dir:
            shutil.rmtree(path, ignore_errors=True)
    result["direct"] = direct
    module.exit_json(checks=checks, **result)


if __name__ == "__main__":
    main()
