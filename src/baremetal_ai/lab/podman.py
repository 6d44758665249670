"""Thin wrapper over the podman CLI (rootful). Every call is a subprocess; errors become UserError."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from baremetal_ai.errors import UserError

LABEL = "io.baremetal-ai.lab"


def require_podman() -> str:
    path = shutil.which("podman")
    if not path:
        raise UserError("podman is not installed: run `make bootstrap` (or `apt-get install podman runc`)")
    return path


def run(args: Sequence[str], *, check: bool = True, input_bytes: bytes | None = None,
        timeout: float | None = 600) -> subprocess.CompletedProcess[str]:
    cmd = [require_podman(), *args]
    proc = subprocess.run(cmd, input=input_bytes.decode() if input_bytes else None,
                          capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout).strip().splitlines()
        raise UserError(f"podman {' '.join(args[:3])} failed: {err[-1] if err else 'exit ' + str(proc.returncode)}")
    return proc


def run_json(args: Sequence[str]) -> Any:
    out = run(args).stdout.strip()
    return json.loads(out) if out else []


def exists(kind: str, name: str) -> bool:
    return run([kind, "exists", name], check=False).returncode == 0


def containers(lab: str) -> list[dict[str, Any]]:
    """Containers labelled for this lab: name, state ('running', 'exited', ...), labels."""
    rows = run_json(["ps", "-a", "--filter", f"label={LABEL}={lab}", "--format", "json"])
    return [{"name": r["Names"][0], "state": r.get("State", ""), "labels": r.get("Labels") or {}}
            for r in rows]


def networks(lab: str) -> list[str]:
    rows = run_json(["network", "ls", "--filter", f"label={LABEL}={lab}", "--format", "json"])
    return [r["name"] for r in rows]


def all_lab_names() -> set[str]:
    names = {c["labels"].get(LABEL) for c in containers_all()}
    rows = run_json(["network", "ls", "--format", "json"])
    names |= {(r.get("labels") or {}).get(LABEL) for r in rows}
    return {n for n in names if n}


def containers_all() -> list[dict[str, Any]]:
    rows = run_json(["ps", "-a", "--filter", f"label={LABEL}", "--format", "json"])
    return [{"name": r["Names"][0], "state": r.get("State", ""), "labels": r.get("Labels") or {}}
            for r in rows]


def inspect_network(name: str) -> dict[str, Any]:
    return run_json(["network", "inspect", name])[0]


def is_running(name: str) -> bool:
    proc = run(["inspect", "--format", "{{.State.Running}}", name], check=False)
    return proc.returncode == 0 and proc.stdout.strip() == "true"


def containers_by_names(names: list[str]) -> list[dict[str, Any]]:
    if not names:
        return []
    args = ["ps", "-a", "--format", "json"]
    for n in names:
        args += ["--filter", f"name=^{n}$"]
    rows = run_json(args)
    return [{"name": r["Names"][0], "state": r.get("State", ""), "labels": r.get("Labels") or {}}
            for r in rows]
