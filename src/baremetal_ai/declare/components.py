"""Pulumi components of the declare stage: ``GpuCluster`` builds a ``Fabric`` and one ``GpuNode`` per server.

Why components: a stack shows one ``GpuCluster`` with its networks and nodes nested under it, so ``pulumi
preview`` reads like the cluster, and the ``nodes`` output - the single contract with Ansible - is assembled
in one place (:func:`node_entry`, schema :data:`NODES_SCHEMA`, documented in docs/nodes-contract.md).

Type tokens are ``baremetal-ai:cluster:<Type>``. They are part of every child's URN: renaming one replaces
every resource under it unless the rename carries ``aliases`` (docs/pulumi-reference.md §3).

Backends:

- ``redfish``: each ``GpuNode`` owns a ``RedfishServer`` dynamic resource (module
  :mod:`baremetal_ai.declare.redfish`, imported only when a redfish node is built, so an ``oci`` stack never
  needs it). The BMC password goes in as a secret Output and never enters the ``nodes`` output.
- ``oci``: the ``Fabric`` owns the VCN, gateways, route tables, security lists and subnets; the cluster owns
  the instance configuration and the RDMA cluster network (:mod:`baremetal_ai.declare.oci_backend`). The
  instances belong to the cluster network's pool, so an OCI ``GpuNode`` owns no cloud resource: it names one
  pool slot and reads that instance's data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from baremetal_ai.declare import oci_backend
from baremetal_ai.declare.config import ClusterConfig, RedfishNode

TOKEN = "baremetal-ai:cluster"
NODES_SCHEMA_VERSION = 1

# JSON Schema of one entry of the `nodes` output, schema version 1. docs/nodes-contract.md shows the same
# document; a test checks that the two agree and that every produced entry validates against it.
NODES_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://baremetal-ai.invalid/schemas/nodes/1",
    "title": "baremetal-ai node (nodes output, schema version 1)",
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "cluster", "backend", "mgmt_address", "fabric_address", "fabric_prefix", "fabric_kind",
                 "mtu", "bmc_endpoint", "bmc_system_id", "gpu_model", "gpu_count", "nic_names", "labels",
                 "provider_id", "serial", "macs"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"},
        "cluster": {"type": "string"},
        "backend": {"enum": ["redfish", "oci"]},
        "mgmt_address": {"type": "string", "format": "ipv4"},
        "fabric_address": {"type": ["string", "null"], "format": "ipv4"},
        "fabric_prefix": {"type": "integer", "minimum": 1, "maximum": 32},
        "fabric_kind": {"enum": ["roce", "infiniband"]},
        "mtu": {"type": "integer", "minimum": 1280, "maximum": 9216},
        "bmc_endpoint": {"type": ["string", "null"]},
        "bmc_system_id": {"type": ["string", "null"]},
        "gpu_model": {"type": "string"},
        "gpu_count": {"type": "integer", "minimum": 0},
        "nic_names": {
            "type": "object", "additionalProperties": False, "required": ["mgmt", "fabric"],
            "properties": {"mgmt": {"type": ["string", "null"]}, "fabric": {"type": ["string", "null"]}},
        },
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "provider_id": {"type": ["string", "null"]},
        "serial": {"type": ["string", "null"]},
        "macs": {"type": "array", "items": {"type": "string"}},
    },
}


def node_entry(cluster: ClusterConfig, *, name: str, mgmt_address: str, fabric_address: str | None,
               bmc_endpoint: str | None, bmc_system_id: str | None, nic_mgmt: str | None, nic_fabric: str | None,
               provider_id: str | None, serial: str | None = None, macs: Sequence[str] = ()) -> dict[str, Any]:
    """One entry of the ``nodes`` output. The only function that shapes the contract, so both backends agree.

    Built from the validated config plus what the backend observed (addresses, serial, MACs); it never takes
    credentials, which is why nothing secret can reach the Ansible inventory through it.
    """
    return {
        "name": name,
        "cluster": cluster.name,
        "backend": cluster.backend,
        "mgmt_address": mgmt_address,
        "fabric_address": fabric_address,
        "fabric_prefix": cluster.fabric_prefix,
        "fabric_kind": cluster.fabric,
        "mtu": cluster.mtu,
        "bmc_endpoint": bmc_endpoint,
        "bmc_system_id": bmc_system_id,
        "gpu_model": cluster.gpu_model,
        "gpu_count": cluster.gpus_per_node,
        "nic_names": {"mgmt": nic_mgmt, "fabric": nic_fabric},
        "labels": dict(cluster.labels),
        "provider_id": provider_id,
        "serial": serial,
        "macs": sorted({m.lower() for m in macs if m and m != "unknown"}),
    }


# --- Fabric -------------------------------------------------------------------------------------------------

@dataclass
class FabricArgs:
    """Inputs of :class:`Fabric`: the validated cluster config (one Python program, so no flattening needed)."""

    cluster: ClusterConfig


class Fabric(pulumi.ComponentResource):
    """The management and the RDMA/RoCE data network of one cluster.

    On OCI it creates the VCN and everything the nodes' private subnet needs (reference §4.2). For owned
    servers the switches are not Pulumi-managed, so it records the declared networks as outputs: that is what
    the converge stage configures (MTU, addresses) and what the validate stage checks against.
    """

    summary: pulumi.Output[dict[str, Any]]
    node_subnet_id: pulumi.Output[str] | None

    def __init__(self, name: str, args: FabricArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{TOKEN}:Fabric", name, None, opts)
        c = args.cluster
        declared = {
            "mgmt": {"cidr": c.mgmt_cidr},
            "fabric": {"kind": c.fabric, "cidr": c.fabric_cidr, "prefix": c.fabric_prefix, "mtu": c.mtu},
        }
        self.network: oci_backend.OciNetwork | None = None
        self.node_subnet_id = None
        if c.backend == "oci":
            self.network = oci_backend.build_network(self, name, c)
            self.node_subnet_id = self.network.private_subnet.id
            ids = {"vcn_id": self.network.vcn.id, "private_subnet_id": self.network.private_subnet.id,
                   "public_subnet_id": self.network.public_subnet.id}
            self.summary = pulumi.Output.all(**ids).apply(
                lambda r: {**declared, "mgmt": {**declared["mgmt"], **r}})
        else:
            self.summary = pulumi.Output.from_input(declared)
        self.register_outputs({"summary": self.summary})


# --- GpuNode ------------------------------------------------------------------------------------------------

@dataclass
class GpuNodeArgs:
    """Inputs of :class:`GpuNode`: exactly one of ``redfish_node`` (owned server) or ``oci_instance_id``."""

    cluster: ClusterConfig
    redfish_node: RedfishNode | None = None
    oci_instance_id: pulumi.Input[str] | None = None


class GpuNode(pulumi.ComponentResource):
    """One GPU server. ``node`` is its entry of the ``nodes`` contract.

    redfish: wraps a ``RedfishServer`` (power state, boot override, inventory through the BMC); the entry
    resolves only after the BMC resource is created, so Ansible never gets a node Pulumi has not reached.
    oci: names one instance of the cluster network's pool and reads its management IP.
    """

    node: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, args: GpuNodeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{TOKEN}:GpuNode", name, None, opts)
        if (args.redfish_node is None) == (args.oci_instance_id is None):
            raise ValueError("GpuNodeArgs needs exactly one of redfish_node and oci_instance_id")
        self.server: Any = None
        if args.redfish_node is not None:
            self.server = _redfish_server(self, args.cluster, args.redfish_node)
            self.node = _redfish_entry(args.cluster, args.redfish_node, self.server)
        else:
            info = oci_backend.describe_instance(self, args.oci_instance_id)
            c = args.cluster
            self.node = info.apply(lambda i: node_entry(
                c, name=i["name"], mgmt_address=i["private_ip"], fabric_address=None, bmc_endpoint=None,
                bmc_system_id=None, nic_mgmt=c.mgmt_interface, nic_fabric=c.fabric_interface,
                provider_id=i["id"]))
        self.register_outputs({"node": self.node})


def _redfish_server(parent: GpuNode, cluster: ClusterConfig, node: RedfishNode) -> Any:
    """Create the node's RedfishServer. Imported here so that ``oci`` stacks never load the Redfish code."""
    from baremetal_ai.declare import redfish

    assert cluster.bmc is not None  # guaranteed by config validation for the redfish backend
    args = redfish.RedfishServerArgs(
        endpoint=node.bmc_endpoint,
        username=cluster.bmc.username,
        password=pulumi.Output.secret(cluster.bmc.password),
        system_id=node.bmc_system_id,
        ca_file=cluster.bmc.ca_file,
        verify_tls=cluster.bmc.verify_tls,
        power_state=cluster.power_state,
        boot_override=node.boot_override,
        node_name=node.name,
    )
    opts = pulumi.ResourceOptions(parent=parent, protect=cluster.protect)
    return redfish.RedfishServer(node.name, args, opts)


