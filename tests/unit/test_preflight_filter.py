"""The preflight role's checks (roles/preflight/filter_plugins/preflight.py), called with plain dicts."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

ROLE = Path(__file__).resolve().parents[2] / "roles" / "preflight"
_spec = importlib.util.spec_from_file_location("preflight_filter", ROLE / "filter_plugins" / "preflight.py")
assert _spec and _spec.loader
pf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pf)

DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
SPEC = DEFAULTS["preflight_required_vars"]
GIB = 1024**3


def node(n: int, **overrides: Any) -> dict[str, Any]:
    """A host that passes every check with the role's defaults (facts of a Debian 12 node included)."""
    hv = {
        "ansible_host": f"192.0.2.{n}",
        "node_mgmt_interface": "eth0",
        "node_fabric_interface": "eth1",
        "node_fabric_address": f"198.51.100.{n}",
        "node_fabric_prefix": 24,
        "node_fabric_mtu": 9000,
        "node_gpu_model": "none",
        "node_gpu_count": 0,
        "bmc_endpoint": "https://127.0.0.1:8000",
        "bmc_system_id": f"node{n}",
        "bmc_username": "admin",
        "bmc_password": "s3cr3t-pw",
        "bmc_ca_file": "/etc/ssl/certs/ca-certificates.crt",
        "ansible_facts": {
            "distribution": "Debian",
            "distribution_version": "12.12",
            "distribution_major_version": "12",
            "interfaces": ["lo", "eth0", "eth1"],
            "mounts": [
                {"mount": "/", "size_available": 200 * GIB},
                {"mount": "/boot/efi", "size_available": 1 * GIB},
            ],
        },
    }
    hv.update(overrides)
    return hv


def report(hostvars: dict[str, dict[str, Any]], host: str, **kwargs: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "mtu_min": DEFAULTS["preflight_mtu_min"],
        "mtu_max": DEFAULTS["preflight_mtu_max"],
        "supported_os": DEFAULTS["preflight_supported_os"],
        "min_free_gb": DEFAULTS["preflight_min_free_gb"],
        "disk_path": DEFAULTS["preflight_disk_path"],
        "interface_vars": DEFAULTS["preflight_interface_vars"],
        "unique_vars": DEFAULTS["preflight_unique_address_vars"],
    }
    args.update(kwargs)
    return pf.preflight_report(hostvars, host, list(hostvars), SPEC, **args)


def facts(**changes: Any) -> dict[str, Any]:
    f = copy.deepcopy(node(1)["ansible_facts"])
    f.update(changes)
    return f


# --- a clean fleet -------------------------------------------------------------------------------------------


def test_clean_fleet_passes_every_check() -> None:
    fleet = {f"node{i}": node(i) for i in (1, 2, 3)}
    for host in fleet:
        r = report(fleet, host)
        assert r["problems"] == [], r
        assert r["skipped"] == []
        assert r["checks"] == dict.fromkeys(pf.CHECKS, "passed")


def test_filter_module_exposes_both_filters() -> None:
    filters = pf.FilterModule().filters()
    fleet = {"node1": node(1, node_fabric_mtu=100)}
    assert (
        filters["preflight_problems"](fleet, "node1", ["node1"], SPEC)
        == filters["preflight_report"](fleet, "node1", ["node1"], SPEC)["problems"]
    )


def test_checks_match_role_vars() -> None:
    role_vars = yaml.safe_load((ROLE / "vars" / "main.yml").read_text())
    assert role_vars["_preflight_checks"] == list(pf.CHECKS)


# --- required variables -------------------------------------------------------------------------------------


