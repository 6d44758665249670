"""The declare-stage Pulumi program under mocks: config validation, both backends, parenting, secrets, contract.

Every test builds the program *after* the ``recorder`` fixture has called ``set_mocks`` and reads results
through ``resolve``, which fails if a value never resolved; several tests also count registrations, so a
program that ran without the mocks in force could not pass them (see the last section for the proofs that
these tests can fail).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pulumi
import pytest
import yaml
from conftest import OCI_INSTANCES, PASSWORD, Recorder, oci_config, redfish_config, resolve
from pulumi.runtime import rpc

from baremetal_ai.declare import components, config, oci_backend, program
from baremetal_ai.declare.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]
PULUMI_DIR = ROOT / "pulumi"
CLUSTER = "baremetal-ai:cluster:GpuCluster"
FABRIC = "baremetal-ai:cluster:Fabric"
NODE = "baremetal-ai:cluster:GpuNode"


def run_program(cfg: dict[str, Any]) -> dict[str, Any]:
    """Build the program from a config dict and resolve its three exports."""

    def build() -> Any:
        cluster = program.run(config.from_dict(cfg))
        return pulumi.Output.all(nodes=cluster.nodes, fabric=cluster.fabric_summary,
                                 version=cluster.nodes_schema_version)

    return resolve(build)


def validate_nodes(nodes: list[dict[str, Any]]) -> None:
    checker = jsonschema.Draft202012Validator(components.NODES_SCHEMA,
                                              format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    for n in nodes:
        checker.validate(n)


def plaintext_leaks(value: Any, needle: str, path: str = "") -> list[str]:
    """Paths where ``needle`` appears outside a secret wrapper (the engine would store those in plaintext)."""
    if rpc.is_rpc_secret(value):
        return []
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in plaintext_leaks(v, needle, f"{path}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in plaintext_leaks(v, needle, f"{path}[{i}]")]
    return [path or "."] if isinstance(value, str) and needle in value else []


# --- config validation: fails before anything is registered ---------------------------------------------

def _set(d: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    cur: Any = d
    parts = re.findall(r"[^.\[\]]+", dotted)
    for p in parts[:-1]:
        cur = cur[int(p)] if p.isdigit() else cur[p]
    last = parts[-1]
    if value is KeyError:
        del cur[last]
    elif last.isdigit():
        cur[int(last)] = value
    else:
        cur[last] = value
    return d


BAD_REDFISH = [
    ("nodeCount", 0, "baremetal:nodeCount", "at least one node"),
    ("nodeCount", 2, "baremetal:nodeCount", "lists 3"),
    ("mtu", 1000, "baremetal:mtu", "1280-9216"),
    ("mtu", 9300, "baremetal:mtu", "1280-9216"),
    ("mtu", "9000bytes", "baremetal:mtu", "whole number"),
    ("nodes[1].bmcEndpoint", "127.0.0.1:8000", "baremetal:nodes[1].bmcEndpoint", "scheme"),
    ("nodes[2].name", "lab-node1", "baremetal:nodes[2].name", "already used by nodes[0]"),
    ("nodes[2].mgmtAddress", "10.89.0.11", "baremetal:nodes[2].mgmtAddress", "already used"),
    ("nodes[1].fabricAddress", "10.89.1.11", "baremetal:nodes[1].fabricAddress", "already used"),
    ("nodes[1].fabricAddress", "10.89.2.5", "baremetal:nodes[1].fabricAddress", "not a host address in"),
    ("nodes[0].bootOverride", "PXE", "baremetal:nodes[0].bootOverride", "did you mean 'Pxe'"),
    ("nodes[0].bmcSystemId", KeyError, "baremetal:nodes[0].bmcSystemId", "missing"),
    ("nodes[0].bmcEndpiont", "https://x", "baremetal:nodes[0].bmcEndpiont", "did you mean"),
    ("nodeCont", 3, "baremetal:nodeCont", "did you mean `nodeCount`"),
    ("bmcPassword", KeyError, "baremetal:bmcPassword", "pulumi config set --secret"),
    ("gpusPerNode", 8, "baremetal:gpusPerNode", "contradictory"),
    ("fabric", "ethernet", "baremetal:fabric", "roce, infiniband"),
    ("fabricCidr", "10.89.0.0/16", "baremetal:fabricCidr", "overlaps"),
    ("mgmtCidr", "10.89.0.1/24", "baremetal:mgmtCidr", "host bits zero"),
    ("backend", "maas", "baremetal:backend", "redfish, oci"),
    ("fabricCidr", "fd00::/64", "baremetal:fabricCidr", "not IPv4"),
    ("labels", ["site"], "baremetal:labels", "map of strings"),
    ("powerState", "Reboot", "baremetal:powerState", "Off, On"),
]

BAD_OCI = [
    ("gpusPerNode", 4, "baremetal:gpusPerNode", "has 8 GPUs"),
    ("gpuModel", "A100-SXM4-80GB", "baremetal:gpuModel", "carries H100-SXM5-80GB"),
    ("oci.shape", "BM.GPU.X9.8", "baremetal:oci.shape", "BM.GPU.H100.8"),
    ("nodeCount", 0, "baremetal:nodeCount", "at least one node"),
    ("mtu", 65520, "baremetal:mtu", "1280-9216"),
    ("fabric", "infiniband", "baremetal:fabric", "RoCE"),
    ("sshPublicKeys", [], "baremetal:sshPublicKeys", "at least one public key"),
    ("oci.compartmentId", "my-compartment", "baremetal:oci.compartmentId", "OCID"),
    ("mgmtCidr", "172.16.0.0/20", "baremetal:mgmtCidr", "not inside oci.vcnCidr"),
    ("bmcPassword", "x", "baremetal:bmcPassword", "redfish-backend key"),
]


@pytest.mark.parametrize(("path", "value", "key", "message"), BAD_REDFISH, ids=[f"{b[0]}={b[1]}" for b in BAD_REDFISH])
def test_bad_redfish_config_names_key_and_fix(path: str, value: Any, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.from_dict(_set(redfish_config(), path, value))
    assert err.value.key == key
    assert str(err.value).startswith(f"{key}: ")
    assert message in str(err.value)
    assert "Fix: " in str(err.value)


@pytest.mark.parametrize(("path", "value", "key", "message"), BAD_OCI, ids=[f"{b[0]}={b[1]}" for b in BAD_OCI])
def test_bad_oci_config_names_key_and_fix(path: str, value: Any, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.from_dict(_set(oci_config(), path, value))
    assert err.value.key == key
    assert message in str(err.value)
    assert "Fix: " in str(err.value)


def test_good_configs_parse_and_oci_model_comes_from_shape() -> None:
    r = config.from_dict(redfish_config())
    assert (r.node_count, r.fabric_prefix, r.nodes[0].mgmt_interface) == (3, 24, "eth0")
    o = config.from_dict(oci_config())
    assert (o.gpu_model, o.gpus_per_node, o.oci.gpu_shape.platform_type) == ("H100-SXM5-80GB", 8, "GENERIC_BM")


def test_password_is_not_in_repr() -> None:
    assert PASSWORD not in repr(config.from_dict(redfish_config()))


def test_boot_targets_agree_with_the_redfish_provider() -> None:
    """A target the config accepts must be one the provider's check() accepts, or preview fails later."""
    redfish = pytest.importorskip("baremetal_ai.declare.redfish")
    assert set(config.BOOT_TARGETS) == set(redfish.BOOT_TARGETS)


