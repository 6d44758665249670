"""Run one phase of the pilot on this node and write its JSON; ``assemble`` merges the phases into the result.

  pilot_run.py train     --work-dir W --checkpoint-dir C [model options] --steps N --checkpoint-every K
  pilot_run.py recovery  --work-dir W --checkpoint-dir C [model options] --steps N --checkpoint-every K --kill-at S
  pilot_run.py inference --work-dir W --checkpoint-dir C [model options] --requests R --concurrency N
  pilot_run.py assemble  --work-dir W --run-id ID --host NAME --out result.json

Each phase writes W/phase-<name>.json. GPU utilization is sampled with ``nvidia-smi`` in the background while a
phase runs; without nvidia-smi or a GPU it says "not applicable" and why, never a number.
Exit status: 0 when the phase ran and its own checks passed, 1 when a check failed (the JSON says which),
2 when it could not run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from pilot_recovery import DEFAULT_RTOL, judge_recovery
from pilot_train import add_model_args

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA_VERSION = 1
NO_GPU = "not applicable: no GPU"


# --- statistics (pure) ------------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default method); q in [0, 100]."""
    xs = sorted(values)
    if not xs:
        raise ValueError("no values")
    k = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def distribution(values: list[float]) -> dict:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / n)
    return {"n": n, "mean": mean, "p50": percentile(values, 50), "p95": percentile(values, 95),
            "p99": percentile(values, 99), "max": max(values), "min": min(values), "stdev": sd,
            "cv": sd / mean if mean else None}


# --- GPU utilization --------------------------------------------------------------------------------------

def parse_smi_samples(lines: list[str]) -> dict[str, list[float]]:
    """'index, utilization.gpu' CSV lines (noheader, nounits) -> {index: [percent, ...]}; junk lines skipped."""
    out: dict[str, list[float]] = {}
    for line in lines:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 2:
            continue
        try:
            out.setdefault(parts[0], []).append(float(parts[1]))
        except ValueError:
            continue
    return out


def summarize_utilization(samples: dict[str, list[float]], interval_ms: int, reason: str | None) -> dict:
    if reason:
        return {"applicable": False, "reason": reason}
    if not any(samples.values()):
        return {"applicable": False, "reason": "not applicable: nvidia-smi returned no samples"}
    per_gpu = {i: {"mean_pct": sum(v) / len(v), "peak_pct": max(v), "samples": len(v)} for i, v in samples.items()
               if v}
    busiest = max(per_gpu, key=lambda i: per_gpu[i]["mean_pct"])
    return {"applicable": True, "source": f"nvidia-smi utilization.gpu every {interval_ms} ms",
            "gpu": busiest, "mean_pct": per_gpu[busiest]["mean_pct"],
            "peak_pct": max(g["peak_pct"] for g in per_gpu.values()), "per_gpu": per_gpu}


