#!/usr/bin/python
# Copyright: baremetal-ai contributors
# Apache-2.0
"""Ansible module: nccl-tests (all_reduce_perf by default) on one node or across nodes with mpirun, judged on the
peak bus bandwidth of the large messages."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.bm_parsers import ParseError, parse_nccl_tests
from ansible.module_utils.bm_validation import CHECKS, failed, judge, not_applicable, with_retry

DOCUMENTATION = r"""
---
module: nccl_bench
short_description: NCCL collective bus bandwidth with nccl-tests, judged on the large messages
description:
  - Runs C(<binary_dir>/<test>_perf) from nccl-tests (C(all_reduce_perf) by default) with I(gpus) GPUs in one
    process, or, when I(hosts) is given, under C(mpirun) across those nodes (C(-np), C(-H host:slots),
    C(-x) for every I(env) key and every C(NCCL_*) variable of the module's environment).
  - Parses the output with C(bm_parsers.parse_nccl_tests) and judges the B(peak bus bandwidth over the rows of
    1 GiB and more) (the largest size when the sweep stops below 1 GiB), in GB/s (10^9 bytes, as nccl-tests
    prints). The C(Avg bus bandwidth) line is recorded in C(details) but not judged, because it is averaged over
    every size of the sweep, and small messages pull it far down (docs/gpu-bench-reference.md section 5).
  - C(all_reduce) gives the check C(nccl_allreduce_busbw_gbps) (floors per GPU model in
    validation/thresholds.yml, for 8 GPUs in one node); the other collectives give
    C(nccl_allgather_busbw_gbps), C(nccl_reducescatter_busbw_gbps), C(nccl_alltoall_busbw_gbps),
    C(nccl_broadcast_busbw_gbps), which have no shipped threshold (a measured value is a C(warn) until one is set).
  - Any non-zero C(#wrong), a per-rank C(rank=N) C(#wrong=M) line or C(Out of bounds values ... FAILED) fails
    the check with the output attached, whatever the bandwidth. A bus bandwidth of 0 with more than one rank
    fails too. Output that cannot be parsed fails with the output's first lines in C(raw); a run that fails is
    retried once (I(retries)) after I(retry_cooldown_s), both attempts recorded.
  - C(not_applicable) when the binary is missing (with how to build it), when C(mpirun) is missing in multi-node
    mode, when there is no GPU, and when the run has one rank in total (bus bandwidth is 0 by definition with
    one rank - all_reduce moves 2(n-1)/n of the data over the bus).
  - In check mode nothing runs; C(command) says what would.
options:
  test:
    description: nccl-tests collective; runs C(<test>_perf).
    type: str
    choices: [all_reduce, all_gather, reduce_scatter, alltoall, broadcast]
    default: all_reduce
  check_name:
    description: Name of the check in the result (default C(nccl_<test>_busbw_gbps)); C(playbooks/validate.yml)
      names the multi-node all_reduce C(nccl_allreduce_multinode_busbw_gbps) so that it sits beside the
      single-node one. Must be a known check (bm_validation.CHECKS).
    type: str
  binary_dir:
    description: Directory of the nccl-tests binaries (the C(nccl) role builds them in C(/opt/nccl-tests/build)).
    type: path
    default: /opt/nccl-tests/build
  gpus:
    description:
      - GPUs per process (C(-g)); 0 means the node has no GPU (C(not_applicable)). Default, one node - every GPU
        of the node (C(/proc/driver/nvidia/gpus), or
        C(CUDA_VISIBLE_DEVICES) from I(env)); with I(hosts) - the node's GPUs divided by the processes per host.
        The playbook passes C(node_gpu_count).
    type: int
  min_bytes:
    description: Smallest message (C(-b); a number with an optional K, M or G suffix, powers of 1024).
    type: str
    default: 1G
  max_bytes:
    description: Largest message (C(-e)); at least I(min_bytes).
    type: str
    default: 16G
  step_factor:
    description: Multiplication factor between sizes (C(-f)), at least 2.
    type: int
    default: 2
  iters:
    description: Timed iterations per size (C(-n)).
    type: int
    default: 20
  warmup_iters:
    description: Warm-up iterations per size (C(-w)).
    type: int
    default: 5
  check_iters:
    description: Iterations whose results are checked for correctness (C(-c)); 0 turns the check off (C(#wrong)
      is then N/A and nothing can fail on it).
    type: int
    default: 1
  hosts:
    description: Multi-node mode. The nodes to run on (names or addresses mpirun can reach), this node included;
      the module runs C(mpirun) here. The binary must exist at the same path on every host.
    type: list
    elements: str
    default: []
  mpirun:
    description: mpirun executable (Open MPI syntax, C(-H host:slots) and C(-x NAME)). Only with I(hosts).
    type: str
    default: mpirun
  np:
    description: Processes in total (C(-np)); a multiple of the number of I(hosts). Default one process per host.
    type: int
  mpirun_args:
    description: Extra mpirun arguments before the binary (e.g. C(--allow-run-as-root), C(--bind-to none),
      C(-x LD_LIBRARY_PATH)).
    type: list
    elements: str
    default: []
  env:
    description: Environment for the benchmark (e.g. C(NCCL_DEBUG=INFO), C(NCCL_IB_HCA)); exported to every rank
      with C(-x) under mpirun.
    type: dict
    default: {}
  threshold:
    description: Threshold for the check (C(validation_report mode=resolve) output); none is a C(warn).
    type: dict
  warn_band:
    description: Fraction above the floor that is still C(warn).
    type: float
    default: 0.05
  retries:
    description: Extra attempts when the run fails (floor, wrong results, non-zero exit).
    type: int
    default: 1
  retry_cooldown_s:
    description: Seconds to wait before a retry.
    type: float
    default: 10
  timeout_s:
    description: Seconds after which a run is killed and fails (a hung collective).
    type: int
    default: 1200
  keep_raw:
    description: Keep the output in a passing check too (failing ones always keep it).
    type: bool
    default: false
author: baremetal-ai contributors
"""

EXAMPLES = r"""
- name: all_reduce over every GPU of the node, 1 GiB .. 16 GiB
  nccl_bench:
    gpus: "{{ node_gpu_count }}"
    threshold: "{{ thresholds.nccl_allreduce_busbw_gbps | default(omit) }}"
  register: nccl

- name: all_gather, quick sweep, NCCL's own log in the output
  nccl_bench:
    test: all_gather
    min_bytes: 256M
    max_bytes: 1G
    env:
      NCCL_DEBUG: INFO

- name: Across two nodes, one process per GPU (16 ranks)
  nccl_bench:
    hosts: [gpu01, gpu02]
    np: 16
    gpus: 1
    mpirun: /usr/bin/mpirun
    mpirun_args: [--allow-run-as-root, --bind-to, none]
    env:
      NCCL_IB_HCA: mlx5
  run_once: true
"""

RETURN = r"""
checks:
  description: One check, C(nccl_<collective>_busbw_gbps) (bm_validation check dict, docs/validation.md), with
    C(details) (ranks, size judged, avg bus bandwidth, nccl version line, NCCL WARN lines) when it ran.
  returned: always
  type: list
  elements: dict
  sample:
    - check: nccl_allreduce_busbw_gbps
      area: nccl
      value: 482.13
      unit: GB/s
      verdict: pass
      reason: "482.1 GB/s >= 483 GB/s (floor 460 + 5%) (peak busbw over sizes >= 1 GiB, at 8589934592 B; 8 ranks)"
command:
  description: The command line (run, or that would run).
  returned: always
  type: list
  elements: str
ranks:
  description: Ranks in total (processes x GPUs per process), as planned before the run.
  returned: always
  type: int
"""

TESTS = ("all_reduce", "all_gather", "reduce_scatter", "alltoall", "broadcast")
GIB = 1 << 30
BUILD_HINT = ("build nccl-tests from a pinned source reference: set nccl_tests_build: true for the nccl role, or "
              "git clone https://github.com/NVIDIA/nccl-tests && git checkout v2.19.6 && "
              "make MPI=1 CUDA_HOME=/usr/local/cuda NCCL_HOME=/usr  (MPI=1 needs an MPI, e.g. apt-get install "
              "libopenmpi-dev; drop it for one node)")
MPIRUN_HINT = "apt-get install openmpi-bin  (and build nccl-tests with MPI=1)"
ONE_RANK = "one rank in total: bus bandwidth is 0 by definition with one rank (all_reduce factor 2(n-1)/n)"
NVIDIA_GPUS = "/proc/driver/nvidia/gpus"
_SIZE_RE = re.compile(r"^(\d+)([KMG]?)$", re.I)


def check_name(test: str) -> str:
    """`all_reduce` -> `nccl_allreduce_busbw_gbps` (bm_validation.CHECKS)."""
    return f"nccl_{test.replace('_', '')}_busbw_gbps"


def parse_size(text: str) -> int:
    """nccl-tests size syntax (`1G`, `256M`, `8`) in bytes (K/M/G are powers of 1024); ValueError otherwise."""
    m = _SIZE_RE.match(str(text).strip())
    if not m:
        raise ValueError(f"{text!r} is not a size (a number with an optional K, M or G suffix)")
    return int(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2).upper()]


def count_gpus(env: dict, nvidia_gpus: str | None = None) -> int:
    """GPUs this node would give the benchmark: CUDA_VISIBLE_DEVICES when set, else the driver's GPU list."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in str(visible).split(",") if d.strip()])
    try:
        return len(os.listdir(nvidia_gpus or NVIDIA_GPUS))
    except OSError:
        return 0


def bench_args(binary: str, gpus: int, min_bytes: str, max_bytes: str, step_factor: int, iters: int,
               warmup_iters: int, check_iters: int) -> list[str]:
    return [binary, "-b", str(min_bytes).upper(), "-e", str(max_bytes).upper(), "-f", str(step_factor),
            "-g", str(gpus), "-n", str(iters), "-w", str(warmup_iters), "-c", str(check_iters)]


def mpirun_command(mpirun: str, hosts: list[str], np: int, env_keys: list[str], extra: list[str],
                   bench: list[str]) -> list[str]:
    """Open MPI command line: np processes spread evenly over hosts (`-H h1:s,h2:s`), env exported with -x."""
    slots = np // len(hosts)
    cmd = [mpirun, "-np", str(np), "-H", ",".join(f"{h}:{slots}" for h in hosts)]
    for key in env_keys:
        cmd += ["-x", key]
    return cmd + list(extra) + bench


def exported_keys(env: dict, environ: dict) -> list[str]:
    """Variables mpirun exports to the ranks: the module's env plus NCCL_* already in the environment."""
    return sorted(set(env) | {k for k in environ if k.startswith("NCCL_")})


def judge_nccl(check: str, rc: int, stdout: str, stderr: str, threshold: dict | None, warn_band: float,
               duration_s: float | None, keep_raw: bool = False, label: str = "nccl-tests") -> dict:
    """The check from nccl-tests' exit status and output: peak busbw over the >= 1 GiB rows (GB/s)."""
    raw = (stdout + ("\n--- stderr ---\n" + stderr if stderr.strip() else "")).strip()
    try:
        parsed = parse_nccl_tests(stdout)
    except ParseError as exc:
        return failed(check, f"{label} exited with {rc}, output not parseable: {exc.message}", raw, duration_s,
                      threshold)
    oob = parsed.get("out_of_bounds") or {}
    if parsed["wrong_total"] or parsed["rank_errors"] or oob.get("ok") is False:
        return failed(check, f"{label} reported wrong results (#wrong total {parsed['wrong_total']}, out of "
                      f"bounds values {oob.get('count', '?')}{'' if oob.get('ok', True) else ' FAILED'}"
                      f"{', ' + parsed['rank_errors'][0] if parsed['rank_errors'] else ''})", raw, duration_s,
                      threshold)
    if rc != 0:
        last = [ln for ln in (stderr or stdout).splitlines() if ln.strip()]
        return failed(check, f"{label} exited with {rc}" + (f": {last[-1].strip()}" if last else ""), raw,
                      duration_s, threshold)
    ranks = len(parsed["devices"]) or None
    details = {"ranks": ranks, "test": parsed.get("test"), "header": parsed.get("header"),
               "avg_bus_bandwidth_gbps": parsed.get("avg_bus_bandwidth_gbps"),
               "hosts": sorted({d["host"] for d in parsed["devices"]}), "warnings": parsed["warnings"][:20]}
    if ranks == 1:
        out = not_applicable(check, ONE_RANK)
        out["details"] = details
        return out
    rows = [r for r in parsed["rows"] if r.get("size")]
    large = [r for r in rows if r["size"] >= GIB]
    judged = large or ([max(rows, key=lambda r: r["size"])] if rows else [])
    peaks = [(h["busbw_gbps"], r["size"]) for r in judged for h in (r["out_of_place"], r["in_place"])
             if h and h.get("busbw_gbps") is not None]
    if not peaks:
        return failed(check, f"{label}: no result rows with a bus bandwidth", raw, duration_s, threshold)
    value, size = max(peaks)
    details["size_bytes"] = size
    details["sizes_judged"] = [r["size"] for r in judged]
    if value <= 0:
        out = failed(check, f"bus bandwidth 0 GB/s with {ranks or '?'} ranks: a broken setup (nccl-tests issues "
                     "#71, #249)", raw, duration_s, threshold)
        out["details"] = details
        return out
    out = judge(check, value, "GB/s", threshold, warn_band, duration_s, raw, keep_raw)
    where = "peak busbw over sizes >= 1 GiB" if large else "busbw at the largest size (below 1 GiB)"
    out["reason"] += f" ({where}, at {size} B; {ranks or '?'} ranks)"
    out["details"] = details
    return out


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "test": {"type": "str", "choices": list(TESTS), "default": "all_reduce"},
            "check_name": {"type": "str"},
            "binary_dir": {"type": "path", "default": "/opt/nccl-tests/build"},
            "gpus": {"type": "int"},
            "min_bytes": {"type": "str", "default": "1G"},
            "max_bytes": {"type": "str", "default": "16G"},
            "step_factor": {"type": "int", "default": 2},
            "iters": {"type": "int", "default": 20},
            "warmup_iters": {"type": "int", "default": 5},
            "check_iters": {"type": "int", "default": 1},
            "hosts": {"type": "list", "elements": "str", "default": []},
            "mpirun": {"type": "str", "default": "mpirun"},
            "np": {"type": "int"},
            "mpirun_args": {"type": "list", "elements": "str", "default": []},
            "env": {"type": "dict", "default": {}},
            "threshold": {"type": "dict"},
            "warn_band": {"type": "float", "default": 0.05},
            "retries": {"type": "int", "default": 1},
            "retry_cooldown_s": {"type": "float", "default": 10.0},
            "timeout_s": {"type": "int", "default": 1200},
            "keep_raw": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    p = module.params
    check = p["check_name"] or check_name(p["test"])
    if check not in CHECKS or CHECKS[check]["area"] != "nccl":
        module.fail_json(msg=f"check_name: {check!r} is not an nccl check; known: "
                             f"{', '.join(sorted(c for c, d in CHECKS.items() if d['area'] == 'nccl'))}")
    env = {str(k): str(v) for k, v in (p["env"] or {}).items()}
    try:
        lo, hi = parse_size(p["min_bytes"]), parse_size(p["max_bytes"])
    except ValueError as exc:
        module.fail_json(msg=f"nccl_bench: min_bytes/max_bytes: {exc}")
    problems = []
    if lo < 1 or lo > hi:
        problems.append(f"min_bytes ({p['min_bytes']}) must be at least 1 and at most max_bytes ({p['max_bytes']})")
    if p["step_factor"] < 2:
        problems.append(f"step_factor must be at least 2, got {p['step_factor']}")
    if p["iters"] < 1 or p["warmup_iters"] < 0 or p["check_iters"] < 0:
        problems.append("iters must be >= 1, warmup_iters and check_iters >= 0")
    if p["gpus"] is not None and p["gpus"] < 0:
        problems.append(f"gpus must be 0 (no GPU) or more, got {p['gpus']}")
    hosts = [h for h in p["hosts"] if h]
    np = p["np"] if p["np"] is not None else len(hosts)
    if p["np"] is not None and not hosts:
        problems.append("np needs hosts (the mpirun mode); for one node list it: hosts: [localhost]")
    if hosts and (np < 1 or np % len(hosts)):
        problems.append(f"np ({np}) must be a positive multiple of the number of hosts ({len(hosts)})")
    if problems:
        module.fail_json(msg="nccl_bench: " + "; ".join(problems))

    per_host = np // len(hosts) if hosts else 1
    gpus = p["gpus"]
    if gpus is None:
        gpus = count_gpus(env) // per_host
    ranks = gpus * (np if hosts else 1)
    binary = os.path.join(p["binary_dir"], f"{p['test']}_perf")
    bench = bench_args(binary, max(gpus, 1), p["min_bytes"], p["max_bytes"], p["step_factor"], p["iters"],
                       p["warmup_iters"], p["check_iters"])
    mpirun = shutil.which(p["mpirun"]) if hosts else None
    if hosts:
        cmd = mpirun_command(mpirun or p["mpirun"], hosts, np, exported_keys(env, dict(os.environ)),
                             p["mpirun_args"], bench)
    else:
        cmd = bench
    result = {"changed": False, "command": cmd, "ranks": ranks}
    if gpus < 1:
        why = "gpus is 0" if p["gpus"] is not None else f"{NVIDIA_GPUS} lists none and gpus is not set"
        module.exit_json(checks=[not_applicable(check, f"no GPU ({why})")], **result)
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        module.exit_json(checks=[not_applicable(check, f"nccl-tests is not built ({binary} not found)", BUILD_HINT)],
                         **result)
    if hosts and mpirun is None:
        module.exit_json(checks=[not_applicable(check, f"mpirun is not installed ({p['mpirun']} not found)",
                                                MPIRUN_HINT)], **result)
    if ranks == 1:
        module.exit_json(checks=[not_applicable(check, ONE_RANK)], **result)
    if module.check_mode:
        module.exit_json(checks=[not_applicable(check, "check mode: not run; would run: " + shlex.join(cmd))],
                         **result)
    run_env = {**os.environ, **env}

    def measure() -> dict:
        t0 = time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=run_env,
                                  timeout=p["timeout_s"])
        except subprocess.TimeoutExpired as exc:
            partial = exc.stdout.decode("utf-8", "replace") if isinstance(exc.stdout, bytes) else exc.stdout
            return failed(check, f"{os.path.basename(binary)} did not finish within {p['timeout_s']} s (hung "
                          "collective?)", partial or "", time.monotonic() - t0, p["threshold"])
        out = judge_nccl(check, proc.returncode, proc.stdout, proc.stderr, p["threshold"], p["warn_band"],
                         time.monotonic() - t0, p["keep_raw"], os.path.basename(binary))
        out["command"] = shlex.join(cmd)
        return out

    module.exit_json(checks=[with_retry(measure, p["retry_cooldown_s"], p["retries"])], **result)


if __name__ == "__main__":
    main()