def test_bad_config_registers_nothing(recorder: Recorder, stack_config: Any) -> None:
    stack_config(_stack_values(redfish_config(mtu=100000)))

    def build() -> Any:
        with pytest.raises(ConfigError, match="baremetal:mtu"):
            program.run()
        return 1

    resolve(build)
    assert recorder.registrations == []


def test_unknown_stack_key_is_rejected_by_load(recorder: Recorder, stack_config: Any) -> None:
    values = _stack_values(redfish_config())
    values["baremetal:nodecount"] = "3"
    stack_config(values)
    with pytest.raises(ConfigError, match=r"baremetal:nodecount: .*did you mean `nodeCount`"):
        config.load()


# --- redfish backend ----------------------------------------------------------------------------------------

def test_redfish_stack_nodes_contract(recorder: Recorder) -> None:
    out = run_program(redfish_config())
    nodes = out["nodes"]
    validate_nodes(nodes)
    assert out["version"] == components.NODES_SCHEMA_VERSION == 1
    assert [n["name"] for n in nodes] == ["lab-node1", "lab-node2", "lab-node3"]
    n2 = nodes[1]
    assert n2["mgmt_address"] == "10.89.0.12" and n2["fabric_address"] == "10.89.1.12"
    assert (n2["bmc_endpoint"], n2["bmc_system_id"]) == ("https://127.0.0.1:8000", "sys-2")
    assert n2["nic_names"] == {"mgmt": "eth0", "fabric": "eth1"}
    assert (n2["fabric_kind"], n2["mtu"], n2["fabric_prefix"]) == ("roce", 9000, 24)
    assert (n2["gpu_model"], n2["gpu_count"], n2["backend"], n2["cluster"]) == ("none", 0, "redfish", "lab")
    assert n2["labels"] == {"site": "lab"}
    # observed through the BMC resource, not copied from config
    assert n2["serial"] == "SN-lab-node2"
    assert n2["provider_id"] == "/redfish/v1/Systems/sys-2"
    assert len(n2["macs"]) == 2 and all(m == m.lower() for m in n2["macs"])
    assert out["fabric"]["fabric"] == {"kind": "roce", "cidr": "10.89.1.0/24", "prefix": 24, "mtu": 9000}


