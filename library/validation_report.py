#!/usr/bin/python
# Copyright: baremetal-ai contributors
# Apache-2.0
"""Ansible module (runs on the controller, delegate_to localhost): thresholds in, result files out."""

from __future__ import annotations

import glob
import json
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.bm_validation import (
    ThresholdError,
    check_document,
    fleet_outliers,
    merge,
    resolve_model,
    resolve_thresholds,
    result_document,
    to_junit,
    to_prometheus,
    validate_thresholds,
)

DOCUMENTATION = r"""
---
module: validation_report
short_description: Check and resolve validation thresholds; write per-host results, JUnit and the fleet summary
description:
  - Meant to run on the controller (C(delegate_to localhost), C(become false)); stdlib only.
  - C(mode=resolve) checks the whole threshold document (after merging I(override) over it) and returns the
    thresholds that apply to one node (its GPU model, node class and declared GPU count). Any problem (unknown
    GPU model, unknown check, bad unit, missing source) fails with a message naming the key, before anything is
    measured.
  - C(mode=host) writes C(I(results_dir)/I(run_id)/I(host).json) (schema_version 1) atomically and returns the
    document and its Prometheus text (to be written on the node by the playbook).
  - C(mode=fleet) reads every result of the run, writes C(junit.xml) and C(fleet.json) (summary and fleet
    outliers, i.e. nodes more than I(fleet_margin) below the fleet median of a benchmark), and returns the
    failing host/check pairs and the hosts without a result. It does not fail itself; the playbook decides.
  - In check mode nothing is written; the paths that would be written are returned.
options:
  mode:
    description: resolve, host or fleet.
    type: str
    choices: [resolve, host, fleet]
    required: true
  thresholds:
    description: The threshold document (validation/thresholds.yml as loaded). C(mode=resolve).
    type: dict
  override:
    description: Merged over I(thresholds) (the inventory's validation_thresholds_override).
    type: dict
    default: {}
  gpu_model:
    description: Declared GPU model (node_gpu_model) or nvidia-smi product name; C(none) for no GPU.
    type: str
  gpu_count:
    description: Declared GPU count.
    type: int
    default: 0
  node_class:
    description: Storage/network node class (node_classes key).
    type: str
    default: generic
  host:
    description: Host name (C(mode=host)).
    type: str
  run_id:
    description: Run id; names the results directory.
    type: str
  tier:
    description: Validation tier recorded in the result.
    type: str
    choices: [quick, standard, extended]
    default: standard
  checks:
    description: Check results collected from the modules (C(mode=host)).
    type: list
    elements: dict
    default: []
  facts:
    description: Facts recorded with the result (declared and discovered hardware).
    type: dict
    default: {}
  results_dir:
    description: Results root on the controller; files go to I(results_dir)/I(run_id)/.
    type: path
  expected_hosts:
    description: Hosts that should have a result (C(mode=fleet)); a missing one is reported.
    type: list
    elements: str
    default: []
  fleet_margin:
    description: Fraction below the fleet median that flags a node (C(mode=fleet)).
    type: float
    default: 0.05
  fleet_min_hosts:
    description: Hosts needed before the fleet comparison means anything.
    type: int
    default: 3
author: baremetal-ai contributors
"""

EXAMPLES = r"""
- name: Check and resolve the thresholds for this node
  validation_report:
    mode: resolve
    thresholds: "{{ lookup('ansible.builtin.file', 'validation/thresholds.yml') | from_yaml }}"
    override: "{{ validation_thresholds_override | default({}) }}"
    gpu_model: "{{ node_gpu_model }}"
    gpu_count: "{{ node_gpu_count }}"
  delegate_to: localhost
  become: false

- name: Write the fleet summary and JUnit
  validation_report:
    mode: fleet
    results_dir: results
    run_id: "{{ run_id }}"
    expected_hosts: "{{ groups['gpu_nodes'] }}"
  delegate_to: localhost
  become: false
"""

RETURN = r"""
thresholds:
  description: check -> threshold that applies to the node (C(mode=resolve)).
  returned: mode resolve
  type: dict
gpu_model_key:
  description: The thresholds' key for the node's GPU model; null without GPU.
  returned: mode resolve
  type: str
gpu_model_names:
  description: That key followed by the model's nvidia-smi product names (gpu_health compares the GPUs with them).
  returned: mode resolve
  type: list
  elements: str
warn_band:
  description: Warn band from the threshold document.
  returned: mode resolve
  type: float
fleet_margin:
  description: Fleet margin from the threshold document.
  returned: mode resolve
  type: float
path:
  description: The result file written (C(mode=host)) or the JUnit file (C(mode=fleet)).
  returned: mode host and fleet
  type: str
document:
  description: The result document (C(mode=host)).
  returned: mode host
  type: dict
prometheus:
  description: Prometheus text exposition of the document (C(mode=host)).
  returned: mode host
  type: str
summary:
  description: Verdict counts (host) or per-host verdicts (fleet).
  returned: mode host and fleet
  type: dict
failures:
  description: Every failing check of the run, as C(host/check) followed by the reason.
  returned: mode fleet
  type: list
  elements: str
missing_hosts:
  description: Expected hosts that wrote no result (unreachable, or a task failed before the report).
  returned: mode fleet
  type: list
  elements: str
outliers:
  description: Fleet outliers (host, check, value, fleet_median, ratio_to_median).
  returned: mode fleet
  type: list
  elements: dict
"""

