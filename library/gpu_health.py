#!/usr/bin/python
# Copyright: baremetal-ai contributors
# Apache-2.0
"""Ansible module: GPU health (count, XIDs, ECC, row remapping, throttling, PCIe width, NVLink, dcgmi diag)."""

from __future__ import annotations

import shutil
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.bm_parsers import (
    ParseError,
    fatal_xids,
    parse_dcgmi_diag,
    parse_nvlink_status,
    parse_nvsmi_xml,
    parse_xid,
)
from ansible.module_utils.bm_validation import failed, judge, not_applicable

DOCUMENTATION = r"""
---
module: gpu_health
short_description: GPU health checks that take seconds, judged against counts
description:
  - Reads C(nvidia-smi -q -x) (parsed by C(bm_parsers.parse_nvsmi_xml)), the kernel log (C(journalctl -k), else
    C(dmesg)) for Xid events (C(bm_parsers.parse_xid), fatal ones from C(bm_parsers.fatal_xids)),
    C(nvidia-smi nvlink -s) when the XML has no NVLink block, and C(dcgmi diag -r 1 -j) when dcgmi is installed.
  - Checks (each a count; above the ceiling fails) C(gpu_count) (must equal I(expected_count)),
    C(gpu_xid_fatal), C(gpu_ecc_uncorrectable) (volatile), C(gpu_row_remap_pending), C(gpu_row_remap_failed),
    C(gpu_throttle_at_idle) (active clock-event reasons other than idle and SW power cap),
    C(gpu_pcie_link_degraded) (current link width below the maximum; the link generation drops at idle to save
    power, so it is reported, not judged), C(gpu_nvlink_down), C(dcgm_diag_failures).
  - No GPU (no nvidia-smi, or it finds no device) and none declared makes every check C(not_applicable) with
    reason C(no GPU). GPUs declared but none found fails C(gpu_count) with the tool's output.
  - In check mode nothing runs; C(commands) lists what would.
options:
  expected_count:
    description: GPUs the node should have (the inventory's node_gpu_count). Omit to record without judging.
    type: int
  expected_model_names:
    description: Names the declared GPU model goes by (its threshold key and nvidia-smi product names, as
      C(validation_report mode=resolve) returns them in C(gpu_model_names)). Check C(gpu_model_mismatch) counts
      the GPUs whose product name is none of them; empty (no model declared) makes it C(not_applicable).
    type: list
    elements: str
    default: []
  thresholds:
    description: Threshold per check name (C(validation_report mode=resolve)); a check with none is a C(warn).
    type: dict
    default: {}
  warn_band:
    description: Warn band for the ceilings.
    type: float
    default: 0.05
  kernel_log_since:
    description: How far back to look for Xid events (C(journalctl --since) syntax; dmesg covers the whole boot).
    type: str
    default: -2h
  dcgm_level:
    description: C(dcgmi diag -r) level to run when dcgmi is installed; 0 skips it. Level 1 takes seconds.
    type: int
    default: 1
  nvidia_smi:
    description: nvidia-smi executable.
    type: str
    default: nvidia-smi
  dcgmi:
    description: dcgmi executable.
    type: str
    default: dcgmi
author: baremetal-ai contributors
"""

EXAMPLES = r"""
- name: GPU health before any benchmark
  gpu_health:
    expected_count: "{{ node_gpu_count }}"
    thresholds: "{{ _validation_resolved.thresholds }}"
  register: health
"""

RETURN = r"""
checks:
  description: One result per health check (bm_validation check dicts).
  returned: always
  type: list
  elements: dict
gpus:
  description: Per GPU, the fields the checks looked at (name, bus id, uuid, PCIe link, ECC, remap, throttle).
  returned: always
  type: list
  elements: dict
driver_version:
  description: NVIDIA driver version from nvidia-smi.
  returned: when a GPU was found
  type: str
commands:
  description: The commands run (or that would run in check mode).
  returned: always
  type: list
  elements: list
"""

HEALTH = ("gpu_count", "gpu_model_mismatch", "gpu_xid_fatal", "gpu_ecc_uncorrectable", "gpu_row_remap_pending",
          "gpu_row_remap_failed",
          "gpu_throttle_at_idle", "gpu_pcie_link_degraded", "gpu_nvlink_down", "dcgm_diag_failures")
# Azure NHC's azure_gpu_clock_throttling.nhc: fail unless the active reason is none, idle or SW power cap.
BENIGN_THROTTLE = {"gpu_idle", "idle", "sw_power_cap", "none"}
DCGM_HINT = ("install DCGM: apt-get install datacenter-gpu-manager-4-cuda12 (NVIDIA CUDA repository), then "
             "systemctl enable --now nvidia-dcgm")
