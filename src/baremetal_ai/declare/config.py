"""Typed, validated configuration of the declare stage (the `baremetal:*` keys of a Pulumi stack).

Why a separate module: every mistake a user can make in a stack file is caught here, *before* the program
registers a single resource, with a :class:`ConfigError` that names the key as the user typed it
(``baremetal:nodes[2].bmcEndpoint``) and says how to fix it. A BMC that is power-cycled, or an OCI cluster
network that is half-created because of a typo in an MTU, costs hours; a failed ``pulumi preview`` costs
seconds.

Two entry points share one validator:

- :func:`from_dict` takes a plain ``{"nodeCount": 3, ...}`` dict (what the tests and other tools use);
- :func:`load` reads the same keys from ``pulumi.Config("baremetal")`` and turns JSON-typed values (numbers,
  booleans, lists, objects) into Python values first. The BMC password is read with ``get_secret`` so it is
  a secret ``Output`` from the first moment the program sees it.

Keys (stack YAML spelling; all under the ``baremetal:`` namespace):

===================== ========= ======== ====================================================================
key                   type      default  meaning
===================== ========= ======== ====================================================================
clusterName           str       required lower-case name; prefixes every resource
backend               str       required ``redfish`` (owned servers via their BMC) or ``oci`` (OCI BM.GPU.*)
nodeCount             int       required number of GPU nodes (>= 1)
gpuModel              str       shape    declared GPU model (``none`` for GPU-less lab nodes); OCI: from shape
gpusPerNode           int       shape    declared GPUs per node (0 with ``none``); OCI: must match the shape
fabric                str       roce     data fabric: ``roce`` or ``infiniband``
mtu                   int       9000     fabric MTU, 1280-9216
mgmtCidr              CIDR      required management network (OCI: the private subnet of the nodes)
fabricCidr            CIDR      required RDMA/RoCE data network
mgmtInterface         str       none     default management NIC name (redfish nodes may override)
fabricInterface       str       none     default fabric NIC name (redfish nodes may override)
sshPublicKeys         list[str] []       keys for the nodes' login user (required for OCI)
labels                map       {}       free-form labels copied to every node in the ``nodes`` output
protect               bool      false    Pulumi ``protect`` on servers and the cluster network
nodes                 list      required redfish only: one object per server, see :class:`RedfishNode`
bmcUsername           str       required redfish only
bmcPassword           secret    required redfish only: ``pulumi config set --secret baremetal:bmcPassword``
bmcCaFile             str       none     redfish only: CA bundle that signed the BMC certificates
bmcVerifyTls          bool      true     redfish only: verify BMC TLS certificates
powerState            str       On       redfish only: desired power state, ``On`` or ``Off``
oci                   object    required oci only, see :class:`OciConfig`
===================== ========= ======== ====================================================================
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from baremetal_ai.errors import UserError

NAMESPACE = "baremetal"

Backend = Literal["redfish", "oci"]
FabricKind = Literal["roce", "infiniband"]

MTU_MIN = 1280  # IPv6 minimum link MTU; below it RoCE/IPoIB and v6 break
MTU_MAX = 9216  # largest jumbo frame common switch ASICs accept

# Boot override targets the Redfish provider drives (a subset of DMTF DSP2046 ComputerSystem
# Boot.BootSourceOverrideTarget; baremetal_ai.declare.redfish.BOOT_TARGETS, a test keeps the two equal).
# Matching is exact: "PXE" is a typo a BMC rejects only once the server is already being touched.
BOOT_TARGETS = frozenset({"Pxe", "Cd", "UsbCd", "Hdd", "Usb", "UefiHttp", "BiosSetup"})
POWER_STATES = frozenset({"On", "Off"})

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$|^[a-z]$")
_HOST_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class GpuShape:
    """What one OCI bare-metal GPU shape carries, and which `platform_config.type` it takes."""

    gpu_model: str
    gpu_count: int
    platform_type: str


# OCI bare-metal GPU shapes. Shape names and platform types: oracle-quickstart/oci-hpc `schema.yaml`
# (cluster_network_shape values) and `locals.tf` (platform_type), as summarised in
# docs/pulumi-reference.md §4.1. GPU count: the shape name's final number (OCI's naming rule,
# https://docs.oracle.com/en-us/iaas/Content/Compute/References/computeshapes.htm); the GPU model strings
# follow that page and our inventories' spelling (inventories/example: H100-SXM5-80GB). Model strings for
# the shapes we have not run are our reading of that page, not measured.
GPU_SHAPES: dict[str, GpuShape] = {
    "BM.GPU.H100.8": GpuShape("H100-SXM5-80GB", 8, "GENERIC_BM"),
    "BM.GPU.H200.8": GpuShape("H200-SXM5-141GB", 8, "GENERIC_BM"),
    "BM.GPU.A100-v2.8": GpuShape("A100-SXM4-80GB", 8, "AMD_MILAN_BM_GPU"),
    "BM.GPU.B4.8": GpuShape("A100-SXM4-40GB", 8, "AMD_MILAN_BM_GPU"),
    "BM.GPU4.8": GpuShape("A100-SXM4-40GB", 8, "AMD_ROME_BM_GPU"),
    "BM.GPU.B200.8": GpuShape("B200", 8, "GENERIC_BM"),
    "BM.GPU.B300.8": GpuShape("B300", 8, "GENERIC_BM"),
    "BM.GPU.GB200.4": GpuShape("GB200", 4, "GENERIC_BM"),
    "BM.GPU.MI300X.8": GpuShape("MI300X", 8, "GENERIC_BM"),
    "BM.GPU.L40S.4": GpuShape("L40S", 4, "GENERIC_BM"),
}


class ConfigError(UserError):
    """A stack setting is wrong. ``key`` is the full config key (``baremetal:mtu``); the message has the fix."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key = key if key.startswith(f"{NAMESPACE}:") else f"{NAMESPACE}:{key}"
        super().__init__(f"{self.key}: {problem}. Fix: {fix}")


