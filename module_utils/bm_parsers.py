# Copyright: baremetal-ai contributors
# Apache-2.0
"""Parsers for the output of the tools that post-provision validation runs (stdlib only).

Runs on managed nodes (imported by modules as ``ansible.module_utils.bm_parsers``) and on the controller
(``baremetal inspect``, the results writers, the unit tests with ``module_utils/`` on ``sys.path``).

Every public parser takes the tool's text (``str``; ``bytes`` are decoded as UTF-8) and returns plain
JSON-serialisable data. Input that is not the expected format raises :class:`ParseError`, whose ``head``
holds the first lines of the input; no parser lets another exception escape.

Formats and their sources: the shared reference docs, ``gpu-bench-reference.md`` (§5 nccl-tests,
§6 perftest, §7 fio/iperf3, §8 nvidia-smi XML and ``topo -m``) and ``gpu-node-reference.md`` (§3 GIDs,
§5 topo legend / lspci, §6 Xid, ECC, row remapping, NVLink, DCGM). Fixtures: ``tests/fixtures/<tool>/``.

Units are in the key names: ``*_mib``, ``*_mhz``, ``*_w``, ``*_c``, ``*_us``, ``*_ns``, ``*_gbps`` (GB/s for
nccl-tests, Gb/s for perftest/iperf3 as noted per key), ``*_bps`` (bits/s), ``bw_bytes`` (bytes/s).
"""

from __future__ import annotations

import csv
import functools
import io
import ipaddress
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, TypeVar

__all__ = [
    "CLOCK_EVENT_REASON_BITS",
    "KINDS",
    "XID_INFO",
    "ParseError",
    "XidInfo",
    "decode_clock_event_reasons",
    "detect_kind",
    "fatal_xids",
    "normalize_bdf",
    "parse_dcgmi_diag",
    "parse_fio_json",
    "parse_gid_table",
    "parse_gpubench_json",
    "parse_ibv_devinfo",
    "parse_iperf3_json",
    "parse_lspci_vvv",
    "parse_nccl_tests",
    "parse_nvlink_status",
    "parse_nvsmi_csv",
    "parse_nvsmi_xml",
    "parse_perftest",
    "parse_topo_matrix",
    "parse_xid",
    "roce_v2_gid_index",
]

HEAD_LINES = 10


class ParseError(ValueError):
    """The input is not the format a parser expects.

    ``head`` is the first ~10 lines of the input; ``str(err)`` says what was expected.
    """

    def __init__(self, message: str, head: str = "") -> None:
        self.head = head
        text = message
        if head:
            text = f"{message}\n--- input starts with ---\n{head}"
        super().__init__(text)
        self.message = message


F = TypeVar("F", bound=Callable[..., Any])


def _head(text: Any) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if not isinstance(text, str):
        return repr(text)[:400]
    return "\n".join(text.splitlines()[:HEAD_LINES])


def _text(text: Any, what: str) -> str:
    if isinstance(text, bytes):
        return text.decode("utf-8", "replace")
    if not isinstance(text, str):
        raise ParseError(f"{what}: expected text, got {type(text).__name__}", _head(text))
    return text


def _guarded(what: str) -> Callable[[F], F]:
    """Turn any unexpected exception inside a parser into a ParseError that shows the input's head."""

    def deco(func: F) -> F:
        @functools.wraps(func)
        def wrapper(text: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return func(text, *args, **kwargs)
            except ParseError:
                raise
            except (ValueError, KeyError, IndexError, TypeError, AttributeError, ET.ParseError) as exc:
                raise ParseError(f"{what}: unexpected input ({type(exc).__name__}: {exc})", _head(text)) from exc

        return wrapper  # type: ignore[return-value]

    return deco


# ---------------------------------------------------------------------------------------------------------
# small value helpers

_NA = {"", "n/a", "[n/a]", "na", "none", "[not supported]", "not supported", "unknown", "[unknown error]",
       "<unknown>", "requested functionality has been deprecated"}
_NUM_RE = re.compile(r"^[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")


def _is_na(value: str | None) -> bool:
    return value is None or value.strip().lower() in _NA


def _num(value: str | None) -> int | float | None:
    """First number of a unit-suffixed value: ``"81920 MiB"`` → 81920, ``"16x"`` → 16, ``"N/A"`` → None."""
    if _is_na(value):
        return None
    assert value is not None
    m = _NUM_RE.match(value.strip())
    if not m:
        return None
    s = m.group(0)
    if re.fullmatch(r"[-+]?\d+", s):
        return int(s)
    return float(s)


def _int(value: str | None) -> int | None:
    n = _num(value)
    return int(n) if n is not None else None


def _float(value: str | None) -> float | None:
    n = _num(value)
    return float(n) if n is not None else None


def _yes(value: str | None) -> bool | None:
    """``Enabled``/``Yes``/``Active`` → True, ``Disabled``/``No``/``Not Active`` → False, N/A → None."""
    if _is_na(value):
        return None
    assert value is not None
    v = value.strip().lower()
    if v in {"enabled", "yes", "active", "on", "true", "1"}:
        return True
    if v in {"disabled", "no", "not active", "off", "false", "0"}:
        return False
    return None


def _str(value: str | None) -> str | None:
    return None if _is_na(value) else (value or "").strip()


def _scalar(value: str) -> int | float | str | None:
    """CSV cell: None for N/A, int/float when the whole cell (maybe with a unit) is a number, else the text."""
    v = value.strip()
    if _is_na(v):
        return None
    m = re.fullmatch(r"([-+]?\d+(?:\.\d+)?)(?:\s*(?:MiB|MHz|W|C|%|KiB|GiB|B|x|GT/s|ms|us|s))?", v)
    if m:
        n = m.group(1)
        return float(n) if "." in n else int(n)
    return v


def _int_or_str(value: str | None) -> int | str | None:
    v = _str(value)
    return int(v) if v is not None and v.isdigit() else v


def normalize_bdf(bdf: str) -> str:
    """``00000000:18:00.0`` / ``18:00.0`` / ``0000:18:00.0`` → ``0000:18:00.0`` (lower case)."""
    b = bdf.strip().lower()
    m = re.fullmatch(r"(?:([0-9a-f]{1,8}):)?([0-9a-f]{1,2}):([0-9a-f]{1,2})\.([0-7])", b)
    if not m:
        raise ValueError(f"not a PCI address: {bdf!r}")
    domain = int(m.group(1) or "0", 16)
    return f"{domain:04x}:{int(m.group(2), 16):02x}:{int(m.group(3), 16):02x}.{m.group(4)}"


def _json_from(text: str, what: str) -> Any:
    """The first JSON object in ``text``; tools (fio) may print warnings before it."""
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            pass
    decoder = json.JSONDecoder()
    for m in re.finditer(r"(?m)^\s*\{", text):
        try:
            obj, _ = decoder.raw_decode(text, m.start() + (len(m.group(0)) - 1))
            return obj
        except json.JSONDecodeError:
            continue
    raise ParseError(f"{what}: expected a JSON object", _head(text))


# ---------------------------------------------------------------------------------------------------------
# nvidia-smi -q -x

_THROTTLE_CONTAINERS = ("clocks_event_reasons", "clocks_throttle_reasons", "clocks_throttle")
_THROTTLE_PREFIXES = ("clocks_event_reason_", "clocks_throttle_reason_")


def _t(el: ET.Element | None, path: str) -> str | None:
    if el is None:
        return None
    found = el.find(path)
    if found is None or found.text is None:
        return None
    return found.text.strip()


def _first(el: ET.Element, *paths: str) -> str | None:
    for p in paths:
        v = _t(el, p)
        if v is not None:
            return v
    return None


def _ecc_counts(block: ET.Element | None) -> dict[str, Any] | None:
    """One of ``ecc_errors/volatile`` or ``/aggregate``: totals plus each counter as printed.

    Schema v12+ has ``sram_/dram_(un)correctable``; older drivers ``single_bit``/``double_bit`` with a
    ``total`` child. Both map to ``correctable``/``uncorrectable`` (None when the GPU reports N/A).
    """
    if block is None:
        return None
    detail: dict[str, int | None] = {}
    for child in block:
        if len(child):
            detail[child.tag] = _int(_t(child, "total"))
        else:
            detail[child.tag] = _int(child.text)
    corr_keys = [k for k in detail if k.endswith("_correctable") and "uncorrectable" not in k] + (
        ["single_bit"] if "single_bit" in detail else []
    )
    unc_keys = [
        k for k in detail if k in {"sram_uncorrectable", "dram_uncorrectable", "double_bit"}
    ] or [k for k in detail if k.endswith("_uncorrectable")]
    if "sram_uncorrectable" not in detail and {"sram_uncorrectable_parity", "sram_uncorrectable_secded"} & set(
        detail
    ):
        unc_keys += [k for k in ("sram_uncorrectable_parity", "sram_uncorrectable_secded") if k in detail]

    def total(keys: list[str]) -> int | None:
        vals = [detail[k] for k in keys if detail.get(k) is not None]
        return sum(v for v in vals if v is not None) if vals else None

    return {"correctable": total(corr_keys), "uncorrectable": total(unc_keys), "detail": detail}


def _remapped_rows(gpu: ET.Element) -> dict[str, Any] | None:
    rr = gpu.find("remapped_rows")
    if rr is None or not len(rr):  # absent, or a bare N/A leaf (seen with MIG enabled)
        return None
    return {
        "correctable": _int(_t(rr, "remapped_row_corr")),
        "uncorrectable": _int(_t(rr, "remapped_row_unc")),
        "pending": _yes(_t(rr, "remapped_row_pending")),
        "failure": _yes(_t(rr, "remapped_row_failure")),
    }


def _retired_pages(gpu: ET.Element) -> dict[str, Any] | None:
    rp = gpu.find("retired_pages")
    if rp is None or not len(rp):
        return None
    out = {
        "single_bit": _int(_t(rp, "multiple_single_bit_retirement/retired_count")),
        "double_bit": _int(_t(rp, "double_bit_retirement/retired_count")),
        "pending": _yes(_first(rp, "pending_retirement", "pending_blacklist")),
    }
    if all(v is None for v in out.values()):
        return None
    return out


def _throttle_active(gpu: ET.Element) -> list[str] | None:
    for tag in _THROTTLE_CONTAINERS:
        box = gpu.find(tag)
        if box is None:
            continue
        active = []
        for child in box:
            name = child.tag
            for prefix in _THROTTLE_PREFIXES:
                if name.startswith(prefix):
                    name = name[len(prefix):]
            if _yes(child.text) is True:
                active.append(name)
        return active
    return None


# NVML clocks event (throttle) reason bits; unchanged by the 535 rename (gpu-bench-reference.md §8).
CLOCK_EVENT_REASON_BITS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clocks_setting",
    0x200: "board_limit",
    0x400: "reliability",
}