def test_missing_variable_names_host_variable_and_fix() -> None:
    hv = node(1)
    del hv["node_fabric_address"]
    [msg] = report({"node1": hv}, "node1")["problems"]
    assert msg.startswith("node1: node_fabric_address is missing (IPv4 address of the node on the GPU fabric)")
    assert "Fix: define node_fabric_address (an IPv4 address) for host node1 in the inventory." in msg


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("node_fabric_mtu", "9000", "node_fabric_mtu = '9000' is a string, not an integer"),
        ("node_fabric_prefix", 24.0, "node_fabric_prefix = 24.0 is a float, not an integer"),
        ("node_gpu_count", True, "node_gpu_count = True is a boolean, not an integer"),
        ("node_gpu_model", 8, "node_gpu_model = 8 is an integer, not a string"),
        ("node_gpu_model", "  ", "node_gpu_model = '  ' is empty"),
        ("bmc_system_id", None, "bmc_system_id = None is null, not a string"),
        ("ansible_host", "192.0.2.300", "ansible_host = '192.0.2.300' is not a valid IPv4 address"),
        ("ansible_host", "192.0.2.1/24", "ansible_host = '192.0.2.1/24' is not a valid IPv4 address"),
        ("node_fabric_address", "gpu01.example", "node_fabric_address = 'gpu01.example' is not a valid IPv4"),
        ("node_fabric_address", ["198.51.100.1"], "node_fabric_address = ['198.51.100.1'] is a list, not an IPv4"),
    ],
)
def test_wrong_type(var: str, value: Any, expected: str) -> None:
    problems = report({"node1": node(1, **{var: value})}, "node1")["problems"]
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"node1: {expected}")
    assert f" Fix: for {var} of host node1, " in problems[0]


def test_int_bounds_from_spec() -> None:
    problems = report({"node1": node(1, node_fabric_prefix=33, node_gpu_count=-1)}, "node1")["problems"]
    assert problems == [
        "node1: node_fabric_prefix = 33 is outside 1..32 (prefix length of the fabric network, e.g. 24). "
        "Fix: set node_fabric_prefix of host node1 to a value in 1..32.",
        "node1: node_gpu_count = -1 is below the minimum 0 (number of GPUs in the node, 0 without GPUs). "
        "Fix: set node_gpu_count of host node1 to a value of at least 0.",
    ]


def test_bool_and_list_types() -> None:
    spec = [{"name": "x_enabled", "type": "bool"}, {"name": "x_list", "type": "list"}]
    ok = pf.check_required_vars("h", {"x_enabled": False, "x_list": []}, spec)
    assert ok == []
    bad = pf.check_required_vars("h", {"x_enabled": "yes", "x_list": "a,b"}, spec)
    assert bad == [
        "h: x_enabled = 'yes' is a string, not a boolean. Fix: for x_enabled of host h, write true or false "
        "without quotes.",
        "h: x_list = 'a,b' is a string, not a list. Fix: for x_list of host h, write a YAML list.",
    ]


def test_unknown_spec_type_is_reported() -> None:
    [msg] = pf.check_required_vars("h", {"x": 1}, [{"name": "x", "type": "integer"}])
    assert "preflight_required_vars entry 'x' has type 'integer'" in msg
    assert "Fix: use one of str, int, bool, ipv4, list" in msg


def test_secret_value_is_never_shown() -> None:
    problems = report({"node1": node(1, bmc_password=12345678)}, "node1")["problems"]
    assert problems == [
        "node1: bmc_password = <redacted> is an integer, not a string (BMC password (usually a lookup)). "
        "Fix: for bmc_password of host node1, set a non-empty string."
    ]
    assert "12345678" not in problems[0]


def test_undefined_and_failed_lookup_are_reported_not_raised() -> None:
    # Ansible 2.19 hands a failed lookup over as a captured-exception marker, a jinja2.Undefined subclass
    failed = jinja2.Undefined(
        hint="A captured exception marker was tripped: The lookup plugin 'file' failed: Unable to access the "
        "file '/nonexistent'."
    )
    hv = node(1, bmc_password=failed, bmc_username=jinja2.Undefined(name="vault_user"))
    problems = report({"node1": hv}, "node1")["problems"]
    assert problems == [
        "node1: bmc_username (BMC user name) cannot be evaluated: 'vault_user' is undefined. "
        "Fix: correct the value or lookup of bmc_username for host node1 in the inventory.",
        "node1: bmc_password (BMC password (usually a lookup)) cannot be evaluated: The lookup plugin 'file' "
        "failed: Unable to access the file '/nonexistent'. "
        "Fix: correct the value or lookup of bmc_password for host node1 in the inventory.",
    ]


