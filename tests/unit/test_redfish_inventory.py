"""Inventory parsing on real-looking Redfish documents (no BMC, no network).

The ``sushy/`` fixtures are verbatim copies of sushy 5.14.0's ``sushy/tests/unit/json_samples/*.json``
(DMTF mockup resources and Dell iDRAC PCIe devices); the ``derived/`` ones are built from them to show the two
vendor GPU layouts. Provenance and every edit: tests/fixtures/redfish/README.md.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from baremetal_ai.declare.redfish_inventory import UNKNOWN, fetch_from_documents, parse_inventory, read_inventory

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "redfish"


def sample(name: str) -> dict[str, Any]:
    """One verbatim sushy sample, from tests/fixtures/redfish/sushy/<name> (= sushy/tests/unit/json_samples)."""
    return json.loads((FIX / "sushy" / name).read_text())


def tree(*names: str) -> dict[str, dict[str, Any]]:
    docs = [sample(n) for n in names]
    return {d["@odata.id"]: d for d in docs}


def derived(name: str) -> dict[str, dict[str, Any]]:
    return json.loads((FIX / "derived" / name).read_text())


def test_fixtures_are_verbatim_sushy_samples() -> None:
    """The README's claim, checked: every sushy/ file equals the one in the installed sushy package."""
    sushy = pytest.importorskip("sushy")
    src = Path(sushy.__file__).parent / "tests" / "unit" / "json_samples"
    if not src.is_dir():
        pytest.skip("this sushy install ships no json_samples")
    for f in sorted((FIX / "sushy").glob("*.json")):
        assert f.read_bytes() == (src / f.name).read_bytes(), f.name


def test_dmtf_system_walk() -> None:
    """system.json -> processor_collection.json -> processor.json/processor2.json, ethernet_interfaces*.json."""
    docs = tree("system.json", "processor_collection.json", "processor.json", "processor2.json",
                "ethernet_interfaces_collection.json", "ethernet_interfaces.json")
    inv = read_inventory(docs, "/redfish/v1/Systems/437XR1138R2")
    assert inv["manufacturer"] == "Contoso"
    assert inv["model"] == "3500"
    assert inv["serial"] == "437XR1138R2"
    assert inv["uuid"] == "38947555-7742-3448-3784-823347823834"
    assert inv["power_state"] == "On"
    assert inv["bios_version"] == "P79 v1.45 (12/06/2017)"
    # ProcessorSummary.Count says 2 (CPU2 is "Absent" in processor2.json, but the summary is the BMC's word);
    # the summary has no Model, so the model comes from the present CPU (processor.json).
    assert inv["cpu"] == {"count": 2, "model": "Multi-Core Intel(R) Xeon(R) processor 7xxx Series"}
    assert inv["memory_gib"] == 96
    assert inv["nics"] == [{"id": "1", "mac": "12:44:6a:3b:04:11", "speed_mbps": 1000}]
    assert inv["gpus"] == []
    assert inv["boot"] == {"target": "Pxe", "enabled": "Once", "mode": "UEFI"}


def test_systemv1_20_summary_model_and_missing_links() -> None:
    """systemv1_20.json has ProcessorSummary.Model; its Processors/EthernetInterfaces links resolve to nothing
    here (not in the mapping), which must give empty lists, not errors."""
    inv = read_inventory(tree("systemv1_20.json"), "/redfish/v1/Systems/437XR1138R2")
    assert inv["cpu"] == {"count": 2, "model": "Multi-Core Intel(R) Xeon(R) processor 7xxx Series"}
    assert inv["nics"] == [] and inv["gpus"] == []


def test_real_pcie_devices_are_not_gpus() -> None:
    """pcie_device.json (Broadcom 25G NIC) and pcie_device_onboard.json (AMD onboard device, no GPU name) from
    an iDRAC: neither is a GPU, even though one is from a GPU vendor."""
    inv = parse_inventory(sample("system.json"), pcie_devices=[sample("pcie_device.json"),
                                                               sample("pcie_device_onboard.json")])
    assert inv["gpus"] == []


def test_gpus_under_processors_deduped_with_pcie() -> None:
    """Dell layout (derived/gpu-in-processors.json): GPUs as Processors with ProcessorType GPU that link their
    PCIe devices, which the Chassis also lists: counted once, from Processors."""
    inv = read_inventory(derived("gpu-in-processors.json"), "/redfish/v1/Systems/System.Embedded.1")
    assert [(g["source"], g["model"], g["manufacturer"]) for g in inv["gpus"]] == [
        ("Processors", "NVIDIA H100 80GB HBM3", "NVIDIA Corporation")] * 2
    assert inv["gpus"][0]["id"] == "/redfish/v1/Systems/System.Embedded.1/Processors/Video.Slot.38-1"
    assert inv["cpu"]["count"] == 2  # GPUs are not counted as CPUs
    assert inv["nics"] == [{"id": "NIC.Integrated.1-1-1", "mac": "b0:26:28:00:00:01", "speed_mbps": 25000}]