def decode_clock_event_reasons(mask: int | str | None) -> list[str] | None:
    """``clocks_event_reasons.active`` (``0x...84`` from --query-gpu) → names as in the XML
    (``["sw_power_cap", "hw_power_brake_slowdown"]``); unknown bits as ``bit_0x...``; None for N/A."""
    if mask is None:
        return None
    if isinstance(mask, str):
        if _is_na(mask):
            return None
        mask = int(mask.strip(), 0)
    names = [name for bit, name in CLOCK_EVENT_REASON_BITS.items() if mask & bit]
    rest = mask & ~sum(CLOCK_EVENT_REASON_BITS)
    bit = 1
    while rest >= bit:
        if rest & bit:
            names.append(f"bit_{bit:#x}")
        bit <<= 1
    return names


def _nvlink_xml(gpu: ET.Element) -> list[dict[str, Any]] | None:
    box = gpu.find("nvlink")
    if box is None:
        return None
    links = []
    for i, link in enumerate(box.findall("link") or list(box)):
        links.append({
            "link": _int(link.get("id")) if link.get("id") is not None else i,
            "state": _str(_first(link, "state", "link_state")),
            "speed": _str(_first(link, "speed", "link_speed")),
        })
    return links


@_guarded("nvidia-smi -q -x")
def parse_nvsmi_xml(text: str | bytes) -> dict[str, Any]:
    """Parse ``nvidia-smi -q -x`` (schemas v10–v13: old and new tag names are both read).

    Returns ``{"schema", "timestamp", "driver_version", "cuda_version", "attached_gpus", "gpus": [...]}``;
    each GPU: ``index, name, brand, architecture, uuid, serial, vbios, pci_bus_id, pci_device_id,
    memory_total_mib, memory_used_mib, memory_free_mib, pcie{gen_current, gen_max, width_current,
    width_max, replay_counter}, ecc_mode_current, ecc_mode_pending (bool), ecc_errors{volatile, aggregate}
    ({correctable, uncorrectable, detail}), retired_pages, remapped_rows{correctable, uncorrectable,
    pending, failure}, clocks{graphics_mhz, sm_mhz, mem_mhz, *_max_mhz}, clocks_event_reasons_active
    (short names, e.g. ``sw_power_cap``; None if the XML has no such block), persistence_mode,
    mig_mode_current, mig_mode_pending (bool), power_draw_w, power_limit_w, temperature_c,
    memory_temperature_c, performance_state, fabric{state, status}, nvlink`` (None unless the XML has it).
    """
    raw = _text(text, "nvidia-smi -q -x")
    start = raw.find("<")
    if start < 0 or "nvidia_smi_log" not in raw:
        raise ParseError("nvidia-smi -q -x: expected an XML document with a <nvidia_smi_log> root", _head(raw))
    root = ET.fromstring(raw[start:].encode("utf-8"))
    if root.tag != "nvidia_smi_log":
        raise ParseError(f"nvidia-smi -q -x: root element is <{root.tag}>, expected <nvidia_smi_log>", _head(raw))
    m = re.search(r"nvsmi_device_(v\d+)\.dtd", raw)
    gpus = []
    for index, gpu in enumerate(root.findall("gpu")):
        power = gpu.find("gpu_power_readings")
        if power is None:
            power = gpu.find("power_readings")
        pci = gpu.find("pci")
        link = pci.find("pci_gpu_link_info") if pci is not None else None
        ecc = gpu.find("ecc_errors")
        bus_id = _first(gpu, "pci/pci_bus_id") or gpu.get("id")
        gpus.append({
            "index": index,
            "minor_number": _int(_t(gpu, "minor_number")),
            "name": _str(_t(gpu, "product_name")),
            "brand": _str(_t(gpu, "product_brand")),
            "architecture": _str(_t(gpu, "product_architecture")),
            "uuid": _str(_t(gpu, "uuid")),
            "serial": _str(_t(gpu, "serial")),
            "vbios": _str(_t(gpu, "vbios_version")),
            "pci_bus_id": bus_id,
            "pci_device_id": _str(_t(pci, "pci_device_id")),
            "memory_total_mib": _int(_t(gpu, "fb_memory_usage/total")),
            "memory_used_mib": _int(_t(gpu, "fb_memory_usage/used")),
            "memory_free_mib": _int(_t(gpu, "fb_memory_usage/free")),
            "pcie": {
                "gen_current": _int(_t(link, "pcie_gen/current_link_gen")),
                "gen_max": _int(_t(link, "pcie_gen/max_link_gen")),
                "gen_device_max": _int(_t(link, "pcie_gen/max_device_link_gen")),
                "gen_host_max": _int(_t(link, "pcie_gen/max_host_link_gen")),
                "width_current": _int(_t(link, "link_widths/current_link_width")),
                "width_max": _int(_t(link, "link_widths/max_link_width")),
                "replay_counter": _int(_t(pci, "replay_counter")),
            },
            "ecc_mode_current": _yes(_t(gpu, "ecc_mode/current_ecc")),
            "ecc_mode_pending": _yes(_t(gpu, "ecc_mode/pending_ecc")),
            "ecc_errors": {
                "volatile": _ecc_counts(ecc.find("volatile") if ecc is not None else None),
                "aggregate": _ecc_counts(ecc.find("aggregate") if ecc is not None else None),
            },
            "retired_pages": _retired_pages(gpu),
            "remapped_rows": _remapped_rows(gpu),
            "clocks": {
                "graphics_mhz": _int(_t(gpu, "clocks/graphics_clock")),
                "sm_mhz": _int(_t(gpu, "clocks/sm_clock")),
                "mem_mhz": _int(_t(gpu, "clocks/mem_clock")),
                "graphics_max_mhz": _int(_t(gpu, "max_clocks/graphics_clock")),
                "sm_max_mhz": _int(_t(gpu, "max_clocks/sm_clock")),
                "mem_max_mhz": _int(_t(gpu, "max_clocks/mem_clock")),
            },
            "clocks_event_reasons_active": _throttle_active(gpu),
            "persistence_mode": _yes(_t(gpu, "persistence_mode")),
            "mig_mode_current": _yes(_t(gpu, "mig_mode/current_mig")),
            "mig_mode_pending": _yes(_t(gpu, "mig_mode/pending_mig")),
            "power_draw_w": _float(_first(power, "power_draw", "instant_power_draw", "average_power_draw"))
            if power is not None else None,
            "power_limit_w": _float(_first(power, "current_power_limit", "power_limit", "enforced_power_limit"))
            if power is not None else None,
            "temperature_c": _int(_t(gpu, "temperature/gpu_temp")),
            "memory_temperature_c": _int(_t(gpu, "temperature/memory_temp")),
            "performance_state": _str(_t(gpu, "performance_state")),
            "fabric": {"state": _str(_t(gpu, "fabric/state")), "status": _str(_t(gpu, "fabric/status"))}
            if gpu.find("fabric") is not None else None,
            "nvlink": _nvlink_xml(gpu),
        })
    return {
        "schema": m.group(1) if m else None,
        "timestamp": _str(_t(root, "timestamp")),
        "driver_version": _str(_t(root, "driver_version")),
        "cuda_version": _str(_t(root, "cuda_version")),
        "attached_gpus": _int(_t(root, "attached_gpus")),
        "gpus": gpus,
    }