def _redfish_entry(cluster: ClusterConfig, node: RedfishNode, server: Any) -> pulumi.Output[dict[str, Any]]:
    def entry(inventory: Mapping[str, Any] | None, server_id: str | None) -> dict[str, Any]:
        inv = inventory or {}
        serial = inv.get("serial")
        return node_entry(
            cluster, name=node.name, mgmt_address=node.mgmt_address, fabric_address=node.fabric_address,
            bmc_endpoint=node.bmc_endpoint, bmc_system_id=node.bmc_system_id, nic_mgmt=node.mgmt_interface,
            nic_fabric=node.fabric_interface, provider_id=server_id,
            serial=serial if serial and serial != "unknown" else None,
            macs=[str(n.get("mac", "")) for n in inv.get("nics", []) or [] if isinstance(n, Mapping)])

    # Only the inventory and the id feed the entry: the password output never does, so `nodes` stays
    # non-secret and carries no credential (a test asserts both).
    return pulumi.Output.all(server.inventory, server.id).apply(lambda a: entry(a[0], a[1]))


# --- GpuCluster ---------------------------------------------------------------------------------------------

@dataclass
class GpuClusterArgs:
    """Inputs of :class:`GpuCluster`: the validated config (see :mod:`baremetal_ai.declare.config`)."""

    config: ClusterConfig