def test_redfish_resources_are_parented_and_configured(recorder: Recorder) -> None:
    cfg = redfish_config()
    cfg["nodes"][0]["bootOverride"] = "Pxe"
    run_program(cfg)
    # 1 cluster + 1 fabric + 3 nodes + 3 BMC resources: none of them exist unless the mocks were in force
    assert len(recorder.registrations) == 8
    cluster = recorder.one(CLUSTER)
    assert cluster.parent.endswith("::pulumi:pulumi:Stack::baremetal-ai-test")
    for r in recorder.of_type(FABRIC) + recorder.of_type(NODE):
        assert r.parent == cluster.urn, r.name
    servers = recorder.dynamic()
    assert len(servers) == 3
    for s in servers:
        parent = recorder.by_urn(s.parent)
        assert parent.type == NODE and parent.name == s.name
    s1 = next(s for s in servers if s.name == "lab-node1")
    i = s1.inputs
    assert (i["endpoint"], i["system_id"], i["node_name"], i["username"]) == (
        "https://127.0.0.1:8000", "sys-1", "lab-node1", "admin")
    assert (i["ca_file"], i["verify_tls"], i["power_state"], i["boot_override"]) == ("/tmp/ca.pem", True, "On", "Pxe")
    assert not s1.protect


def test_protect_reaches_the_servers(recorder: Recorder) -> None:
    run_program(redfish_config(protect=True))
    assert [s.protect for s in recorder.dynamic()] == [True, True, True]


def test_bmc_password_stays_secret(recorder: Recorder) -> None:
    def build() -> Any:
        cluster = program.run(config.from_dict(redfish_config()))
        server = cluster.gpu_nodes[0].server
        return pulumi.Output.all(
            password_secret=pulumi.Output.from_input(server.password.is_secret()),
            nodes_secret=pulumi.Output.from_input(cluster.nodes.is_secret()),
            nodes=cluster.nodes)

    out = resolve(build)
    assert out["password_secret"] is True, "the BMC resource's password output must be secret"
    assert out["nodes_secret"] is False, "nodes became secret: something secret was mixed into the contract"
    assert PASSWORD not in json.dumps(out["nodes"])
    servers = recorder.dynamic()
    assert len(servers) == 3
    for s in servers:
        assert rpc.is_rpc_secret(s.inputs["password"]), "the password reached the engine unmarked"
        assert s.inputs["password"]["value"] == PASSWORD
    leaks = [f"{r.type}::{r.name}{p}" for r in recorder.registrations for p in plaintext_leaks(r.inputs, PASSWORD)]
    assert leaks == []
    exported = pulumi.runtime.settings.get_root_resource().outputs  # type: ignore[union-attr]
    assert {"nodes", "nodes_schema_version", "fabric"} <= set(exported)


def test_leak_detector_finds_a_plaintext_password(recorder: Recorder) -> None:
    """The secret test above can fail: the same detector flags a resource that takes the password in clear."""

    def build() -> Any:
        pulumi.CustomResource("test:leak:Thing", "leak",
                              {"bmc": {"pw": PASSWORD}, "ok": pulumi.Output.secret(PASSWORD)})
        return 1

    resolve(build)
    reg = recorder.one("test:leak:Thing")
    assert plaintext_leaks(reg.inputs, PASSWORD) == [".bmc.pw"]