def test_hostvars_that_raise_are_reported() -> None:
    class Raising(dict):
        def __getitem__(self, key: str) -> Any:
            if key == "bmc_password":
                raise RuntimeError("template error while templating string.")
            return super().__getitem__(key)

    [msg] = pf.check_required_vars("h", Raising(node(1)), SPEC)
    assert msg.startswith("h: bmc_password (BMC password (usually a lookup)) cannot be evaluated: RuntimeError: ")


# --- MTU ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mtu", [1280, 1500, 9000, 9216])
def test_mtu_in_range(mtu: int) -> None:
    assert report({"node1": node(1, node_fabric_mtu=mtu)}, "node1")["checks"]["mtu"] == "passed"


@pytest.mark.parametrize("mtu", [0, 576, 1279, 9217, 65535])
def test_mtu_out_of_range(mtu: int) -> None:
    r = report({"node1": node(1, node_fabric_mtu=mtu)}, "node1")
    assert r["checks"]["mtu"] == "failed"
    [msg] = r["problems"]
    assert msg.startswith(f"node1: node_fabric_mtu = {mtu} is outside 1280..9216")
    assert "Fix: set node_fabric_mtu of host node1 to a value in 1280..9216" in msg


def test_mtu_limits_are_configurable() -> None:
    r = report({"node1": node(1, node_fabric_mtu=9000)}, "node1", mtu_min=1500, mtu_max=1500)
    assert r["problems"][0].startswith("node1: node_fabric_mtu = 9000 is outside 1500..1500")


def test_mtu_skipped_when_not_an_integer() -> None:
    r = report({"node1": node(1, node_fabric_mtu="jumbo")}, "node1")
    assert r["checks"]["mtu"] == "skipped"
    assert r["skipped"] == [
        "node1: mtu check skipped: node_fabric_mtu has no integer value (see the required variables check)"
    ]
    assert len(r["problems"]) == 1  # reported once, by the required variables check


# --- unique addresses -----------------------------------------------------------------------------------------


def test_duplicate_fabric_address_is_reported_on_both_hosts() -> None:
    fleet = {"node1": node(1), "node2": node(2, node_fabric_address="198.51.100.1"), "node3": node(3)}
    r1, r2, r3 = (report(fleet, h) for h in fleet)
    assert r1["problems"] == [
        "node1: node_fabric_address = '198.51.100.1' is also used by node2 (node_fabric_address). "
        "Fix: give every host its own address; ansible_host, node_fabric_address must be unique across the play."
    ]
    assert r2["problems"] == [
        r1["problems"][0].replace("node1", "nodeX").replace("node2", "node1").replace("nodeX", "node2")
    ]
    assert r3["problems"] == []


def test_address_used_as_mgmt_and_fabric_across_hosts() -> None:
    fleet = {"node1": node(1), "node2": node(2, ansible_host="198.51.100.1")}
    [msg] = report(fleet, "node1")["problems"]
    assert msg.startswith("node1: node_fabric_address = '198.51.100.1' is also used by node2 (ansible_host).")


def test_three_hosts_share_one_mgmt_address() -> None:
    fleet = {f"node{i}": node(i, ansible_host="192.0.2.9") for i in (1, 2, 3)}
    [msg] = report(fleet, "node2")["problems"]
    assert "is also used by node1 (ansible_host), node3 (ansible_host)." in msg


def test_only_play_hosts_are_compared() -> None:
    fleet = {"node1": node(1), "other": node(2, node_fabric_address="198.51.100.1")}
    r = pf.preflight_report(fleet, "node1", ["node1"], SPEC)
    assert r["checks"]["unique_addresses"] == "passed"