# ---------------------------------------------------------------------------------------------------------
# nvidia-smi nvlink -s

_NVLINK_GPU_RE = re.compile(r"^GPU\s+(\d+):\s*(.*?)\s*(?:\(UUID:\s*([^)]+)\))?\s*$")
_NVLINK_LINK_RE = re.compile(r"^\s*Link\s+(\d+):\s*(.*?)\s*$")


@_guarded("nvidia-smi nvlink -s")
def parse_nvlink_status(text: str | bytes) -> dict[str, Any]:
    """Parse ``nvidia-smi nvlink -s`` (``--status``).

    Returns ``{"gpus": [{"index", "name", "uuid", "links": [{"link", "active", "speed_gbps", "raw"}],
    "active_links", "inactive_links"}]}``; ``speed_gbps`` is the per-link GB/s nvidia-smi prints.
    """
    raw = _text(text, "nvidia-smi nvlink -s")
    gpus: list[dict[str, Any]] = []
    for line in raw.splitlines():
        if not line.strip():
            continue
        g = _NVLINK_GPU_RE.match(line.strip())
        if g and not line.startswith((" ", "\t")):
            gpus.append({"index": int(g.group(1)), "name": g.group(2) or None, "uuid": g.group(3),
                         "links": []})
            continue
        lk = _NVLINK_LINK_RE.match(line)
        if lk and gpus:
            value = lk.group(2)
            speed = re.match(r"([\d.]+)\s*GB/s", value)
            active = bool(speed) and "inactive" not in value.lower()
            gpus[-1]["links"].append({"link": int(lk.group(1)), "active": active,
                                      "speed_gbps": float(speed.group(1)) if speed else None, "raw": value})
    if not gpus:
        raise ParseError("nvidia-smi nvlink -s: expected 'GPU <n>: <name> (UUID: ...)' lines", _head(raw))
    for g in gpus:
        g["active_links"] = sum(1 for lk in g["links"] if lk["active"])
        g["inactive_links"] = sum(1 for lk in g["links"] if not lk["active"])
    return {"gpus": gpus}


# ---------------------------------------------------------------------------------------------------------
# nvidia-smi --query-gpu=... --format=csv[,noheader][,nounits]

def _csv_name(cell: str) -> str:
    return re.sub(r"\s*\[[^\]]*\]\s*$", "", cell.strip()).lower()


@_guarded("nvidia-smi --query-gpu CSV")
def parse_nvsmi_csv(text: str | bytes, fields: list[str] | None = None) -> list[dict[str, Any]]:
    """Parse ``nvidia-smi --query-gpu=<fields> --format=csv[,noheader][,nounits]``.

    ``fields`` are the names passed to ``--query-gpu`` (in order). A header line, if present, is
    recognised (units in brackets stripped) and skipped; with ``fields=None`` the header names are used.
    Cells become int/float when numeric (a unit suffix such as ``MiB`` is dropped), None for N/A and
    ``[Not Supported]``, else the text.
    """
    raw = _text(text, "nvidia-smi --query-gpu CSV")
    lines = [ln for ln in raw.splitlines() if ln.strip()]
    if not lines:
        raise ParseError("nvidia-smi --query-gpu CSV: expected at least one line", _head(raw))
    rows = list(csv.reader(io.StringIO("\n".join(lines)), skipinitialspace=True))
    want = [f.strip().lower() for f in fields] if fields else None
    first = [_csv_name(c) for c in rows[0]]
    looks_like_header = all(re.fullmatch(r"[a-z_][a-z0-9_.]*", c) for c in first) and any("." in c or "_" in c
                                                                                        for c in first)
    if want is None:
        if not looks_like_header:
            raise ParseError("nvidia-smi --query-gpu CSV: no field names given and no header line", _head(raw))
        want = first
        rows = rows[1:]
    elif first == want or (looks_like_header and len(first) == len(want)):
        rows = rows[1:]
    out = []
    for row in rows:
        if len(row) != len(want):
            raise ParseError(
                f"nvidia-smi --query-gpu CSV: expected {len(want)} columns ({', '.join(want)}), got {len(row)}",
                _head(raw),
            )
        out.append({name: _scalar(cell) for name, cell in zip(want, row, strict=True)})
    return out


# ---------------------------------------------------------------------------------------------------------
# nvidia-smi topo -m

_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_LINK_RE = re.compile(r"^(X|SYS|SOC|NODE|PHB|PXB|PIX|NV\d+)$")
_DEV_RE = re.compile(r"^(GPU\d+|NIC\d+|mlx\S+|ib\S+|CPU\d+)$")
_AFFINITY_COLUMNS = ("CPU Affinity", "NUMA Affinity", "GPU NUMA ID")


@_guarded("nvidia-smi topo -m")
def parse_topo_matrix(text: str | bytes) -> dict[str, Any]:
    """Parse ``nvidia-smi topo -m`` (tabs or spaces; NIC columns and the legend optional).

    Returns ``{"devices": [...], "gpus": [...], "nics": [...], "matrix": {row: {col: link}},
    "affinity": {gpu: {"cpu", "numa", "gpu_numa_id"}}, "nic_legend": {"NIC0": "mlx5_0"},
    "legend": {"X": "Self", ...}}``. Links are printed tokens (``X``, ``NV18``, ``PIX``, ``PXB``, ``PHB``,
    ``NODE``, ``SYS``; old drivers print ``SOC`` for ``SYS``).
    """
    # On a terminal-less run nvidia-smi still underlines the header with ANSI escapes (seen with driver 580).
    raw = _ANSI_RE.sub("", _text(text, "nvidia-smi topo -m"))
    lines = raw.splitlines()
    header_idx = None
    for i, line in enumerate(lines):
        toks = line.split()
        if toks and toks[0] == "GPU0" and not _LINK_RE.match(toks[1] if len(toks) > 1 else ""):
            header_idx = i
            break
    if header_idx is None:
        raise ParseError("nvidia-smi topo -m: expected a header line starting with GPU0", _head(raw))
    toks = lines[header_idx].split()
    devices: list[str] = []
    rest_start = len(toks)
    for j, tok in enumerate(toks):
        if _DEV_RE.match(tok) and tok != "CPU":
            devices.append(tok)
        else:
            rest_start = j
            break
    rest = " ".join(toks[rest_start:])
    extra = [c for c in _AFFINITY_COLUMNS if c in rest]
    matrix: dict[str, dict[str, str]] = {}
    affinity: dict[str, dict[str, Any]] = {}
    legend: dict[str, str] = {}
    nic_legend: dict[str, str] = {}
    for line in lines[header_idx + 1:]:
        toks = line.split()
        if not toks:
            continue
        if toks[0] in devices and len(toks) > len(devices):
            links = toks[1:1 + len(devices)]
            if not all(_LINK_RE.match(tok) for tok in links):
                raise ParseError(f"nvidia-smi topo -m: unexpected link tokens in row {toks[0]}: {links}", _head(raw))
            matrix[toks[0]] = dict(zip(devices, links, strict=True))
            values = toks[1 + len(devices):]
            if toks[0].startswith("GPU") and values:
                cols = dict(zip(extra, values, strict=False))
                affinity[toks[0]] = {
                    "cpu": _str(cols.get("CPU Affinity")),
                    "numa": _int_or_str(cols.get("NUMA Affinity")),
                    "gpu_numa_id": _int_or_str(cols.get("GPU NUMA ID")),
                }
            continue
        lg = re.match(r"^\s*(X|SYS|SOC|NODE|PHB|PXB|PIX|NV#)\s*=\s*(.+?)\s*$", line)
        if lg:
            legend[lg.group(1)] = lg.group(2)
            continue
        nl = re.match(r"^\s*(NIC\d+)\s*:\s*(\S+)\s*$", line)
        if nl:
            nic_legend[nl.group(1)] = nl.group(2)
    if not matrix:
        raise ParseError("nvidia-smi topo -m: expected matrix rows under the GPU0 header", _head(raw))
    return {
        "devices": devices,
        "gpus": [d for d in devices if d.startswith("GPU")],
        "nics": [d for d in devices if not d.startswith("GPU")],
        "matrix": matrix,
        "affinity": affinity,
        "nic_legend": nic_legend,
        "legend": legend,
    }


# ---------------------------------------------------------------------------------------------------------
# nccl-tests

