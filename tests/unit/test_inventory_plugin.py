"""The `baremetal_pulumi` inventory plugin (plugins/inventory/baremetal_pulumi.py), run through the real
`ansible-inventory` / `ansible-doc` with the repository's ansible.cfg, on a saved stack output and a fake Pulumi CLI."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PLUGIN = ROOT / "plugins" / "inventory" / "baremetal_pulumi.py"
FIXTURE = ROOT / "tests" / "fixtures" / "pulumi" / "stack-outputs.json"

_spec = importlib.util.spec_from_file_location("baremetal_pulumi", PLUGIN)
assert _spec and _spec.loader
bp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bp)


def ansible_env(**extra: str) -> dict[str, str]:
    """The repository's ansible.cfg (its inventory_plugins finds the plugin), whatever the caller's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        # A source that fails to parse must fail the command, not leave an empty inventory.
        ANSIBLE_INVENTORY_UNPARSED_FAILED="true",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_LOCAL_TEMP=str(Path(os.environ.get("TMPDIR", "/tmp"))),
    )
    env.update(extra)
    return env


def unwrap(value: Any) -> Any:
    """ansible-inventory --list marks untrusted strings as {"__ansible_unsafe": ...}; give back plain values."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def inventory(source: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", str(source), *args],
        cwd=ROOT, env=env or ansible_env(), capture_output=True, text=True, timeout=120, check=False,
    )


def write_source(tmp_path: Path, config: dict[str, Any], name: str = "x.baremetal_pulumi.yml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"plugin": "baremetal_pulumi", **config}, sort_keys=False))
    return path


def listing(source: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = inventory(source, "--list", env=env)
    assert proc.returncode == 0, proc.stderr
    data = unwrap(json.loads(proc.stdout))
    # With inject_facts_as_vars = False (ansible.cfg) ansible-core always adds `ansible_local` (local facts, empty
    # without a fact cache entry) to every host's variables: Ansible's own, not the plugin's; checked, then dropped.
    for hv in data.get("_meta", {}).get("hostvars", {}).values():
        assert hv.pop("ansible_local", {}) == {}
    return data


def members(data: dict[str, Any], group: str) -> set[str]:
    return set(data.get(group, {}).get("hosts", []))


def failure(source: Path, env: dict[str, str] | None = None) -> str:
    proc = inventory(source, "--list", env=env)
    assert proc.returncode != 0, proc.stdout
    return " ".join(proc.stderr.split())


def outputs() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def fixture_listing(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("inv")
    (tmp / "stack-outputs.json").write_text(FIXTURE.read_text())
    # Relative outputs_file: resolved against the inventory file's directory, not the cwd (the repo root).
    return listing(write_source(tmp, {"outputs_file": "stack-outputs.json"}))


# --- saved outputs file, real ansible-inventory ------------------------------------------------------------


def test_groups_from_fixture(fixture_listing: dict[str, Any]) -> None:
    data = fixture_listing
    assert members(data, "gpu_nodes") == {"gpu01", "gpu02", "cloud-gpu01"}
    assert members(data, "gpu_h100_sxm5_80gb") == {"gpu01", "gpu02"}
    assert members(data, "gpu_h200_sxm5_141gb") == {"cloud-gpu01"}
    assert members(data, "fabric_roce") == {"gpu01", "gpu02"}
    assert members(data, "fabric_infiniband") == {"cloud-gpu01"}
    assert members(data, "label_rack_r12") == {"gpu01"}
    assert members(data, "label_rack_r13") == {"gpu02"}
    assert members(data, "label_role_training") == {"gpu01", "gpu02"}
    assert members(data, "label_role_inference") == {"cloud-gpu01"}
    assert members(data, "label_provider_cloud") == {"cloud-gpu01"}
    assert members(data, "label_topology_kubernetes_io_zone_dc1_row3") == {"gpu01", "gpu02"}


def test_hostvars_follow_inventory_contract(fixture_listing: dict[str, Any]) -> None:
    hv = fixture_listing["_meta"]["hostvars"]
    assert hv["gpu01"] == {
        "ansible_host": "192.0.2.11",
        "node_mgmt_interface": "eno1",
        "node_fabric_interface": "ens1f0np0",
        "node_fabric_address": "198.51.100.11",
        "node_fabric_prefix": 24,
        "node_fabric_mtu": 9000,
        "node_fabric_kind": "roce",
        "node_gpu_model": "H100-SXM5-80GB",
        "node_gpu_count": 8,
        "bmc_endpoint": "https://192.0.2.211",
        "bmc_system_id": "System.Embedded.1",
        "node_labels": {"rack": "r12", "role": "training", "topology.kubernetes.io/zone": "dc1-row3"},
    }
    cloud = hv["cloud-gpu01"]
    assert cloud["bmc_endpoint"] is None
    assert cloud["node_fabric_address"] == "10.44.0.40"
    assert "node_fabric_prefix" not in cloud  # the node declares none
    assert cloud["node_fabric_interface"] == "ib0"
    assert cloud["node_fabric_mtu"] == 4092
    for host in hv.values():
        assert not {"bmc_username", "bmc_password", "bmc_ca_file"} & set(host)


def test_graph(tmp_path: Path) -> None:
    proc = inventory(write_source(tmp_path, {"outputs_file": str(FIXTURE)}), "--graph")
    assert proc.returncode == 0, proc.stderr
    assert "@gpu_nodes:" in proc.stdout
    assert "@gpu_h100_sxm5_80gb:" in proc.stdout
    assert "@fabric_infiniband:" in proc.stdout
    assert "|--cloud-gpu01" in proc.stdout


def test_yaml_extension_and_vars_in_playbook_view(tmp_path: Path) -> None:
    source = write_source(tmp_path, {"outputs_file": str(FIXTURE)}, name="prod.baremetal_pulumi.yaml")
    proc = inventory(source, "--host", "gpu02")
    assert proc.returncode == 0, proc.stderr
    assert unwrap(json.loads(proc.stdout))["ansible_host"] == "192.0.2.12"


def test_file_with_other_name_is_not_ours(tmp_path: Path) -> None:
    source = write_source(tmp_path, {"outputs_file": str(FIXTURE)}, name="nodes.yml")
    assert not bp.InventoryModule().verify_file(str(source))
    assert bp.InventoryModule().verify_file(str(write_source(tmp_path, {"outputs_file": str(FIXTURE)})))
    assert "could not be verified by inventory plugin 'baremetal_pulumi'" in failure(source)


def test_compose_groups_keyed_groups(tmp_path: Path) -> None:
    data = listing(write_source(tmp_path, {
        "outputs_file": str(FIXTURE),
        "strict": True,
        "compose": {
            "ansible_user": "'ansible'",
            "total_gpus_x2": "node_gpu_count * 2",
            "nccl_ib_disable": "node_fabric_kind != 'infiniband'",
        },
        "groups": {"has_bmc": "bmc_endpoint is not none", "big": "total_gpus_x2 >= 16"},
        "keyed_groups": [
            {"key": "node_labels.rack | default('')", "prefix": "rack", "default_value": "unracked"},
            {"key": "node_labels.role", "prefix": "role"},
        ],
    }))
    hv = data["_meta"]["hostvars"]
    assert hv["gpu01"]["ansible_user"] == "ansible"
    assert hv["gpu01"]["total_gpus_x2"] == 16
    assert hv["gpu01"]["nccl_ib_disable"] is True
    assert hv["cloud-gpu01"]["nccl_ib_disable"] is False
    assert members(data, "has_bmc") == {"gpu01", "gpu02"}
    assert members(data, "big") == {"gpu01", "gpu02", "cloud-gpu01"}
    assert members(data, "rack_r12") == {"gpu01"}
    assert members(data, "rack_unracked") == {"cloud-gpu01"}
    assert members(data, "role_training") == {"gpu01", "gpu02"}
    assert members(data, "role_inference") == {"cloud-gpu01"}


def test_strict_fails_on_bad_compose(tmp_path: Path) -> None:
    lenient = listing(write_source(tmp_path, {"outputs_file": str(FIXTURE), "compose": {"x": "no_such_var + 1"}}))
    assert "x" not in lenient["_meta"]["hostvars"]["gpu01"]
    msg = failure(write_source(tmp_path, {
        "outputs_file": str(FIXTURE), "strict": True, "compose": {"x": "no_such_var + 1"},
    }))
    assert "Could not set x for host" in msg


def test_stack_outputs_are_not_templated(tmp_path: Path) -> None:
    data = outputs()
    data["nodes"][0]["labels"]["note"] = "{{ lookup('pipe', 'id') }}"
    (tmp_path / "o.json").write_text(json.dumps(data))
    hv = listing(write_source(tmp_path, {"outputs_file": "o.json", "compose": {"note": "node_labels.note"}}))
    assert hv["_meta"]["hostvars"]["gpu01"]["note"] == "{{ lookup('pipe', 'id') }}"


# --- rejected outputs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (2, "'nodes_schema_version' = 2 is not supported (newer than this plugin"),
        (0, "'nodes_schema_version' = 0 is not supported"),
        ("1", "'nodes_schema_version' = '1' is not an integer"),
        (None, "'nodes_schema_version' is missing"),
    ],
)
def test_schema_version_rejected(tmp_path: Path, version: Any, expected: str) -> None:
    data = outputs()
    if version is None:
        del data["nodes_schema_version"]
    else:
        data["nodes_schema_version"] = version
    (tmp_path / "o.json").write_text(json.dumps(data))
    msg = failure(write_source(tmp_path, {"outputs_file": "o.json"}))
    assert expected in msg
    assert "supports version 1" in msg or "version 1" in msg


def test_node_missing_mgmt_address(tmp_path: Path) -> None:
    data = outputs()
    del data["nodes"][1]["mgmt_address"]
    (tmp_path / "o.json").write_text(json.dumps(data))
    msg = failure(write_source(tmp_path, {"outputs_file": "o.json"}))
    assert "node 'gpu02' (nodes[1]): required field 'mgmt_address' is missing" in msg


def test_all_node_problems_reported_at_once(tmp_path: Path) -> None:
    data = outputs()
    data["nodes"][0]["fabric_kind"] = "ethernet"
    data["nodes"][0]["nic_names"] = {"mgmt": "eno1"}
    data["nodes"][2]["gpu_count"] = -1
    data["nodes"][2]["fabric_address"] = "10.44.0.400"
    data["nodes"].append(dict(data["nodes"][1]))
    (tmp_path / "o.json").write_text(json.dumps(data))
    msg = failure(write_source(tmp_path, {"outputs_file": "o.json"}))
    assert "node 'gpu01' (nodes[0]): 'fabric_kind' = 'ethernet' is not 'roce' or 'infiniband'" in msg
    assert "node 'gpu01' (nodes[0]): 'nic_names.fabric' = None is not a non-empty string" in msg
    assert "node 'cloud-gpu01' (nodes[2]): 'gpu_count' = -1 is not an integer >= 0" in msg
    assert "node 'cloud-gpu01' (nodes[2]): 'fabric_address' = '10.44.0.400' is not an IP address" in msg
    assert "node 'gpu02' (nodes[3]): duplicate node name 'gpu02'" in msg


def test_missing_outputs_file(tmp_path: Path) -> None:
    msg = failure(write_source(tmp_path, {"outputs_file": "nope.json"}))
    assert f"outputs_file {tmp_path / 'nope.json'} does not exist" in msg


def test_needs_exactly_one_source(tmp_path: Path) -> None:
    assert "set outputs_file" in failure(write_source(tmp_path, {}))
    assert "not both" in failure(write_source(tmp_path, {"outputs_file": str(FIXTURE), "stack": "prod"}))


# --- stack mode with a fake Pulumi CLI --------------------------------------------------------------------


def fake_pulumi(directory: Path, stdout: str, rc: int = 0, name: str = "pulumi") -> Path:
    """An executable that records its argv and cwd, prints `stdout` and exits with `rc`."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / name
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$PWD" "$@" > "{directory}/calls.txt"\n'
        f"cat <<'JSON_EOF'\n{stdout}\nJSON_EOF\n"
        + (f"echo 'error: no stack named prod found' >&2\nexit {rc}\n" if rc else "")
    )
    script.chmod(0o755)
    return script