@dataclass(frozen=True)
class RedfishNode:
    """One owned server, reached through its BMC."""

    name: str
    bmc_endpoint: str
    bmc_system_id: str
    mgmt_address: str
    fabric_address: str
    mgmt_interface: str
    fabric_interface: str
    boot_override: str | None = None


@dataclass(frozen=True)
class BmcCredentials:
    """How to log in to the BMCs. ``password`` is a Pulumi Input (a secret Output when read by :func:`load`)
    and is left out of ``repr`` so that no traceback or log line prints it."""

    username: str
    password: Any = field(repr=False)
    ca_file: str | None = None
    verify_tls: bool = True


@dataclass(frozen=True)
class OciConfig:
    """The OCI side of an ``oci`` stack (keys inside ``baremetal:oci``)."""

    compartment_id: str
    availability_domain: str
    shape: str
    image_id: str
    ssh_cidr: str
    vcn_cidr: str
    public_subnet_cidr: str
    boot_volume_size_gbs: int = 200

    @property
    def gpu_shape(self) -> GpuShape:
        return GPU_SHAPES[self.shape]


@dataclass(frozen=True)
class ClusterConfig:
    """The whole, validated declaration of one cluster. Built only through :func:`from_dict`/:func:`load`."""

    name: str
    backend: Backend
    node_count: int
    gpu_model: str
    gpus_per_node: int
    fabric: FabricKind
    mtu: int
    mgmt_cidr: str
    fabric_cidr: str
    mgmt_interface: str | None = None
    fabric_interface: str | None = None
    ssh_public_keys: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    protect: bool = False
    nodes: tuple[RedfishNode, ...] = ()
    bmc: BmcCredentials | None = None
    power_state: str = "On"
    oci: OciConfig | None = None

    @property
    def fabric_prefix(self) -> int:
        return ipaddress.ip_network(self.fabric_cidr).prefixlen


# key -> kind (str int bool list map object secret): how load() parses the text Pulumi hands over
_TOP_KEYS: dict[str, str] = {
    "clusterName": "str", "backend": "str", "nodeCount": "int", "gpuModel": "str", "gpusPerNode": "int",
    "fabric": "str", "mtu": "int", "mgmtCidr": "str", "fabricCidr": "str", "mgmtInterface": "str",
    "fabricInterface": "str", "sshPublicKeys": "list", "labels": "map", "protect": "bool", "nodes": "list",
    "bmcUsername": "str", "bmcPassword": "secret", "bmcCaFile": "str", "bmcVerifyTls": "bool",
    "powerState": "str", "oci": "object",
}
_NODE_KEYS = ("name", "bmcEndpoint", "bmcSystemId", "mgmtAddress", "fabricAddress", "mgmtInterface",
              "fabricInterface", "bootOverride")