_NCCL_DEV_RE = re.compile(
    r"Rank\s+(\d+)\s+(?:Group\s+(\d+)\s+)?Pid\s+(\d+)\s+on\s+(\S+)\s+device\s+(\d+)\s+\[([^\]]+)\]\s*(.*?)\s*$"
)
_NCCL_HEADER_KV_RE = re.compile(r"([A-Za-z][A-Za-z_ ]*?)\s*:?\s+(-?\d+(?:\.\d+)?(?:\([a-z]+\))?)(?=\s|$)")


def _nccl_value(v: str) -> int | float | str:
    if re.fullmatch(r"-?\d+", v):
        return int(v)
    if re.fullmatch(r"-?\d+\.\d+", v):
        return float(v)
    return v


@_guarded("nccl-tests")
def parse_nccl_tests(text: str | bytes) -> dict[str, Any]:
    """Parse nccl-tests output (``all_reduce_perf`` and the other ``*_perf``), by header position.

    Handles ``#wrong``/``error`` column names, present/absent ``redop``/``root`` columns, ``N/A`` in
    ``#wrong`` (``-c 0``) and ``NCCL INFO``/``WARN`` lines mixed into stdout. Returns ``{"test",
    "header": {nThread, nGpus, minBytes, ...}, "devices": [...], "rows": [{size, count, type, redop,
    root, out_of_place: {time_us, algbw_gbps, busbw_gbps, wrong}, in_place: {...}}],
    "avg_bus_bandwidth_gbps", "out_of_bounds": {count, ok}, "wrong_total", "max_busbw_gbps",
    "rank_errors": [...], "warnings": [...]}``. Bandwidths are GB/s (1e9 bytes) as nccl-tests prints.
    """
    raw = _text(text, "nccl-tests")
    header: dict[str, Any] = {}
    devices: list[dict[str, Any]] = []
    columns: list[str] | None = None
    rows: list[dict[str, Any]] = []
    avg = None
    oob: dict[str, Any] | None = None
    test = None
    rank_errors: list[str] = []
    warnings: list[str] = []
    for line in raw.splitlines():
        s = line.strip()
        if not s:
            continue
        if " NCCL WARN " in s:
            warnings.append(s)
            continue
        if re.search(r"\brank=\d+ #wrong=\d+", s):
            rank_errors.append(s)
            continue
        if s.startswith("#"):
            body = s.lstrip("#").strip()
            if body.startswith("nThread"):
                for k, v in _NCCL_HEADER_KV_RE.findall(body):
                    header[k.strip().replace(" ", "_")] = _nccl_value(v)
            elif m := _NCCL_DEV_RE.search(body):
                devices.append({"rank": int(m.group(1)), "group": int(m.group(2)) if m.group(2) else None,
                                "pid": int(m.group(3)), "host": m.group(4), "device": int(m.group(5)),
                                "bus": m.group(6), "name": m.group(7)})
            elif re.match(r"size\s+count\s+", body):
                toks = body.split()
                try:
                    t1 = toks.index("time")
                except ValueError:
                    continue
                key = toks[:t1]
                columns = key + [f"oop_{c}" for c in toks[t1:t1 + 4]] + [f"ip_{c}" for c in toks[t1 + 4:t1 + 8]]
            elif m := re.match(r"Out of bounds values\s*:\s*(\d+)\s*(OK|FAILED)?", body):
                oob = {"count": int(m.group(1)), "ok": m.group(2) != "FAILED"}
            elif m := re.match(r"Avg bus bandwidth\s*:\s*([\d.]+)\s*(OK|FAILED)?", body):
                avg = float(m.group(1))
                if m.group(2):
                    header["avg_check"] = m.group(2)
            elif m := re.match(r"Collective test (?:concluded|starting):\s*(\S+)", body):
                test = m.group(1)
            continue
        toks = s.split()
        if columns is None or not re.fullmatch(r"\d+", toks[0]) or len(toks) != len(columns):
            continue
        cells = dict(zip(columns, toks, strict=True))

        def half(prefix: str, cells: dict[str, str] = cells) -> dict[str, Any] | None:
            if f"{prefix}time" not in cells:
                return None
            wrong = cells.get(f"{prefix}#wrong", cells.get(f"{prefix}error"))
            return {
                "time_us": _float(cells[f"{prefix}time"]),
                "algbw_gbps": _float(cells.get(f"{prefix}algbw")),
                "busbw_gbps": _float(cells.get(f"{prefix}busbw")),
                "wrong": None if wrong is None or _is_na(wrong) or _num(wrong) is None else int(_num(wrong) or 0),
            }

        rows.append({
            "size": int(cells["size"]),
            "count": _int(cells.get("count")),
            "type": cells.get("type"),
            "redop": cells.get("redop"),
            "root": _int(cells.get("root")),
            "out_of_place": half("oop_"),
            "in_place": half("ip_"),
        })
    if not rows and avg is None:
        raise ParseError("nccl-tests: expected a '# size count type ...' table or '# Avg bus bandwidth'", _head(raw))
    wrong_total = 0
    busbws = []
    for r in rows:
        for h in (r["out_of_place"], r["in_place"]):
            if h is None:
                continue
            if isinstance(h["wrong"], int | float):
                wrong_total += int(h["wrong"])
            if h["busbw_gbps"] is not None:
                busbws.append(h["busbw_gbps"])
    return {
        "test": test,
        "header": header,
        "devices": devices,
        "columns": columns,
        "rows": rows,
        "avg_bus_bandwidth_gbps": avg,
        "out_of_bounds": oob,
        "wrong_total": wrong_total,
        "max_busbw_gbps": max(busbws) if busbws else None,
        "rank_errors": rank_errors,
        "warnings": warnings,
    }


# ---------------------------------------------------------------------------------------------------------
# perftest (ib_write_bw, ib_read_bw, ib_write_lat, ib_read_lat, ib_send_*)

_PERF_KV_RE = re.compile(r"([A-Za-z][A-Za-z0-9 ._*/-]*?)\s*:\s+(\S+(?: \S+)*?)(?=\s{2,}|\t|$)")
_PERF_COL_RE = re.compile(r"#\w+|\S[^\[\]#]*?\[[^\]]+\]|\S+")
_PERF_COL_KEYS = {
    "#bytes": "bytes",
    "#iterations": "iterations",
    "bw peak": "bw_peak",
    "bw average": "bw_average",
    "msgrate": "msg_rate_mpps",
    "t_min": "t_min_us",
    "t_max": "t_max_us",
    "t_typical": "t_typical_us",
    "t_avg": "t_avg_us",
    "t_stdev": "t_stdev_us",
    "99% percentile": "p99_us",
    "99.9% percentile": "p99_9_us",
    "tps average": "tps_average",
}
# perftest divides by 2^20 for its MB figures (older builds label them MB/sec, newer MiB/sec).
_BW_TO_GBPS = {"gb/sec": 1.0, "mb/sec": 8 * 1.048576e-3, "mib/sec": 8 * 1.048576e-3}


def _perf_col_key(name: str) -> tuple[str, str | None]:
    m = re.match(r"^(.*?)\s*\[([^\]]+)\]$", name.strip())
    base, unit = (m.group(1), m.group(2)) if m else (name.strip(), None)
    return _PERF_COL_KEYS.get(base.lower(), re.sub(r"\W+", "_", base.lower()).strip("_")), unit