# --- OS -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dist", "version", "major"),
    [("Debian", "12.12", "12"), ("Debian", "12", "12"), ("Ubuntu", "22.04", "22"), ("Ubuntu", "24.04", "24")],
)
def test_supported_os(dist: str, version: str, major: str) -> None:
    f = facts(distribution=dist, distribution_version=version, distribution_major_version=major)
    assert report({"node1": node(1, ansible_facts=f)}, "node1")["checks"]["os"] == "passed"


@pytest.mark.parametrize(
    ("dist", "version", "major"),
    [("Debian", "11.9", "11"), ("Ubuntu", "20.04", "20"), ("Ubuntu", "22.10", "22"), ("Rocky", "9.3", "9")],
)
def test_unsupported_os(dist: str, version: str, major: str) -> None:
    f = facts(distribution=dist, distribution_version=version, distribution_major_version=major)
    [msg] = report({"node1": node(1, ansible_facts=f)}, "node1")["problems"]
    assert msg.startswith(f"node1: ansible_distribution = '{dist}' version '{version}' is not supported")
    assert "(supported: Debian 12, Ubuntu 22.04, Ubuntu 24.04)" in msg
    assert "Fix: install a supported OS on this host, or add it to preflight_supported_os" in msg


# --- disk -----------------------------------------------------------------------------------------------------


def test_disk_uses_longest_covering_mount() -> None:
    mounts = [
        {"mount": "/", "size_available": 200 * GIB},
        {"mount": "/var", "size_available": 1 * GIB},
        {"mount": "/var/lib/docker", "size_available": 500 * GIB},
    ]
    assert pf.covering_mount("/var/lib/docker/x", mounts)["mount"] == "/var/lib/docker"
    assert pf.covering_mount("/var/lib", mounts)["mount"] == "/var"
    assert pf.covering_mount("/variable", mounts)["mount"] == "/"
    hv = node(1, ansible_facts=facts(mounts=mounts))
    [msg] = report({"node1": hv}, "node1", disk_path="/var/cache")["problems"]
    assert msg == (
        "node1: free space on /var/cache (mount /var) = 1.1 GB is below preflight_min_free_gb = 10. "
        "Fix: free space on /var of host node1, or lower preflight_min_free_gb."
    )


def test_disk_enough_space_and_threshold() -> None:
    hv = node(1, ansible_facts=facts(mounts=[{"mount": "/", "size_available": 10 * 1000**3}]))
    assert report({"node1": hv}, "node1", min_free_gb=10)["checks"]["disk"] == "passed"
    assert report({"node1": hv}, "node1", min_free_gb=11)["checks"]["disk"] == "failed"


def test_disk_check_off_and_skips() -> None:
    r = report({"node1": node(1)}, "node1", min_free_gb=0)
    assert r["checks"]["disk"] == "skipped"
    assert r["skipped"] == ["node1: disk check skipped: disabled (preflight_min_free_gb is 0)"]
    overlay_only = node(1, ansible_facts=facts(mounts=[{"mount": "/boot", "size_available": GIB}]))
    r = report({"node1": overlay_only}, "node1")
    assert r["checks"]["disk"] == "skipped"
    assert "no mount in ansible_mounts covers /" in r["skipped"][0]


# --- interfaces -----------------------------------------------------------------------------------------------


def test_missing_interface_lists_the_ones_found() -> None:
    [msg] = report({"node1": node(1, node_fabric_interface="ens1f0np0")}, "node1")["problems"]
    assert msg == (
        "node1: node_fabric_interface = 'ens1f0np0' does not exist on the host "
        "(ansible_interfaces: eth0, eth1, lo). Fix: set node_fabric_interface of host node1 to one of its "
        "interfaces."
    )


# --- missing facts --------------------------------------------------------------------------------------------