_OCI_KEYS = ("compartmentId", "availabilityDomain", "shape", "imageId", "sshCidr", "vcnCidr", "publicSubnetCidr",
             "bootVolumeSizeGbs")


# --- entry points -------------------------------------------------------------------------------------------

def load(cfg: Any = None) -> ClusterConfig:
    """Read and validate the ``baremetal:*`` keys of the current stack.

    ``cfg`` is a ``pulumi.Config("baremetal")`` (the default) or anything with the same ``get``/``get_secret``
    methods. Typed keys (int, bool, list, object) arrive from Pulumi as JSON text and are parsed here so that
    :func:`from_dict` sees the same values it sees in tests.
    """
    import pulumi

    cfg = cfg if cfg is not None else pulumi.Config(NAMESPACE)
    raw: dict[str, Any] = {}
    for key, kind in _TOP_KEYS.items():
        if kind == "secret":
            value = cfg.get_secret(key)
            if value is not None:
                raw[key] = value
            continue
        text = cfg.get(key)
        if text is None:
            continue
        raw[key] = text if kind == "str" else _parse_json(key, text, kind)
    _reject_unknown_set_keys()
    return from_dict(raw)


def from_dict(data: Mapping[str, Any]) -> ClusterConfig:
    """Validate ``data`` (stack-YAML key spelling) and return the typed config, or raise :class:`ConfigError`."""
    if not isinstance(data, Mapping):
        raise ConfigError("", "the configuration is not a mapping", "give `baremetal:*` keys in the stack file")
    _reject_unknown(data, _TOP_KEYS, "")
    name = _req_str(data, "clusterName")
    if not _NAME_RE.match(name):
        raise ConfigError("clusterName", f"{name!r} is not a valid cluster name",
                          "use 1-32 lower-case letters, digits and '-', starting with a letter")
    backend = _choice(data, "backend", ("redfish", "oci"), None)
    node_count = _int(data, "nodeCount", None)
    if node_count < 1:
        raise ConfigError("nodeCount", f"is {node_count}; a cluster needs at least one node",
                          "set `baremetal:nodeCount` to 1 or more")
    fabric = _choice(data, "fabric", ("roce", "infiniband"), "roce")
    mtu = _int(data, "mtu", 9000)
    if not MTU_MIN <= mtu <= MTU_MAX:
        raise ConfigError("mtu", f"is {mtu}, outside {MTU_MIN}-{MTU_MAX}",
                          "use 9000 for jumbo-frame RoCE (or the fabric's MTU), at least 1280")
    mgmt_cidr = _cidr(data, "mgmtCidr")
    fabric_cidr = _cidr(data, "fabricCidr")
    if ipaddress.ip_network(mgmt_cidr).overlaps(ipaddress.ip_network(fabric_cidr)):
        raise ConfigError("fabricCidr", f"{fabric_cidr} overlaps mgmtCidr {mgmt_cidr}",
                          "give the data fabric its own subnet")
    keys = data.get("sshPublicKeys", [])
    if not isinstance(keys, list) or not all(isinstance(k, str) and k.strip() for k in keys):
        raise ConfigError("sshPublicKeys", "must be a list of public-key strings",
                          "e.g. `sshPublicKeys: [\"ssh-ed25519 AAAA... you@host\"]`")
    labels = data.get("labels", {})
    if not isinstance(labels, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in labels.items()):
        raise ConfigError("labels", "must be a map of strings to strings", "e.g. `labels: {site: lab1}`")
    common: dict[str, Any] = {
        "name": name, "backend": backend, "node_count": node_count, "fabric": fabric, "mtu": mtu,
        "mgmt_cidr": mgmt_cidr, "fabric_cidr": fabric_cidr,
        "mgmt_interface": _opt_str(data, "mgmtInterface"), "fabric_interface": _opt_str(data, "fabricInterface"),
        "ssh_public_keys": tuple(k.strip() for k in keys), "labels": dict(labels),
        "protect": _bool(data, "protect", False),
    }
    if backend == "redfish":
        return _redfish(data, common)
    return _oci(data, common)


# --- backends -----------------------------------------------------------------------------------------------

