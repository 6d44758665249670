#!/usr/bin/python
# Copyright: baremetal-ai contributors
# Apache-2.0
"""Ansible module: RDMA write bandwidth to a peer with perftest's ib_write_bw (client), or the peer's short-lived
perftest server; optionally ib_read_lat latency, reported and not judged."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.bm_parsers import ParseError, parse_perftest
from ansible.module_utils.bm_proc import listening
from ansible.module_utils.bm_validation import failed, judge, not_applicable, with_link_speed, with_retry

DOCUMENTATION = r"""
---
module: rdma_bench
short_description: RDMA write bandwidth between two nodes with perftest ib_write_bw, judged against the link
description:
  - C(mode=server) (run on the peer, e.g. with C(delegate_to)) starts the perftest server(s) in their own session
    under C(timeout I(server_ttl_s)), so they disappear even if the play dies. A perftest server serves one run and
    exits, so it runs in a loop (a failed measurement is retried once against the same peer). C(ib_write_bw)
    listens on TCP I(port), C(ib_read_lat) (with I(latency)) on I(port)+1. It returns once the ports listen.
  - C(mode=client) runs C(ib_write_bw ... I(server)) with the same size, duration and queue-pair options (perftest
    needs them equal on both sides), parses the output with C(bm_parsers.parse_perftest) and judges
    C(rdma_write_bw_gbps), the B(BW average of the largest message size row), in Gbit/s (C(--report_gbits); perftest's
    MB/s figures are converted). A C(fraction_of_link) threshold uses I(link_gbps), else the port's C(rate) from
    sysfs (C(/sys/class/infiniband/<dev>/ports/<port>/rate)).
  - With I(latency), the client also runs C(ib_read_lat) and returns its numbers (t_typical is the median, half
    the round trip) in C(latency); they are not judged (no time unit in the thresholds yet).
  - C(mode=stop) stops the server started by C(mode=server) on I(port) (pid file, checked to be this module's).
  - C(not_applicable) when there is no RDMA device (no entry in C(/sys/class/infiniband)), when perftest is not
    installed (with the install command) and when there is no peer (I(server) not given). A named I(device) that
    does not exist, a port that is not ACTIVE, an exit status other than 0 and unparseable output fail the check
    with the output attached. In check mode nothing runs or starts; C(command) says what would.
options:
  mode:
    description: client, server or stop.
    type: str
    choices: [client, server, stop]
    default: client
  server:
    description: Address of the peer running the server (its fabric address). Without it the client reports
      C(not_applicable) (single node, or no peer with an RDMA device).
    type: str
  device:
    description: RDMA device (C(-d), e.g. C(mlx5_0)). Default the first device whose I(ib_port) is ACTIVE, else
      the first device.
    type: str
  ib_port:
    description: Port of the device (C(-i)).
    type: int
    default: 1
  gid_index:
    description: GID index (C(-x)). Default the RoCEv2 GID index that I(rdma_facts) reports for the device's port;
      InfiniBand ports need none.
    type: int
  rdma_facts:
    description: The C(rdma) facts of C(rdma_facts) (C(ansible_facts.rdma), or the registered result), for the GID
      index and the link rate.
    type: dict
  port:
    description: TCP port perftest uses to exchange connection data (C(-p)); C(ib_read_lat) uses I(port)+1.
    type: int
    default: 18515
  size:
    description: Message size in bytes (C(-s)).
    type: int
    default: 8388608
  all_sizes:
    description: Run every size from 2 bytes to 8 MiB (C(-a)) instead of I(size); judged on the largest. Uses
      I(iterations) (perftest's default when unset), not I(duration_s).
    type: bool
    default: false
  duration_s:
    description: Seconds of measurement (C(-D)); ignored when I(iterations) is given or with I(all_sizes).
    type: int
    default: 5
  iterations:
    description: Iterations per size (C(-n)) instead of a duration.
    type: int
  qps:
    description: Queue pairs (C(-q)).
    type: int
    default: 1
  report_gbits:
    description: Report Gbit/s (C(--report_gbits)); otherwise perftest's MB/s (2^20 bytes) are converted.
    type: bool
    default: true
  use_cuda:
    description: GPU index for GPUDirect RDMA (C(--use_cuda=N)); needs perftest built with CUDA. Both sides.
    type: int
  latency:
    description: Also measure latency with C(ib_read_lat) (server - start its server too; client - run it after
      the bandwidth test). Reported in C(latency), not judged.
    type: bool
    default: false
  latency_iterations:
    description: Iterations of C(ib_read_lat) (C(-n)).
    type: int
    default: 1000
  link_gbps:
    description: Link rate to use instead of the port's C(rate) (Gbit/s).
    type: float
  threshold:
    description: Threshold for C(rdma_write_bw_gbps) (C(validation_report mode=resolve) output); none is a warn.
    type: dict
  warn_band:
    description: Fraction above the floor that is still C(warn).
    type: float
    default: 0.05
  retries:
    description: Extra attempts when the measurement fails its floor or the connection fails.
    type: int
    default: 1
  retry_cooldown_s:
    description: Seconds to wait before a retry (the peer's server restarts in between).
    type: float
    default: 5
  server_ttl_s:
    description: The server exits after this many seconds whatever happens (server mode).
    type: int
    default: 300
  keep_raw:
    description: Keep perftest's output in a passing check too.
    type: bool
    default: false
  sysfs_root:
    description: Directory that holds C(sys/) (tests point it at a fake tree).
    type: path
    default: /
  ib_write_bw:
    description: ib_write_bw executable.
    type: str
    default: ib_write_bw
  ib_read_lat:
    description: ib_read_lat executable.
    type: str
    default: ib_read_lat
author: baremetal-ai contributors
"""

EXAMPLES = r"""
- name: Start the perftest server on the next node
  rdma_bench:
    mode: server
    rdma_facts: "{{ hostvars[peer]._validation_rdma_facts }}"
  delegate_to: "{{ peer }}"

- name: Measure RDMA write bandwidth to the next node's fabric address
  rdma_bench:
    server: "{{ hostvars[peer].node_fabric_address }}"
    rdma_facts: "{{ _validation_rdma_facts }}"
    threshold: "{{ thresholds.rdma_write_bw_gbps | default(omit) }}"
  register: rdma

- name: Stop the server
  rdma_bench:
    mode: stop
  delegate_to: "{{ peer }}"
"""

RETURN = r"""
checks:
  description: The C(rdma_write_bw_gbps) check (client mode; empty list in server/stop mode).
  returned: always
  type: list
  elements: dict
  sample:
    - check: rdma_write_bw_gbps
      area: rdma
      value: 392.0
      unit: Gbit/s
      verdict: pass
      reason: "392 Gbit/s >= 399 Gbit/s (floor 380 + 5%) ..."
command:
  description: The ib_write_bw command line (run, or that would run); in server mode the server's.
  returned: always
  type: list
  elements: str
device:
  description: RDMA device, port, its state, link layer, rate (Gbit/s) and the GID index used.
  returned: client mode
  type: dict
  sample: {name: mlx5_0, port: 1, state: ACTIVE, link_layer: Ethernet, rate_gbps: 400.0, gid_index: 3}
latency:
  description: ib_read_lat numbers at its message size (us), or C(error) and C(raw) when it failed.
  returned: client mode with latency, when the bandwidth test ran
  type: dict
  sample: {bytes: 2, iterations: 1000, t_typical_us: 1.71, t_avg_us: 1.73, p99_us: 2.14, p99_9_us: 4.96}
pid:
  description: Process id of the server's process group (server mode).
  returned: server mode, when started
  type: int
"""

CHECK = "rdma_write_bw_gbps"
INSTALL_HINT = "apt install perftest  (dnf install perftest on RHEL-family nodes)"
PIDFILE = "/run/baremetal-validation-perftest-{port}.pid"
LOGFILE = "/run/baremetal-validation-perftest-{port}.log"
MARKER = "baremetal-rdma-bench"
_RATE_RE = re.compile(r"([\d.]+)\s*Gb/sec")


def rate_gbps(rate: str | None) -> float | None:
    """`400 Gb/sec (4X NDR)` (sysfs rate, ibv_devinfo) -> 400.0."""
    m = _RATE_RE.search(rate or "")
    return float(m.group(1)) if m else None


def bw_command(exe: str, device: str, ib_port: int, gid_index: int | None, port: int, size: int, all_sizes: bool,
               duration_s: int, iterations: int | None, qps: int, report_gbits: bool, use_cuda: int | None,
               server: str | None = None) -> list[str]:
    """ib_write_bw's command line; the server side is the same without the address."""
    cmd = [exe, "-d", device, "-i", str(ib_port)]
    if gid_index is not None:
        cmd += ["-x", str(gid_index)]
    cmd += ["-p", str(port)]
    cmd += ["-a"] if all_sizes else ["-s", str(size)]
    if iterations is not None:
        cmd += ["-n", str(iterations)]
    elif not all_sizes:
        cmd += ["-D", str(duration_s)]
    cmd += ["-q", str(qps)]
    if report_gbits:
        cmd.append("--report_gbits")
    if use_cuda is not None:
        cmd.append(f"--use_cuda={use_cuda}")
    cmd.append("-F")
    return cmd + ([server] if server else [])


def lat_command(exe: str, device: str, ib_port: int, gid_index: int | None, port: int, iterations: int,
                server: str | None = None) -> list[str]:
    cmd = [exe, "-d", device, "-i", str(ib_port)]
    if gid_index is not None:
        cmd += ["-x", str(gid_index)]
    cmd += ["-p", str(port), "-n", str(iterations), "-F"]
    return cmd + ([server] if server else [])


def server_command(bw: list[str], lat: list[str] | None, ttl_s: int) -> list[str]:
    """The server(s) in a respawn loop (perftest serves one run, then exits) under timeout."""
    def loop(cmd: list[str]) -> str:
        return f"while :; do {shlex.join(cmd)} || sleep 1; done"

    script = f": {MARKER}; " + (f"({loop(bw)}) & ({loop(lat)}) & wait" if lat else loop(bw))
    return ["timeout", "--kill-after=5", str(ttl_s), "sh", "-c", script]


def judge_perftest(rc: int, stdout: str, stderr: str, threshold: dict | None, warn_band: float,
                   duration_s: float | None, keep_raw: bool = False) -> dict:
    """The check from ib_write_bw's exit status and output: BW average of the largest message, Gbit/s."""
    raw = (stdout + ("\n--- stderr ---\n" + stderr if stderr.strip() else "")).strip()
    try:
        parsed = parse_perftest(stdout)
    except ParseError as exc:
        return failed(CHECK, f"ib_write_bw exited with {rc}, output not parseable: {exc.message}", raw, duration_s,
                      threshold)
    if rc != 0:
        last = [ln for ln in (stderr or stdout).splitlines() if ln.strip()]
        return failed(CHECK, f"ib_write_bw exited with {rc}" + (f": {last[-1].strip()}" if last else ""), raw,
                      duration_s, threshold)
    if parsed["kind"] != "bw":
        return failed(CHECK, f"perftest printed a {parsed['kind']} table, not bandwidth ({parsed.get('test')})", raw,
                      duration_s, threshold)
    if parsed.get("test") and "write" not in parsed["test"].lower():
        return failed(CHECK, f"perftest printed {parsed['test']}, not ib_write_bw output", raw, duration_s, threshold)
    largest = max(parsed["rows"], key=lambda r: r.get("bytes") or 0)
    out = judge(CHECK, parsed["bw_average_gbps"], "Gbit/s", threshold, warn_band, duration_s, raw, keep_raw)
    out["reason"] += f" (BW average at {largest.get('bytes')} B)"
    out["details"] = {"bytes": largest.get("bytes"), "iterations": largest.get("iterations"),
                      "bw_peak_gbps": parsed["bw_peak_gbps"], "bw_unit": parsed["bw_unit"],
                      **{k: parsed.get(k) for k in ("test", "device", "link_type", "transport_type",
                                                    "connection_type", "gid_index", "mtu_bytes", "qps", "warnings")}}
    return out


def latency_summary(rc: int, stdout: str, stderr: str) -> dict:
    """ib_read_lat's numbers at its (smallest) message size; error and raw output when it failed."""
    raw = (stdout + ("\n--- stderr ---\n" + stderr if stderr.strip() else "")).strip()
    try:
        parsed = parse_perftest(stdout)
    except ParseError as exc:
        return {"error": f"ib_read_lat exited with {rc}, output not parseable: {exc.message}", "raw": raw[:4000]}
    if rc != 0 or parsed["kind"] != "lat":
        return {"error": f"ib_read_lat exited with {rc}" if rc else "not a latency table", "raw": raw[:4000]}
    row = min(parsed["rows"], key=lambda r: r.get("bytes") or 0)
    out: dict[str, Any] = {"test": parsed.get("test"), "unit": "us"}
    out.update({k: row.get(k) for k in ("bytes", "iterations", "t_min_us", "t_max_us", "t_typical_us", "t_avg_us",
                                        "t_stdev_us", "p99_us", "p99_9_us") if k in row})
    return out


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return None


def rdma_devices(sysfs_root: str) -> tuple[list[str], str]:
    """RDMA device names in <root>/sys/class/infiniband, and the directory (for the reason)."""
    base = os.path.join(sysfs_root, "sys", "class", "infiniband")
    try:
        return sorted(os.listdir(base)), base
    except OSError:
        return [], base


def port_info(sysfs_root: str, device: str, ib_port: int) -> dict:
    """State, link layer and rate (Gbit/s) of a device's port, from sysfs."""
    base = os.path.join(sysfs_root, "sys", "class", "infiniband", device, "ports", str(ib_port))
    state = _read(os.path.join(base, "state"))
    rate = _read(os.path.join(base, "rate"))
    return {"name": device, "port": ib_port, "exists": os.path.isdir(base),
            "state": state.split(":", 1)[-1].strip() if state else None,
            "link_layer": _read(os.path.join(base, "link_layer")), "rate": rate,
            "rate_gbps": rate_gbps(rate)}


def pick_device(sysfs_root: str, names: list[str], ib_port: int) -> str:
    for name in names:
        if port_info(sysfs_root, name, ib_port)["state"] == "ACTIVE":
            return name
    return names[0]


def facts_port(rdma_facts: dict | None, device: str, ib_port: int) -> dict | None:
    """The port entry of rdma_facts' output (ansible_facts.rdma, or the registered result) for device/port."""
    facts = rdma_facts or {}
    facts = facts.get("ansible_facts", facts)
    facts = facts.get("rdma", facts)
    for dev in facts.get("devices") or []:
        if dev.get("name") == device:
            for port in dev.get("ports") or []:
                if port.get("port") == ib_port:
                    return port
    return None



def _pid_is_ours(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return MARKER.encode() in fh.read()
    except OSError:
        return False


def _read_pid(port: int) -> int | None:
    text = _read(PIDFILE.format(port=port))
    return int(text) if text and text.isdigit() else None


def run_server(module: AnsibleModule, cmd: list[str], ports: list[int]) -> None:
    port = ports[0]
    if module.check_mode:
        module.exit_json(changed=True, command=cmd, checks=[])
    pid = _read_pid(port)
    if pid and _pid_is_ours(pid):
        module.exit_json(changed=False, command=cmd, pid=pid, checks=[], msg="perftest server already running")
    taken = [p for p in ports if listening(p)]
    if taken:
        module.fail_json(msg=f"TCP port(s) {taken} taken by another program; pass another rdma_bench port",
                         command=cmd)
    with open(LOGFILE.format(port=port), "ab") as log, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(cmd, stdin=devnull, stdout=log, stderr=log, start_new_session=True)
    with open(PIDFILE.format(port=port), "w", encoding="utf-8") as fh:
        fh.write(f"{proc.pid}\n")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if all(listening(p) for p in ports):
            module.exit_json(changed=True, command=cmd, pid=proc.pid, checks=[])
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    log_text = (_read(LOGFILE.format(port=port)) or "")[-2000:]
    module.fail_json(msg=f"perftest server did not start listening on TCP port(s) {ports}", command=cmd,
                     log=log_text)


def stop_server(module: AnsibleModule, port: int) -> None:
    pid = _read_pid(port)
    if module.check_mode:
        module.exit_json(changed=bool(pid), command=["kill", "--", f"-{pid}"] if pid else [], checks=[])
    if not pid or not _pid_is_ours(pid):
        module.exit_json(changed=False, command=[], checks=[], msg="no perftest server from this module is running")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _pid_is_ours(pid):
        time.sleep(0.1)
    if _pid_is_ours(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    for f in (PIDFILE, LOGFILE):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f.format(port=port))
    module.exit_json(changed=True, command=["kill", "--", f"-{pid}"], checks=[])


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "mode": {"type": "str", "choices": ["client", "server", "stop"], "default": "client"},
            "server": {"type": "str"},
            "device": {"type": "str"},
            "ib_port": {"type": "int", "default": 1},
            "gid_index": {"type": "int"},
            "rdma_facts": {"type": "dict"},
            "port": {"type": "int", "default": 18515},
            "size": {"type": "int", "default": 8388608},
            "all_sizes": {"type": "bool", "default": False},
            "duration_s": {"type": "int", "default": 5},
            "iterations": {"type": "int"},
            "qps": {"type": "int", "default": 1},
            "report_gbits": {"type": "bool", "default": True},
            "use_cuda": {"type": "int"},
            "latency": {"type": "bool", "default": False},
            "latency_iterations": {"type": "int", "default": 1000},
            "link_gbps": {"type": "float"},
            "threshold": {"type": "dict"},
            "warn_band": {"type": "float", "default": 0.05},
            "retries": {"type": "int", "default": 1},
            "retry_cooldown_s": {"type": "float", "default": 5.0},
            "server_ttl_s": {"type": "int", "default": 300},
            "keep_raw": {"type": "bool", "default": False},
            "sysfs_root": {"type": "path", "default": "/"},
            "ib_write_bw": {"type": "str", "default": "ib_write_bw"},
            "ib_read_lat": {"type": "str", "default": "ib_read_lat"},
        },
        supports_check_mode=True,
    )
    p = module.params
    problems = [f"{k} must be at least 1, got {p[k]}" for k in ("size", "duration_s", "qps", "latency_iterations",
                                                                "port", "ib_port")
                if p[k] < 1]
    problems += [f"{k} must be at least 1, got {p[k]}" for k in ("iterations",) if p[k] is not None and p[k] < 1]
    problems += [f"{k} must be 0 or more, got {p[k]}" for k in ("gid_index", "use_cuda") if p[k] is not None and
                 p[k] < 0]
    if problems:
        module.fail_json(msg="rdma_bench: " + "; ".join(problems))
    if p["mode"] == "stop":
        stop_server(module, p["port"])

    names, base = rdma_devices(p["sysfs_root"])
    device = p["device"] or (pick_device(p["sysfs_root"], names, p["ib_port"]) if names else "")
    info = port_info(p["sysfs_root"], device, p["ib_port"]) if device else {"name": None, "port": p["ib_port"]}
    fport = facts_port(p["rdma_facts"], device, p["ib_port"]) if device else None
    gid = p["gid_index"] if p["gid_index"] is not None else (fport or {}).get("roce_v2_gid_index")
    info["gid_index"] = gid
    exe = shutil.which(p["ib_write_bw"])
    lat_exe = shutil.which(p["ib_read_lat"]) if p["latency"] else None

    def bw(server: str | None) -> list[str]:
        return bw_command(exe or p["ib_write_bw"], device or "<none>", p["ib_port"], gid, p["port"], p["size"],
                          p["all_sizes"], p["duration_s"], p["iterations"], p["qps"], p["report_gbits"],
                          p["use_cuda"], server)

    def lat(server: str | None) -> list[str]:
        return lat_command(lat_exe or p["ib_read_lat"], device or "<none>", p["ib_port"], gid, p["port"] + 1,
                           p["latency_iterations"], server)

    no_device = f"no RDMA device (no entries in {base})"
    if p["mode"] == "server":
        cmd = server_command(bw(None), lat(None) if p["latency"] else None, p["server_ttl_s"])
        if not names:
            module.exit_json(changed=False, command=cmd, checks=[], msg=f"{no_device}; no server started")
        if p["device"] and p["device"] not in names:
            module.fail_json(msg=f"RDMA device {p['device']} not found (present: {', '.join(names)})", command=cmd)
        if exe is None or (p["latency"] and lat_exe is None):
            module.exit_json(changed=False, command=cmd, checks=[],
                             msg=f"perftest is not installed; no server started; {INSTALL_HINT}")
        run_server(module, cmd, [p["port"], p["port"] + 1] if p["latency"] else [p["port"]])

    cmd = bw(p["server"])
    result: dict[str, Any] = {"changed": False, "command": cmd, "device": info}
    if not names:
        module.exit_json(checks=[not_applicable(CHECK, no_device)], **result)
    if p["device"] and p["device"] not in names:
        module.exit_json(checks=[failed(CHECK, f"RDMA device {p['device']} not found (present: {', '.join(names)})")],
                         **result)
    if exe is None:
        module.exit_json(checks=[not_applicable(CHECK, f"perftest is not installed ({p['ib_write_bw']} not found)",
                                                INSTALL_HINT)], **result)
    if not p["server"]:
        module.exit_json(checks=[not_applicable(CHECK, "no peer to measure against (single node, or the peer "
                                                "started no server: no RDMA device or no perftest there)")], **result)
    if info.get("state") and info["state"] != "ACTIVE":
        module.exit_json(checks=[failed(CHECK, f"{device} port {p['ib_port']} is {info['state']}, not ACTIVE")],
                         **result)
    if info.get("link_layer") == "Ethernet" and gid is None:
        result["note"] = ("RoCE port without a GID index: perftest uses index 0 (often RoCE v1); pass gid_index or "
                          "rdma_facts")
    if module.check_mode:
        module.exit_json(checks=[not_applicable(CHECK, "check mode: not run; would run: " + shlex.join(cmd))],
                         **result)
    link = p["link_gbps"] or info.get("rate_gbps") or rate_gbps((fport or {}).get("rate"))
    threshold = with_link_speed(p["threshold"], link)
    timeout = (p["duration_s"] + 60) if (p["iterations"] is None and not p["all_sizes"]) else 900

    def measure() -> dict:
        t0 = time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            partial = exc.stdout.decode("utf-8", "replace") if isinstance(exc.stdout, bytes) else exc.stdout
            return failed(CHECK, f"ib_write_bw did not finish within {timeout} s", partial or "",
                          time.monotonic() - t0, threshold)
        out = judge_perftest(proc.returncode, proc.stdout, proc.stderr, threshold, p["warn_band"],
                             time.monotonic() - t0, p["keep_raw"])
        out["command"] = shlex.join(cmd)
        out["link_gbps"] = link
        return out

    check = with_retry(measure, p["retry_cooldown_s"], p["retries"])
    if p["latency"]:
        lcmd = lat(p["server"])
        if lat_exe is None:
            result["latency"] = {"error": f"{p['ib_read_lat']} not found; {INSTALL_HINT}"}
        else:
            try:
                proc = subprocess.run(lcmd, capture_output=True, text=True, check=False, timeout=300)
                result["latency"] = latency_summary(proc.returncode, proc.stdout, proc.stderr)
            except subprocess.TimeoutExpired:
                result["latency"] = {"error": "ib_read_lat did not finish within 300 s"}
        result["latency"]["command"] = lcmd
    module.exit_json(checks=[check], **result)


if __name__ == "__main__":
    main()
