#!/usr/bin/python
# Copyright: baremetal-ai contributors
# Apache-2.0
"""Ansible module: build our CUDA benchmark (validation/gpubench/gpubench.cu) on the node and run it per GPU."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.bm_parsers import GPUBENCH_VALUES, ParseError, parse_gpubench_json, parse_nvsmi_csv
from ansible.module_utils.bm_validation import failed, judge, not_applicable, with_retry

DOCUMENTATION = r"""
---
module: gpu_bench
short_description: GEMM TFLOP/s, HBM copy bandwidth, pinned host<->device and peer-to-peer bandwidth per GPU
description:
  - Compiles C(gpubench.cu) (shipped in C(validation/gpubench/), copied to the node by C(playbooks/validate.yml))
    with the node's C(nvcc) for the GPUs' compute capability, linking cuBLASLt. The binary is named after a hash
    of the source, the flags and the nvcc version, so a second run reuses it (and reports no change).
  - Runs the binary once per GPU (C(CUDA_DEVICE_ORDER=PCI_BUS_ID), so indices match C(nvidia-smi)), bound with
    C(numactl) to the GPU's NUMA node when numactl is installed and the node is known; then once for every
    ordered GPU pair when C(p2p) is asked for and there are two or more GPUs.
  - Judges C(gemm_bf16_tflops), C(gemm_fp16_tflops), C(hbm_copy_tbps), C(h2d_gbps), C(d2h_gbps) per GPU (check
    names carry the GPU, e.g. C(gemm_bf16_tflops[gpu0])) and C(p2p_gbps) per pair (C(p2p_gbps[gpu0-gpu1]))
    against I(thresholds); host-link results also say which fraction of the PCIe link's theoretical rate
    (from nvidia-smi's maximum link generation and width) they reached.
  - A GPU whose check fails its floor is measured once more after I(retry_cooldown_s) (that test only); both
    attempts are recorded and a pass on the retry is a C(warn).
  - No NVIDIA GPU, no nvidia-smi or no nvcc makes every check C(not_applicable) with the reason and what to
    install. A compiler error or a CUDA error fails the checks concerned, with the output kept in C(raw).
  - In check mode nothing is compiled or run; C(commands) lists what would run.
options:
  source:
    description: Path of C(gpubench.cu) on the node.
    type: path
    default: /var/lib/baremetal-ai/gpubench/gpubench.cu
  build_dir:
    description: Where the compiled binary is kept (created when missing).
    type: path
    default: /var/lib/baremetal-ai/gpubench
  nvcc:
    description: nvcc to use; by default C(nvcc) on the PATH, then C(/usr/local/cuda/bin/nvcc).
    type: str
  arch:
    description: Compute capability to build for, e.g. C(90) (sm_90); by default read from nvidia-smi
      (C(compute_cap)), else nvcc's C(-arch=native).
    type: str
  nvcc_flags:
    description: Extra nvcc flags (e.g. C(-I)/C(-L) for a cuBLAS outside the toolkit).
    type: list
    elements: str
    default: []
  gpus:
    description: GPU indices to measure (nvidia-smi order); all by default.
    type: list
    elements: int
  tests:
    description: Which measurements to run.
    type: list
    elements: str
    choices: [gemm_bf16, gemm_fp16, copy, h2d, d2h, p2p]
    default: [gemm_bf16, gemm_fp16, copy, h2d, d2h, p2p]
  gemm_size:
    description: M = N = K of the GEMMs (a multiple of 256 keeps every tile size whole).
    type: int
    default: 8192
  iters:
    description: Operations per timed batch.
    type: int
    default: 20
  batches:
    description: Timed batches; the median batch is the result.
    type: int
    default: 10
  warmup_s:
    description: Seconds of warm-up GEMMs before timing (clocks leave idle).
    type: float
    default: 1.0
  duration_s:
    description: Burn-in (extended tier) - seconds each GEMM test keeps running; the result then also carries the
      first and last 10% windows, so a GPU that slows as it heats shows it. 0 = the normal short run.
    type: float
    default: 0
  copy_mib:
    description: Size of each device buffer of the copy test (well beyond the L2 cache).
    type: int
    default: 2048
  host_mib:
    description: Size of the pinned host transfers and the peer-to-peer transfers.
    type: int
    default: 512
  numa_bind:
    description: Run each GPU's measurement under C(numactl --cpunodebind=N --membind=N) for the GPU's NUMA node.
    type: bool
    default: true
  sysfs_root:
    description: Root of sysfs (tests use a fake tree) for the GPUs' NUMA nodes.
    type: path
    default: /sys
  thresholds:
    description: Threshold per check name (as C(validation_report mode=resolve) returns them); a measured check
      without one is a C(warn), never a pass.
    type: dict
    default: {}
  warn_band:
    description: Fraction above the floor that is still C(warn).
    type: float
    default: 0.05
  retries:
    description: Extra attempts for a test that fails its floor.
    type: int
    default: 1
  retry_cooldown_s:
    description: Seconds to wait before a retry.
    type: float
    default: 10
  timeout_s:
    description: Limit for one run of the binary (and for the compile).
    type: int
    default: 900
  keep_raw:
    description: Keep the program's JSON in passing checks too (failing ones always keep it).
    type: bool
    default: false
author: baremetal-ai contributors
"""

EXAMPLES = r"""
- name: Copy the benchmark source
  ansible.builtin.copy:
    src: "{{ playbook_dir }}/../validation/gpubench/gpubench.cu"
    dest: /var/lib/baremetal-ai/gpubench/gpubench.cu
    mode: "0644"

- name: Measure every GPU
  gpu_bench:
    thresholds: "{{ resolved.thresholds }}"
  register: gpu

- name: Ten-minute burn-in of the GEMMs only
  gpu_bench:
    tests: [gemm_bf16]
    duration_s: 600
"""

RETURN = r"""
checks:
  description: One result per GPU and measurement, and per GPU pair for p2p (bm_validation check dicts).
  returned: always
  type: list
  elements: dict
gpus:
  description: Per GPU, the device as the program saw it and its raw results (TFLOP/s batches, both copy methods).
  returned: when run
  type: list
  elements: dict
build:
  description: nvcc path and version, flags, binary, whether it was compiled in this run and how long it took.
  returned: when nvcc was found
  type: dict
commands:
  description: The commands run (or that would run in check mode).
  returned: always
  type: list
  elements: str
"""

CHECK_OF = {"gemm_bf16": "gemm_bf16_tflops", "gemm_fp16": "gemm_fp16_tflops", "copy": "hbm_copy_tbps",
            "h2d": "h2d_gbps", "d2h": "d2h_gbps", "p2p": "p2p_gbps"}
DEVICE_TESTS = ("gemm_bf16", "gemm_fp16", "copy", "h2d", "d2h")
QUERY = ["index", "pci.bus_id", "name", "compute_cap", "pcie.link.gen.max", "pcie.link.width.max"]
NVCC_FALLBACKS = ("/usr/local/cuda/bin/nvcc",)  # where the cuda role links the toolkit when PATH lacks it
CUDA_HINT = "install the CUDA toolkit (role cuda) so that nvcc and cuBLAS are on the node, or set nvcc"
# Per-lane transfer rate (GT/s) and line-code efficiency per PCIe generation.
PCIE_GT = {1: (2.5, 0.8), 2: (5.0, 0.8), 3: (8.0, 128 / 130), 4: (16.0, 128 / 130), 5: (32.0, 128 / 130),
           6: (64.0, 242 / 256)}


def pcie_gbps(gen: int | None, width: int | None) -> float | None:
    """Theoretical one-direction rate of a PCIe link in GB/s (before protocol overhead), or None if unknown."""
    if not gen or not width or gen not in PCIE_GT:
        return None
    gt, eff = PCIE_GT[gen]
    return round(gt * width * eff / 8, 2)


def check_name(test: str, subject: str) -> str:
    return f"{CHECK_OF[test]}[{subject}]"


def judge_result(result: dict, subject: str, thresholds: dict, warn_band: float, link_gbps: float | None = None,
                 raw: str | None = None, keep_raw: bool = False) -> dict:
    """One gpubench result entry (parsed) -> one judged check."""
    test = result["test"]
    key, unit = GPUBENCH_VALUES[test]
    out = judge(check_name(test, subject), result[key], unit, thresholds.get(CHECK_OF[test]), warn_band,
                duration_s=result.get("duration_s"), raw=raw, keep_raw=keep_raw)
    extra = {k: v for k, v in result.items() if k not in ("test", key, "duration_s", "tflops_batches")}
    out["details"] = extra
    if test in ("h2d", "d2h") and link_gbps:
        out["link_theoretical_gbps"] = link_gbps
        out["fraction_of_link"] = round(result[key] / link_gbps, 3)
        out["reason"] += f"; {out['fraction_of_link']:.0%} of the PCIe link's {link_gbps:g} GB/s"
    return out


def checks_from_document(doc: dict, thresholds: dict, warn_band: float, raw: str | None = None,
                         links: dict | None = None, keep_raw: bool = False) -> list[dict]:
    """All checks of one parsed gpubench document (a --device run or a --p2p run). Used by `baremetal inspect`."""
    links = links or {}
    if doc.get("error"):
        return [failed("gpubench", f"gpubench: {doc['error']}", raw)]
    out = []
    dev = doc.get("device") or {}
    for r in doc.get("results") or []:
        if r["test"] == "p2p":
            subject = f"gpu{r.get('src')}-gpu{r.get('dst')}"
            c = judge_result(r, subject, thresholds, warn_band, raw=raw, keep_raw=keep_raw)
            if not r.get("peer_access"):
                c["reason"] += "; no peer access between these GPUs (copied through the host)"
        else:
            idx = dev.get("index", 0)
            c = judge_result(r, f"gpu{idx}", thresholds, warn_band, links.get(idx), raw=raw, keep_raw=keep_raw)
        out.append(c)
    return out


def _find_nvcc(wanted: str | None) -> str | None:
    if wanted:
        return wanted if os.path.isabs(wanted) and os.access(wanted, os.X_OK) else shutil.which(wanted)
    return shutil.which("nvcc") or next((p for p in NVCC_FALLBACKS if os.access(p, os.X_OK)), None)


def _cublas_flags(nvcc: str, extra_flags: list[str] | None = None) -> list[str]:
    """-L/-rpath (and -l) for cuBLASLt: -L dirs given in nvcc_flags first, then the toolkit's own lib dirs, then
    the usual system places. A directory with only versioned files (libcublasLt.so.13) is linked by file name."""
    root = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
    dirs = [f[2:] for f in extra_flags or [] if f.startswith("-L") and len(f) > 2]
    dirs += [os.path.join(root, d) for d in ("lib64", "lib", "targets/x86_64-linux/lib", "targets/sbsa-linux/lib")]
    dirs += ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64"]
    for d in dirs:
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        lt = [n for n in names if n.startswith("libcublasLt.so")]
        if lt:
            lib = "-lcublasLt" if "libcublasLt.so" in lt else f"-l:{lt[-1]}"
            return [f"-L{d}", f"-Xlinker=-rpath={d}", lib]
    return ["-lcublasLt"]


def _numa_node(sysfs_root: str, bus_id: str) -> int | None:
    m = re.fullmatch(r"(?:[0-9a-fA-F]{4,8}:)?([0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])", bus_id.strip())
    if not m:
        return None
    short = m.group(1).lower()
    domain = bus_id.split(":")[0][-4:].lower() if bus_id.count(":") == 2 else "0000"
    try:
        with open(os.path.join(sysfs_root, "bus/pci/devices", f"{domain}:{short}", "numa_node")) as f:
            node = int(f.read().strip())
    except (OSError, ValueError):
        return None
    return node if node >= 0 else None


def _run(cmd: list[str], timeout: int, env: dict | None = None) -> tuple[int, str, str, float]:
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
        return p.returncode, p.stdout, p.stderr, time.monotonic() - t0
    except subprocess.TimeoutExpired as e:
        out = e.stdout if isinstance(e.stdout, str) else ""
        return 124, out, f"timed out after {timeout} s", float(timeout)


def _bench_args(p: dict) -> list[str]:
    return ["--gemm-size", str(p["gemm_size"]), "--iters", str(p["iters"]), "--batches", str(p["batches"]),
            "--warmup-s", str(p["warmup_s"]), "--duration-s", str(p["duration_s"]),
            "--copy-mib", str(p["copy_mib"]), "--host-mib", str(p["host_mib"])]


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "source": {"type": "path", "default": "/var/lib/baremetal-ai/gpubench/gpubench.cu"},
            "build_dir": {"type": "path", "default": "/var/lib/baremetal-ai/gpubench"},
            "nvcc": {"type": "str"},
            "arch": {"type": "str"},
            "nvcc_flags": {"type": "list", "elements": "str", "default": []},
            "gpus": {"type": "list", "elements": "int"},
            "tests": {"type": "list", "elements": "str", "choices": list(CHECK_OF),
                      "default": list(CHECK_OF)},
            "gemm_size": {"type": "int", "default": 8192},
            "iters": {"type": "int", "default": 20},
            "batches": {"type": "int", "default": 10},
            "warmup_s": {"type": "float", "default": 1.0},
            "duration_s": {"type": "float", "default": 0},
            "copy_mib": {"type": "int", "default": 2048},
            "host_mib": {"type": "int", "default": 512},
            "numa_bind": {"type": "bool", "default": True},
            "sysfs_root": {"type": "path", "default": "/sys"},
            "thresholds": {"type": "dict", "default": {}},
            "warn_band": {"type": "float", "default": 0.05},
            "retries": {"type": "int", "default": 1},
            "retry_cooldown_s": {"type": "float", "default": 10},
            "timeout_s": {"type": "int", "default": 900},
            "keep_raw": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    p = module.params
    for name, lo, hi in (("gemm_size", 256, 65536), ("iters", 1, 100000), ("batches", 1, 100000),
                         ("copy_mib", 1, 1 << 20), ("host_mib", 1, 1 << 20), ("retries", 0, 10),
                         ("timeout_s", 10, 7 * 86400)):
        if not lo <= p[name] <= hi:
            module.fail_json(msg=f"{name}: {p[name]} is outside {lo}..{hi}")
    for name in ("warmup_s", "duration_s", "retry_cooldown_s"):
        if p[name] < 0:
            module.fail_json(msg=f"{name}: must be >= 0, got {p[name]}")
    if p["arch"] is not None and not re.fullmatch(r"\d{2,3}[af]?|native", p["arch"]):
        module.fail_json(msg=f"arch: {p['arch']!r} is not a compute capability like 90, 90a or 'native'")
    tests = list(dict.fromkeys(p["tests"]))
    th, band = p["thresholds"], p["warn_band"]
    commands: list[str] = []

    def all_na(reason: str, hint: str | None = None, **extra) -> None:
        module.exit_json(changed=False, commands=commands, checks=[not_applicable(CHECK_OF[t], reason, hint)
                                                                   for t in tests], **extra)

    smi = shutil.which("nvidia-smi")
    if not smi:
        all_na("no NVIDIA driver on this node (nvidia-smi not found): no GPU to measure",
               "converge the nvidia_driver role on GPU nodes")
    q = [smi, f"--query-gpu={','.join(QUERY)}", "--format=csv,noheader,nounits"]
    commands.append(" ".join(q))
    rc, out, err, _ = _run(q, 60)
    if rc != 0 and "compute_cap" in (out + err):
        q = [smi, f"--query-gpu={','.join(f for f in QUERY if f != 'compute_cap')}", "--format=csv,noheader,nounits"]
        rc, out, err, _ = _run(q, 60)
    if rc != 0:
        if "No devices were found" in out + err or "couldn't communicate" in (out + err):
            all_na(f"nvidia-smi finds no GPU: {(out + err).strip()[:300]}")
        module.exit_json(changed=False, commands=commands, checks=[
            failed(CHECK_OF[t], f"nvidia-smi --query-gpu failed (rc {rc})", out + err) for t in tests])
    fields = [f for f in QUERY if f in q[1]]
    try:
        rows = parse_nvsmi_csv(out, fields)
    except ParseError as e:
        module.exit_json(changed=False, commands=commands,
                         checks=[failed(CHECK_OF[t], f"nvidia-smi --query-gpu: {e.message}", out) for t in tests])
    if not rows:
        all_na("nvidia-smi lists no GPU")
    by_index = {int(r["index"]): r for r in rows}
    gpus = p["gpus"] if p["gpus"] is not None else sorted(by_index)
    unknown = [g for g in gpus if g not in by_index]
    if unknown:
        module.fail_json(msg=f"gpus: {unknown} not on this node (nvidia-smi lists {sorted(by_index)})")
    links = {i: pcie_gbps(by_index[i].get("pcie.link.gen.max"), by_index[i].get("pcie.link.width.max"))
             for i in gpus}

    nvcc = _find_nvcc(p["nvcc"])
    if not nvcc:
        all_na("nvcc not found: the benchmark is compiled on the node", CUDA_HINT)
    arch = p["arch"]
    if arch is None:
        caps = {str(by_index[i].get("compute_cap") or "") for i in gpus}
        caps = {c.replace(".", "") for c in caps if re.fullmatch(r"\d+\.\d", c)}
        arch = caps.pop() if len(caps) == 1 else "native"
    arch_flags = ["-arch=native"] if arch == "native" else [f"-gencode=arch=compute_{arch},code=sm_{arch}"]
    compile_flags = ["-O3", "-std=c++17", *arch_flags]
    link_flags = [*_cublas_flags(nvcc, p["nvcc_flags"]), *p["nvcc_flags"]]
    flags = compile_flags + link_flags
    rc, vout, _verr, _ = _run([nvcc, "--version"], 60)
    nvcc_version = (re.search(r"release ([\d.]+), V([\d.]+)", vout) or [None, None])[0] if rc == 0 else None
    try:
        with open(p["source"], "rb") as f:
            source = f.read()
    except OSError as e:
        module.fail_json(msg=f"source: cannot read {p['source']}: {e.strerror}; copy validation/gpubench/gpubench.cu "
                             "to the node first (playbooks/validate.yml does)")
    digest = hashlib.sha256(source + "\0".join([*flags, vout]).encode()).hexdigest()[:16]
    binary = os.path.join(p["build_dir"], f"gpubench-{digest}")
    build_cmd = [nvcc, *compile_flags, "-o", binary, p["source"], *link_flags]
    build = {"nvcc": nvcc, "nvcc_version": nvcc_version, "arch": arch, "binary": binary, "compiled": False}
    env = dict(os.environ, CUDA_DEVICE_ORDER="PCI_BUS_ID")
    numactl = shutil.which("numactl") if p["numa_bind"] else None

    def device_cmd(i: int, which: list[str]) -> list[str]:
        node = _numa_node(p["sysfs_root"], str(by_index[i].get("pci.bus_id") or ""))
        bind = [numactl, f"--cpunodebind={node}", f"--membind={node}"] if numactl and node is not None else []
        return [*bind, binary, "--device", str(i), "--tests", ",".join(which), *_bench_args(p)]

    dev_tests = [t for t in tests if t in DEVICE_TESTS]
    run_p2p = "p2p" in tests and len(gpus) > 1
    plan = [device_cmd(i, dev_tests) for i in gpus if dev_tests]
    if run_p2p:
        plan.append([binary, "--p2p", "--host-mib", str(p["host_mib"]), "--batches", str(p["batches"])])
    if not os.path.exists(binary):
        commands.append(" ".join(build_cmd))
    commands += [" ".join(c) for c in plan]
    if module.check_mode:
        all_na("check mode: not run", build=build)

    changed = False
    if not os.path.exists(binary):
        os.makedirs(p["build_dir"], mode=0o755, exist_ok=True)
        tmp = f"{binary}.tmp{os.getpid()}"
        cmd = [c if c != binary else tmp for c in build_cmd]
        rc, cout, cerr, secs = _run(cmd, p["timeout_s"])
        build.update(compiled=True, compile_s=round(secs, 1))
        if rc != 0:
            module.exit_json(changed=False, commands=commands, build=build, checks=[
                failed(CHECK_OF[t], f"nvcc failed (rc {rc}); compiler output kept", f"$ {' '.join(cmd)}\n{cout}{cerr}")
                for t in tests])
        os.replace(tmp, binary)
        changed = True

    def measure(cmd: list[str]) -> tuple[dict | None, str, str | None]:
        rc, out, err, _secs = _run(cmd, p["timeout_s"], env)
        raw = f"$ {' '.join(cmd)}\n{out}{err}"
        try:
            doc = parse_gpubench_json(out)
        except ParseError as e:
            return None, raw, f"gpubench output unreadable (rc {rc}): {e.message}"
        if doc.get("error"):
            return None, raw, f"gpubench: {doc['error']}"
        if rc != 0:
            return None, raw, f"gpubench exited with rc {rc}"
        return doc, raw, None

    checks: list[dict] = []
    gpu_docs: list[dict] = []
    for i in gpus:
        if not dev_tests:
            break
        doc, raw, problem = measure(device_cmd(i, dev_tests))
        if problem:
            checks += [failed(f"{CHECK_OF[t]}[gpu{i}]", problem, raw) for t in dev_tests]
            continue
        gpu_docs.append({k: doc.get(k) for k in ("device", "results", "cuda_runtime", "cuda_driver", "cublaslt")})
        first = {r["test"]: r for r in doc["results"]}
        for t in dev_tests:
            calls = {"n": 0}

            def one(t=t, calls=calls, raw=raw, i=i, first=first) -> dict:
                calls["n"] += 1
                if calls["n"] == 1 and t in first:
                    return judge_result(first[t], f"gpu{i}", th, band, links.get(i), raw, p["keep_raw"])
                d, r_raw, prob = measure(device_cmd(i, [t]))
                if prob:
                    return failed(f"{CHECK_OF[t]}[gpu{i}]", prob, r_raw)
                res = next((r for r in d["results"] if r["test"] == t), None)
                if res is None:
                    return failed(f"{CHECK_OF[t]}[gpu{i}]", f"gpubench returned no {t} result", r_raw)
                return judge_result(res, f"gpu{i}", th, band, links.get(i), r_raw, p["keep_raw"])

            checks.append(with_retry(one, p["retry_cooldown_s"], p["retries"]))
    if "p2p" in tests:
        if not run_p2p:
            checks.append(not_applicable("p2p_gbps", f"{len(gpus)} GPU measured: peer-to-peer needs two or more"))
        else:
            doc, raw, problem = measure(plan[-1])
            if problem:
                checks.append(failed("p2p_gbps", problem, raw))
            else:
                checks += checks_from_document(doc, th, band, raw, keep_raw=p["keep_raw"])
    module.exit_json(changed=changed, commands=commands, build=build, gpus=gpu_docs, checks=checks)


if __name__ == "__main__":
    main()