# --- oci backend --------------------------------------------------------------------------------------------

def test_oci_network(recorder: Recorder) -> None:
    out = run_program(oci_config())
    fabric = recorder.one(FABRIC)
    net_types = ["vcn:Vcn", "internetGateway:InternetGateway", "natGateway:NatGateway",
                 "serviceGateway:ServiceGateway", "routeTable:RouteTable", "securityList:SecurityList",
                 "dhcpOptions:DhcpOptions", "subnet:Subnet"]
    for t in net_types:
        regs = recorder.of_type(f"oci:Core/{t}")
        assert regs, t
        assert all(r.parent == fabric.urn for r in regs), t
    vcn = recorder.one("oci:Core/vcn:Vcn")
    assert vcn.inputs["cidrBlock"] == "10.0.0.0/16" and vcn.inputs["dnsLabel"] == "h100"
    sgw = recorder.one("oci:Core/serviceGateway:ServiceGateway")
    services = next(c for c in recorder.calls if c.token == "oci:Core/getServices:getServices")
    assert services.args["filters"][0]["values"] == [oci_backend.ALL_SERVICES_FILTER]
    assert sgw.inputs["services"][0]["serviceId"].startswith("ocid1.service.")

    rts = {r.name: r.inputs["routeRules"] for r in recorder.of_type("oci:Core/routeTable:RouteTable")}
    assert [(x["destination"], x["networkEntityId"].split(".")[1]) for x in rts["h100-fabric-public-rt"]] == [
        ("0.0.0.0/0", "internetgateway")]
    private_rules = {x["destinationType"]: x["networkEntityId"].split(".")[1] for x in rts["h100-fabric-private-rt"]}
    assert private_rules == {"CIDR_BLOCK": "natgateway", "SERVICE_CIDR_BLOCK": "servicegateway"}

    sls = {r.name: r.inputs for r in recorder.of_type("oci:Core/securityList:SecurityList")}
    for name, sl in sls.items():
        ingress = sl["ingressSecurityRules"]
        pmtu = [x for x in ingress if x["protocol"] == "1" and x.get("icmpOptions")]
        assert [(p["icmpOptions"]["type"], p["icmpOptions"]["code"]) for p in pmtu] == [(3, 4)], name
        assert {"protocol": "all", "source": "10.0.0.0/16"}.items() <= ingress[0].items(), name
        assert sl["egressSecurityRules"][0]["protocol"] == "all"
    ssh = {n: [x for x in sl["ingressSecurityRules"] if x["protocol"] == "6"] for n, sl in sls.items()}
    assert ssh["h100-fabric-private-sl"] == []
    assert [(x["source"], x["tcpOptions"]["min"], x["tcpOptions"]["max"]) for x in ssh["h100-fabric-public-sl"]] == [
        ("203.0.113.0/24", 22, 22)]

    subnets = {r.name: r.inputs for r in recorder.of_type("oci:Core/subnet:Subnet")}
    private = subnets["h100-fabric-private"]
    assert private["cidrBlock"] == "10.0.16.0/20" and private["prohibitPublicIpOnVnic"] is True
    assert private["routeTableId"].startswith("ocid1.routetable.")
    assert subnets["h100-fabric-public"]["prohibitPublicIpOnVnic"] is False
    assert out["fabric"]["mgmt"]["private_subnet_id"].startswith("ocid1.subnet.")