NO_GPU = "no GPU"


def no_gpu_checks(reason: str = NO_GPU) -> list[dict]:
    return [not_applicable(c, reason) for c in HEALTH]


def gpu_count_check(found: int, expected: int | None, threshold: dict | None, raw: str | None = None) -> dict:
    t = dict(threshold or {"unit": "count", "source": "inventory node_gpu_count"})
    if expected is not None:
        t["exact"] = int(expected)
    else:
        t.pop("exact", None)
    out = judge("gpu_count", found, "count", t if "exact" in t else None, raw=raw)
    if expected is not None and found != expected:
        out["reason"] = f"declared {expected} GPUs (node_gpu_count), found {found}"
    return out


MODEL_THRESHOLD = {"unit": "count", "ceiling": 0,
                   "source": "ours: every GPU must be the model the inventory declares (node_gpu_model)"}


def gpu_model_check(gpus: list[dict], names: list[str], threshold: dict | None, warn_band: float = 0.05) -> dict:
    """gpu_model_mismatch: how many GPUs are not the declared model (a swapped board, a PCIe card in an SXM
    inventory, thresholds chosen for the wrong GPU)."""
    if not names:
        return not_applicable("gpu_model_mismatch", "no GPU model declared (node_gpu_model): nothing to compare")
    want = {n.strip().lower() for n in names}
    odd = [f"GPU{g.get('index')} is {g.get('name')!r}" for g in gpus if str(g.get("name", "")).strip().lower()
           not in want]
    out = judge("gpu_model_mismatch", len(odd), "count", threshold or MODEL_THRESHOLD, warn_band)
    out["reason"] = (f"declared {names[0]} ({', '.join(names[1:]) or 'no product names'}); " +
                     (", ".join(odd) + "; " if odd else "") + out["reason"])
    return out


def _count(check: str, offenders: list[str], applicable: int, thresholds: dict, warn_band: float, what: str,
           na_reason: str) -> dict:
    if applicable == 0:
        return not_applicable(check, na_reason)
    out = judge(check, len(offenders), "count", thresholds.get(check), warn_band)
    out["reason"] = (f"{what}: {', '.join(offenders)}; " if offenders else f"no GPU with {what}; ") + out["reason"]
    if offenders:
        out["offenders"] = offenders
    return out


def xml_checks(parsed: dict, thresholds: dict, warn_band: float) -> list[dict]:
    """ECC, row remapping, throttle-at-idle and PCIe width checks from parse_nvsmi_xml output."""
    gpus = parsed.get("gpus") or []

    def label(g: dict) -> str:
        return f"GPU{g.get('index')} {g.get('pci_bus_id')}"

    ecc = [(label(g), ((g.get("ecc_errors") or {}).get("volatile") or {}).get("uncorrectable")) for g in gpus]
    ecc_known = [x for x in ecc if x[1] is not None]
    remap = [(label(g), g.get("remapped_rows")) for g in gpus]
    remap_known = [x for x in remap if x[1]]
    throttle = [(label(g), g.get("clocks_event_reasons_active")) for g in gpus]
    throttle_known = [x for x in throttle if x[1] is not None]
    pcie = [(label(g), g.get("pcie") or {}) for g in gpus]
    pcie_known = [x for x in pcie if x[1].get("width_current") and x[1].get("width_max")]
    checks = [
        _count("gpu_ecc_uncorrectable", [f"{n} ({v} volatile uncorrectable)" for n, v in ecc_known if v > 0],
               len(ecc_known), thresholds, warn_band, "uncorrectable ECC errors",
               "ECC counters not reported (ECC off or unsupported on this GPU)"),
        _count("gpu_row_remap_pending", [n for n, r in remap_known if r.get("pending")], len(remap_known),
               thresholds, warn_band, "row remap pending (reset the GPU)", "row remapping not reported by this GPU"),
        _count("gpu_row_remap_failed", [n for n, r in remap_known if r.get("failure")], len(remap_known),
               thresholds, warn_band, "row remapping failed (RMA)", "row remapping not reported by this GPU"),
        _count("gpu_throttle_at_idle",
               [f"{n} ({', '.join(sorted(set(r) - BENIGN_THROTTLE))})" for n, r in throttle_known
                if set(r) - BENIGN_THROTTLE], len(throttle_known), thresholds, warn_band,
               "clock-event reasons active at idle", "clock-event reasons not reported"),
        _count("gpu_pcie_link_degraded",
               [f"{n} (x{p['width_current']} of x{p['width_max']})" for n, p in pcie_known
                if p["width_current"] < p["width_max"]], len(pcie_known), thresholds, warn_band,
               "PCIe link narrower than its maximum", "PCIe link width not reported"),
    ]
    gens = [f"{n} gen {p.get('gen_current')}/{p.get('gen_max')}" for n, p in pcie]
    checks[-1]["pcie_generation_at_idle"] = gens
    return checks


