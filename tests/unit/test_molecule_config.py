"""Molecule scenarios extend .config/molecule/config.yml; what they must repeat stays equal to the base.

Molecule replaces lists when it merges configs, so each scenario repeats `platforms` to give its instance a
role-unique name (scenarios run one after another, and a leftover instance must not collide with another
role's). These tests keep the repeated entries equal to the base apart from the name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / ".config" / "molecule" / "config.yml"
SCENARIOS = sorted(ROOT.glob("roles/*/molecule/*/molecule.yml"))


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def test_base_config() -> None:
    base = load(BASE)
    assert base["driver"]["name"] == "podman"
    assert base["dependency"]["enabled"] is False
    [platform] = base["platforms"]
    assert platform["image"] == "${BMAI_NODE_IMAGE}"
    assert platform["systemd"] == "always" and platform["command"] == "/sbin/init"
    assert platform["privileged"] is False
    assert set(platform["capabilities"]) == {"NET_RAW", "NET_ADMIN"}
    assert "network" not in platform, "molecule destroy deletes a platform's network: use extra_opts"
    assert base["verifier"] == {"name": "testinfra", "options": {"connection": "podman"}}
    env = base["ansible"]["env"]
    assert env["ANSIBLE_COLLECTIONS_PATH"] == "${MOLECULE_PROJECT_DIRECTORY}/../../collections"
    assert env["ANSIBLE_ROLES_PATH"] == "${MOLECULE_PROJECT_DIRECTORY}/.."
    assert "$(" not in BASE.read_text(), "Molecule interpolates $ everywhere, comments included"


def test_every_role_has_a_default_scenario() -> None:
    roles = sorted(p.name for p in (ROOT / "roles").iterdir() if p.is_dir())
    assert roles == sorted({s.parents[2].name for s in SCENARIOS if s.parent.name == "default"})


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: f"{s.parents[2].name}/{s.parent.name}")
def test_scenario_platform_equals_base_but_name(scenario: Path) -> None:
    [base_platform] = load(BASE)["platforms"]
    config = load(scenario)
    [platform] = config["platforms"]
    role = scenario.parents[2].name
    suffix = "" if scenario.parent.name == "default" else f"-{scenario.parent.name}"
    assert platform["name"] == f"molecule-{role}{suffix}".replace("_", "-")
    assert {k: v for k, v in platform.items() if k != "name"} == {k: v for k, v in base_platform.items() if k != "name"}
    assert config["verifier"]["options"]["hosts"] == platform["name"]
    assert (scenario.parent / "converge.yml").is_file()
    tests = list((scenario.parent / "tests").glob("test_*.py"))
    assert tests, "each scenario verifies real state with testinfra"


def test_instance_names_are_unique() -> None:
    names = [load(s)["platforms"][0]["name"] for s in SCENARIOS]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"molecule-[a-z0-9-]+", n) for n in names)
