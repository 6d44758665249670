"""Oracle Cloud bare-metal GPU shapes (``BM.GPU.*``) on an RDMA cluster network, with ``pulumi_oci``.

The resource graph follows oracle-quickstart/oci-hpc (``network.tf``, ``cluster-network-configuration.tf``,
``cluster-network.tf``, ``data.tf``) as summarised in docs/pulumi-reference.md §4:

- network (§4.2): VCN; internet gateway (public subnet), NAT and service gateway (private subnet); one route
  table and one security list per subnet - ingress all from the VCN, ICMP type 3 code 4 from anywhere (path
  MTU discovery: without it a 9000-byte path silently black-holes large packets), egress all, SSH on the
  public list only; DHCP options; the nodes' private subnet forbids public IPs.
- compute (§4.3, "Option A"): an ``InstanceConfiguration`` with the RDMA agent plugins enabled, then a
  ``ClusterNetwork`` whose one instance pool holds all nodes.

Why a cluster network and not a compute cluster (§4.4): OCI describes a cluster network as "a group of HPC,
GPU, or optimized bare metal instances connected with an ultra low-latency RDMA network" built from instance
pools, and a compute cluster as the choice for managing instances one by one or mixing shapes. Our cluster is
one shape and is sized, replaced and torn down as a unit, which is what the pool does; OCI places the whole
pool on one RDMA fabric block. The price: instance ids and IPs are known only after apply (§4.7), so they are
read back with ``get_cluster_network_instances`` and ``get_instance``. ``placement_configuration`` uses
``primary_vnic_subnets`` because ``primary_subnet_id`` is deprecated (§4.3).

Fabric addresses: the "Compute HPC RDMA Auto-Configuration" plugin assigns the RDMA interfaces' addresses on
the host after boot; the OCI API does not return them. The ``nodes`` contract therefore carries
``fabric_address: null`` for OCI nodes and the ``rdma`` role discovers and checks them against
``baremetal:fabricCidr``.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_oci as oci

from baremetal_ai.declare.config import ClusterConfig

# oci-hpc cluster-network-configuration.tf: RDMA plugins on, OS Management agent off (it fights the
# converge stage over packages). "Compute RDMA GPU Monitoring" applies to GPU shapes, which are all we build.
RDMA_PLUGINS: dict[str, str] = {
    "Compute HPC RDMA Authentication": "ENABLED",
    "Compute HPC RDMA Auto-Configuration": "ENABLED",
    "Compute RDMA GPU Monitoring": "ENABLED",
    "OS Management Service Agent": "DISABLED",
}
ALL_SERVICES_FILTER = "All .* Services In Oracle Services Network"  # oci-hpc network.tf data "oci_core_services"
ICMP_PMTU = {"type": 3, "code": 4}  # destination unreachable / fragmentation needed
PROTO_ALL, PROTO_ICMP, PROTO_TCP = "all", "1", "6"
ANYWHERE = "0.0.0.0/0"

# Cloud-init for the pool's instances: nothing but a marker. Configuration belongs to the converge stage
# (Ansible); the user_data slot is kept (base64, reference §4.6) so a stack can see which program launched it.
CLOUD_INIT = "#cloud-config\n# launched by baremetal-ai (pulumi); converge with Ansible, not cloud-init\n"


def create_timeout(node_count: int) -> str:
    """oci-hpc's RDMA create timeout: 30 minutes per started batch of 20 nodes (reference §4.3)."""
    return f"{(node_count // 20 + 1) * 30}m"


def dns_label(name: str, limit: int = 15) -> str:
    """OCI DNS labels: a letter first, then letters and digits, at most 15 characters."""
    label = re.sub(r"[^a-z0-9]", "", name.lower())
    if not label or not label[0].isalpha():
        label = "c" + label
    return label[:limit]


@dataclass
class OciNetwork:
    """The network resources, returned so that the caller (the ``Fabric`` component) can export ids."""

    vcn: oci.core.Vcn
    internet_gateway: oci.core.InternetGateway
    nat_gateway: oci.core.NatGateway
    service_gateway: oci.core.ServiceGateway
    public_route_table: oci.core.RouteTable
    private_route_table: oci.core.RouteTable
    public_security_list: oci.core.SecurityList
    private_security_list: oci.core.SecurityList
    dhcp_options: oci.core.DhcpOptions
    public_subnet: oci.core.Subnet
    private_subnet: oci.core.Subnet


@dataclass
class OciClusterNetwork:
    """The compute side: configuration, cluster network and the pool's instance ids (sorted by display name)."""

    instance_configuration: oci.core.InstanceConfiguration
    cluster_network: oci.core.ClusterNetwork
    instance_ids: pulumi.Output[list[str]]