def nvlink_check(parsed_xml: dict, nvlink_status: dict | None, thresholds: dict, warn_band: float) -> dict:
    """Inactive NVLinks of GPUs that have NVLink (from the XML block, else `nvidia-smi nvlink -s`)."""
    down, with_links = [], 0
    xml_links = [(g, g.get("nvlink")) for g in parsed_xml.get("gpus") or [] if g.get("nvlink")]
    if xml_links:
        for g, links in xml_links:
            with_links += 1
            down += [f"GPU{g['index']} link {lk['link']} ({lk.get('state')})" for lk in links
                     if (lk.get("state") or "").lower() not in ("active", "up")]
    elif nvlink_status:
        for g in nvlink_status.get("gpus") or []:
            links = g.get("links") or []
            if not links:
                continue
            with_links += 1
            down += [f"GPU{g.get('index')} link {lk.get('link')}" for lk in links if not lk.get("active")]
    return _count("gpu_nvlink_down", down, with_links, thresholds, warn_band, "NVLink links down",
                  "no NVLink on these GPUs")


def xid_check(log_text: str | None, source: str, thresholds: dict, warn_band: float) -> dict:
    if log_text is None:
        out = judge("gpu_xid_fatal", None, "count", thresholds.get("gpu_xid_fatal"))
        out["verdict"] = "warn"
        out["reason"] = f"kernel log not readable ({source}); Xid events unknown"
        return out
    try:
        events = parse_xid(log_text)
    except ParseError as exc:
        return failed("gpu_xid_fatal", f"kernel log not parseable: {exc.message}", log_text[-4000:])
    fatal = fatal_xids(events)
    out = judge("gpu_xid_fatal", len(fatal), "count", thresholds.get("gpu_xid_fatal"), warn_band,
                raw="\n".join(e["raw"] for e in fatal) or None)
    seen = sorted({e["xid"] for e in events})
    out["reason"] = (f"{len(fatal)} fatal Xid event(s) ({', '.join(sorted({str(e['xid']) for e in fatal}))}) "
                     if fatal else "no fatal Xid ") + f"in {source}; all Xids seen: {seen or 'none'}; " + out["reason"]
    out["xid_events"] = [{k: e.get(k) for k in ("xid", "pci", "severity", "meaning", "timestamp")}
                         for e in events[-50:]]
    return out


def dcgm_check(rc: int, stdout: str, stderr: str, thresholds: dict, warn_band: float, duration_s: float,
               level: int | None) -> dict:
    raw = stdout + ("\n--- stderr ---\n" + stderr if stderr.strip() else "")
    name = f"dcgmi diag -r {level}" if level else "dcgmi diag"
    try:
        parsed = parse_dcgmi_diag(stdout)
    except ParseError as exc:
        return failed("dcgm_diag_failures", f"{name} exited with {rc}; output not parseable: {exc.message}", raw,
                      duration_s)
    out = judge("dcgm_diag_failures", len(parsed["failed"]), "count", thresholds.get("dcgm_diag_failures"),
                warn_band, duration_s, raw=raw)
    out["reason"] = (f"{name}: failed {parsed['failed'] or 'none'}, warned {parsed['warned'] or 'none'}"
                     f"; {out['reason']}")
    return out