def test_oci_cluster_network(recorder: Recorder) -> None:
    run_program(oci_config(protect=True, nodeCount=2))
    cluster = recorder.one(CLUSTER)
    ic = recorder.one("oci:Core/instanceConfiguration:InstanceConfiguration")
    cn = recorder.one("oci:Core/clusterNetwork:ClusterNetwork")
    assert ic.parent == cluster.urn and cn.parent == cluster.urn
    launch = ic.inputs["instanceDetails"]["launchDetails"]
    assert ic.inputs["instanceDetails"]["instanceType"] == "compute"
    assert launch["shape"] == "BM.GPU.H100.8"
    assert launch["availabilityDomain"] == "xyz:US-ASHBURN-AD-1"
    assert launch["platformConfig"] == {"type": "GENERIC_BM"}
    assert launch["sourceDetails"]["imageId"] == "ocid1.image.oc1.iad.aaaa"
    assert launch["createVnicDetails"]["assignPublicIp"] is False
    plugins = {p["name"]: p["desiredState"] for p in launch["agentConfig"]["pluginsConfigs"]}
    assert plugins["Compute HPC RDMA Authentication"] == "ENABLED"
    assert plugins["Compute HPC RDMA Auto-Configuration"] == "ENABLED"
    assert plugins["Compute RDMA GPU Monitoring"] == "ENABLED"
    assert launch["metadata"]["ssh_authorized_keys"].startswith("ssh-ed25519 ")
    assert base64.b64decode(launch["metadata"]["user_data"]).startswith(b"#cloud-config")
    private_subnet = next(r for r in recorder.of_type("oci:Core/subnet:Subnet") if r.name == "h100-fabric-private")
    subnet_id = launch["createVnicDetails"]["subnetId"]
    assert subnet_id == cn.inputs["placementConfiguration"]["primaryVnicSubnets"]["subnetId"]
    assert subnet_id.startswith("ocid1.subnet.") and "primarySubnetId" not in cn.inputs["placementConfiguration"]
    assert private_subnet.name == "h100-fabric-private"
    pool = cn.inputs["instancePools"]
    assert len(pool) == 1 and pool[0]["size"] == 2
    assert pool[0]["instanceConfigurationId"].startswith("ocid1.instanceconfiguration.")
    assert cn.protect is True and cn.create_timeout == "30m"


def test_oci_nodes_contract(recorder: Recorder) -> None:
    out = run_program(oci_config())
    nodes = out["nodes"]
    validate_nodes(nodes)
    # pool slots are ordered by display name, whatever order OCI lists the instances in
    assert [n["name"] for n in nodes] == ["inst-aaaaa-h100-pool", "inst-bbbbb-h100-pool"]
    assert [n["mgmt_address"] for n in nodes] == ["10.0.16.11", "10.0.16.12"]
    assert [n["provider_id"] for n in nodes] == [OCI_INSTANCES[1]["id"], OCI_INSTANCES[0]["id"]]
    for n in nodes:
        assert n["fabric_address"] is None  # assigned by the RDMA auto-config plugin, found by the rdma role
        assert (n["bmc_endpoint"], n["bmc_system_id"], n["serial"], n["macs"]) == (None, None, None, [])
        assert (n["gpu_model"], n["gpu_count"], n["fabric_kind"], n["mtu"]) == ("H100-SXM5-80GB", 8, "roce", 4220)
    assert len(recorder.of_type(NODE)) == 2
    assert recorder.dynamic() == []  # an OCI stack never creates BMC resources


