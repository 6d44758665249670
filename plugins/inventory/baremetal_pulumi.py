# Copyright: baremetal-ai contributors
# Apache-2.0 (see the project's pyproject.toml)
"""Ansible inventory from the Pulumi stack output `nodes` (the declare stage's contract with Ansible)."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleParserError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.inventory import BaseInventoryPlugin, Constructable

DOCUMENTATION = r"""
name: baremetal_pulumi
short_description: GPU nodes from the baremetal-ai Pulumi stack output C(nodes)
description:
  - Reads the C(nodes) output of the baremetal-ai Pulumi program, either from a saved
    C(pulumi stack output --json) file (O(outputs_file)) or by running C(pulumi stack output --json)
    for a stack (O(stack)).
  - The outputs must carry C(nodes_schema_version); versions this plugin does not know are rejected.
  - Every node becomes a host in group C(gpu_nodes) and in the groups C(gpu_<gpu model>),
    C(fabric_<fabric kind>) (C(fabric_roce) or C(fabric_infiniband)) and C(label_<key>_<value>) for each
    label. Group names are lower case; every run of characters other than letters, digits and C(_)
    becomes one C(_) (C(H100-SXM5-80GB) gives C(gpu_h100_sxm5_80gb)).
  - Host variables follow the inventory contract in C(inventories/README.md) - C(ansible_host),
    C(node_mgmt_interface), C(node_fabric_interface), C(node_fabric_address), C(node_fabric_prefix)
    (only when the node declares one), C(node_fabric_mtu), C(node_gpu_model), C(node_gpu_count),
    C(bmc_endpoint) (null for cloud nodes without a BMC), C(bmc_system_id) - plus C(node_fabric_kind)
    and C(node_labels).
  - C(bmc_username), C(bmc_password) and C(bmc_ca_file) never come from stack outputs; set them in group_vars.
  - The file must be named C(*.baremetal_pulumi.yml) or C(*.baremetal_pulumi.yaml).
  - Set C(ANSIBLE_INVENTORY_UNPARSED_FAILED=true) so that a broken source fails the run instead of
    leaving an empty inventory.
requirements:
  - The Pulumi CLI, only when O(stack) is used.
extends_documentation_fragment:
  - constructed
options:
  plugin:
    description: Marks this file as a source for this plugin.
    required: true
    type: str
    choices: [baremetal_pulumi]
  outputs_file:
    description:
      - JSON file holding the output of C(pulumi stack output --json) (an object of all stack outputs).
      - A relative path is resolved against the directory of this inventory file; C(~) is expanded.
      - Mutually exclusive with O(stack); one of the two is required.
    type: str
  stack:
    description:
      - Name of the Pulumi stack to read (C(dev), C(org/project/prod)); the plugin runs
        O(pulumi_binary) C(stack output --json --stack <stack>) in O(pulumi_cwd).
      - The Pulumi CLI reads its usual environment (C(PULUMI_ACCESS_TOKEN), C(PULUMI_BACKEND_URL),
        C(PULUMI_CONFIG_PASSPHRASE), ...).
      - Mutually exclusive with O(outputs_file); one of the two is required.
    type: str
  pulumi_cwd:
    description:
      - Directory of the Pulumi project (holding C(Pulumi.yaml)) to run the CLI in.
      - A relative path is resolved against the directory of this inventory file. Defaults to that directory.
    type: str
  pulumi_binary:
    description:
      - The Pulumi CLI. A bare name is looked up on E(PATH); a path with a C(/) is used as is
        (relative to the directory of this inventory file).
    type: str
    default: pulumi
  pulumi_timeout:
    description: Seconds to wait for C(pulumi stack output) before failing.
    type: int
    default: 120
"""

EXAMPLES = r"""
# inventories/prod/nodes.baremetal_pulumi.yml: run the Pulumi CLI for stack "prod".
plugin: baremetal_pulumi
stack: prod
pulumi_cwd: ../../pulumi
---
# inventories/prod/nodes.baremetal_pulumi.yml: read a saved copy of the outputs
# (pulumi stack output --json --stack prod > inventories/prod/stack-outputs.json).
plugin: baremetal_pulumi
outputs_file: stack-outputs.json
strict: true
# Extra groups and variables from the node variables (standard constructed options).
groups:
  has_bmc: bmc_endpoint is not none
  big_nodes: node_gpu_count >= 8