def test_gpus_only_in_pcie_devices() -> None:
    """derived/gpu-in-pcie-only.json: GPUs only as PCIeDevices, GPU1 listed twice (System's embedded array and
    the Chassis collection), plus an ASPEED BMC VGA and a NIC that must not count."""
    inv = read_inventory(derived("gpu-in-pcie-only.json"), "/redfish/v1/Systems/GPU-PCIE-1")
    assert inv["gpus"] == [
        {"model": "H100-SXM5-80GB", "manufacturer": "NVIDIA", "source": "PCIeDevices",
         "id": "/redfish/v1/Chassis/1/PCIeDevices/GPU1"},
        {"model": "H100-SXM5-80GB", "manufacturer": "NVIDIA", "source": "PCIeDevices",
         "id": "/redfish/v1/Chassis/1/PCIeDevices/GPU2"},
    ]
    assert inv["manufacturer"] == "Supermicro"
    assert inv["nics"] == [{"id": "1", "mac": "3c:ec:ef:00:00:01"}]  # SpeedMbps null: key left out
    assert inv["boot"] == {"target": "None", "enabled": "Disabled", "mode": "UEFI"}


def test_unlinked_gpu_processors_match_pcie_one_for_one() -> None:
    """A GPU processor with neither a PCIe link nor a serial still absorbs one same-model PCIe GPU (not two)."""
    docs = derived("gpu-in-processors.json")
    procs = [d for p, d in docs.items() if "/Processors/Video." in p]
    for p in procs:
        p.pop("Links"), p.pop("SerialNumber")
    pcie = [d for p, d in docs.items() if "/PCIeDevices/" in p and "GH100" in str(d.get("Name"))]
    for d in pcie:
        d["Model"] = "NVIDIA H100 80GB HBM3"
        d.pop("SerialNumber", None)
    extra = copy.deepcopy(pcie[-1])
    extra["@odata.id"] = extra["@odata.id"] + "-extra"
    inv = parse_inventory(docs["/redfish/v1/Systems/System.Embedded.1"], procs, [*pcie, extra])
    assert sorted(g["source"] for g in inv["gpus"]) == ["PCIeDevices", "Processors", "Processors"]


def test_summaries_omitted_give_unknown() -> None:
    """system.json with ProcessorSummary, MemorySummary, BiosVersion, Boot, SerialNumber, UUID removed and the
    Processors link dangling: every field is "unknown" or None, nothing raises."""
    system = sample("system.json")
    for k in ("ProcessorSummary", "MemorySummary", "BiosVersion", "Boot", "SerialNumber", "UUID", "PowerState"):
        system.pop(k)
    inv = read_inventory({system["@odata.id"]: system}, system["@odata.id"])
    assert inv["serial"] == inv["uuid"] == inv["bios_version"] == inv["power_state"] == UNKNOWN
    assert inv["cpu"] == {"count": None, "model": UNKNOWN}
    assert inv["memory_gib"] is None
    assert inv["boot"] == {"target": UNKNOWN, "enabled": UNKNOWN, "mode": UNKNOWN}
    assert inv["manufacturer"] == "Contoso"


def test_memory_from_dimms_when_summary_missing() -> None:
    system = sample("system.json")
    system.pop("MemorySummary")
    mem = "/redfish/v1/Systems/437XR1138R2/Memory"
    docs = {system["@odata.id"]: system,
            mem: {"Members": [{"@odata.id": f"{mem}/1"}, {"@odata.id": f"{mem}/2"}, {"@odata.id": f"{mem}/3"}]},
            f"{mem}/1": {"CapacityMiB": 65536}, f"{mem}/2": {"CapacityMiB": 65536},
            f"{mem}/3": {"CapacityMiB": 65536, "Status": {"State": "Absent"}}}
    assert read_inventory(docs, system["@odata.id"])["memory_gib"] == 128


@pytest.mark.parametrize("garbage", [
    {}, {"ProcessorSummary": "x", "MemorySummary": [], "Boot": None, "Links": {"Chassis": "nope"}},
    {"ProcessorSummary": {"Count": "many"}, "MemorySummary": {"TotalSystemMemoryGiB": "lots"},
     "Processors": [None, 3, {"@odata.id": 5}], "EthernetInterfaces": {"@odata.id": None},
     "PCIeDevices": "x", "Manufacturer": {"odd": 1}, "Model": True},
])
def test_odd_documents_never_raise(garbage: dict[str, Any]) -> None:
    inv = read_inventory({"/redfish/v1/Systems/x": garbage}, "/redfish/v1/Systems/x")
    assert inv["manufacturer"] == UNKNOWN
    assert inv["cpu"]["count"] is None and inv["memory_gib"] is None
    assert inv["gpus"] == [] and inv["nics"] == []


def test_missing_system_and_fetch_callable() -> None:
    calls: list[str] = []
    docs = tree("system.json")

    def fetch(path: str) -> dict[str, Any] | None:
        calls.append(path)
        return fetch_from_documents(docs)(path)

    assert read_inventory(fetch, "/redfish/v1/Systems/437XR1138R2/")["serial"] == "437XR1138R2"  # slash ignored
    assert calls[0] == "/redfish/v1/Systems/437XR1138R2/"
    assert read_inventory(fetch, "/redfish/v1/Systems/none")["serial"] == UNKNOWN


def test_perc_raid_controller_is_not_a_gpu() -> None:
    """Bare model codes need a GPU vendor: a Dell PERC H730 would otherwise look like an "H730" GPU."""
    perc = {**sample("pcie_device.json"), "Name": "PERC H730P Mini", "Manufacturer": "Broadcom / LSI"}
    amd = {**sample("pcie_device_onboard.json"), "Name": "Instinct MI300X", "@odata.id": "/x/2"}
    inv = parse_inventory(sample("system.json"), pcie_devices=[perc, amd])
    assert [g["model"] for g in inv["gpus"]] == ["Instinct MI300X"]