class GpuSampler:
    """``nvidia-smi -lms`` in the background; ``stop()`` returns the summary."""

    def __init__(self, interval_ms: int = 200) -> None:
        self.interval_ms, self.lines, self.proc, self.reason = interval_ms, [], None, None

    def start(self) -> GpuSampler:
        smi = shutil.which("nvidia-smi")
        if not smi:
            self.reason = f"{NO_GPU} (nvidia-smi not found)"
            return self
        probe = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30, check=False)
        if probe.returncode != 0 or "GPU" not in probe.stdout:
            self.reason = f"{NO_GPU} (nvidia-smi -L: {(probe.stdout + probe.stderr).strip()[:200]})"
            return self
        self.proc = subprocess.Popen([smi, "--query-gpu=index,utilization.gpu", "--format=csv,noheader,nounits",
                                      f"-lms={self.interval_ms}"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self._reader.start()
        return self

    def stop(self) -> dict:
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self._reader.join(timeout=5)
        return summarize_utilization(parse_smi_samples(self.lines), self.interval_ms, self.reason)


def gpu_inventory() -> dict:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return {"applicable": False, "reason": f"{NO_GPU} (nvidia-smi not found)", "gpus": []}
    r = subprocess.run([smi, "--query-gpu=index,name,memory.total,driver_version,pci.bus_id",
                        "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=30, check=False)
    gpus = []
    for line in r.stdout.splitlines():
        p = [x.strip() for x in line.split(",")]
        if len(p) == 5 and p[0].isdigit():
            gpus.append({"index": int(p[0]), "name": p[1], "memory_mib": float(p[2]) if p[2].replace(".", "").isdigit()
                         else None, "driver": p[3], "pci_bus_id": p[4]})
    if not gpus:
        return {"applicable": False, "reason": f"{NO_GPU} (nvidia-smi: {(r.stdout + r.stderr).strip()[:200]})",
                "gpus": []}
    return {"applicable": True, "gpus": gpus}


def environment() -> dict:
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
    except OSError:
        pass
    mem_kib = None
    try:
        with open("/proc/meminfo") as f:
            mem_kib = next((int(ln.split()[1]) for ln in f if ln.startswith("MemTotal:")), None)
    except OSError:
        pass
    virt = None
    if shutil.which("systemd-detect-virt"):
        virt = subprocess.run(["systemd-detect-virt"], capture_output=True, text=True, check=False).stdout.strip()
    return {"hostname": platform.node(), "kernel": platform.release(), "python": platform.python_version(),
            "cpu_model": cpu, "cpu_count": os.cpu_count(), "memory_gib": round(mem_kib / 2**20, 1) if mem_kib else None,
            "virtualization": virt, "gpu": gpu_inventory()}


# --- running the training job -----------------------------------------------------------------------------

def model_argv(args: argparse.Namespace) -> list[str]:
    out = []
    for name in ("vocab", "context", "dim", "hidden", "batch", "positions", "seed", "lr", "backend"):
        out += [f"--{name}", str(getattr(args, name))]
    return out


def train_cmd(args: argparse.Namespace, ckpt_dir: str, resume: bool) -> list[str]:
    cmd = [sys.executable, "-u", os.path.join(HERE, "pilot_train.py"), *model_argv(args), "--steps", str(args.steps),
           "--checkpoint-dir", ckpt_dir, "--checkpoint-every", str(args.checkpoint_every)]
    return cmd + (["--resume"] if resume else [])


def run_train(cmd: list[str], kill_at: int | None = None, timeout: float = 900) -> dict:
    """Run the job, read its JSON lines; SIGKILL it as soon as it has logged step ``kill_at``."""
    events: list[dict] = []
    killed = False
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HERE)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            ev = json.loads(line)
            events.append(ev)
            if kill_at is not None and not killed and ev.get("event") == "step" and ev["step"] >= kill_at:
                os.kill(proc.pid, signal.SIGKILL)
                killed = True  # keep reading: lines already written before the kill landed are real steps
        rc = proc.wait()
        stderr = proc.stderr.read()
    finally:
        timer.cancel()
    return {"events": events, "returncode": rc, "killed": killed, "stderr": stderr[-2000:],
            "wall_s": time.monotonic() - t0}


def steps_of(events: list[dict]) -> list[dict]:
    return [{"step": e["step"], "loss": e["loss"], "time_s": e["time_s"]} for e in events if e["event"] == "step"]


def start_event(events: list[dict]) -> dict:
    return next((e for e in events if e["event"] == "start"), {})


def phase_train(args: argparse.Namespace) -> tuple[dict, bool]:
    ckpt_dir = os.path.join(args.checkpoint_dir, "train")
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    sampler = GpuSampler(args.gpu_sample_ms).start()
    run = run_train(train_cmd(args, ckpt_dir, resume=False), timeout=args.timeout)
    gpu = sampler.stop()
    steps = steps_of(run["events"])
    if run["returncode"] != 0 or len(steps) != args.steps:
        raise RuntimeError(f"training job failed (exit {run['returncode']}): {run['stderr']}")
    start = start_event(run["events"])
    measured = steps[args.warmup_steps:] or steps
    times = [s["time_s"] for s in measured]
    dist = distribution(times)
    tokens_per_step = args.batch * args.positions
    ckpts = [e for e in run["events"] if e["event"] == "checkpoint"]
    losses = [s["loss"] for s in steps]
    # "Fell": the mean of the last 10 % of steps is below the mean of the first 10 % (single steps are noisy).
    k = max(1, len(losses) // 10)
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    out = {
        "status": "ran", "backend": start.get("backend"), "config": start.get("config"), "steps": args.steps,
        "warmup_steps_excluded": len(steps) - len(measured), "tokens_per_step": tokens_per_step,
        "step_time_s": dist, "tokens_per_s": tokens_per_step * len(times) / sum(times),
        "loss": {"first": losses[0], "last": losses[-1], "min": min(losses), "mean_first_10pct": first,
                 "mean_last_10pct": last, "fell": last < first, "per_step": losses},
        "step_time_per_step_s": [s["time_s"] for s in steps],
        "checkpoints": {"every": args.checkpoint_every, "count": len(ckpts), "dir": ckpt_dir,
                        "bytes": ckpts[-1]["bytes"] if ckpts else None,
                        "write_s": distribution([c["write_s"] for c in ckpts]) if ckpts else None},
        "gpu_utilization": gpu, "wall_s": run["wall_s"],
    }
    return out, out["loss"]["fell"]


def phase_recovery(args: argparse.Namespace) -> tuple[dict, bool]:
    if not 0 < args.kill_at < args.steps or args.kill_at <= args.checkpoint_every:
        raise ValueError(f"--kill-at {args.kill_at} must lie after the first checkpoint ({args.checkpoint_every}) "
                         f"and before the last step ({args.steps})")
    ckpt_dir = os.path.join(args.checkpoint_dir, "recovery")
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    first = run_train(train_cmd(args, ckpt_dir, resume=False), kill_at=args.kill_at, timeout=args.timeout)
    ckpts_before = [e for e in first["events"] if e["event"] == "checkpoint"]
    second = run_train(train_cmd(args, ckpt_dir, resume=True), timeout=args.timeout)
    if second["returncode"] != 0:
        raise RuntimeError(f"resumed job failed (exit {second['returncode']}): {second['stderr']}")
    start = start_event(second["events"])
    resumed = start.get("resumed_from")
    backend = start.get("backend") or {}
    rtol = args.loss_rtol if args.loss_rtol is not None else DEFAULT_RTOL.get(backend.get("name"), 1e-3)
    reference = None
    ref_file = os.path.join(args.work_dir, "phase-train.json")
    if os.path.exists(ref_file):
        with open(ref_file) as f:
            ref = json.load(f)
        if ref.get("config") == start.get("config") and ref.get("steps") == args.steps:
            reference = [{"step": i + 1, "loss": v} for i, v in enumerate(ref["loss"]["per_step"])]
    pre = steps_of(first["events"])
    post = steps_of(second["events"])
    verdict = judge_recovery(pre, post, resumed["step"] if resumed else None, args.steps, rtol,
                             reference=reference)
    out = {
        "status": "ran", "backend": backend, "config": start.get("config"), "steps": args.steps,
        "checkpoint_every": args.checkpoint_every, "checkpoint_dir": ckpt_dir, "kill_requested_at_step": args.kill_at,
        "signal": "SIGKILL", "killed_run_exit": first["returncode"], "killed": first["killed"],
        "checkpoints_before_kill": [c["step"] for c in ckpts_before],
        "resumed_from": resumed, **verdict,
        "pre_kill": [{"step": s["step"], "loss": s["loss"]} for s in pre],
        "post_resume": [{"step": s["step"], "loss": s["loss"]} for s in post],
        "wall_s": first["wall_s"] + second["wall_s"],
    }
    return out, verdict["verdict"] == "pass"


# --- inference --------------------------------------------------------------------------------------------

def _request(port: int, body: bytes, timeout: float) -> tuple[float, int]:
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/generate", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return time.perf_counter() - t0, resp.status
    finally:
        conn.close()


def processes_with(marker: str) -> list[int]:
    """PIDs whose command line contains ``marker`` (this process excluded)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd and int(pid) != os.getpid():
            found.append(int(pid))
    return found


def phase_inference(args: argparse.Namespace) -> tuple[dict, bool]:
    marker = f"baremetal-ai-pilot-serve-{args.run_id or os.getpid()}"
    ckpt = os.path.join(args.checkpoint_dir, "train")
    cmd = [sys.executable, "-u", os.path.join(HERE, "pilot_serve.py"), *model_argv(args), "--port", str(args.port),
           "--marker", marker, *(["--checkpoint-dir", ckpt] if os.path.isdir(ckpt) else [])]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=HERE)
    server: dict = {"address": "127.0.0.1", "pid": proc.pid, "marker": marker}
    try:
        ready = {}
        reader = threading.Thread(target=lambda: ready.update(json.loads(proc.stdout.readline() or "{}")),
                                  daemon=True)
        reader.start()
        reader.join(timeout=60)
        if "port" not in ready:
            raise RuntimeError(f"the server did not start: {proc.stderr.read()[-2000:] if proc.poll() else 'timeout'}")
        port = ready["port"]
        server.update(port=port, weights=ready.get("weights"), backend=ready.get("backend"))
        rng = random.Random(args.seed)
        bodies = [json.dumps({"context": [rng.randrange(args.vocab) for _ in range(args.context)],
                              "max_new_tokens": args.new_tokens}).encode() for _ in range(args.requests)]
        for b in bodies[:args.warmup_requests]:
            _request(port, b, args.request_timeout)
        sampler = GpuSampler(args.gpu_sample_ms).start()
        latencies: list[float] = []
        errors: list[str] = []

        def one(body: bytes) -> None:
            try:
                dt, status = _request(port, body, args.request_timeout)
            except OSError as exc:
                errors.append(str(exc))
                return
            if status == 200:
                latencies.append(dt)
            else:
                errors.append(f"HTTP {status}")

        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            list(pool.map(one, bodies))
        wall = time.perf_counter() - t0
        gpu = sampler.stop()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
                server["stopped_by"] = "SIGTERM"
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                server["stopped_by"] = "SIGKILL (did not stop within 15 s of SIGTERM)"
        server["exit_code"] = proc.returncode
        server["left_running"] = processes_with(marker)
    lat_ms = distribution([x * 1000 for x in latencies]) if latencies else None
    out = {
        "status": "ran", "backend": server.get("backend"), "requests": args.requests,
        "warmup_requests_excluded": args.warmup_requests, "concurrency": args.concurrency,
        "new_tokens_per_request": args.new_tokens, "ok": len(latencies), "errors": len(errors),
        "error_samples": errors[:5], "latency_ms": lat_ms, "throughput_rps": len(latencies) / wall if wall else None,
        "tokens_per_s": len(latencies) * args.new_tokens / wall if wall else None, "wall_s": wall,
        "gpu_utilization": gpu, "server": server,
    }
    ok = not errors and not server["left_running"] and lat_ms is not None
    return out, ok


# --- assembling the result --------------------------------------------------------------------------------

PHASES = ("training", "recovery", "inference")
PHASE_FILE = {"training": "phase-train.json", "recovery": "phase-recovery.json", "inference": "phase-inference.json"}


def assemble(work_dir: str, run_id: str, host: str, label: str | None) -> dict:
    result: dict = {"schema_version": SCHEMA_VERSION, "kind": "baremetal-ai pilot result", "run_id": run_id,
                    "host": host, "environment": {"label": label or host, **environment()}}
    backend = config = None
    for phase in PHASES:
        path = os.path.join(work_dir, PHASE_FILE[phase])
        if os.path.exists(path):
            with open(path) as f:
                data = json.load(f)
            if backend is None and isinstance(data.get("backend"), dict):
                backend = data["backend"]
            config = config or data.get("config")
            result[phase] = data
        else:
            result[phase] = {"status": "not run", "reason": "phase not selected (tags) or check mode"}
    result["backend"] = backend
    result["config"] = config
    result["verdicts"] = {
        "training_loss_fell": result["training"].get("loss", {}).get("fell"),
        "recovery": result["recovery"].get("verdict"),
        "inference_ok": (result["inference"].get("errors") == 0 and not result["inference"]["server"]["left_running"])
        if result["inference"].get("status") == "ran" else None,
    }
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("phase", choices=["train", "recovery", "inference", "assemble"])
    p.add_argument("--work-dir", required=True)
    p.add_argument("--checkpoint-dir", default=None)
    p.add_argument("--run-id", default="")
    add_model_args(p)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--warmup-steps", type=int, default=3, help="first steps left out of the step-time statistics")
    p.add_argument("--checkpoint-every", type=int, default=10)
    p.add_argument("--kill-at", type=int, default=55)
    p.add_argument("--loss-rtol", type=float, default=None, help="default: by backend (see pilot_recovery.py)")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--warmup-requests", type=int, default=5)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--request-timeout", type=float, default=30)
    p.add_argument("--port", type=int, default=0, help="0: a free port picked by the kernel")
    p.add_argument("--gpu-sample-ms", type=int, default=200)
    p.add_argument("--timeout", type=float, default=900, help="seconds one training run may take")
    p.add_argument("--host", default=platform.node())
    p.add_argument("--label", default=None, help="environment label in the result (default: the host)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    os.makedirs(args.work_dir, exist_ok=True)

    if args.phase == "assemble":
        result = assemble(args.work_dir, args.run_id, args.host, args.label)
        with open(args.out or os.path.join(args.work_dir, "result.json"), "w") as f:
            json.dump(result, f, indent=2)
        print(json.dumps(result["verdicts"]))
        return 0
    if not args.checkpoint_dir:
        p.error("--checkpoint-dir is required for this phase")
    fn = {"train": phase_train, "recovery": phase_recovery, "inference": phase_inference}[args.phase]
    try:
        data, ok = fn(args)
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"pilot {args.phase}: {exc}", file=sys.stderr)
        return 2
    with open(os.path.join(args.work_dir, f"phase-{args.phase}.json"), "w") as f:
        json.dump(data, f, indent=2)
    summary = {k: data.get(k) for k in ("tokens_per_s", "verdict", "throughput_rps") if k in data}
    print(json.dumps({"phase": args.phase, "ok": ok, **summary}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