def read_kernel_log(since: str) -> tuple[str | None, str]:
    """(text, source): journalctl -k first (works in containers), then dmesg; (None, why) when neither works."""
    tried = []
    if shutil.which("journalctl"):
        p = subprocess.run(["journalctl", "-k", "--no-pager", "-o", "short-iso", "--since", since],
                           capture_output=True, text=True, check=False)
        if p.returncode == 0:
            return p.stdout, f"journalctl -k --since {since}"
        tried.append(f"journalctl: {(p.stderr or p.stdout).strip()[:200]}")
    if shutil.which("dmesg"):
        p = subprocess.run(["dmesg", "-T"], capture_output=True, text=True, check=False)
        if p.returncode == 0:
            return p.stdout, "dmesg -T (since boot)"
        tried.append(f"dmesg: {(p.stderr or p.stdout).strip()[:200]}")
    return None, "; ".join(tried) or "neither journalctl nor dmesg found"


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "expected_count": {"type": "int"},
            "expected_model_names": {"type": "list", "elements": "str", "default": []},
            "thresholds": {"type": "dict", "default": {}},
            "warn_band": {"type": "float", "default": 0.05},
            "kernel_log_since": {"type": "str", "default": "-2h"},
            "dcgm_level": {"type": "int", "default": 1},
            "nvidia_smi": {"type": "str", "default": "nvidia-smi"},
            "dcgmi": {"type": "str", "default": "dcgmi"},
        },
        supports_check_mode=True,
    )
    p = module.params
    th = p["thresholds"]
    expected = p["expected_count"]
    extra = ["/usr/bin", "/usr/local/bin", "/usr/local/nvidia/bin"]
    smi = module.get_bin_path(p["nvidia_smi"], opt_dirs=extra)
    dcgmi = module.get_bin_path(p["dcgmi"], opt_dirs=extra)
    commands = [[p["nvidia_smi"], "-q", "-x"], ["journalctl", "-k", "--since", p["kernel_log_since"]]]
    if dcgmi and p["dcgm_level"] > 0:
        commands.append([p["dcgmi"], "diag", "-r", str(p["dcgm_level"]), "-j"])
    result = {"changed": False, "commands": commands, "gpus": []}
    if module.check_mode:
        module.exit_json(checks=[not_applicable(c, "check mode: not run; would run: "
                                                + "; ".join(" ".join(x) for x in commands)) for c in HEALTH],
                         **result)
    if smi is None:
        if expected:
            checks = no_gpu_checks(f"{p['nvidia_smi']} not found")
            checks[0] = gpu_count_check(0, expected, th.get("gpu_count"),
                                        raw=f"{p['nvidia_smi']} not found on PATH: no NVIDIA driver installed?")
            module.exit_json(checks=checks, **result)
        module.exit_json(checks=no_gpu_checks(), **result)
    proc = subprocess.run([smi, "-q", "-x"], capture_output=True, text=True, check=False)
    parsed = None
    if proc.returncode == 0:
        try:
            parsed = parse_nvsmi_xml(proc.stdout)
        except ParseError as exc:
            bad = failed("gpu_count", f"nvidia-smi -q -x not parseable: {exc.message}", proc.stdout)
            module.exit_json(checks=[bad, *no_gpu_checks("nvidia-smi output unusable")[1:]], **result)
    gpus = (parsed or {}).get("gpus") or []
    if not gpus:
        # nvidia-smi present but no device ("No devices were found", rc 6) or the driver is not loaded.
        raw = (proc.stdout + proc.stderr).strip()
        if expected:
            checks = no_gpu_checks(f"{NO_GPU} (nvidia-smi: {raw.splitlines()[-1] if raw else proc.returncode})")
            checks[0] = gpu_count_check(0, expected, th.get("gpu_count"), raw=raw)
            module.exit_json(checks=checks, **result)
        module.exit_json(checks=no_gpu_checks(), **result)
    result["driver_version"] = parsed.get("driver_version")
    result["gpus"] = [{k: g.get(k) for k in ("index", "name", "uuid", "pci_bus_id", "pcie", "remapped_rows",
                                              "clocks_event_reasons_active", "temperature_c", "power_draw_w")}
                      for g in gpus]
    checks = [gpu_count_check(len(gpus), expected, th.get("gpu_count")),
              gpu_model_check(gpus, p["expected_model_names"], th.get("gpu_model_mismatch"), p["warn_band"])]
    log_text, log_source = read_kernel_log(p["kernel_log_since"])
    checks.append(xid_check(log_text, log_source, th, p["warn_band"]))
    checks += xml_checks(parsed, th, p["warn_band"])
    nvlink = None
    if not any(g.get("nvlink") for g in gpus):
        nv = subprocess.run([smi, "nvlink", "-s"], capture_output=True, text=True, check=False)
        if nv.returncode == 0 and nv.stdout.strip():
            try:
                nvlink = parse_nvlink_status(nv.stdout)
            except ParseError:
                nvlink = None
    checks.append(nvlink_check(parsed, nvlink, th, p["warn_band"]))
    if dcgmi is None:
        checks.append(not_applicable("dcgm_diag_failures", "dcgmi is not installed", DCGM_HINT))
    elif p["dcgm_level"] <= 0:
        checks.append(not_applicable("dcgm_diag_failures", "dcgm_level 0: dcgmi diag skipped"))
    else:
        t0 = time.monotonic()
        d = subprocess.run([dcgmi, "diag", "-r", str(p["dcgm_level"]), "-j"], capture_output=True, text=True,
                           check=False)
        checks.append(dcgm_check(d.returncode, d.stdout, d.stderr, th, p["warn_band"], time.monotonic() - t0,
                                 p["dcgm_level"]))
    module.exit_json(checks=checks, **result)


if __name__ == "__main__":
    main()