def atomic_write(path: str, text: str, mode: int = 0o644) -> None:
    """Write through a temporary file in the same directory and rename it over `path`."""
    d = os.path.dirname(path) or "."
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def resolve(p: dict) -> dict:
    doc = merge(p["thresholds"] or {}, p["override"] or {})
    origin = "validation thresholds" + (" + validation_thresholds_override" if p["override"] else "")
    t = validate_thresholds(doc, origin=origin)
    key = resolve_model(t, p["gpu_model"])
    names = [key, *t["gpu_models"][key]["product_names"]] if key else []
    return {"thresholds": resolve_thresholds(t, p["gpu_model"], p["node_class"], p["gpu_count"]),
            "gpu_model_key": key, "gpu_model_names": names, "warn_band": t["warn_band"],
            "fleet_margin": t["fleet_margin"]}


def load_run(run_dir: str) -> tuple[list[dict], list[str]]:
    """The result documents in a run directory, and the files that are not valid results."""
    docs, bad = [], []
    for f in sorted(glob.glob(os.path.join(run_dir, "*.json"))):
        if os.path.basename(f) == "fleet.json":
            continue
        try:
            with open(f, encoding="utf-8") as fh:
                docs.append(check_document(json.load(fh), f))
        except (OSError, ValueError) as exc:
            bad.append(f"{f}: {exc}")
    return docs, bad


def fleet(docs: list[dict], expected: list[str], margin: float, min_hosts: int) -> dict:
    """Failures, missing hosts, outliers and per-host verdicts of one run."""
    failures = [f"{d['host']}/{c['check']}: {c.get('reason')}" for d in docs for c in d["checks"]
                if c.get("verdict") == "fail"]
    seen = {d["host"] for d in docs}
    missing = [h for h in expected if h not in seen]
    outliers = fleet_outliers(docs, margin, min_hosts)
    return {"failures": failures, "missing_hosts": missing, "outliers": outliers,
            "summary": {d["host"]: d["summary"] for d in docs},
            "hosts": len(docs), "fleet_margin": margin, "fleet_min_hosts": min_hosts}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "mode": {"type": "str", "choices": ["resolve", "host", "fleet"], "required": True},
            "thresholds": {"type": "dict"},
            "override": {"type": "dict", "default": {}},
            "gpu_model": {"type": "str"},
            "gpu_count": {"type": "int", "default": 0},
            "node_class": {"type": "str", "default": "generic"},
            "host": {"type": "str"},
            "run_id": {"type": "str"},
            "tier": {"type": "str", "choices": ["quick", "standard", "extended"], "default": "standard"},
            "checks": {"type": "list", "elements": "dict", "default": []},
            "facts": {"type": "dict", "default": {}},
            "results_dir": {"type": "path"},
            "expected_hosts": {"type": "list", "elements": "str", "default": []},
            "fleet_margin": {"type": "float", "default": 0.05},
            "fleet_min_hosts": {"type": "int", "default": 3},
        },
        required_if=[("mode", "resolve", ("thresholds",)), ("mode", "host", ("host", "run_id", "results_dir")),
                     ("mode", "fleet", ("run_id", "results_dir"))],
        supports_check_mode=True,
    )
    p = module.params
    if p["mode"] == "resolve":
        try:
            module.exit_json(changed=False, **resolve(p))
        except ThresholdError as exc:
            module.fail_json(msg=f"thresholds: {exc}")
    run_dir = os.path.join(p["results_dir"], p["run_id"])
    if p["mode"] == "host":
        doc = result_document(p["host"], p["facts"], p["checks"], p["tier"], p["run_id"])
        path = os.path.join(run_dir, f"{p['host']}.json")
        if not module.check_mode:
            atomic_write(path, json.dumps(doc, indent=2, sort_keys=False, default=str) + "\n")
        module.exit_json(changed=not module.check_mode, path=path, document=doc, prometheus=to_prometheus(doc),
                         summary=doc["summary"])
    docs, bad = load_run(run_dir)
    out = fleet(docs, p["expected_hosts"], p["fleet_margin"], p["fleet_min_hosts"])
    out["failures"] += [f"unreadable result {b}" for b in bad]
    path = os.path.join(run_dir, "junit.xml")
    if not module.check_mode:
        atomic_write(path, to_junit(docs))
        atomic_write(os.path.join(run_dir, "fleet.json"), json.dumps({"schema_version": 1, "run_id": p["run_id"],
                                                                       **out}, indent=2) + "\n")
    module.exit_json(changed=not module.check_mode, path=path, **out)


if __name__ == "__main__":
    main()
