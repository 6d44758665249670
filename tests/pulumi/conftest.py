"""Pulumi mocks for the declare-stage program: a mock engine that records every registration.

Why a recording monitor and not only ``Mocks.new_resource``: the parent URN, ``protect``, custom timeouts and
``additionalSecretOutputs`` of a registration reach the monitor but not ``MockResourceArgs``; recording them
lets the tests check parenting and options, and count registrations (a program imported before
``set_mocks`` would register nothing here, so "N registrations" proves the mocks were in force).

Mocks return *realistic* outputs: OCI resources echo their inputs (wire camelCase names) plus the
computed fields the provider adds (``id``, ``state``, ...); invokes return what ``getServices``,
``getClusterNetworkInstances`` and ``getInstance`` return; the Redfish dynamic resource returns an inventory
shaped like :func:`baremetal_ai.declare.redfish_inventory.parse_inventory`'s. Like the real engine for a
provider that does not accept secrets (reference §1.3, ``annotateSecrets``), an output keeps the secret
marker of a secret input of the same name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pytest
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs, Mocks

from baremetal_ai.declare import config as cfg_mod

PROJECT, STACK = "baremetal-ai", "test"
PASSWORD = "s3cr3t-bmc-pw-9f2c"  # distinctive, so a leak anywhere is found by a plain substring search


@dataclass
class Registration:
    """One RegisterResource call as the engine saw it."""

    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    protect: bool
    create_timeout: str
    additional_secret_outputs: list[str]


@dataclass
class Recorder:
    registrations: list[Registration] = field(default_factory=list)
    calls: list[MockCallArgs] = field(default_factory=list)

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == typ]

    def one(self, typ: str) -> Registration:
        found = self.of_type(typ)
        assert len(found) == 1, f"expected one {typ}, got {[r.name for r in found]}"
        return found[0]

    def by_urn(self, urn: str) -> Registration:
        return next(r for r in self.registrations if r.urn == urn)

    def dynamic(self) -> list[Registration]:
        return [r for r in self.registrations if r.type.startswith("pulumi-python:dynamic")]


def _ocid(kind: str, name: str) -> str:
    return f"ocid1.{kind}.oc1..{hashlib.sha256(name.encode()).hexdigest()[:20]}"


def _mac(seed: str) -> str:
    h = hashlib.sha256(seed.encode()).digest()
    return "B8:CE:F6:" + ":".join(f"{b:02X}" for b in h[:3])  # upper case, as many BMCs report them


# Instances the mock cluster network holds, deliberately not in name order.
OCI_INSTANCES = [
    {"id": _ocid("instance", "b"), "displayName": "inst-bbbbb-h100-pool", "privateIp": "10.0.16.12"},
    {"id": _ocid("instance", "a"), "displayName": "inst-aaaaa-h100-pool", "privateIp": "10.0.16.11"},
]


class ClusterMocks(Mocks):
    """Outputs for the OCI resources and invokes and for the Redfish dynamic resource."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        if not args.custom:
            return None, {}  # components: the mock monitor ignores register_outputs anyway
        state = {k: v for k, v in args.inputs.items() if k != "__provider"}
        if args.typ.startswith("pulumi-python:dynamic"):
            system = _plain(state.get("system_id")) or "unknown"
            node = _plain(state.get("node_name")) or args.name
            inventory = {
                "manufacturer": "Sushy Emulator", "model": "Fake", "serial": f"SN-{node}", "uuid": system,
                "power_state": _plain(state.get("power_state")) or "On", "bios_version": "1.0",
                "cpu": {"count": 2, "model": "Fake CPU"}, "memory_gib": 64,
                "nics": [{"id": "eth0", "mac": _mac(node + "/mgmt").lower()},
                         {"id": "eth1", "mac": _mac(node + "/fabric").lower()}],
                "gpus": [],
                "boot": {"target": "None", "enabled": "Disabled", "mode": "UEFI"},
            }
            path = f"/redfish/v1/Systems/{system}"
            state.update({"system_path": path, "inventory": inventory, "gpu_count": 0,
                          "macs": [n["mac"] for n in inventory["nics"]]})
            return path, state
        kind = args.typ.split(":")[-1].lower()
        rid = _ocid(kind, args.name)
        state.update({"id": rid, "state": "AVAILABLE", "timeCreated": "2026-01-01T00:00:00Z"})
        if args.typ == "oci:Core/clusterNetwork:ClusterNetwork":
            state.update({"state": "RUNNING", "hpcIslandId": _ocid("computehpcisland", args.name),
                          "networkBlockIds": [_ocid("computenetworkblock", args.name)]})
        return rid, state

    def call(self, args: MockCallArgs) -> dict[str, Any]:
        self.recorder.calls.append(args)
        if args.token == "oci:Core/getServices:getServices":
            return {"id": "services", "services": [{
                "id": _ocid("service", "all"), "name": "All IAD Services In Oracle Services Network",
                "cidrBlock": "all-iad-services-in-oracle-services-network",
                "description": "All IAD Services In Oracle Services Network"}]}
        if args.token == "oci:Core/getClusterNetworkInstances:getClusterNetworkInstances":
            return {"id": "instances", "clusterNetworkId": args.args["clusterNetworkId"],
                    "compartmentId": args.args["compartmentId"],
                    "instances": [{"id": i["id"], "displayName": i["displayName"], "state": "RUNNING",
                                   "shape": "BM.GPU.H100.8", "availabilityDomain": "xyz:US-ASHBURN-AD-1",
                                   "compartmentId": args.args["compartmentId"], "faultDomain": "FAULT-DOMAIN-1",
                                   "instanceConfigurationId": "ocid1.instanceconfiguration.oc1..x",
                                   "region": "iad", "timeCreated": "2026-01-01T00:00:00Z",
                                   "loadBalancerBackends": []} for i in OCI_INSTANCES]}
        if args.token == "oci:Core/getInstance:getInstance":
            inst = next(i for i in OCI_INSTANCES if i["id"] == args.args["instanceId"])
            return {**inst, "instanceId": inst["id"], "shape": "BM.GPU.H100.8", "state": "RUNNING"}
        raise AssertionError(f"unexpected invoke {args.token}")