def _redfish(data: Mapping[str, Any], common: dict[str, Any]) -> ClusterConfig:
    if "oci" in data:
        raise ConfigError("oci", "is set but backend is redfish", "remove `baremetal:oci` or set backend to oci")
    gpu_model = _req_str(data, "gpuModel")
    gpus = _int(data, "gpusPerNode", None)
    if gpus < 0:
        raise ConfigError("gpusPerNode", f"is {gpus}", "use 0 (with gpuModel none) or the GPUs in each server")
    if (gpus == 0) != (gpu_model == "none"):
        raise ConfigError("gpusPerNode", f"{gpus} GPUs of model {gpu_model!r} is contradictory",
                          "use gpuModel `none` with gpusPerNode 0, or a model with 1 or more GPUs")
    power = _choice(data, "powerState", tuple(sorted(POWER_STATES)), "On")
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise ConfigError("nodes", "is missing or empty; the redfish backend needs one entry per server",
                          "add `baremetal:nodes` with name, bmcEndpoint, bmcSystemId, mgmtAddress, fabricAddress")
    if len(raw_nodes) != common["node_count"]:
        raise ConfigError("nodeCount", f"is {common['node_count']} but `baremetal:nodes` lists {len(raw_nodes)}",
                          "make nodeCount equal to the number of entries in nodes")
    nodes = tuple(_node(i, n, common) for i, n in enumerate(raw_nodes))
    _unique(nodes, "name", "name")
    _unique(nodes, "mgmt_address", "mgmtAddress")
    _unique(nodes, "fabric_address", "fabricAddress")
    _unique(nodes, lambda n: (n.bmc_endpoint.rstrip("/"), n.bmc_system_id), "bmcSystemId",
            what="BMC endpoint + system id")
    password = data.get("bmcPassword")
    if password is None or (isinstance(password, str) and not password):
        raise ConfigError("bmcPassword", "is not set",
                          "run `pulumi config set --secret baremetal:bmcPassword` (never put it in the YAML)")
    bmc = BmcCredentials(
        username=_req_str(data, "bmcUsername"), password=password,
        ca_file=_opt_str(data, "bmcCaFile"), verify_tls=_bool(data, "bmcVerifyTls", True),
    )
    return ClusterConfig(**common, gpu_model=gpu_model, gpus_per_node=gpus, nodes=nodes, bmc=bmc, power_state=power)


def _node(i: int, raw: Any, common: dict[str, Any]) -> RedfishNode:
    where = f"nodes[{i}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(where, "is not an object", "give name, bmcEndpoint, bmcSystemId, mgmtAddress, ...")
    _reject_unknown(raw, _NODE_KEYS, where + ".")
    name = _req_str(raw, "name", where)
    if not _HOST_RE.match(name):
        raise ConfigError(f"{where}.name", f"{name!r} is not a valid host name",
                          "use lower-case letters, digits and '-' (it becomes the Ansible inventory name)")
    endpoint = _req_str(raw, "bmcEndpoint", where)
    parts = urlsplit(endpoint)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"{where}.bmcEndpoint", f"{endpoint!r} has no http(s) scheme or host",
                          "write the full URL, e.g. https://10.0.0.21 (https unless the BMC cannot do TLS)")
    mgmt = _address(raw, "mgmtAddress", where, common["mgmt_cidr"], "mgmtCidr")
    fabric = _address(raw, "fabricAddress", where, common["fabric_cidr"], "fabricCidr")
    boot = _opt_str(raw, "bootOverride", where)
    if boot is not None and boot not in BOOT_TARGETS:
        close = difflib.get_close_matches(boot, BOOT_TARGETS, n=1, cutoff=0.3) or [
            t for t in BOOT_TARGETS if t.lower() == boot.lower()]
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{where}.bootOverride", f"{boot!r} is not a boot target the Redfish backend drives{hint}",
                          f"use one of {', '.join(sorted(BOOT_TARGETS))}, or leave it out")
    nics = {}
    for key, default_key in (("mgmtInterface", "mgmt_interface"), ("fabricInterface", "fabric_interface")):
        nics[key] = _opt_str(raw, key, where) or common[default_key]
        if not nics[key]:
            raise ConfigError(f"{where}.{key}", "is not set and there is no cluster default",
                              f"set it on the node or set `baremetal:{key}` for all nodes")
    return RedfishNode(name=name, bmc_endpoint=endpoint, bmc_system_id=_req_str(raw, "bmcSystemId", where),
                       mgmt_address=mgmt, fabric_address=fabric, mgmt_interface=nics["mgmtInterface"],
                       fabric_interface=nics["fabricInterface"], boot_override=boot)


