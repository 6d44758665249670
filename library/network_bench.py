#!/usr/bin/python
# Copyright: baremetal-ai contributors
# Apache-2.0
"""Ansible module: iperf3 throughput to a peer (client), or the peer's short-lived iperf3 server."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.bm_parsers import ParseError, parse_iperf3_json
from ansible.module_utils.bm_proc import listening
from ansible.module_utils.bm_validation import failed, judge, not_applicable, with_link_speed, with_retry

DOCUMENTATION = r"""
---
module: network_bench
short_description: TCP throughput between two nodes with iperf3, judged against a fraction of the link speed
description:
  - C(mode=server) (run on the peer, e.g. with C(delegate_to)) starts C(iperf3 -s) on I(port) in its own session
    under C(timeout I(server_ttl_s)), so it disappears even if the play dies; it returns once the port listens.
    It is not a one-shot (C(-1)) server because a failed measurement is retried once against the same server.
  - C(mode=client) runs C(iperf3 -c I(server) -J) with I(parallel) streams, parses the JSON with
    C(bm_parsers.parse_iperf3_json) and judges the receiver's throughput in Gbit/s. The threshold's
    C(fraction_of_link) uses the speed of the interface that routes to I(server) (from sysfs); on a virtual
    interface (veth, bridge) there is no link speed and only an absolute floor applies.
  - C(mode=stop) stops the server started by C(mode=server) on I(port) (pid file, checked to be iperf3).
  - iperf3 missing gives C(not_applicable) with the install command. In check mode nothing runs or starts;
    C(command) says what would.