def test_oci_short_pool_is_a_clear_error(recorder: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("conftest.OCI_INSTANCES", OCI_INSTANCES[:1])
    with pytest.raises(Exception, match="1 live instances, expected 2"):
        run_program(oci_config())


@pytest.mark.parametrize(("n", "timeout"), [(1, "30m"), (19, "30m"), (20, "60m"), (41, "90m")])
def test_create_timeout_follows_oci_hpc(n: int, timeout: str) -> None:
    assert oci_backend.create_timeout(n) == timeout


# --- the thin __main__.py and the stack files ---------------------------------------------------------------

def _stack_values(cfg: dict[str, Any]) -> dict[str, str]:
    """Config as the language host hands it to the program: `baremetal:key` -> string (JSON for non-strings)."""
    return {f"baremetal:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in cfg.items()}


@pytest.fixture
def stack_config() -> Any:
    def set_(values: dict[str, str]) -> None:
        pulumi.runtime.set_all_config(values, [k for k in values if k.endswith("bmcPassword")])

    yield set_
    pulumi.runtime.set_all_config({}, [])


def _stack_file(name: str) -> dict[str, Any]:
    data = yaml.safe_load((PULUMI_DIR / f"Pulumi.{name}.yaml").read_text())
    return {k.split(":", 1)[1]: v for k, v in data["config"].items() if k.startswith("baremetal:")}


def test_main_py_runs_the_lab_stack(recorder: Recorder, stack_config: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = _stack_file("lab")
    assert "bmcPassword" not in lab, "the password must not be in the stack file"
    stack_config(_stack_values({**lab, "bmcPassword": PASSWORD}))
    monkeypatch.syspath_prepend(str(PULUMI_DIR))  # what the Python language host does for the program dir
    stale = sys.modules.pop("config", None)

    def build() -> Any:
        runpy.run_path(str(PULUMI_DIR / "__main__.py"), run_name="__main__")
        return pulumi.runtime.settings.get_root_resource().outputs["nodes"]  # type: ignore[union-attr]

    try:
        nodes = resolve(build)
        assert sys.modules["config"].load is config.load  # __main__ used pulumi/config.py, the re-export
    finally:
        sys.modules.pop("config", None)
        if stale is not None:
            sys.modules["config"] = stale
    validate_nodes(nodes)
    assert [n["name"] for n in nodes] == ["lab-node1", "lab-node2", "lab-node3"]
    assert {n["bmc_endpoint"] for n in nodes} == {"https://127.0.0.1:8000"}
    assert len(recorder.dynamic()) == 3
    assert all(rpc.is_rpc_secret(s.inputs["password"]) for s in recorder.dynamic())


def test_oci_example_stack_file_is_valid() -> None:
    cfg = config.from_dict(_stack_file("oci-example"))
    assert (cfg.backend, cfg.node_count, cfg.oci.shape, cfg.gpus_per_node) == ("oci", 2, "BM.GPU.H100.8", 8)


def test_load_reads_typed_values_and_a_secret(recorder: Recorder, stack_config: Any) -> None:
    stack_config(_stack_values({**_stack_file("lab"), "bmcPassword": PASSWORD}))

    def build() -> Any:
        cfg = config.load()
        assert (cfg.node_count, cfg.mtu, cfg.bmc.verify_tls, cfg.labels) == (3, 9000, True, {"site": "lab"})
        assert isinstance(cfg.bmc.password, pulumi.Output)
        return pulumi.Output.from_input(cfg.bmc.password.is_secret())

    assert resolve(build) is True


# --- the contract document ----------------------------------------------------------------------------------

def test_contract_doc_shows_the_schema_in_code() -> None:
    text = (ROOT / "docs" / "nodes-contract.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    schemas = [json.loads(b) for b in blocks if '"$schema"' in b]
    assert schemas == [components.NODES_SCHEMA]
    jsonschema.Draft202012Validator.check_schema(components.NODES_SCHEMA)
    assert f"schema version {components.NODES_SCHEMA_VERSION}" in text.lower()


# --- proofs that these tests can fail ---------------------------------------------------------------------

def test_resolve_refuses_an_unknown_output(recorder: Recorder) -> None:
    """With a plain @pulumi.runtime.test an unknown output skips the check silently; resolve() raises."""

    def unknown() -> pulumi.Output[int]:
        loop = asyncio.get_event_loop()
        value, known = loop.create_future(), loop.create_future()
        value.set_result(None)
        known.set_result(False)
        return pulumi.Output(set(), value, known)

    ran: list[int] = []

    @pulumi.runtime.test
    def silent() -> Any:
        return unknown().apply(lambda _: ran.append(1) or 1 / 0)

    silent()  # passes although its check would divide by zero: the trap
    assert ran == []
    with pytest.raises(AssertionError, match="never resolved"):
        resolve(unknown)


def test_a_wrong_expectation_fails(tmp_path: Path) -> None:
    """Run a copy of the contract test with one wrong expectation in a fresh interpreter: pytest must fail.

    It also runs the program *before* set_mocks, which must fail rather than pass with nothing registered.
    """
    test = tmp_path / "test_broken.py"
    test.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import pulumi, pytest
        from conftest import ClusterMocks, Recorder, RecordingMonitor, redfish_config, resolve
        from baremetal_ai.declare import config, program

        def test_program_before_mocks():
            program.run(config.from_dict(redfish_config()))

        def test_wrong_mtu():
            rec = Recorder()
            mocks = ClusterMocks(rec)
            pulumi.runtime.set_mocks(mocks, preview=False, monitor=RecordingMonitor(mocks))
            nodes = resolve(lambda: program.run(config.from_dict(redfish_config())).nodes)
            assert len(rec.registrations) == 8
            assert nodes[0]["mtu"] == 1500, "deliberately wrong"
    """))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "2 failed" in proc.stdout, proc.stdout
    assert "deliberately wrong" in proc.stdout and "assert 9000 == 1500" in proc.stdout
    assert "FAILED test_broken.py::test_program_before_mocks" in proc.stdout, proc.stdout