def test_stack_mode_runs_pulumi_from_path(tmp_path: Path) -> None:
    fake = fake_pulumi(tmp_path / "bin", FIXTURE.read_text())
    project = tmp_path / "pulumi-project"
    project.mkdir()
    env = ansible_env(PATH=f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    data = listing(write_source(tmp_path, {"stack": "org/baremetal/prod", "pulumi_cwd": "pulumi-project"}), env=env)
    assert members(data, "gpu_nodes") == {"gpu01", "gpu02", "cloud-gpu01"}
    assert data["_meta"]["hostvars"]["gpu02"]["bmc_endpoint"] == "https://192.0.2.212"
    cwd, *argv = (fake.parent / "calls.txt").read_text().splitlines()
    assert Path(cwd) == project
    assert argv[:3] == ["stack", "output", "--json"]
    assert argv[-2:] == ["--stack", "org/baremetal/prod"]


def test_stack_mode_with_pulumi_binary(tmp_path: Path) -> None:
    fake = fake_pulumi(tmp_path / "tools", FIXTURE.read_text(), name="my-pulumi")
    data = listing(write_source(tmp_path, {"stack": "prod", "pulumi_binary": "tools/my-pulumi"}))
    assert members(data, "gpu_h200_sxm5_141gb") == {"cloud-gpu01"}
    assert Path((fake.parent / "calls.txt").read_text().splitlines()[0]) == tmp_path


def test_stack_mode_pulumi_fails(tmp_path: Path) -> None:
    fake_pulumi(tmp_path / "tools", "", rc=255)
    msg = failure(write_source(tmp_path, {"stack": "prod", "pulumi_binary": str(tmp_path / "tools" / "pulumi")}))
    assert "failed with exit status 255" in msg
    assert "no stack named prod found" in msg


def test_stack_mode_bad_schema_from_cli(tmp_path: Path) -> None:
    data = outputs()
    data["nodes_schema_version"] = 3
    fake_pulumi(tmp_path / "tools", json.dumps(data))
    msg = failure(write_source(tmp_path, {"stack": "prod", "pulumi_binary": "tools/pulumi"}))
    assert "'nodes_schema_version' = 3 is not supported" in msg


@pytest.mark.parametrize("binary", ["pulumi-not-installed", "./bin/pulumi"])
def test_missing_pulumi_binary(tmp_path: Path, binary: str) -> None:
    env = ansible_env(PATH=str(BIN))  # no pulumi here
    msg = failure(write_source(tmp_path, {"stack": "prod", "pulumi_binary": binary}), env=env)
    assert "Pulumi CLI" in msg
    assert "install the Pulumi CLI" in msg
    assert "outputs_file" in msg


# --- documentation ------------------------------------------------------------------------------------


def test_ansible_doc_renders() -> None:
    cmd = [str(BIN / "ansible-doc"), "-t", "inventory", "baremetal_pulumi"]
    proc = subprocess.run(cmd, cwd=ROOT, env=ansible_env(), capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "outputs_file" in proc.stdout
    assert "EXAMPLES" in proc.stdout
    proc = subprocess.run(
        [*cmd, "--json"], cwd=ROOT, env=ansible_env(), capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)["baremetal_pulumi"]["doc"]
    assert doc["name"] == "baremetal_pulumi"
    options = doc["options"]
    assert {"outputs_file", "stack", "pulumi_cwd", "pulumi_binary", "plugin"} <= set(options)
    assert {"compose", "groups", "keyed_groups", "strict"} <= set(options)  # the constructed fragment
    assert options["pulumi_binary"]["default"] == "pulumi"


def test_examples_are_yaml() -> None:
    docs = list(yaml.safe_load_all(bp.EXAMPLES))
    assert docs
    assert all(d["plugin"] == "baremetal_pulumi" for d in docs)


# --- helpers, directly ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("gpu", "H100-SXM5-80GB"), "gpu_h100_sxm5_80gb"),
        (("label", "topology.kubernetes.io/zone", "dc1-row3"), "label_topology_kubernetes_io_zone_dc1_row3"),
        (("label", "team", ""), "label_team"),
        (("label", "a--b", " C "), "label_a_b_c"),
    ],
)
def test_sanitize(parts: tuple[str, ...], expected: str) -> None:
    assert bp.sanitize(*parts) == expected


def test_fabric_prefix_field() -> None:
    node = copy.deepcopy(outputs()["nodes"][2])
    node["fabric_prefix"] = 16
    hostvars, problems = bp.node_hostvars(node)
    assert problems == []
    assert hostvars["node_fabric_prefix"] == 16
    node["fabric_address"] = "10.44.0.40/24"
    assert bp.node_hostvars(node)[1] == ["'fabric_prefix' = 16 disagrees with 'fabric_address' = '10.44.0.40/24'"]


def test_bmc_system_id_required_with_bmc() -> None:
    node = copy.deepcopy(outputs()["nodes"][0])
    node["bmc_system_id"] = None
    assert bp.node_hostvars(node)[1] == ["'bmc_system_id' = None is not a non-empty string"]


def test_secret_nodes_output() -> None:
    with pytest.raises(bp.AnsibleParserError, match="'nodes' is a secret"):
        bp.parse_nodes({"nodes": "[secret]", "nodes_schema_version": 1}, "test")