options:
  mode:
    description: client, server or stop.
    type: str
    choices: [client, server, stop]
    default: client
  server:
    description: Address of the peer running the server (the peer's fabric address). Empty or omitted in
      C(client) mode (a single-node run has no peer) gives a C(not_applicable) check saying so.
    type: str
  port:
    description: TCP port of the server.
    type: int
    default: 5201
  duration_s:
    description: Seconds of measurement (client).
    type: int
    default: 10
  omit_s:
    description: Seconds of warm-up at the start that iperf3 leaves out of the result (TCP slow start).
    type: int
    default: 1
  parallel:
    description: Parallel TCP streams.
    type: int
    default: 4
  link_speed_gbps:
    description: Link speed to use instead of the one read from sysfs (Gbit/s).
    type: float
  threshold:
    description: Threshold for C(network_iperf3_gbps) (C(validation_report mode=resolve) output); none is a warn.
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
    description: Seconds to wait before a retry.
    type: float
    default: 5
  server_ttl_s:
    description: The server exits after this many seconds whatever happens (server mode).
    type: int
    default: 300
  keep_raw:
    description: Keep iperf3's JSON in a passing check too.
    type: bool
    default: false
  iperf3:
    description: iperf3 executable.
    type: str
    default: iperf3
author: baremetal-ai contributors
"""

EXAMPLES = r"""
- name: Start the server on the next node
  network_bench:
    mode: server
    port: 5201
  delegate_to: "{{ peer }}"

- name: Measure to the next node's fabric address
  network_bench:
    server: "{{ hostvars[peer].node_fabric_address }}"
    threshold: "{{ thresholds.network_iperf3_gbps }}"
  register: net

- name: Stop the server
  network_bench:
    mode: stop
  delegate_to: "{{ peer }}"
"""

RETURN = r"""
checks:
  description: The C(network_iperf3_gbps) check (client mode; empty list in server/stop mode).
  returned: always
  type: list
  elements: dict
command:
  description: The iperf3 command line (run, or that would run).
  returned: always
  type: list
  elements: str
interface:
  description: Interface that routes to the server, its MTU, link speed (Gbit/s, null when virtual) and driver.
  returned: client mode
  type: dict
  sample: {name: eth1, mtu: 9000, speed_gbps: null, virtual: true}
pid:
  description: Process id of the server (server mode).
  returned: server mode, when started
  type: int
"""

CHECK = "network_iperf3_gbps"
INSTALL_HINT = "apt-get install iperf3  (dnf install iperf3 on RHEL-family nodes)"
PIDFILE = "/run/baremetal-validation-iperf3-{port}.pid"
LOGFILE = "/run/baremetal-validation-iperf3-{port}.log"


def client_command(iperf3: str, server: str, port: int, duration_s: int, parallel: int, omit_s: int) -> list[str]:
    return [iperf3, "-c", server, "-p", str(port), "-t", str(duration_s), "-P", str(parallel), "-O", str(omit_s),
            "-J"]


def server_command(iperf3: str, port: int, ttl_s: int) -> list[str]:
    return ["timeout", "--kill-after=5", str(ttl_s), iperf3, "-s", "-p", str(port), "-I", PIDFILE.format(port=port)]


def judge_iperf3(rc: int, stdout: str, stderr: str, threshold: dict | None, warn_band: float, duration_s: float,
                 keep_raw: bool = False) -> dict:
    """The check from iperf3's exit status and JSON (receiver throughput, Gbit/s)."""
    raw = (stdout + ("\n--- stderr ---\n" + stderr if stderr.strip() else "")).strip()
    try:
        parsed = parse_iperf3_json(stdout)
    except ParseError as exc:
        return failed(CHECK, f"iperf3 exited with {rc}, output not parseable: {exc.message}", raw, duration_s,
                      threshold)
    if parsed.get("error"):
        return failed(CHECK, f"iperf3: {parsed['error']}", raw, duration_s, threshold)
    if rc != 0:
        return failed(CHECK, f"iperf3 exited with {rc}", raw, duration_s, threshold)
    bps = parsed.get("received_bps")
    out = judge(CHECK, None if bps is None else round(bps / 1e9, 3), "Gbit/s", threshold, warn_band, duration_s,
                raw, keep_raw)
    out["details"] = {k: parsed.get(k) for k in ("sent_bps", "received_bps", "retransmits", "num_streams",
                                                  "duration", "protocol", "version")}
    return out


def route_interface(route_get: str) -> str | None:
    """Interface from `ip -o route get ADDR` output ('... dev eth1 src ...')."""
    m = re.search(r"\bdev\s+(\S+)", route_get)
    return m.group(1) if m else None


def interface_info(name: str, sysfs: str = "/sys/class/net") -> dict:
    """MTU, link speed (Gbit/s; None when unknown or virtual) and whether the interface is virtual."""
    base = os.path.join(sysfs, name)

    def read(f: str) -> str | None:
        try:
            with open(os.path.join(base, f), encoding="utf-8") as fh:
                return fh.read().strip()
        except OSError:
            return None

    virtual = not os.path.exists(os.path.join(base, "device"))
    speed = read("speed")
    mtu = read("mtu")
    speed_gbps = int(speed) / 1000 if speed and speed.lstrip("-").isdigit() and int(speed) > 0 else None
    return {"name": name, "mtu": int(mtu) if mtu and mtu.isdigit() else None,
            "speed_gbps": None if virtual else speed_gbps, "reported_speed_gbps": speed_gbps, "virtual": virtual}



def _pid_is_iperf3(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"iperf3" in fh.read()
    except OSError:
        return False


def _read_pid(port: int) -> int | None:
    try:
        with open(PIDFILE.format(port=port), encoding="utf-8") as fh:
            text = fh.read().strip().rstrip("\x00")
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def run_server(module: AnsibleModule, iperf3: str, port: int, ttl_s: int) -> None:
    cmd = server_command(iperf3, port, ttl_s)
    if module.check_mode:
        module.exit_json(changed=True, command=cmd, checks=[])
    pid = _read_pid(port)
    if pid and _pid_is_iperf3(pid) and listening(port):
        module.exit_json(changed=False, command=cmd, pid=pid, checks=[], msg="iperf3 server already running")
    if listening(port):
        module.fail_json(msg=f"port {port} is taken by another program; pass another network_bench port",
                         command=cmd)
    with open(LOGFILE.format(port=port), "ab") as log, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(cmd, stdin=devnull, stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if listening(port):
            module.exit_json(changed=True, command=cmd, pid=_read_pid(port) or proc.pid, checks=[])
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    try:
        with open(LOGFILE.format(port=port), encoding="utf-8", errors="replace") as fh:
            log_text = fh.read()[-2000:]
    except OSError:
        log_text = ""
    module.fail_json(msg=f"iperf3 server did not start listening on port {port}", command=cmd, log=log_text)


def stop_server(module: AnsibleModule, port: int) -> None:
    pid = _read_pid(port)
    if module.check_mode:
        module.exit_json(changed=bool(pid), command=["kill", str(pid)] if pid else [], checks=[])
    if not pid or not _pid_is_iperf3(pid):
        module.exit_json(changed=False, command=[], checks=[], msg="no iperf3 server from this module is running")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _pid_is_iperf3(pid):
        time.sleep(0.1)
    if _pid_is_iperf3(pid):
        os.kill(pid, signal.SIGKILL)
    for f in (PIDFILE, LOGFILE):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f.format(port=port))
    module.exit_json(changed=True, command=["kill", str(pid)], checks=[])


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "mode": {"type": "str", "choices": ["client", "server", "stop"], "default": "client"},
            "server": {"type": "str"},
            "port": {"type": "int", "default": 5201},
            "duration_s": {"type": "int", "default": 10},
            "omit_s": {"type": "int", "default": 1},
            "parallel": {"type": "int", "default": 4},
            "link_speed_gbps": {"type": "float"},
            "threshold": {"type": "dict"},
            "warn_band": {"type": "float", "default": 0.05},
            "retries": {"type": "int", "default": 1},
            "retry_cooldown_s": {"type": "float", "default": 5.0},
            "server_ttl_s": {"type": "int", "default": 300},
            "keep_raw": {"type": "bool", "default": False},
            "iperf3": {"type": "str", "default": "iperf3"},
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["mode"] == "stop":
        stop_server(module, p["port"])
    iperf3 = shutil.which(p["iperf3"])
    if p["mode"] == "server":
        if iperf3 is None:
            module.exit_json(changed=False, command=server_command(p["iperf3"], p["port"], p["server_ttl_s"]),
                             checks=[], msg=f"iperf3 is not installed; {INSTALL_HINT}")
        run_server(module, iperf3, p["port"], p["server_ttl_s"])
    if not p["server"]:
        module.exit_json(checks=[not_applicable(CHECK, "no fabric peer: this run has a single node (the network "
                                                "check measures each node against the next one)")])
    cmd = client_command(iperf3 or p["iperf3"], p["server"], p["port"], p["duration_s"], p["parallel"], p["omit_s"])
    route = subprocess.run(["ip", "-o", "route", "get", p["server"]], capture_output=True, text=True, check=False)
    dev = route_interface(route.stdout)
    iface = interface_info(dev) if dev else {"name": None, "mtu": None, "speed_gbps": None, "virtual": None}
    link = p["link_speed_gbps"] or iface["speed_gbps"]
    result = {"changed": False, "command": cmd, "interface": iface}
    if iperf3 is None:
        module.exit_json(checks=[not_applicable(CHECK, f"iperf3 is not installed ({p['iperf3']} not found)",
                                                INSTALL_HINT)], **result)
    if module.check_mode:
        module.exit_json(checks=[not_applicable(CHECK, "check mode: not run; would run: " + " ".join(cmd))],
                         **result)
    threshold = with_link_speed(p["threshold"], link)

    def measure() -> dict:
        t0 = time.monotonic()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                                  timeout=p["duration_s"] + p["omit_s"] + 60)
        except subprocess.TimeoutExpired as exc:
            return failed(CHECK, f"iperf3 did not finish within {exc.timeout:g} s", str(exc.stdout or ""),
                          time.monotonic() - t0, threshold)
        out = judge_iperf3(proc.returncode, proc.stdout, proc.stderr, threshold, p["warn_band"],
                           time.monotonic() - t0, p["keep_raw"])
        out["command"] = " ".join(cmd)
        out["interface"] = iface
        return out

    module.exit_json(checks=[with_retry(measure, p["retry_cooldown_s"], p["retries"])], **result)


if __name__ == "__main__":
    main()
