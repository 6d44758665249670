"""Ansible callback plugin: collects, per host, every task that would change and every fact that differs in a
drift run (playbooks/drift.yml) and writes the report as JSON, Markdown and JUnit XML."""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import time
import xml.etree.ElementTree as ET
from typing import Any

from ansible import context
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
---
name: baremetal_drift
type: aggregate
short_description: Drift report (JSON, Markdown, JUnit) from a check-mode converge and a fact comparison
description:
  - Active only in a run that contains a play with the variable C(baremetal_drift_run=true)
    (C(playbooks/drift.yml)); in any other playbook it does nothing, so it can stay enabled in ansible.cfg.
  - Collects per host every task that reports C(changed) (in check mode, a change the converge would make), with
    its diff (a task with C(no_log) never shows its diff or values), every C(drift_facts) difference, every
    failed task and every unreachable host. Hosts the run targeted but never heard from are reported as
    C(no_result), never as drift-free.
  - Writes C(<dir>/<run id>.json) (schema_version 1), C(.md) and C(.junit.xml), where the run id and the
    directory come from the C(baremetal_drift) fact the playbook's first play sets. The report is written when
    each play starts (so the playbook's last play can read it and set the exit status) and again at the end.
version_added: "0.1.0"
author: baremetal-ai contributors
requirements:
  - enable it (ansible.cfg callbacks_enabled = baremetal_drift, or ANSIBLE_CALLBACKS_ENABLED)
"""

SCHEMA_VERSION = 1
DIFF_LIMIT = 6000
ANSI = re.compile(r"\x1b\[[0-9;]*m")
HIDDEN = "(hidden: the task has no_log)"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def host_status(h: dict[str, Any]) -> str:
    if h.get("unreachable"):
        return "unreachable"
    if h.get("failed_tasks"):
        return "error"
    if not h.get("seen"):
        return "no_result"
    if h.get("changes") or h.get("facts"):
        return "drift"
    if not h.get("facts_checked"):
        return "incomplete"
    return "clean"


def verdict(hosts: dict[str, dict[str, Any]]) -> str:
    """unreachable (or no result) > error > drift (or incomplete) > clean."""
    statuses = {host_status(h) for h in hosts.values()}
    if not statuses:
        return "error"
    for worst, names in (("unreachable", {"unreachable", "no_result"}), ("error", {"error"}),
                         ("drift", {"drift", "incomplete"})):
        if statuses & names:
            return worst
    return "clean"


def summary_lines(hosts: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for name in sorted(hosts):
        h = hosts[name]
        st = host_status(h)
        if st == "clean":
            lines.append(f"{name}: clean")
        elif st == "drift":
            items = [c["task"] + (f" [{c['item']}]" if c.get("item") else "") for c in h["changes"]]
            items += [f"{f['item']}: {f['baseline']!r} -> {f['current']!r}" for f in h["facts"]]
            lines.append(f"{name}: drift ({len(h['changes'])} task(s) would change, {len(h['facts'])} fact(s) "
                         f"differ): " + "; ".join(items))
        elif st == "unreachable":
            lines.append(f"{name}: unreachable: {h['unreachable']}")
        elif st == "error":
            lines.append(f"{name}: error: " + "; ".join(f"{t['task']}: {t['msg']}" for t in h["failed_tasks"]))
        elif st == "incomplete":
            lines.append(f"{name}: incomplete: the fact comparison did not run")
        else:
            lines.append(f"{name}: no result (targeted, but no task reported for it)")
    return lines


def build_report(run_id: str, started: str, duration_s: float, playbook: str | None, check_mode: bool,
                 hosts: dict[str, dict[str, Any]], finished: bool) -> dict[str, Any]:
    out_hosts = {}
    for name in sorted(hosts):
        h = hosts[name]
        out_hosts[name] = {"status": host_status(h), "changes": h["changes"], "facts": h["facts"],
                           "failed_tasks": h["failed_tasks"], "unreachable": h["unreachable"],
                           "baseline_missing": h.get("baseline_missing", False)}
    counts: dict[str, int] = {}
    for h in out_hosts.values():
        counts[h["status"]] = counts.get(h["status"], 0) + 1
    return {"schema_version": SCHEMA_VERSION, "kind": "drift", "run_id": run_id, "started": started,
            "duration_s": round(duration_s, 1), "finished": finished, "playbook": playbook,
            "check_mode": check_mode, "verdict": verdict(hosts), "counts": counts,
            "summary_lines": summary_lines(hosts), "hosts": out_hosts}


def _md_cell(value: Any) -> str:
    text = "(absent)" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")[:200]


def render_markdown(report: dict[str, Any]) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(report["counts"].items())) or "no hosts"
    lines = [f"# Drift run {report['run_id']}", "",
             f"**Verdict: {report['verdict']}** ({counts}). Started {report['started']}, "
             f"{report['duration_s']} s, playbook `{report['playbook']}`, check mode: {report['check_mode']}.", "",
             "| host | status | tasks that would change | facts that differ |", "|---|---|---|---|"]
    for name, h in report["hosts"].items():
        lines.append(f"| {name} | {h['status']} | {len(h['changes'])} | {len(h['facts'])} |")
    for name, h in report["hosts"].items():
        if h["status"] == "clean":
            continue
        lines += ["", f"## {name}: {h['status']}"]
        if h["unreachable"]:
            lines += ["", f"Unreachable: {_md_cell(h['unreachable'])}"]
        for t in h["failed_tasks"]:
            lines += ["", f"Failed task `{t['task']}`: {_md_cell(t['msg'])}"]
        if h["changes"]:
            lines += ["", "### Tasks that would change", ""]
            for c in h["changes"]:
                label = f"`{c['task']}`" + (f" (item `{c['item']}`)" if c.get("item") else "")
                lines.append(f"- {label}, action `{c['action']}`" + (" (handler)" if c.get("handler") else ""))
                if c.get("diff"):
                    lines += ["", "  ```diff", *("  " + ln for ln in c["diff"].splitlines()), "  ```"]
        if h["facts"]:
            lines += ["", "### Facts that differ from the baseline", "", "| item | baseline | now | from |",
                      "|---|---|---|---|"]
            for f in h["facts"]:
                lines.append(f"| `{f['item']}` | {_md_cell(f['baseline'])} | {_md_cell(f['current'])} | "
                             f"{f.get('source', '')} |")
    return "\n".join(lines) + "\n"


def render_junit(report: dict[str, Any]) -> str:
    hosts = report["hosts"]
    failures = sum(1 for h in hosts.values() if h["status"] in ("drift", "incomplete"))
    errors = sum(1 for h in hosts.values() if h["status"] in ("unreachable", "error", "no_result"))
    suite = ET.Element("testsuite", name="drift", tests=str(len(hosts)), failures=str(failures),
                       errors=str(errors), time=str(report["duration_s"]), timestamp=report["started"])
    for name, h in hosts.items():
        case = ET.SubElement(suite, "testcase", classname=f"drift.{report['run_id']}", name=name)
        st = h["status"]
        if st in ("drift", "incomplete"):
            body = [f"would change: {c['task']}" + (f" [{c['item']}]" if c.get("item") else "")
                    for c in h["changes"]]
            body += [f"differs: {f['item']}: {f['baseline']!r} -> {f['current']!r}" for f in h["facts"]]
            el = ET.SubElement(case, "failure", type=st,
                               message=f"{len(h['changes'])} task(s) would change, {len(h['facts'])} fact(s) differ")
            el.text = "\n".join(body) or "the fact comparison did not run"
        elif st in ("unreachable", "error", "no_result"):
            msg = (h["unreachable"] if st == "unreachable" else
                   "; ".join(f"{t['task']}: {t['msg']}" for t in h["failed_tasks"]) if st == "error" else
                   "no task reported for this host")
            el = ET.SubElement(case, "error", type=st, message=str(msg)[:500])
            el.text = str(msg)
    ET.indent(suite)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"


def write_report(report: dict[str, Any], directory: str) -> str:
    os.makedirs(directory, exist_ok=True)
    base = os.path.join(directory, report["run_id"])
    for suffix, text in ((".json", json.dumps(report, indent=2, sort_keys=False, default=str) + "\n"),
                         (".md", render_markdown(report)), (".junit.xml", render_junit(report))):
        tmp = f"{base}{suffix}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, base + suffix)
    return base + ".json"


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "baremetal_drift"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._active = False
        self._run: dict[str, str] | None = None
        self._hosts: dict[str, dict[str, Any]] = {}
        self._t0 = time.monotonic()
        self._started = _now()
        self._playbook: str | None = None
        self._play_is_controller = False
        self._check_mode = False

    # ------------------------------------------------------------------ bookkeeping
    def _host(self, name: str) -> dict[str, Any]:
        return self._hosts.setdefault(name, {"seen": False, "changes": [], "facts": [], "failed_tasks": [],
                                             "unreachable": None, "facts_checked": False})

    def _counts(self, result: Any) -> bool:
        return self._active and not self._play_is_controller and result._host.get_name() != "localhost"

    def _write(self, finished: bool) -> None:
        if not self._active or not self._run:
            return
        report = build_report(self._run["run_id"], self._started, time.monotonic() - self._t0, self._playbook,
                              self._check_mode, self._hosts, finished)
        try:
            write_report(report, self._run["dir"])
        except OSError as exc:
            self._display.warning(f"baremetal_drift: could not write the report to {self._run['dir']}: {exc}")

    # ------------------------------------------------------------------ events
    def v2_playbook_on_start(self, playbook: Any) -> None:
        self._playbook = os.path.basename(getattr(playbook, "_file_name", "") or "") or None

    def v2_playbook_on_play_start(self, play: Any) -> None:
        pvars = play.vars if isinstance(play.vars, dict) else {}
        if pvars.get("baremetal_drift_run") in (True, "true", "True", "yes"):
            self._active = True
        if not self._active:
            return
        hosts = play.hosts if isinstance(play.hosts, list) else [play.hosts]
        self._play_is_controller = hosts in (["localhost"], ["127.0.0.1"])
        self._check_mode = bool(context.CLIARGS.get("check", False))
        if not self._play_is_controller:
            try:
                inventory = play.get_variable_manager()._inventory
                for h in inventory.get_hosts(hosts):
                    self._host(h.get_name())
            except Exception as exc:  # the report still lists every host that answered
                self._display.warning(f"baremetal_drift: could not list the play's hosts: {exc}")
        self._write(finished=False)

    def v2_runner_on_ok(self, result: Any) -> None:
        res = result._result
        if self._active and self._run is None:
            run = (res.get("ansible_facts") or {}).get("baremetal_drift")
            if isinstance(run, dict) and run.get("run_id") and run.get("dir"):
                self._run = {"run_id": str(run["run_id"]), "dir": str(run["dir"])}
        if not self._counts(result):
            return
        h = self._host(result._host.get_name())
        h["seen"] = True
        action = result._task.action or ""
        if action.endswith("drift_facts") and "differences" in res:
            h["facts_checked"] = True
            h["baseline_missing"] = bool(res.get("baseline_missing"))
            h["facts"].extend(res.get("differences") or [])
            return
        if res.get("changed") and "results" not in res:
            self._record_change(h, result, res, item=None)

    def v2_runner_item_on_ok(self, result: Any) -> None:
        if not self._counts(result):
            return
        res = result._result
        h = self._host(result._host.get_name())
        h["seen"] = True
        if res.get("changed") and not (result._task.action or "").endswith("drift_facts"):
            self._record_change(h, result, res, item=self._get_item_label(res))

    def _record_change(self, h: dict[str, Any], result: Any, res: dict[str, Any], item: Any) -> None:
        task = result._task
        hidden = bool(task.no_log) or bool(res.get("_ansible_no_log")) or "censored" in res
        diff = None
        if hidden:
            diff = HIDDEN
            item = None if item is None else "(hidden)"
        elif res.get("diff"):
            try:
                diff = ANSI.sub("", self._get_diff(res["diff"]) or "")
            except Exception:  # a diff the renderer does not understand is still a change
                diff = None
            if diff and len(diff) > DIFF_LIMIT:
                diff = diff[:DIFF_LIMIT] + f"\n... ({len(diff) - DIFF_LIMIT} more characters)"
        role = getattr(getattr(task, "_role", None), "get_name", lambda: None)()
        h["changes"].append({"task": task.get_name(), "role": role, "action": task.action,
                             "item": None if item is None else str(item), "diff": diff or None,
                             "handler": bool(getattr(task, "implicit", False)) or
                             type(task).__name__ == "Handler"})

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        if not self._counts(result) or ignore_errors:
            return
        h = self._host(result._host.get_name())
        h["seen"] = True
        res = result._result
        msg = HIDDEN if (result._task.no_log or "censored" in res) else str(res.get("msg") or res.get("stderr")
                                                                          or "failed")
        h["failed_tasks"].append({"task": result._task.get_name(), "msg": ANSI.sub("", msg)[:1000]})

    def v2_runner_on_unreachable(self, result: Any) -> None:
        if not self._counts(result):
            return
        h = self._host(result._host.get_name())
        h["seen"] = True
        h["unreachable"] = ANSI.sub("", str(result._result.get("msg") or "unreachable"))[:1000]

    def v2_playbook_on_stats(self, stats: Any) -> None:
        self._write(finished=True)