@_guarded("perftest")
def parse_perftest(text: str | bytes) -> dict[str, Any]:
    """Parse perftest output (``ib_{write,read,send}_{bw,lat}``), by header position.

    Returns ``{"test", "kind": "bw"|"lat", "header": {key: value as printed}, "device", "link_type",
    "transport_type", "connection_type", "gid_index", "mtu_bytes", "qps", "bw_unit", "rows": [...],
    "bw_average_gbps", "bw_peak_gbps"}``. Bandwidth rows: ``bytes, iterations, bw_peak, bw_average,
    msg_rate_mpps`` in ``bw_unit`` (``Gb/sec`` with ``--report_gbits``, else ``MB/sec``/``MiB/sec``);
    ``bw_average_gbps`` is the largest message's average converted to Gb/s (perftest's MB and MiB are 2^20 bytes).
    Latency rows: ``bytes, iterations, t_min_us, t_max_us, t_typical_us, t_avg_us, t_stdev_us, p99_us,
    p99_9_us``.
    """
    raw = _text(text, "perftest")
    lines = raw.splitlines()
    title = None
    header: dict[str, str] = {}
    cols: list[tuple[str, str | None]] | None = None
    rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    for line in lines:
        s = line.strip()
        if not s or set(s) <= {"-", "*"}:
            continue
        if s.startswith("#bytes"):
            cols = [_perf_col_key(c) for c in _PERF_COL_RE.findall(s)]
            continue
        if cols is None:
            if re.search(r"\b(BW|Latency) Test\b", s) and ":" not in s:
                title = s
                continue
            if s.startswith("WARNING") or s.startswith("Warning"):
                warnings.append(s)
                continue
            if s.startswith(("local address", "remote address", "GID:")):
                continue
            for k, v in _PERF_KV_RE.findall(s):
                header[k.strip()] = v.strip()
            continue
        toks = s.split()
        if not re.fullmatch(r"\d+", toks[0]):
            if s.startswith(("WARNING", "Warning")):
                warnings.append(s)
            continue
        row: dict[str, Any] = {}
        for (key, _unit), tok in zip(cols, toks, strict=False):
            row[key] = _num(tok)
        rows.append(row)
    if cols is None or not rows:
        raise ParseError("perftest: expected a '#bytes #iterations ...' header with result rows", _head(raw))
    keys = [k for k, _ in cols]
    kind = "bw" if "bw_average" in keys else "lat"
    bw_unit = next((u for k, u in cols if k == "bw_average"), None)
    factor = _BW_TO_GBPS.get((bw_unit or "").lower())

    def gbps(key: str) -> float | None:
        if kind != "bw" or not rows or factor is None:
            return None
        last = max(rows, key=lambda r: r.get("bytes") or 0)
        val = last.get(key)
        return round(float(val) * factor, 4) if val is not None else None

    hl = {k.lower(): v for k, v in header.items()}
    mtu = hl.get("mtu")
    return {
        "test": title,
        "kind": kind,
        "header": header,
        "device": hl.get("device"),
        "link_type": hl.get("link type"),
        "transport_type": hl.get("transport type"),
        "connection_type": hl.get("connection type"),
        "gid_index": _int(hl.get("gid index")),
        "mtu_bytes": _int(mtu),
        "qps": _int(hl.get("number of qps")),
        "bw_unit": bw_unit,
        "columns": keys,
        "rows": rows,
        "bw_average_gbps": gbps("bw_average"),
        "bw_peak_gbps": gbps("bw_peak"),
        "warnings": warnings,
    }


# ---------------------------------------------------------------------------------------------------------
# dcgmi diag

_DCGM_STATUS_RE = re.compile(r"^(Pass|Fail|Skip|Warn|Not Run|Running|Info)\b\s*(?:-\s*(.*))?$", re.I)
# dcgmi prints a long Warning/Info/Error 45 characters per row (DATA_INFO_TAG_LEN in NVIDIA/DCGM dcgmi/Diag.cpp),
# cut anywhere (mid-word, before or after a space), left-justified in a 46-wide field: real rows are joined
# as printed, without the field's last (padding) column.
_DCGM_CHUNK = 45
_STATUS_RANK = {"fail": 4, "warn": 3, "pass": 2, "skip": 1, "not run": 0, "running": 0, "info": 0}


def _dcgm_gpus(spec: str | None) -> list[int] | str | None:
    if not spec:
        return None
    s = spec.strip()
    if s.lower() == "all":
        return "all"
    m = re.match(r"GPUs?\s*:\s*(.*)$", s, re.I)
    if m:
        return [int(x) for x in re.findall(r"\d+", m.group(1))]
    return s


def _worst(statuses: Iterable[str]) -> str | None:
    best = None
    for st in statuses:
        if best is None or _STATUS_RANK.get(st.lower(), 0) > _STATUS_RANK.get(best.lower(), 0):
            best = st
    return best


