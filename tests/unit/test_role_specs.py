"""Every role under roles/: defaults/main.yml and meta/argument_specs.yml describe the same variables.

Generic on purpose: a new role is covered as soon as it exists. Conventions (docs/conventions.md):
- the public variables in defaults/main.yml are exactly the optional options of the `main` entry point
  (a required option has no default by definition, so it must not appear in defaults);
- each default has the declared type (and element type, sub-option types, choices);
- public variables start with `<role>_`, and each one has a comment right above it in defaults/main.yml.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p for p in (ROOT / "roles").iterdir() if p.is_dir() and not p.name.startswith("."))

# argument_spec type -> Python types a literal YAML default may have
PY_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "path": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def defaults_of(role: Path) -> dict[str, Any]:
    return load(role / "defaults" / "main.yml") or {}


def main_options(role: Path) -> dict[str, Any]:
    specs = load(role / "meta" / "argument_specs.yml")
    assert specs and "main" in specs.get("argument_specs", {}), f"{role.name}: meta/argument_specs.yml has no main"
    return specs["argument_specs"]["main"].get("options") or {}


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def type_errors(where: str, value: Any, spec: dict[str, Any]) -> list[str]:
    """Mismatches between a default value and its argument spec (recursing into elements and options)."""
    declared = spec.get("type", "str")
    if declared == "raw" or is_template(value):
        return []  # raw accepts anything; a template is only typed once Ansible renders it
    if declared not in PY_TYPES:
        return [f"{where}: unknown type {declared!r} in argument_specs"]
    allowed = PY_TYPES[declared]
    if isinstance(value, bool) and bool not in allowed:
        return [f"{where}: default {value!r} is a bool, declared {declared}"]
    if not isinstance(value, allowed):
        return [f"{where}: default {value!r} is {type(value).__name__}, declared {declared}"]
    errors = []
    if "choices" in spec and declared != "list" and value not in spec["choices"]:
        errors.append(f"{where}: default {value!r} not in choices {spec['choices']}")
    if declared == "list":
        element_spec = {"type": spec.get("elements", "raw")}
        if "options" in spec:
            element_spec["options"] = spec["options"]
        if "choices" in spec:
            element_spec["choices"] = spec["choices"]
        for i, item in enumerate(value):
            errors += type_errors(f"{where}[{i}]", item, element_spec)
    if declared == "dict" and "options" in spec:
        options = spec["options"]
        unknown = set(value) - set(options)
        if unknown:
            errors.append(f"{where}: keys {sorted(unknown)} not declared in options")
        for key, sub in options.items():
            if key in value:
                errors += type_errors(f"{where}.{key}", value[key], sub)
            elif sub.get("required"):
                errors.append(f"{where}: required key {key!r} missing")
    return errors


def test_there_are_roles() -> None:
    assert {"preflight", "common"} <= {r.name for r in ROLES}


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_defaults_match_argument_specs(role: Path) -> None:
    defaults = defaults_of(role)
    options = main_options(role)
    optional = {name for name, spec in options.items() if not spec.get("required")}
    required = set(options) - optional
    assert set(defaults) - set(options) == set(), "in defaults/main.yml but not in meta/argument_specs.yml"
    assert optional - set(defaults) == set(), "optional in meta/argument_specs.yml but no default"
    assert required & set(defaults) == set(), "required options must not have defaults"


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_default_types_match_argument_specs(role: Path) -> None:
    options = main_options(role)
    errors = []
    for name, value in defaults_of(role).items():
        if name in options:
            errors += type_errors(name, value, options[name])
    assert errors == []


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_every_option_is_described(role: Path) -> None:
    def undescribed(prefix: str, options: dict[str, Any]) -> list[str]:
        missing = []
        for name, spec in options.items():
            if not spec.get("description"):
                missing.append(prefix + name)
            missing += undescribed(f"{prefix}{name}.", spec.get("options") or {})
        return missing

    assert undescribed("", main_options(role)) == []


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_public_variables_are_prefixed_and_commented(role: Path) -> None:
    path = role / "defaults" / "main.yml"
    if not path.is_file():
        pytest.skip(f"{role.name} has no defaults/main.yml")
    lines = path.read_text().splitlines()
    for name in defaults_of(role):
        assert name.startswith(f"{role.name}_"), f"{name} does not start with {role.name}_"
        above = next(i for i, line in enumerate(lines) if line.startswith(f"{name}:")) - 1
        # one comment may describe a run of one-line variables (e.g. <role>_mtu_min / <role>_mtu_max)
        while above >= 0 and re.match(rf"^{role.name}_\w+: \S", lines[above]):
            above -= 1
        assert above >= 0 and lines[above].startswith("#"), f"{name} has no comment right above it"


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_meta_main(role: Path) -> None:
    info = load(role / "meta" / "main.yml")["galaxy_info"]
    version = tuple(int(x) for x in str(info["min_ansible_version"]).split("."))
    assert version >= (2, 15)
    assert info["platforms"], "meta/main.yml lists no platforms"
    assert info.get("description") and info.get("license")


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r.name)
def test_readme_documents_every_option(role: Path) -> None:
    readme = role / "README.md"
    assert readme.is_file(), f"{role.name} has no README.md"
    text = readme.read_text()
    assert [name for name in main_options(role) if f"`{name}`" not in text] == []