def test_no_facts_skips_fact_checks_with_reasons() -> None:
    hv = node(1)
    del hv["ansible_facts"]
    r = report({"node1": hv}, "node1")
    assert r["problems"] == []
    assert r["checks"] == {
        "required_vars": "passed",
        "mtu": "passed",
        "unique_addresses": "passed",
        "os": "skipped",
        "disk": "skipped",
        "interfaces": "skipped",
    }
    assert r["skipped"] == [
        "node1: os check skipped: no distribution facts (gather facts first, or set preflight_gather_facts: true)",
        "node1: disk check skipped: no mount facts and no df output (gather facts first, or set "
        "preflight_gather_facts: true)",
        "node1: interfaces check skipped: no interface facts (gather facts first, or set preflight_gather_facts: true)",
    ]


# --- everything at once ---------------------------------------------------------------------------------------


def test_every_problem_of_a_host_is_listed_together() -> None:
    bad = node(
        2,
        node_fabric_address="198.51.100.1",
        node_fabric_mtu=9500,
        node_fabric_interface="eth9",
        node_gpu_count="8",
        ansible_facts=facts(
            distribution="Ubuntu",
            distribution_version="20.04",
            distribution_major_version="20",
            mounts=[{"mount": "/", "size_available": 2 * 1000**3}],
        ),
    )
    del bad["bmc_username"]
    fleet = {"node1": node(1), "node2": bad}
    r = report(fleet, "node2")
    assert r["checks"] == dict.fromkeys(pf.CHECKS, "failed")
    problems = r["problems"]
    assert len(problems) == 7, problems
    expected = [
        "node2: node_gpu_count = '8' is a string, not an integer",
        "node2: bmc_username is missing",
        "node2: node_fabric_mtu = 9500 is outside 1280..9216",
        "node2: node_fabric_address = '198.51.100.1' is also used by node1 (node_fabric_address)",
        "node2: ansible_distribution = 'Ubuntu' version '20.04' is not supported",
        "node2: free space on / (mount /) = 2.0 GB is below preflight_min_free_gb = 10",
        "node2: node_fabric_interface = 'eth9' does not exist on the host",
    ]
    for msg, start in zip(problems, expected, strict=True):
        assert msg.startswith(start), (msg, start)
        assert " Fix: " in msg
    # the good host only sees the shared address
    assert report(fleet, "node1")["problems"] == [
        "node1: node_fabric_address = '198.51.100.1' is also used by node2 (node_fabric_address). "
        "Fix: give every host its own address; ansible_host, node_fabric_address must be unique across the play."
    ]


def test_native_strips_subclasses() -> None:
    class TaggedStr(str):
        pass

    class TaggedInt(int):
        pass

    value = pf.native({TaggedStr("a"): [TaggedInt(1), TaggedStr("b"), (True, 1.5)]})
    assert value == {"a": [1, "b", [True, 1.5]]}
    assert type(next(iter(value))) is str
    assert type(value["a"][0]) is int


# df output captured on this project's dev machine (Debian 12, `df -P -B1 /`) and inside a lab node, whose root
# is an overlay that ansible_mounts does not list.
DF_HOST = """Filesystem         1-blocks        Used   Available Capacity Mounted on
/dev/vda       270553174016 24368463872 84575830016      23% /
"""
DF_OVERLAY_SMALL = """Filesystem     1-blocks      Used Available Capacity Mounted on
overlay        21474836480 20401094656 1073741824      95% /
"""


def test_parse_df() -> None:
    assert pf.parse_df(DF_HOST) == {"mount": "/", "size_available": 84575830016}
    assert pf.parse_df("") is None
    assert pf.parse_df("df: /nope: No such file or directory\n") is None


def test_disk_falls_back_to_df_when_no_mount_covers_the_path() -> None:
    overlay_only = node(1, ansible_facts=facts(mounts=[{"mount": "/boot", "size_available": GIB}]))
    assert report({"node1": overlay_only}, "node1", df_output=DF_HOST)["checks"]["disk"] == "passed"
    [msg] = report({"node1": overlay_only}, "node1", df_output=DF_OVERLAY_SMALL)["problems"]
    assert msg.startswith("node1: free space on / (mount /) = 1.1 GB is below preflight_min_free_gb = 10.")