def _oci(data: Mapping[str, Any], common: dict[str, Any]) -> ClusterConfig:
    for key in ("nodes", "bmcUsername", "bmcPassword", "bmcCaFile", "bmcVerifyTls", "powerState"):
        if key in data:
            raise ConfigError(key, "is a redfish-backend key but backend is oci",
                              f"remove `baremetal:{key}` from this stack")
    raw = data.get("oci")
    if not isinstance(raw, Mapping):
        raise ConfigError("oci", "is missing; the oci backend needs compartmentId, availabilityDomain, shape, ...",
                          "add a `baremetal:oci` object (see pulumi/Pulumi.oci-example.yaml)")
    _reject_unknown(raw, _OCI_KEYS, "oci.")
    compartment = _req_str(raw, "compartmentId", "oci")
    if not compartment.startswith(("ocid1.compartment.", "ocid1.tenancy.")):
        raise ConfigError("oci.compartmentId", f"{compartment!r} is not a compartment OCID",
                          "copy the OCID (ocid1.compartment.oc1..xxx) from the OCI console")
    image = _req_str(raw, "imageId", "oci")
    if not image.startswith("ocid1.image."):
        raise ConfigError("oci.imageId", f"{image!r} is not an image OCID",
                          "use an OL8 OFED GPU image OCID (ocid1.image.oc1...) as oci-hpc does")
    shape = _req_str(raw, "shape", "oci")
    if shape not in GPU_SHAPES:
        raise ConfigError("oci.shape", f"{shape!r} is not a known bare-metal GPU shape",
                          f"use one of {', '.join(sorted(GPU_SHAPES))}")
    spec = GPU_SHAPES[shape]
    gpus = _int(data, "gpusPerNode", spec.gpu_count)
    if gpus != spec.gpu_count:
        raise ConfigError("gpusPerNode", f"is {gpus} but shape {shape} has {spec.gpu_count} GPUs",
                          f"set gpusPerNode to {spec.gpu_count} or leave it out")
    model = _opt_str(data, "gpuModel") or spec.gpu_model
    if model != spec.gpu_model:
        raise ConfigError("gpuModel", f"is {model!r} but shape {shape} carries {spec.gpu_model}",
                          f"set gpuModel to {spec.gpu_model!r} or leave it out")
    if common["fabric"] != "roce":
        # OCI cluster networks are RoCEv2 over the shapes' RDMA NICs (docs/pulumi-reference.md §4.3).
        raise ConfigError("fabric", "is infiniband but OCI cluster networks are RoCE", "set fabric to roce")
    if not common["ssh_public_keys"]:
        raise ConfigError("sshPublicKeys", "is empty; OCI instances are only reachable with a key",
                          "add at least one public key")
    vcn = _cidr(raw, "vcnCidr", "oci")
    public = _cidr(raw, "publicSubnetCidr", "oci")
    vcn_net = ipaddress.ip_network(vcn)
    for key, cidr in (("mgmtCidr", common["mgmt_cidr"]), ("oci.publicSubnetCidr", public)):
        if not ipaddress.ip_network(cidr).subnet_of(vcn_net):  # type: ignore[arg-type]
            raise ConfigError(key, f"{cidr} is not inside oci.vcnCidr {vcn}", "pick a subnet of the VCN")
    if ipaddress.ip_network(public).overlaps(ipaddress.ip_network(common["mgmt_cidr"])):
        raise ConfigError("oci.publicSubnetCidr", f"{public} overlaps mgmtCidr", "give each subnet its own range")
    size = _int(raw, "bootVolumeSizeGbs", 200, "oci")
    if size < 50:
        raise ConfigError("oci.bootVolumeSizeGbs", f"is {size}", "use 50 GB or more (OCI's minimum boot volume)")
    oci = OciConfig(compartment_id=compartment, availability_domain=_req_str(raw, "availabilityDomain", "oci"),
                    shape=shape, image_id=image, ssh_cidr=_cidr(raw, "sshCidr", "oci"), vcn_cidr=vcn,
                    public_subnet_cidr=public, boot_volume_size_gbs=size)
    return ClusterConfig(**common, gpu_model=model, gpus_per_node=gpus, oci=oci)


# --- small typed readers: each names the key it reads -------------------------------------------------------