def _security_rules(vcn_cidr: str, ssh_cidr: str | None) -> dict[str, Any]:
    ingress: list[dict[str, Any]] = [
        {"protocol": PROTO_ALL, "source": vcn_cidr, "description": "all traffic inside the VCN"},
        {"protocol": PROTO_ICMP, "source": ANYWHERE, "icmp_options": dict(ICMP_PMTU),
         "description": "ICMP fragmentation-needed, for path MTU discovery"},
    ]
    if ssh_cidr:
        ingress.append({"protocol": PROTO_TCP, "source": ssh_cidr, "tcp_options": {"min": 22, "max": 22},
                        "description": "SSH from the operators' network"})
    return {"ingress_security_rules": ingress,
            "egress_security_rules": [{"protocol": PROTO_ALL, "destination": ANYWHERE, "description": "all out"}]}


def build_network(parent: pulumi.Resource, name: str, c: ClusterConfig) -> OciNetwork:
    """Create the VCN and its subnets as children of ``parent`` (reference §4.2)."""
    assert c.oci is not None
    o = c.oci
    opts = pulumi.ResourceOptions(parent=parent)
    comp = o.compartment_id
    vcn_label = dns_label(c.name)
    vcn = oci.core.Vcn(f"{name}-vcn", compartment_id=comp, cidr_block=o.vcn_cidr, display_name=f"{c.name}-vcn",
                       dns_label=vcn_label, opts=opts)
    igw = oci.core.InternetGateway(f"{name}-igw", compartment_id=comp, vcn_id=vcn.id, enabled=True,
                                   display_name=f"{c.name}-igw", opts=opts)
    nat = oci.core.NatGateway(f"{name}-nat", compartment_id=comp, vcn_id=vcn.id, display_name=f"{c.name}-nat",
                              opts=opts)
    services = oci.core.get_services_output(
        filters=[{"name": "name", "values": [ALL_SERVICES_FILTER], "regex": True}],
        opts=pulumi.InvokeOutputOptions(parent=parent))
    service = services.services.apply(_all_services)
    sgw = oci.core.ServiceGateway(f"{name}-sgw", compartment_id=comp, vcn_id=vcn.id, display_name=f"{c.name}-sgw",
                                  services=[{"service_id": service["id"]}], opts=opts)
    public_rt = oci.core.RouteTable(
        f"{name}-public-rt", compartment_id=comp, vcn_id=vcn.id, display_name=f"{c.name}-public",
        route_rules=[{"network_entity_id": igw.id, "destination": ANYWHERE, "destination_type": "CIDR_BLOCK"}],
        opts=opts)
    private_rt = oci.core.RouteTable(
        f"{name}-private-rt", compartment_id=comp, vcn_id=vcn.id, display_name=f"{c.name}-private",
        route_rules=[
            {"network_entity_id": nat.id, "destination": ANYWHERE, "destination_type": "CIDR_BLOCK"},
            {"network_entity_id": sgw.id, "destination": service["cidr_block"],
             "destination_type": "SERVICE_CIDR_BLOCK"},
        ],
        opts=opts)
    public_sl = oci.core.SecurityList(f"{name}-public-sl", compartment_id=comp, vcn_id=vcn.id,
                                      display_name=f"{c.name}-public", **_security_rules(o.vcn_cidr, o.ssh_cidr),
                                      opts=opts)
    private_sl = oci.core.SecurityList(f"{name}-private-sl", compartment_id=comp, vcn_id=vcn.id,
                                       display_name=f"{c.name}-private", **_security_rules(o.vcn_cidr, None),
                                       opts=opts)
    dhcp = oci.core.DhcpOptions(
        f"{name}-dhcp", compartment_id=comp, vcn_id=vcn.id, display_name=f"{c.name}-dhcp",
        options=[{"type": "DomainNameServer", "server_type": "VcnLocalPlusInternet"},
                 {"type": "SearchDomain", "search_domain_names": [f"{vcn_label}.oraclevcn.com"]}],
        opts=opts)
    public_subnet = oci.core.Subnet(
        f"{name}-public", compartment_id=comp, vcn_id=vcn.id, cidr_block=o.public_subnet_cidr,
        display_name=f"{c.name}-public", dns_label="public", route_table_id=public_rt.id,
        security_list_ids=[public_sl.id], dhcp_options_id=dhcp.id, prohibit_public_ip_on_vnic=False, opts=opts)
    private_subnet = oci.core.Subnet(
        f"{name}-private", compartment_id=comp, vcn_id=vcn.id, cidr_block=c.mgmt_cidr,
        display_name=f"{c.name}-private", dns_label="private", route_table_id=private_rt.id,
        security_list_ids=[private_sl.id], dhcp_options_id=dhcp.id, prohibit_public_ip_on_vnic=True, opts=opts)
    return OciNetwork(vcn, igw, nat, sgw, public_rt, private_rt, public_sl, private_sl, dhcp, public_subnet,
                      private_subnet)