keyed_groups:
  - key: node_labels.rack | default('')
    prefix: rack
    default_value: unracked
compose:
  ansible_user: "'ansible'"
  nccl_ib_disable: "node_fabric_kind != 'infiniband'"
"""

SUPPORTED_SCHEMA_VERSION = 1
SCHEMA_FIELD = "nodes_schema_version"
NODES_OUTPUT = "nodes"
FABRIC_KINDS = ("roce", "infiniband")
INSTALL_HINT = (
    "install the Pulumi CLI (https://www.pulumi.com/docs/install/) or set outputs_file to a saved "
    "`pulumi stack output --json` file"
)
_UNSAFE = re.compile(r"[^a-z0-9_]+")


def sanitize(*parts: Any) -> str:
    """Group name from parts: lower case, runs of other characters become one '_', parts joined by '_'."""
    cleaned = (_UNSAFE.sub("_", str(p).lower()).strip("_") for p in parts)
    return "_".join(p for p in cleaned if p)


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def check_schema_version(outputs: Mapping[str, Any], source: str) -> None:
    if SCHEMA_FIELD not in outputs:
        raise AnsibleParserError(
            f"{source}: stack output '{SCHEMA_FIELD}' is missing; this plugin reads version "
            f"{SUPPORTED_SCHEMA_VERSION} of the '{NODES_OUTPUT}' output and needs the Pulumi program to export it"
        )
    version = outputs[SCHEMA_FIELD]
    if not _is_int(version):
        raise AnsibleParserError(
            f"{source}: stack output '{SCHEMA_FIELD}' = {version!r} is not an integer "
            f"(this plugin supports version {SUPPORTED_SCHEMA_VERSION})"
        )
    if version != SUPPORTED_SCHEMA_VERSION:
        newer = " (newer than this plugin: update baremetal-ai)" if version > SUPPORTED_SCHEMA_VERSION else ""
        raise AnsibleParserError(
            f"{source}: stack output '{SCHEMA_FIELD}' = {version} is not supported{newer}; "
            f"this plugin supports version {SUPPORTED_SCHEMA_VERSION}"
        )


def _fabric_address(node: Mapping[str, Any], problems: list[str]) -> tuple[str | None, int | None]:
    """fabric_address may be 'a.b.c.d' or 'a.b.c.d/len'; an optional 'fabric_prefix' must agree with it."""
    raw = node["fabric_address"]
    try:
        iface = ipaddress.ip_interface(raw)
    except ValueError:
        problems.append(f"'fabric_address' = {raw!r} is not an IP address (or address/prefix)")
        return None, None
    prefix = iface.network.prefixlen if "/" in raw else None
    declared = node.get("fabric_prefix")
    if declared is not None:
        if not _is_int(declared) or not 1 <= declared <= iface.max_prefixlen:
            problems.append(f"'fabric_prefix' = {declared!r} is not an integer in 1..{iface.max_prefixlen}")
        elif prefix is not None and declared != prefix:
            problems.append(f"'fabric_prefix' = {declared} disagrees with 'fabric_address' = {raw!r}")
        else:
            prefix = declared
    return str(iface.ip), prefix


def node_hostvars(node: Any) -> tuple[dict[str, Any], list[str]]:
    """The contract variables of one node, and the problems found (field named in each)."""
    if not isinstance(node, Mapping):
        return {}, [f"is a {_type_name(node)}, not an object"]
    problems: list[str] = []

    def need(field: str, ok: Any, expected: str) -> bool:
        if field not in node:
            problems.append(f"required field '{field}' is missing")
            return False
        if not ok(node[field]):
            problems.append(f"'{field}' = {node[field]!r} is not {expected}")
            return False
        return True

    str_field = "a non-empty string"
    need("mgmt_address", _nonempty_str, str_field)
    has_fabric = need("fabric_address", _nonempty_str, str_field)
    need("bmc_endpoint", lambda v: v is None or _nonempty_str(v), "a non-empty string or null")
    has_bmc = node.get("bmc_endpoint") is not None
    need(
        "bmc_system_id",
        (lambda v: _nonempty_str(v)) if has_bmc else (lambda v: v is None or _nonempty_str(v)),
        str_field if has_bmc else "a non-empty string or null",
    )
    need("gpu_model", _nonempty_str, str_field)
    need("gpu_count", lambda v: _is_int(v) and v >= 0, "an integer >= 0")
    if need("nic_names", lambda v: isinstance(v, Mapping), "an object with 'mgmt' and 'fabric'"):
        for role in ("mgmt", "fabric"):
            if not _nonempty_str(node["nic_names"].get(role)):
                problems.append(f"'nic_names.{role}' = {node['nic_names'].get(role)!r} is not {str_field}")
    need("fabric_kind", lambda v: v in FABRIC_KINDS, " or ".join(repr(k) for k in FABRIC_KINDS))
    need("mtu", lambda v: _is_int(v) and v > 0, "a positive integer")
    labels = node.get("labels") or {}
    if not isinstance(labels, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str | int | float | bool) for k, v in labels.items()
    ):
        problems.append(f"'labels' = {labels!r} is not an object of string keys and scalar values")
        labels = {}

    fabric_address, fabric_prefix = _fabric_address(node, problems) if has_fabric else (None, None)
    if problems:
        return {}, problems

    hostvars = {
        "ansible_host": node["mgmt_address"],
        "node_mgmt_interface": node["nic_names"]["mgmt"],
        "node_fabric_interface": node["nic_names"]["fabric"],
        "node_fabric_address": fabric_address,
        "node_fabric_mtu": node["mtu"],
        "node_fabric_kind": node["fabric_kind"],
        "node_gpu_model": node["gpu_model"],
        "node_gpu_count": node["gpu_count"],
        "bmc_endpoint": node["bmc_endpoint"],
        "bmc_system_id": node["bmc_system_id"],
        "node_labels": {k: v if isinstance(v, str) else json.dumps(v) for k, v in labels.items()},
    }
    if fabric_prefix is not None:
        hostvars["node_fabric_prefix"] = fabric_prefix
    return hostvars, []


def parse_nodes(outputs: Any, source: str) -> dict[str, dict[str, Any]]:
    """Host name -> contract variables for every node; raises AnsibleParserError naming node and field."""
    if not isinstance(outputs, Mapping):
        raise AnsibleParserError(
            f"{source}: expected the JSON object printed by `pulumi stack output --json`, got a {_type_name(outputs)}"
        )
    check_schema_version(outputs, source)
    if NODES_OUTPUT not in outputs:
        raise AnsibleParserError(f"{source}: stack output '{NODES_OUTPUT}' is missing")
    nodes = outputs[NODES_OUTPUT]
    if nodes == "[secret]":
        raise AnsibleParserError(
            f"{source}: stack output '{NODES_OUTPUT}' is a secret; the Pulumi program must not mark it secret "
            "(BMC credentials belong in group_vars)"
        )
    if not isinstance(nodes, list):
        raise AnsibleParserError(f"{source}: stack output '{NODES_OUTPUT}' is a {_type_name(nodes)}, not a list")

    hosts: dict[str, dict[str, Any]] = {}
    seen: set[str] = set()
    problems: list[str] = []
    for i, node in enumerate(nodes):
        name = node.get("name") if isinstance(node, Mapping) else None
        where = f"node {name!r} ({NODES_OUTPUT}[{i}])" if _nonempty_str(name) else f"node {NODES_OUTPUT}[{i}]"
        if not _nonempty_str(name):
            problems.append(
                f"{where}: required field 'name' is missing"
                if isinstance(node, Mapping) and "name" not in node
                else f"{where}: 'name' = {name!r} is not a non-empty string"
            )
        elif name in seen:
            problems.append(f"{where}: duplicate node name {name!r}")
        else:
            seen.add(name)
        hostvars, node_problems = node_hostvars(node)
        problems.extend(f"{where}: {p}" for p in node_problems)
        if not problems and _nonempty_str(name):
            hosts[name] = hostvars
    if problems:
        raise AnsibleParserError(
            f"{source}: invalid stack output '{NODES_OUTPUT}' (schema version {SUPPORTED_SCHEMA_VERSION}):\n  - "
            + "\n  - ".join(problems)
        )
    return hosts


def host_groups(hostvars: Mapping[str, Any]) -> list[str]:
    """The plugin's own groups for one host (besides gpu_nodes)."""
    groups = [sanitize("gpu", hostvars["node_gpu_model"]), sanitize("fabric", hostvars["node_fabric_kind"])]
    groups += [sanitize("label", k, v) for k, v in sorted(hostvars["node_labels"].items())]
    return groups


