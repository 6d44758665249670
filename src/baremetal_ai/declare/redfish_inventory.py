"""Turn Redfish documents into the inventory dict the declare stage records for a server.

Everything here is pure: the input is either a ``{"@odata.id path": document}`` mapping or a ``fetch(path)``
callable that returns the document or ``None`` when the BMC has none. Nothing raises on odd data, because
BMCs differ wildly (fields missing, ``null``, strings where numbers belong, collections embedded instead of
linked); a missing string becomes ``"unknown"``, a missing number ``None``. The network client that
feeds ``fetch`` lives in :mod:`baremetal_ai.declare.redfish`; keeping the parse pure lets the tests run
on captured vendor documents without a BMC.

GPU placement differs by vendor (see docs/pulumi-reference.md, Redfish inventory): Dell, Cisco and
OpenBMC list GPUs under ``Systems/<id>/Processors`` with ``ProcessorType: GPU`` (often linking the PCIe
device too); other BMCs show them only as ``PCIeDevices`` under the System or the Chassis. Both places are
read and the result is de-duplicated: by the PCIe link a GPU processor carries, then by serial number, then
(for processors with neither) by matching model names one for one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

UNKNOWN = "unknown"

Fetch = Callable[[str], "dict[str, Any] | None"]

# Words that name a GPU in a PCIe device's Name/Model/Description. BMC VGA controllers (ASPEED, Matrox)
# are display devices too, so a device class alone is not enough. Bare model codes (H100, A40, MI300X)
# count only next to a GPU vendor's name: "H730" is also a Dell PERC RAID controller.
_GPU_WORDS = re.compile(r"\b(gpu|tesla|quadro|geforce|rtx|instinct|radeon)\b", re.IGNORECASE)
_GPU_MODEL_CODES = re.compile(r"\b([ahbl]\d{2,3}[a-z]?|v100|p100|t4|l4|l40s?|gh200|gb200|mi\d{3}[a-z]?)\b",
                              re.IGNORECASE)
_NOT_GPU_VENDORS = ("aspeed", "matrox")
_GPU_VENDORS = ("nvidia", "advanced micro devices", "amd")  # Intel GPUs say "GPU" in their names
_GPU_CLASSES = ("DisplayController", "ProcessingAccelerators")


def fetch_from_documents(documents: Mapping[str, Any]) -> Fetch:
    """A ``fetch`` over a dict of documents keyed by ``@odata.id`` (trailing slashes ignored)."""
    table = {_norm(k): v for k, v in documents.items()}

    def fetch(path: str) -> dict[str, Any] | None:
        doc = table.get(_norm(path))
        return doc if isinstance(doc, dict) else None

    return fetch


def read_inventory(source: Mapping[str, Any] | Fetch, system_path: str) -> dict[str, Any]:
    """Walk the links of one ComputerSystem and return its inventory.

    ``source`` is a documents mapping or a fetch callable. Only links present in the documents are followed,
    so a BMC that omits Processors or PCIeDevices simply yields fewer facts, never an error.
    """
    fetch = source if callable(source) else fetch_from_documents(source)
    system = _safe_fetch(fetch, system_path) or {}

    processors = [_safe_fetch(fetch, p) for p in _members(fetch, system.get("Processors"))]
    nics = [_safe_fetch(fetch, p) for p in _members(fetch, system.get("EthernetInterfaces"))]
    memory: list[dict[str, Any] | None] = []
    if _num(_get(system, "MemorySummary", "TotalSystemMemoryGiB")) is None:
        # Only walk the DIMMs when the summary is missing: it is one request per module.
        memory = [_safe_fetch(fetch, p) for p in _members(fetch, system.get("Memory"))]

    pcie_paths: list[str] = list(_members(fetch, system.get("PCIeDevices")))
    for chassis_link in _as_list(_get(system, "Links", "Chassis")):
        chassis = _safe_fetch(fetch, _odata_id(chassis_link))
        if chassis:
            pcie_paths.extend(_members(fetch, chassis.get("PCIeDevices")))
    pcie: list[dict[str, Any]] = []
    seen: set[str] = set()
    for path in pcie_paths:
        if _norm(path) in seen:
            continue  # the same device listed under the System and the Chassis
        seen.add(_norm(path))
        doc = _safe_fetch(fetch, path)
        if doc is None:
            continue
        functions = [_safe_fetch(fetch, f) for f in _function_links(fetch, doc)] if _maybe_gpu(doc) else []
        pcie.append({**doc, "_functions": [f for f in functions if f]})

    return parse_inventory(system, [p for p in processors if p], pcie, [n for n in nics if n],
                           [m for m in memory if m])


def parse_inventory(system: Mapping[str, Any], processors: Iterable[Mapping[str, Any]] = (),
                    pcie_devices: Iterable[Mapping[str, Any]] = (), nics: Iterable[Mapping[str, Any]] = (),
                    memory: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """Build the inventory dict from already-fetched documents (no I/O at all).

    ``pcie_devices`` entries may carry ``_functions`` (their PCIeFunction documents) to help classify GPUs.
    """
    system = system if isinstance(system, Mapping) else {}
    processors = [p for p in processors if isinstance(p, Mapping)]
    boot = system.get("Boot") if isinstance(system.get("Boot"), Mapping) else {}
    return {
        "manufacturer": _str(system.get("Manufacturer")),
        "model": _str(system.get("Model")),
        "serial": _str(system.get("SerialNumber")),
        "uuid": _str(system.get("UUID")),
        "power_state": _str(system.get("PowerState")),
        "bios_version": _str(system.get("BiosVersion")),
        "cpu": _cpu(system, processors),
        "memory_gib": _memory_gib(system, memory),
        "nics": _nics(nics),
        "gpus": _gpus(processors, pcie_devices),
        "boot": {
            "target": _str(boot.get("BootSourceOverrideTarget")),
            "enabled": _str(boot.get("BootSourceOverrideEnabled")),
            "mode": _str(boot.get("BootSourceOverrideMode")),
        },
    }


# --- parts -------------------------------------------------------------------------------------------------

def _cpu(system: Mapping[str, Any], processors: list[Mapping[str, Any]]) -> dict[str, Any]:
    cpus = [p for p in processors if _str(p.get("ProcessorType")) == "CPU" and _present(p)]
    summary = system.get("ProcessorSummary") if isinstance(system.get("ProcessorSummary"), Mapping) else {}
    count = _int(summary.get("Count"))
    if count is None and cpus:
        count = len(cpus)
    model = _str(summary.get("Model"))
    if model == UNKNOWN:
        model = next((_str(p.get("Model")) for p in cpus if _str(p.get("Model")) != UNKNOWN), UNKNOWN)
    return {"count": count, "model": model}


def _memory_gib(system: Mapping[str, Any], memory: Iterable[Mapping[str, Any]]) -> float | int | None:
    total = _num(_get(system, "MemorySummary", "TotalSystemMemoryGiB"))
    if total is not None:
        return total
    mib = [_num(m.get("CapacityMiB")) for m in memory if isinstance(m, Mapping) and _present(m)]
    known = [x for x in mib if x is not None]
    if not known:
        return None
    gib = sum(known) / 1024
    return int(gib) if gib == int(gib) else round(gib, 2)


def _nics(nics: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for nic in nics:
        if not isinstance(nic, Mapping):
            continue
        mac = nic.get("MACAddress") or nic.get("PermanentMACAddress")
        entry: dict[str, Any] = {"id": _str(nic.get("Id")), "mac": _str(mac).lower() if mac else UNKNOWN}
        speed = _int(nic.get("SpeedMbps"))
        if speed is not None:
            entry["speed_mbps"] = speed
        out.append(entry)
    return out


def _gpus(processors: list[Mapping[str, Any]], pcie_devices: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    gpus: list[dict[str, Any]] = []
    linked_pcie: set[str] = set()
    serials: set[str] = set()
    unlinked_models: list[str] = []  # GPU processors with no PCIe link and no serial, for one-for-one matching
    for p in processors:
        if _str(p.get("ProcessorType")) != "GPU" or not _present(p):
            continue
        links = p.get("Links") if isinstance(p.get("Links"), Mapping) else {}
        pcie_links = [_odata_id(x) for x in _as_list(links.get("PCIeDevice")) + _as_list(links.get("PCIeDevices"))]
        pcie_links += [_device_of_function(_odata_id(x)) for x in _as_list(links.get("PCIeFunctions"))]
        pcie_links = [_norm(x) for x in pcie_links if x]
        linked_pcie.update(pcie_links)
        serial = _str(p.get("SerialNumber"))
        if serial != UNKNOWN:
            serials.add(serial)
        model = _str(p.get("Model"))
        if not pcie_links and serial == UNKNOWN:
            unlinked_models.append(_model_key(model))
        gpus.append({"model": model, "manufacturer": _str(p.get("Manufacturer")), "source": "Processors",
                     "id": _str(p.get("@odata.id") or p.get("Id"))})
    for d in pcie_devices:
        if not isinstance(d, Mapping) or not _is_gpu_device(d) or not _present(d):
            continue
        path = _str(d.get("@odata.id"))
        if _norm(path) in linked_pcie or _str(d.get("SerialNumber")) in serials:
            continue
        model = _str(d.get("Model")) if _str(d.get("Model")) != UNKNOWN else _str(d.get("Name"))
        key = _model_key(model)
        if key in unlinked_models:
            unlinked_models.remove(key)  # most likely the same card the Processors list already counted
            continue
        gpus.append({"model": model, "manufacturer": _str(d.get("Manufacturer")), "source": "PCIeDevices",
                     "id": path if path != UNKNOWN else _str(d.get("Id"))})
    return gpus


def _is_gpu_device(d: Mapping[str, Any]) -> bool:
    text = " ".join(str(d.get(k) or "") for k in ("Name", "Model", "Description", "Manufacturer")).lower()
    if any(v in text for v in _NOT_GPU_VENDORS):
        return False
    if _GPU_WORDS.search(text):
        return True
    vendor = str(d.get("Manufacturer") or "").lower()
    if any(v in text for v in _GPU_VENDORS) and _GPU_MODEL_CODES.search(text):
        return True
    classes = {str(f.get("DeviceClass")) for f in _as_list(d.get("_functions")) if isinstance(f, Mapping)}
    return bool(classes & set(_GPU_CLASSES)) and any(v in vendor for v in _GPU_VENDORS)


def _maybe_gpu(d: Mapping[str, Any]) -> bool:
    """Worth fetching the functions (one request each) to classify? Only for GPU vendors not yet recognised."""
    if _is_gpu_device(d):
        return False
    vendor = str(d.get("Manufacturer") or "").lower()
    return any(v in vendor for v in _GPU_VENDORS)


def _function_links(fetch: Fetch, device: Mapping[str, Any]) -> list[str]:
    embedded = _as_list(_get(device, "Links", "PCIeFunctions"))
    if embedded:
        return [_odata_id(x) for x in embedded if _odata_id(x)]
    return list(_members(fetch, device.get("PCIeFunctions")))


# --- helpers -----------------------------------------------------------------------------------------------

def _members(fetch: Fetch, ref: Any) -> Iterable[str]:
    """Member paths of a collection given as a link ({"@odata.id": ...}) or as an embedded array of links."""
    if isinstance(ref, list):
        return [_odata_id(x) for x in ref if _odata_id(x)]
    path = _odata_id(ref)
    if not path:
        return []
    coll = _safe_fetch(fetch, path)
    if not coll:
        return []
    return [_odata_id(x) for x in _as_list(coll.get("Members")) if _odata_id(x)]


def _safe_fetch(fetch: Fetch, path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    doc = fetch(path)
    return doc if isinstance(doc, dict) else None


def _odata_id(ref: Any) -> str:
    if isinstance(ref, Mapping):
        v = ref.get("@odata.id")
        return v if isinstance(v, str) else ""
    return ref if isinstance(ref, str) else ""


def _device_of_function(path: str) -> str:
    return path.split("/PCIeFunctions/")[0] if "/PCIeFunctions/" in path else ""


def _norm(path: str) -> str:
    return path.split("#")[0].rstrip("/") if isinstance(path, str) else ""


def _get(doc: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(doc, Mapping):
            return None
        doc = doc.get(k)
    return doc


def _as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    return list(v) if isinstance(v, list | tuple) else [v]


def _present(doc: Mapping[str, Any]) -> bool:
    return _get(doc, "Status", "State") != "Absent"


def _str(v: Any) -> str:
    if v is None or isinstance(v, dict | list | bool):
        return UNKNOWN
    s = str(v).strip()
    return s if s and s.lower() not in ("null", "n/a") else UNKNOWN  # "None" is a real Redfish value


def _num(v: Any) -> float | int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return v
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return None
        return int(f) if f == int(f) else f
    return None


def _int(v: Any) -> int | None:
    n = _num(v)
    return int(n) if n is not None else None


def _model_key(model: str) -> str:
    return re.sub(r"[^a-z0-9]", "", model.lower())