def _k(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _req_str(d: Mapping[str, Any], key: str, prefix: str = "") -> str:
    v = d.get(key)
    if not isinstance(v, str) or not v.strip():
        raise ConfigError(_k(prefix, key), "is missing or empty" if v in (None, "") else f"must be text, not {v!r}",
                          f"set `{_k(prefix, key)}` in the stack file")
    return v.strip()


def _opt_str(d: Mapping[str, Any], key: str, prefix: str = "") -> str | None:
    return _req_str(d, key, prefix) if d.get(key) not in (None, "") else None


def _int(d: Mapping[str, Any], key: str, default: int | None, prefix: str = "") -> int:
    v = d.get(key, default)
    if v is None:
        raise ConfigError(_k(prefix, key), "is missing", f"set `{_k(prefix, key)}` to a whole number")
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, str) and re.fullmatch(r"-?\d+", v.strip()):
            return int(v)
        raise ConfigError(_k(prefix, key), f"must be a whole number, not {v!r}", "write it without quotes or units")
    return v


def _bool(d: Mapping[str, Any], key: str, default: bool) -> bool:
    v = d.get(key, default)
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    if not isinstance(v, bool):
        raise ConfigError(key, f"must be true or false, not {v!r}", f"set `{key}: true` or `false`")
    return v


def _choice(d: Mapping[str, Any], key: str, choices: tuple[str, ...], default: str | None) -> Any:
    v = d.get(key, default)
    if v not in choices:
        raise ConfigError(key, "is missing" if v is None else f"is {v!r}", f"use one of: {', '.join(choices)}")
    return v


def _cidr(d: Mapping[str, Any], key: str, prefix: str = "") -> str:
    text = _req_str(d, key, prefix)
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as e:
        raise ConfigError(_k(prefix, key), f"{text!r} is not a network in CIDR form ({e})",
                          "write it like 10.0.0.0/24, with the host bits zero") from None
    if net.version != 4:  # the nodes contract and the inventories carry IPv4 (docs/nodes-contract.md)
        raise ConfigError(_k(prefix, key), f"{text} is not IPv4", "use an IPv4 network; IPv6 is not supported yet")
    return str(net)


def _address(d: Mapping[str, Any], key: str, prefix: str, cidr: str, cidr_key: str) -> str:
    text = _req_str(d, key, prefix)
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise ConfigError(_k(prefix, key), f"{text!r} is not an IP address", "write a plain address, no prefix") \
            from None
    net = ipaddress.ip_network(cidr)
    if addr not in net or addr in (net.network_address, net.broadcast_address):
        raise ConfigError(_k(prefix, key), f"{text} is not a host address in {cidr_key} {cidr}",
                          f"use an address inside {cidr} or change {cidr_key}")
    return str(addr)


def _unique(nodes: tuple[RedfishNode, ...], attr: Any, key: str, what: str | None = None) -> None:
    seen: dict[Any, int] = {}
    for i, n in enumerate(nodes):
        value = attr(n) if callable(attr) else getattr(n, attr)
        if value in seen:
            raise ConfigError(f"nodes[{i}].{key}", f"{what or key} {value!r} is already used by nodes[{seen[value]}]",
                              "give every node its own value")
        seen[value] = i


def _reject_unknown(d: Mapping[str, Any], known: Any, prefix: str) -> None:
    for key in d:
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f"did you mean `{prefix}{close[0]}`?" if close else f"known keys: {', '.join(known)}"
            raise ConfigError(f"{prefix}{key}", "is not a known key", hint)


def _parse_json(key: str, text: str, kind: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise ConfigError(key, f"must be {kind} (JSON as Pulumi stores it), not {text!r}",
                          "write it as a YAML number/boolean/list/map in the stack file, not a quoted string") \
            from None
    return value


def _reject_unknown_set_keys() -> None:
    """Flag ``baremetal:*`` keys that the stack sets but nothing reads (typos such as ``baremetal:nodecount``).

    Pulumi's language host hands the program every config value through ``pulumi.runtime.set_all_config``; the
    ``CONFIG`` map it fills is the only place the set of *present* keys is visible (``pulumi.Config`` reads one
    key at a time).
    """
    try:
        from pulumi.runtime.config import CONFIG, get_config_env
        present = set(CONFIG.get()) | set(get_config_env())
    except Exception:  # an SDK without these internals: skip the typo check rather than fail the run
        return
    for full in sorted(present):
        ns, _, key = full.partition(":")
        if ns == NAMESPACE and key not in _TOP_KEYS:
            _reject_unknown({key: None}, _TOP_KEYS, "")