def _all_services(services: list[Any]) -> dict[str, str]:
    if not services:
        raise ValueError("OCI returned no 'All <region> Services In Oracle Services Network' service: the region "
                         "has no service gateway offering; remove the service gateway or pick another region")
    s = services[0]
    return {"id": s.id, "cidr_block": s.cidr_block}


def build_cluster_network(parent: pulumi.Resource, name: str, c: ClusterConfig,
                          subnet_id: pulumi.Input[str]) -> OciClusterNetwork:
    """Create the instance configuration and the RDMA cluster network (reference §4.3) under ``parent``."""
    assert c.oci is not None
    o = c.oci
    shape = o.gpu_shape
    opts = pulumi.ResourceOptions(parent=parent)
    config = oci.core.InstanceConfiguration(
        f"{name}-instance-config",
        compartment_id=o.compartment_id,
        display_name=f"{c.name}-{o.shape}",
        source="NONE",
        instance_details={
            "instance_type": "compute",
            "launch_details": {
                "availability_domain": o.availability_domain,
                "compartment_id": o.compartment_id,
                "shape": o.shape,
                "display_name": f"{c.name}-node",
                "create_vnic_details": {"subnet_id": subnet_id, "assign_public_ip": False},
                "metadata": {
                    "ssh_authorized_keys": "\n".join(c.ssh_public_keys),
                    "user_data": base64.b64encode(CLOUD_INIT.encode()).decode(),
                },
                "source_details": {"source_type": "image", "image_id": o.image_id,
                                   "boot_volume_size_in_gbs": str(o.boot_volume_size_gbs),
                                   "boot_volume_vpus_per_gb": "30"},
                "agent_config": {
                    "is_management_disabled": False,
                    "is_monitoring_disabled": False,
                    "plugins_configs": [{"name": n, "desired_state": s} for n, s in RDMA_PLUGINS.items()],
                },
                "platform_config": {"type": shape.platform_type},
                "freeform_tags": {"cluster": c.name, **dict(c.labels)},
            },
        },
        opts=opts,
    )
    network = oci.core.ClusterNetwork(
        f"{name}-cluster-network",
        compartment_id=o.compartment_id,
        display_name=f"{c.name}-cluster-network",
        instance_pools=[{"instance_configuration_id": config.id, "size": c.node_count,
                         "display_name": f"{c.name}-pool"}],
        placement_configuration={"availability_domain": o.availability_domain,
                                 "primary_vnic_subnets": {"subnet_id": subnet_id}},
        freeform_tags={"cluster": c.name},
        opts=pulumi.ResourceOptions(parent=parent, protect=c.protect,
                                    custom_timeouts=pulumi.CustomTimeouts(create=create_timeout(c.node_count))),
    )
    listing = oci.core.get_cluster_network_instances_output(
        cluster_network_id=network.id, compartment_id=o.compartment_id,
        opts=pulumi.InvokeOutputOptions(parent=parent))
    ids = listing.instances.apply(lambda insts: _sorted_ids(insts, c.node_count))
    return OciClusterNetwork(config, network, ids)


def _sorted_ids(instances: list[Any], expected: int) -> list[str]:
    """Instance ids ordered by display name, so pool slot ``i`` maps to the same instance on every run."""
    live = [i for i in instances if getattr(i, "state", "RUNNING") not in ("TERMINATING", "TERMINATED")]
    if len(live) < expected:
        raise ValueError(f"the cluster network has {len(live)} live instances, expected {expected}: OCI may be "
                         f"out of capacity for the shape in this availability domain (check the pool's work "
                         f"requests, or run CreateComputeCapacityReport first)")
    return [i.id for i in sorted(live, key=lambda i: (i.display_name, i.id))]


def describe_instance(parent: pulumi.Resource, instance_id: pulumi.Input[str]) -> pulumi.Output[dict[str, str]]:
    """Name, OCID and management (private) IP of one pool instance (reference §4.7, as oci-hpc's data.tf)."""
    inst = oci.core.get_instance_output(instance_id=instance_id, opts=pulumi.InvokeOutputOptions(parent=parent))
    return pulumi.Output.all(inst.id, inst.display_name, inst.private_ip).apply(
        lambda a: {"id": a[0], "name": _host_name(a[1]), "private_ip": a[2]})


def _host_name(display_name: str) -> str:
    """A host name Ansible can use, from the instance's display name (OCI allows spaces and capitals)."""
    name = re.sub(r"[^a-z0-9-]+", "-", display_name.lower()).strip("-")
    return name[:63].rstrip("-") or "node"