class GpuCluster(pulumi.ComponentResource):
    """A cluster of GPU nodes on one fabric. Outputs: ``nodes`` (the contract), ``nodes_schema_version``,
    ``fabric`` (declared networks, plus OCI ids)."""

    nodes: pulumi.Output[list[dict[str, Any]]]
    nodes_schema_version: int
    fabric_summary: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, args: GpuClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(f"{TOKEN}:GpuCluster", name, None, opts)
        c = args.config
        child = pulumi.ResourceOptions(parent=self)
        self.fabric = Fabric(f"{name}-fabric", FabricArgs(c), child)
        self.cluster_network: oci_backend.OciClusterNetwork | None = None
        if c.backend == "redfish":
            self.gpu_nodes = [GpuNode(n.name, GpuNodeArgs(c, redfish_node=n),
                                      pulumi.ResourceOptions(parent=self, depends_on=[self.fabric]))
                              for n in c.nodes]
        else:
            assert self.fabric.node_subnet_id is not None
            self.cluster_network = oci_backend.build_cluster_network(self, name, c, self.fabric.node_subnet_id)
            ids = self.cluster_network.instance_ids
            self.gpu_nodes = [GpuNode(f"{name}-node-{i:02d}",
                                      GpuNodeArgs(c, oci_instance_id=ids.apply(lambda v, i=i: v[i])), child)
                              for i in range(c.node_count)]
        self.nodes = pulumi.Output.all(*[n.node for n in self.gpu_nodes]).apply(
            lambda entries: sorted(entries, key=lambda e: e["name"]))
        self.nodes_schema_version = NODES_SCHEMA_VERSION
        self.fabric_summary = self.fabric.summary
        self.register_outputs({"nodes": self.nodes, "nodes_schema_version": self.nodes_schema_version,
                               "fabric": self.fabric_summary})