class InventoryModule(BaseInventoryPlugin, Constructable):
    NAME = "baremetal_pulumi"

    def verify_file(self, path: str) -> bool:
        return super().verify_file(path) and path.endswith((".baremetal_pulumi.yml", ".baremetal_pulumi.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache=cache)
        self._read_config_data(path)
        base_dir = os.path.dirname(os.path.abspath(path))

        outputs_file = self.get_option("outputs_file")
        stack = self.get_option("stack")
        if outputs_file and stack:
            raise AnsibleParserError(f"{path}: set either outputs_file or stack, not both")
        if outputs_file:
            outputs, source = self._read_outputs_file(outputs_file, base_dir)
        elif stack:
            outputs, source = self._run_pulumi(stack, base_dir)
        else:
            raise AnsibleParserError(
                f"{path}: set outputs_file (a saved `pulumi stack output --json`) or stack (a Pulumi stack name)"
            )

        hosts = parse_nodes(outputs, source)
        strict = self.get_option("strict")
        self.inventory.add_group("gpu_nodes")
        for name, hostvars in hosts.items():
            self.inventory.add_host(name, group="gpu_nodes")
            for key, value in hostvars.items():
                self.inventory.set_variable(name, key, value)
            for group in host_groups(hostvars):
                self.inventory.add_group(group)
                self.inventory.add_child(group, name)

            all_vars = self.inventory.get_host(name).get_vars()
            self._set_composite_vars(self.get_option("compose"), all_vars, name, strict=strict)
            self._add_host_to_composed_groups(self.get_option("groups"), {}, name, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), {}, name, strict=strict)

    @staticmethod
    def _resolve(value: str, base_dir: str) -> str:
        return os.path.normpath(os.path.join(base_dir, os.path.expanduser(os.path.expandvars(value))))

    def _read_outputs_file(self, outputs_file: str, base_dir: str) -> tuple[Any, str]:
        path = self._resolve(outputs_file, base_dir)
        source = f"outputs_file {path}"
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f), source
        except FileNotFoundError as e:
            raise AnsibleParserError(
                f"{source} does not exist; write it with `pulumi stack output --json > {path}`"
            ) from e
        except (OSError, UnicodeDecodeError) as e:
            raise AnsibleParserError(f"{source}: cannot read: {to_native(e)}") from e
        except json.JSONDecodeError as e:
            raise AnsibleParserError(f"{source} is not JSON: {to_native(e)}") from e

    def _find_pulumi(self, base_dir: str) -> str:
        binary = self.get_option("pulumi_binary") or "pulumi"
        if "/" in binary:
            found = self._resolve(binary, base_dir)
            if os.path.isfile(found) and os.access(found, os.X_OK):
                return found
            raise AnsibleParserError(f"Pulumi CLI {found} does not exist or is not executable: {INSTALL_HINT}")
        found = shutil.which(binary)
        if not found:
            raise AnsibleParserError(f"Pulumi CLI {binary!r} was not found on PATH: {INSTALL_HINT}")
        return found

    def _run_pulumi(self, stack: str, base_dir: str) -> tuple[Any, str]:
        binary = self._find_pulumi(base_dir)
        cwd = self._resolve(self.get_option("pulumi_cwd") or ".", base_dir)
        if not os.path.isdir(cwd):
            raise AnsibleParserError(f"pulumi_cwd {cwd} is not a directory")
        cmd = [binary, "stack", "output", "--json", "--non-interactive", "--stack", stack]
        source = f"`pulumi stack output --json --stack {stack}` (in {cwd})"
        timeout = self.get_option("pulumi_timeout")
        try:
            proc = subprocess.run(
                cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False
            )
        except subprocess.TimeoutExpired as e:
            raise AnsibleParserError(f"{source} did not finish within {timeout} s (pulumi_timeout)") from e
        except OSError as e:
            raise AnsibleParserError(f"{source} could not run {binary}: {to_native(e)}: {INSTALL_HINT}") from e
        if proc.returncode != 0:
            err = (proc.stderr or proc.stdout).strip()[-2000:]
            raise AnsibleParserError(f"{source} failed with exit status {proc.returncode}: {err}")
        try:
            return json.loads(proc.stdout), source
        except json.JSONDecodeError as e:
            raise AnsibleParserError(f"{source} did not print JSON: {to_native(e)}") from e