def _plain(v: Any) -> Any:
    return v["value"] if rpc.is_rpc_secret(v) else v


class RecordingMonitor(MockMonitor):
    """A MockMonitor that also records parent, options and secret markers of each registration."""

    def __init__(self, mocks: ClusterMocks) -> None:
        super().__init__(mocks)
        self.recorder = mocks.recorder

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.recorder.registrations.append(Registration(
                type=request.type, name=request.name, urn=response.urn, parent=request.parent,
                custom=bool(request.custom), inputs=rpc.deserialize_properties(request.object),
                protect=bool(request.protect), create_timeout=request.customTimeouts.create,
                additional_secret_outputs=list(request.additionalSecretOutputs)))
        return response


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """Fresh mocks for one test; ``set_mocks`` runs here, before the test builds or imports the program."""
    rec = Recorder()
    mocks = ClusterMocks(rec)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=STACK, preview=False, monitor=RecordingMonitor(mocks))
    yield rec


def resolve(build: Callable[[], Any]) -> Any:
    """Run ``build()`` under the mock engine and return the resolved value of what it returns.

    ``build`` runs inside ``pulumi.runtime.test``, which waits for every outstanding registration before
    returning, so the recorder is complete afterwards. Raises if the value never resolved (an unknown in a
    preview would otherwise make every assertion on it silently skip).
    """
    box: dict[str, Any] = {}

    @pulumi.runtime.test
    def run() -> Any:
        return pulumi.Output.from_input(build()).apply(lambda v: box.__setitem__("value", v))

    run()
    assert "value" in box, "the output never resolved: assertions on it would have been skipped"
    return box["value"]


def redfish_config(**over: Any) -> dict[str, Any]:
    """The lab stack's config as a dict (3 nodes behind one emulator), with overrides."""
    base: dict[str, Any] = {
        "clusterName": "lab", "backend": "redfish", "nodeCount": 3, "gpuModel": "none", "gpusPerNode": 0,
        "fabric": "roce", "mtu": 9000, "mgmtCidr": "10.89.0.0/24", "fabricCidr": "10.89.1.0/24",
        "mgmtInterface": "eth0", "fabricInterface": "eth1", "labels": {"site": "lab"},
        "bmcUsername": "admin", "bmcPassword": PASSWORD, "bmcCaFile": "/tmp/ca.pem",
        "nodes": [{"name": f"lab-node{i}", "bmcEndpoint": "https://127.0.0.1:8000", "bmcSystemId": f"sys-{i}",
                   "mgmtAddress": f"10.89.0.{10 + i}", "fabricAddress": f"10.89.1.{10 + i}"} for i in (1, 2, 3)],
    }
    base.update(over)
    return base


def oci_config(**over: Any) -> dict[str, Any]:
    """Two BM.GPU.H100.8 nodes, as pulumi/Pulumi.oci-example.yaml, with overrides."""
    base: dict[str, Any] = {
        "clusterName": "h100", "backend": "oci", "nodeCount": 2, "fabric": "roce", "mtu": 4220,
        "mgmtCidr": "10.0.16.0/20", "fabricCidr": "192.168.0.0/16",
        "sshPublicKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFake op@example.com"], "labels": {"site": "oci"},
        "oci": {"compartmentId": "ocid1.compartment.oc1..aaaa", "availabilityDomain": "xyz:US-ASHBURN-AD-1",
                "shape": "BM.GPU.H100.8", "imageId": "ocid1.image.oc1.iad.aaaa", "sshCidr": "203.0.113.0/24",
                "vcnCidr": "10.0.0.0/16", "publicSubnetCidr": "10.0.0.0/24"},
    }
    base.update(over)
    return base


@pytest.fixture
def parse() -> Callable[[dict[str, Any]], cfg_mod.ClusterConfig]:
    return cfg_mod.from_dict