def _dcgm_json(doc: Any) -> dict[str, Any]:
    cats = None
    meta: dict[str, Any] = {}

    def walk(node: Any) -> None:
        nonlocal cats
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "test_categories" and isinstance(v, list) and cats is None:
                    cats = v
                elif isinstance(v, str | int | float) and k not in {"status"}:
                    meta.setdefault(k, v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    if cats is None:
        raise ValueError("no 'test_categories' in the JSON")
    tests = []
    for cat in cats:
        for t in cat.get("tests", []):
            results = []
            messages = []
            for r in t.get("results", []) or []:
                status = str(r.get("status", "")).title() or None
                gid = r.get("gpu_ids", r.get("gpu_id", r.get("entity_id")))
                results.append({"status": status, "gpus": _dcgm_gpus(f"GPUs: {gid}") if gid is not None else "all"})
                for w in r.get("warnings", []) or []:
                    messages.append(w.get("warning", str(w)) if isinstance(w, dict) else str(w))
                info = r.get("info")
                if info:
                    messages.extend(info if isinstance(info, list) else [str(info)])
            summary = (t.get("test_summary") or {}).get("status")
            status = str(summary).title() if summary else _worst(r["status"] for r in results if r["status"])
            tests.append({"name": t.get("name"), "category": cat.get("category"), "status": status,
                          "results": results, "messages": messages})
    return {"format": "json", "metadata": meta, "tests": tests}


def _dcgm_table(raw: str) -> dict[str, Any]:
    section = None
    meta: dict[str, str] = {}
    tests: list[dict[str, Any]] = []
    msg_target: list[str] | None = None
    for line in raw.splitlines():
        s = line.rstrip()
        sec = re.match(r"^[|+]-+\s+(\w[\w ]*?)\s+-+\+", s)
        if sec:
            section = sec.group(1)
            msg_target = None
            continue
        if not s.startswith("|") or s.startswith(("|==", "|--")) or s.count("|") < 3:
            continue
        parts = s.split("|")
        name = parts[1].strip()
        cell = parts[2]
        cell = cell[1:] if cell.startswith(" ") else cell
        cell = cell[:-1] if cell.endswith(" ") else cell
        value = cell.strip()
        if name == "Diagnostic" and value == "Result":
            continue
        if section is None or section.lower() == "metadata":
            if name:
                meta[name] = value
            continue
        st = _DCGM_STATUS_RE.match(value)
        if name and name.lower() not in {"warning", "info", "error"} and st:
            tests.append({"name": name, "category": section, "status": None, "results": [], "messages": []})
            tests[-1]["results"].append({"status": st.group(1).title(), "gpus": _dcgm_gpus(st.group(2) or "All")})
            msg_target = None
            continue
        if not tests:
            continue
        if len(cell) == _DCGM_CHUNK + 1 and cell.endswith(" "):
            cell = cell[:-1]  # the field's padding column, not part of the message
        if not name and st and msg_target is None:
            tests[-1]["results"].append({"status": st.group(1).title(), "gpus": _dcgm_gpus(st.group(2) or "All")})
            continue
        if name:  # Warning / Info / Error row starts a message
            tests[-1]["messages"].append(f"{name}: " + cell)
            msg_target = tests[-1]["messages"]
        elif msg_target is not None:  # wrapped continuation of the message
            msg_target[-1] += cell
    for t in tests:
        t["messages"] = [" ".join(m.split()) for m in t["messages"]]
        t["status"] = _worst(r["status"] for r in t["results"])
    return {"format": "table", "metadata": meta, "tests": tests}


@_guarded("dcgmi diag")
def parse_dcgmi_diag(text: str | bytes) -> dict[str, Any]:
    """Parse ``dcgmi diag -r N`` in its table form, or ``-j`` JSON (``test_categories``, DCGM 3/4 shapes).

    Returns ``{"format": "table"|"json", "metadata": {...}, "tests": [{"name", "category", "status",
    "results": [{"status", "gpus": [ints]|"all"}], "messages": [...]}], "overall", "failed", "warned"}``.
    ``status`` per test is the worst of its per-GPU results (Fail > Warn > Pass > Skip).
    """
    raw = _text(text, "dcgmi diag")
    stripped = raw.lstrip()
    if stripped.startswith("{"):
        out = _dcgm_json(_json_from(raw, "dcgmi diag -j"))
    else:
        if "| Diagnostic" not in raw and not re.search(r"(?m)^\|\s*\S.*\|\s*(Pass|Fail|Skip|Warn)\b", raw):
            raise ParseError("dcgmi diag: expected the '| Diagnostic | Result |' table or -j JSON", _head(raw))
        out = _dcgm_table(raw)
    if not out["tests"]:
        raise ParseError("dcgmi diag: expected at least one test result row", _head(raw))
    statuses = [t["status"] for t in out["tests"] if t["status"]]
    out["overall"] = _worst(statuses)
    out["failed"] = [t["name"] for t in out["tests"] if (t["status"] or "").lower() == "fail"]
    out["warned"] = [t["name"] for t in out["tests"] if (t["status"] or "").lower() == "warn"]
    return out


# ---------------------------------------------------------------------------------------------------------
# Xid in kernel logs

class XidInfo(NamedTuple):
    """What an Xid means, how bad it is for the node (``fatal``: drain; ``warn``: record, watch) and
    what to do. ``source`` says where the classification comes from."""

    meaning: str
    severity: str
    action: str
    source: str


_REF = "gpu-node-reference.md §6"
_UNV = "gpu-node-reference.md §6 common drain list [UNVERIFIED]; meaning from general knowledge"
_GEN = "general knowledge (unverified): application-level Xid"

XID_INFO: dict[int, XidInfo] = {
    13: XidInfo("Graphics engine exception (usually an application fault)", "warn",
                "restart the application; if it repeats across jobs, run dcgmi diag -r 2", _GEN),
    31: XidInfo("GPU memory page fault (usually an application fault)", "warn",
                "restart the application; if it repeats across jobs, run dcgmi diag -r 2", _GEN),
    43: XidInfo("GPU stopped processing (application fault)", "warn", "restart the application", _GEN),
    45: XidInfo("Preemptive cleanup, due to a previous error", "warn",
                "look at the Xid logged before it", _GEN),
    46: XidInfo("GPU stopped processing", "fatal",
                "drain the node, reset the GPU; service if it repeats (CRITICAL in NVIDIA Health Validation)",
                _REF),
    48: XidInfo("Uncorrectable double-bit ECC error (DBE)", "fatal",
                "drain the node, reset the GPU; service if it repeats (CRITICAL in NVIDIA Health Validation)",
                _REF),
    62: XidInfo("Internal micro-controller halt", "fatal", "drain the node, reset the GPU or reboot", _UNV),
    63: XidInfo("Page retirement / row remapping recorded", "warn",
                "reset the GPU to activate the remap; drain if it repeats", _REF),
    64: XidInfo("Page retirement or row remapping failed", "fatal",
                "drain the node; RMA if it repeats after a reboot", _REF),
    74: XidInfo("NVLink fatal error", "fatal", "drain the node, reset the GPUs; check NVLink/NVSwitch",
                _REF + " (weak source; confirm in the Xid catalog)"),
    79: XidInfo("GPU has fallen off the bus", "fatal", "drain the node, reboot; service if it repeats", _REF),
    92: XidInfo("High single-bit ECC error rate", "warn", "watch ECC counters; schedule a reset", _UNV),
    94: XidInfo("Contained ECC error", "warn",
                "restart the affected application; reboot at a convenient time", _REF),
    95: XidInfo("Uncontained ECC error", "fatal", "drain the node, reset the GPU or reboot", _REF),
    119: XidInfo("GSP RPC timeout", "fatal", "drain the node, reset the GPU or reboot", _UNV),
    120: XidInfo("GSP error", "fatal", "drain the node, reset the GPU or reboot", _UNV),
    140: XidInfo("Unrecovered ECC error", "fatal", "drain the node, reset the GPU or reboot", _UNV),
}

_XID_RE = re.compile(r"NVRM: Xid \((?:PCI:)?([0-9A-Fa-f:.]+)\):\s*(\d+),?\s*(.*)$")
_TS_RE = re.compile(r"^\s*(\[[^\]]+\]|\S+\s+\d+\s+\d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\S+)")


@_guarded("kernel log (Xid)")
def parse_xid(text: str | bytes) -> list[dict[str, Any]]:
    """Xid events from kernel log text (``dmesg``, ``dmesg -T``, ``journalctl -k``, syslog).

    A log without Xid lines is valid and gives ``[]``. Each event: ``{"xid", "pci", "pid", "process",
    "message", "timestamp", "meaning", "severity" ("fatal"|"warn"|"unknown"), "action", "raw"}``.
    """
    raw = _text(text, "kernel log (Xid)")
    events = []
    for line in raw.splitlines():
        m = _XID_RE.search(line)
        if not m:
            continue
        code = int(m.group(2))
        detail = m.group(3)
        pid = re.search(r"pid=(?:'?)(\d+|<unknown>)", detail)
        name = re.search(r"name=([^,]+)", detail)
        ts = _TS_RE.match(line[: m.start()]) if m.start() else None
        info = XID_INFO.get(code)
        events.append({
            "xid": code,
            "pci": m.group(1),
            "pid": int(pid.group(1)) if pid and pid.group(1).isdigit() else None,
            "process": name.group(1).strip() if name else None,
            "message": detail,
            "timestamp": ts.group(1) if ts else None,
            "meaning": info.meaning if info else None,
            "severity": info.severity if info else "unknown",
            "action": info.action if info else "look the Xid up in NVIDIA's Xid catalog",
            "raw": line.strip(),
        })
    return events


def fatal_xids(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events (from :func:`parse_xid`) whose Xid is classed ``fatal`` in :data:`XID_INFO`."""
    return [e for e in events if (info := XID_INFO.get(e.get("xid"))) is not None and info.severity == "fatal"]


# ---------------------------------------------------------------------------------------------------------
# fio --output-format=json

def _fio_section(sec: dict[str, Any]) -> dict[str, Any]:
    clat = sec.get("clat_ns") or {}
    pct = clat.get("percentile") or {}

    def p(q: float) -> int | None:
        for k, v in pct.items():
            try:
                if abs(float(k) - q) < 1e-6:
                    return int(v)
            except ValueError:
                continue
        return None

    return {
        "io_bytes": sec.get("io_bytes"),
        "bw_bytes": sec.get("bw_bytes"),
        "bw_kib": sec.get("bw"),
        "iops": sec.get("iops"),
        "runtime_ms": sec.get("runtime"),
        "total_ios": sec.get("total_ios"),
        "clat_ns": {
            "mean": clat.get("mean"),
            "min": clat.get("min"),
            "max": clat.get("max"),
            "p50": p(50.0),
            "p99": p(99.0),
            "p99_9": p(99.9),
        },
        "lat_ns_mean": (sec.get("lat_ns") or {}).get("mean"),
    }


@_guarded("fio JSON")
def parse_fio_json(text: str | bytes) -> dict[str, Any]:
    """Parse ``fio --output-format=json`` (non-JSON lines printed before the JSON are skipped).

    Returns ``{"fio_version", "jobs": [{"name", "error", "read": {...}, "write": {...}, "trim": {...}}],
    "totals": {"read": {"bw_bytes", "iops"}, "write": {...}}, "preamble": [lines before the JSON]}``;
    per direction: ``io_bytes, bw_bytes (B/s), bw_kib (KiB/s), iops, runtime_ms, total_ios,
    clat_ns{mean, min, max, p50, p99, p99_9}, lat_ns_mean``.
    """
    raw = _text(text, "fio JSON")
    doc = _json_from(raw, "fio JSON")
    if not isinstance(doc, dict) or not isinstance(doc.get("jobs"), list):
        raise ParseError("fio JSON: expected an object with a 'jobs' list", _head(raw))
    brace = re.search(r"(?m)^\s*\{", raw)
    preamble = [ln for ln in raw[: brace.start()].splitlines() if ln.strip()] if brace else []
    jobs = []
    totals: dict[str, dict[str, float]] = {}
    for job in doc["jobs"]:
        entry: dict[str, Any] = {"name": job.get("jobname"), "error": job.get("error")}
        for rw in ("read", "write", "trim"):
            if isinstance(job.get(rw), dict):
                entry[rw] = _fio_section(job[rw])
                t = totals.setdefault(rw, {"bw_bytes": 0, "iops": 0.0})
                t["bw_bytes"] += entry[rw]["bw_bytes"] or 0
                t["iops"] += entry[rw]["iops"] or 0.0
        jobs.append(entry)
    return {"fio_version": doc.get("fio version"), "jobs": jobs, "totals": totals, "preamble": preamble}


# ---------------------------------------------------------------------------------------------------------
# iperf3 --json

@_guarded("iperf3 JSON")
def parse_iperf3_json(text: str | bytes) -> dict[str, Any]:
    """Parse ``iperf3 --json`` (client side). An ``error`` in the JSON is returned as ``error``, not raised.

    Returns ``{"error", "version", "protocol", "num_streams", "duration", "reverse", "tcp_mss_default",
    "sent_bps", "received_bps", "retransmits", "jitter_ms", "lost_percent", "cpu", "omitted_intervals"}``.
    Use ``received_bps`` for throughput and ``retransmits`` (sender) for loss.
    """
    raw = _text(text, "iperf3 JSON")
    doc = _json_from(raw, "iperf3 JSON")
    if not isinstance(doc, dict) or "start" not in doc or "end" not in doc:
        raise ParseError("iperf3 JSON: expected an object with 'start' and 'end'", _head(raw))
    start = doc.get("start") or {}
    end = doc.get("end") or {}
    ts = start.get("test_start") or {}
    sent = end.get("sum_sent") or {}
    recv = end.get("sum_received") or {}
    udp = end.get("sum") if not sent and not recv else None
    udp = udp or {}
    return {
        "error": doc.get("error"),
        "version": start.get("version"),
        "protocol": ts.get("protocol"),
        "num_streams": ts.get("num_streams"),
        "duration": ts.get("duration"),
        "reverse": bool(ts.get("reverse")) if ts else None,
        "tcp_mss_default": start.get("tcp_mss_default"),
        "tcp_mss": start.get("tcp_mss"),
        "sent_bps": sent.get("bits_per_second", udp.get("bits_per_second")),
        "received_bps": recv.get("bits_per_second", udp.get("bits_per_second")),
        "retransmits": sent.get("retransmits"),
        "jitter_ms": udp.get("jitter_ms"),
        "lost_percent": udp.get("lost_percent"),
        "cpu": end.get("cpu_utilization_percent"),
        "omitted_intervals": sum(
            1 for i in doc.get("intervals") or [] if isinstance(i, dict) and (i.get("sum") or {}).get("omitted")
        ),
    }


# ---------------------------------------------------------------------------------------------------------
# ibv_devinfo [-v]

_IB_MTU = {"256": 256, "512": 512, "1024": 1024, "2048": 2048, "4096": 4096}


def _ib_gid_line(value: str) -> dict[str, Any]:
    gid, _, typ = value.partition(",")
    return {"gid": gid.strip(), "type": typ.strip() or None}


@_guarded("ibv_devinfo")
def parse_ibv_devinfo(text: str | bytes) -> dict[str, Any]:
    """Parse ``ibv_devinfo`` / ``ibv_devinfo -v``.

    Returns ``{"devices": [{"hca_id", "transport", "fw_ver", "node_guid", "vendor_id", "vendor_part_id",
    "board_id", "phys_port_cnt", "ports": [{"port", "state", "max_mtu", "active_mtu", "link_layer",
    "port_lid", "sm_lid", "gids": [{"index", "gid", "type"}]}]}]}``. MTUs are bytes. ``No IB devices
    found`` gives ``{"devices": []}``.
    """
    raw = _text(text, "ibv_devinfo")
    if re.search(r"No IB devices found", raw):
        return {"devices": [], "error": None}
    failed = re.search(r"(?m)^Failed to get IB devices list:.*$", raw)
    if failed:  # no RDMA stack (e.g. ib_uverbs not loaded): a valid answer, not garbage
        return {"devices": [], "error": failed.group(0).strip()}
    devices: list[dict[str, Any]] = []
    port: dict[str, Any] | None = None
    for line in raw.splitlines():
        if not line.strip():
            continue
        m = re.match(r"^\s*hca_id:\s*(\S+)", line)
        if m:
            devices.append({"hca_id": m.group(1), "ports": []})
            port = None
            continue
        if not devices:
            continue
        m = re.match(r"^\s*port:\s*(\d+)", line)
        if m:
            port = {"port": int(m.group(1)), "gids": []}
            devices[-1]["ports"].append(port)
            continue
        m = re.match(r"^\s*GID\[\s*(\d+)\]:\s*(.+?)\s*$", line)
        if m and port is not None:
            port["gids"].append({"index": int(m.group(1)), **_ib_gid_line(m.group(2))})
            continue
        m = re.match(r"^\s*([A-Za-z_][\w ]*?):\s*(.*?)\s*$", line)
        if not m:
            continue
        key, value = m.group(1).strip().replace(" ", "_"), m.group(2)
        target = port if port is not None else devices[-1]
        if key in {"max_mtu", "active_mtu"}:
            target[key] = _IB_MTU.get(value.split()[0]) if value else None
        elif key == "state":
            target[key] = value.split()[0] if value else None
        elif key in {"phys_port_cnt", "vendor_part_id", "port_lid", "sm_lid"}:
            target[key] = _int(value)
        else:
            target[key] = value
    if not devices:
        raise ParseError("ibv_devinfo: expected 'hca_id:' blocks or 'No IB devices found'", _head(raw))
    return {"devices": devices, "error": None}


# ---------------------------------------------------------------------------------------------------------
# GID tables: show_gids text or rows gathered from sysfs

def _gid_ipv4(gid: str) -> str | None:
    try:
        addr = ipaddress.IPv6Address(gid.strip())
    except ValueError:
        return None
    return str(addr.ipv4_mapped) if addr.ipv4_mapped else None


def _gid_version(typ: str | None) -> str | None:
    if not typ:
        return None
    t = typ.strip().lower()
    if t in {"v2", "roce v2", "rocev2"} or "v2" in t:
        return "v2"
    if t in {"v1", "ib/roce v1", "roce v1"} or "v1" in t:
        return "v1"
    if t == "ib":
        return "ib"
    return None


def _gid_entry(dev: Any, port: Any, index: Any, gid: Any, typ: Any, netdev: Any) -> dict[str, Any]:
    g = str(gid).strip()
    version = _gid_version(str(typ) if typ is not None else None)
    return {
        "dev": dev,
        "port": int(port) if port is not None else None,
        "index": int(index),
        "gid": g,
        "ipv4": _gid_ipv4(g),
        "link_local": g.lower().startswith("fe80"),
        "type": {"v1": "RoCE v1", "v2": "RoCE v2", "ib": "IB"}.get(version or "", typ),
        "version": version,
        "netdev": netdev or None,
    }


@_guarded("GID table")
def parse_gid_table(rows: str | bytes | Iterable[Any]) -> list[dict[str, Any]]:
    """GID table entries from MOFED ``show_gids`` text, or from rows read out of sysfs.

    Rows may be dicts (``dev, port, index, gid, type, netdev``) or tuples in that order; ``type`` is what
    ``gid_attrs/types/<i>`` holds (``IB/RoCE v1``, ``RoCE v2``) or show_gids' ``v1``/``v2``. All-zero GIDs
    (empty slots) are dropped. Each entry: ``dev, port, index, gid, ipv4 (IPv4-mapped address or None),
    link_local, type ("RoCE v1"|"RoCE v2"|"IB"), version ("v1"|"v2"|"ib"), netdev``.
    """
    entries: list[dict[str, Any]] = []
    if isinstance(rows, bytes | str):
        raw = _text(rows, "GID table")
        found_header = False
        for line in raw.splitlines():
            toks = line.split()
            if not toks:
                continue
            if toks[:3] == ["DEV", "PORT", "INDEX"]:
                found_header = True
                continue
            if not found_header or toks[0].startswith("---") or toks[0].startswith("n_gids_found"):
                continue
            if len(toks) < 5 or not toks[1].isdigit() or not toks[2].isdigit():
                continue
            dev, port, index, gid = toks[:4]
            rest = toks[4:]
            ver = next((t for t in rest if re.fullmatch(r"v[12]", t)), None)
            netdev = rest[-1] if rest and rest[-1] != ver else None
            entries.append(_gid_entry(dev, port, index, gid, ver, netdev))
        if not found_header:
            raise ParseError("GID table: expected show_gids output with a 'DEV PORT INDEX GID' header", _head(raw))
    else:
        for row in rows:
            if isinstance(row, dict):
                entries.append(_gid_entry(row.get("dev"), row.get("port"), row["index"], row["gid"],
                                          row.get("type"), row.get("netdev")))
            else:
                dev, port, index, gid, typ, netdev = (list(row) + [None] * 6)[:6]
                entries.append(_gid_entry(dev, port, index, gid, typ, netdev))
    return [e for e in entries if e["gid"].replace(":", "").strip("0") and e["gid"] != "::"]


def roce_v2_gid_index(entries: Iterable[dict[str, Any]], dev: str | None = None, port: int | None = None,
                      netdev: str | None = None) -> int | None:
    """The GID index NCCL/perftest should use for RoCEv2 (``-x``, ``NCCL_IB_GID_INDEX``).

    Among RoCE v2 entries (optionally of one device/port/netdev): prefer an IPv4-mapped GID
    (``::ffff:a.b.c.d``), then a global IPv6 one, then the link-local one; lowest index wins a tie.
    None when there is no RoCE v2 GID.
    """
    cands = [
        e for e in entries
        if e.get("version") == "v2"
        and (dev is None or e.get("dev") == dev)
        and (port is None or e.get("port") == port)
        and (netdev is None or e.get("netdev") == netdev)
    ]
    if not cands:
        return None

    def rank(e: dict[str, Any]) -> tuple[int, int]:
        if e.get("ipv4"):
            return (0, e["index"])
        if not e.get("link_local"):
            return (1, e["index"])
        return (2, e["index"])

    return int(min(cands, key=rank)["index"])


# ---------------------------------------------------------------------------------------------------------
# lspci -vvv

_LSPCI_HEAD_RE = re.compile(
    r"^((?:[0-9a-fA-F]{4,8}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])\s+(.+?)(?:\s+\[([0-9a-fA-F]{4})\])?:\s+(.*)$"
)
_SPEED_RE = re.compile(r"Speed\s+([\d.]+)GT/s(?:\s*\(([^)]*)\))?")
_WIDTH_RE = re.compile(r"Width\s+x(\d+)(?:\s*\(([^)]*)\))?")


def _link(value: str) -> dict[str, Any]:
    sp = _SPEED_RE.search(value)
    wd = _WIDTH_RE.search(value)
    return {
        "speed_gts": float(sp.group(1)) if sp else None,
        "width": int(wd.group(1)) if wd else None,
        "speed_note": sp.group(2) if sp and sp.group(2) else None,
        "width_note": wd.group(2) if wd and wd.group(2) else None,
    }


@_guarded("lspci -vvv")
def parse_lspci_vvv(text: str | bytes) -> list[dict[str, Any]]:
    """Parse ``lspci -vvv`` (also ``-D`` and ``-nn``): one dict per device.

    ``bdf`` (normalised ``0000:bb:dd.f``), ``class`` (text), ``class_id`` (``0302`` with ``-nn``), ``vendor``
    and ``device`` (``[10de:2330]`` ids with ``-nn``), ``description``, ``numa_node``, ``driver``,
    ``lnkcap``/``lnksta`` ``{speed_gts, width, speed_note, width_note}`` (None when the device has no
    PCIe capability or lspci could not read it), ``link_degraded`` (LnkSta below LnkCap), ``acsctl``
    (``{"SrcValid": False, ...}`` or None).
    """
    raw = _text(text, "lspci -vvv")
    devices: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    for line in raw.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            m = _LSPCI_HEAD_RE.match(line)
            if not m:
                if cur is None:
                    raise ParseError("lspci -vvv: expected '<bus:dev.fn> <class>: <device>' lines", _head(raw))
                continue
            desc = m.group(4)
            ids = re.search(r"\[([0-9a-fA-F]{4}):([0-9a-fA-F]{4})\]", desc)
            cur = {
                "bdf": normalize_bdf(m.group(1)),
                "class": m.group(2),
                "class_id": m.group(3),
                "description": desc,
                "vendor_id": ids.group(1).lower() if ids else None,
                "device_id": ids.group(2).lower() if ids else None,
                "numa_node": None,
                "driver": None,
                "lnkcap": None,
                "lnksta": None,
                "acsctl": None,
            }
            devices.append(cur)
            continue
        if cur is None:
            continue
        s = line.strip()
        if s.startswith("NUMA node:"):
            cur["numa_node"] = _int(s.split(":", 1)[1])
        elif s.startswith("Kernel driver in use:"):
            cur["driver"] = s.split(":", 1)[1].strip()
        elif s.startswith("LnkCap:"):
            cur["lnkcap"] = _link(s)
        elif s.startswith("LnkSta:"):
            cur["lnksta"] = _link(s)
        elif s.startswith("ACSCtl:"):
            cur["acsctl"] = {m.group(1): m.group(2) == "+" for m in re.finditer(r"(\w+)([+-])", s[7:])}
    if not devices:
        raise ParseError("lspci -vvv: expected at least one '<bus:dev.fn> <class>: <device>' line", _head(raw))
    for d in devices:
        cap, sta = d["lnkcap"], d["lnksta"]
        d["link_degraded"] = None
        if cap and sta and None not in (cap["speed_gts"], sta["speed_gts"], cap["width"], sta["width"]):
            d["link_degraded"] = sta["speed_gts"] < cap["speed_gts"] or sta["width"] < cap["width"]
    return devices


# ---------------------------------------------------------------------------------------------------------
# gpubench (validation/gpubench/gpubench.cu): our own CUDA benchmark's JSON

GPUBENCH_TOOL = "baremetal-gpubench"
GPUBENCH_SCHEMA = 1
# test -> (the number that is the result, unit)
GPUBENCH_VALUES = {
    "gemm_bf16": ("tflops", "TFLOP/s"),
    "gemm_fp16": ("tflops", "TFLOP/s"),
    "copy": ("tbps", "TB/s"),
    "h2d": ("gbps", "GB/s"),
    "d2h": ("gbps", "GB/s"),
    "p2p": ("gbps", "GB/s"),
}


@_guarded("gpubench JSON")
def parse_gpubench_json(text: str | bytes) -> dict[str, Any]:
    """Parse one document printed by ``gpubench`` (--list, --device N or --p2p).

    Returns the document with ``results`` checked: every entry names a known test and carries its number
    (GPUBENCH_VALUES). A document with ``error`` (the program's own CUDA/cuBLAS or argument error) is returned
    as it is, with ``error`` set: the caller turns it into a failed check. Anything else raises ParseError."""
    raw = _text(text, "gpubench JSON")
    doc = _json_from(raw, "gpubench JSON")
    if not isinstance(doc, dict) or doc.get("tool") != GPUBENCH_TOOL:
        raise ParseError(f"gpubench JSON: expected an object with tool={GPUBENCH_TOOL!r}", _head(raw))
    if doc.get("schema") != GPUBENCH_SCHEMA:
        raise ParseError(f"gpubench JSON: schema {doc.get('schema')!r}; this version reads {GPUBENCH_SCHEMA}",
                         _head(raw))
    if "error" in doc:
        return {"error": str(doc["error"]), "results": []}
    results = doc.get("results")
    if results is None and "devices" in doc:
        return doc
    if not isinstance(results, list):
        raise ParseError("gpubench JSON: expected a results list (or devices, or error)", _head(raw))
    for i, r in enumerate(results):
        test = r.get("test") if isinstance(r, dict) else None
        if test not in GPUBENCH_VALUES:
            raise ParseError(f"gpubench JSON: results[{i}]: unknown test {test!r}", _head(raw))
        key = GPUBENCH_VALUES[test][0]
        if not isinstance(r.get(key), (int, float)) or isinstance(r.get(key), bool) or r[key] < 0:
            raise ParseError(f"gpubench JSON: results[{i}] ({test}): {key} must be a number >= 0", _head(raw))
    return doc


# ---------------------------------------------------------------------------------------------------------
# content detection for `baremetal inspect`

def _looks_json(raw: str) -> dict[str, Any] | None:
    try:
        doc = _json_from(raw, "json")
    except ParseError:
        return None
    return doc if isinstance(doc, dict) else None


def detect_kind(text: str | bytes) -> str | None:
    """Which of :data:`KINDS` the text is, from its content; None when unrecognised."""
    try:
        raw = _text(text, "detect_kind")
    except ParseError:
        return None
    if not raw.strip():
        return None
    if "<nvidia_smi_log" in raw:
        return "nvsmi_xml"
    if "{" in raw:
        doc = _looks_json(raw)
        if doc is not None:
            if "jobs" in doc and ("fio version" in doc or "global options" in doc):
                return "fio_json"
            if "start" in doc and "end" in doc:
                return "iperf3_json"
            if doc.get("tool") == GPUBENCH_TOOL:
                return "gpubench_json"
            if "test_categories" in json.dumps(doc)[:200000]:
                return "dcgmi_diag"
    if "NVRM: Xid" in raw:
        return "xid"
    if re.search(r"(?m)^#\s*Avg bus bandwidth|^#\s*nThread\s+\d+|out-of-place\s+in-place", raw):
        return "nccl_tests"
    if re.search(r"(?m)^\s*#bytes\s+#iterations", raw):
        return "perftest"
    if re.search(r"(?m)^\s*GPU0(\s+GPU\d+|\s+NIC\d+|\s+mlx\S+)*\s+CPU Affinity", _ANSI_RE.sub("", raw)) or re.search(
        r"(?m)^\s*X\s+=\s+Self\s*$", raw
    ):
        return "topo_matrix"
    if "| Diagnostic" in raw and "| Result" in raw:
        return "dcgmi_diag"
    if re.search(r"(?m)^\s*hca_id:\s*\S+", raw) or re.search(r"No IB devices found|Failed to get IB devices list", raw):
        return "ibv_devinfo"
    if re.search(r"(?m)^\s*DEV\s+PORT\s+INDEX\s+GID", raw):
        return "gid_table"
    if re.search(r"(?m)^GPU \d+: .*\n\s+Link \d+: ", raw):
        return "nvlink_status"
    if _LSPCI_HEAD_RE.match(raw.lstrip().splitlines()[0]):
        return "lspci_vvv"
    first = raw.lstrip().splitlines()[0]
    cells = [_csv_name(c) for c in first.split(",")]
    # Query field names: dotted (memory.total) or plain (index, driver_version); at least one dotted or a
    # well-known plain one, so that an ordinary CSV is not taken for nvidia-smi's.
    if cells and all(re.fullmatch(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*", c) for c in cells) and any(
            "." in c or c in ("index", "uuid", "serial", "driver_version", "pci.bus_id") for c in cells):
        return "nvsmi_csv"
    return None


KINDS: dict[str, Callable[..., Any]] = {
    "nvsmi_xml": parse_nvsmi_xml,
    "nvsmi_csv": parse_nvsmi_csv,
    "nvlink_status": parse_nvlink_status,
    "topo_matrix": parse_topo_matrix,
    "nccl_tests": parse_nccl_tests,
    "perftest": parse_perftest,
    "dcgmi_diag": parse_dcgmi_diag,
    "xid": parse_xid,
    "fio_json": parse_fio_json,
    "iperf3_json": parse_iperf3_json,
    "ibv_devinfo": parse_ibv_devinfo,
    "gid_table": parse_gid_table,
    "lspci_vvv": parse_lspci_vvv,
    "gpubench_json": parse_gpubench_json,
}
