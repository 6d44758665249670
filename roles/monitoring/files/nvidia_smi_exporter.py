#!/usr/bin/python3
"""nvidia-smi textfile exporter: one run queries the GPUs and writes <textfile dir>/nvidia_smi.prom atomically.

Installed by roles/monitoring on nodes with GPUs and run by nvidia-smi-exporter.timer; the node exporter's
textfile collector serves the file. Stdlib only. Unavailable values ("[N/A]", "[Not Supported]") are left out,
never written as 0. When nvidia-smi fails, nvidia_smi_up is 0 and the error is in the log (journal).

Fields: `nvidia-smi --help-query-gpu` documents them; units are those of --format=csv,noheader,nounits (MiB,
MHz, W, %, degrees C), converted here to Prometheus base units (bytes, hertz, watts, ratios, celsius).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import subprocess
import sys
import tempfile
import time

# (query field, metric name, help, scale); label fields have metric None
FIELDS: list[tuple[str, str | None, str, float]] = [
    ("index", None, "", 1),
    ("uuid", None, "", 1),
    ("name", None, "", 1),
    ("pci.bus_id", None, "", 1),
    ("driver_version", None, "", 1),
    ("temperature.gpu", "nvidia_smi_temperature_celsius", "GPU core temperature.", 1),
    ("utilization.gpu", "nvidia_smi_utilization_gpu_ratio", "Fraction of time a kernel was running.", 0.01),
    ("utilization.memory", "nvidia_smi_utilization_memory_ratio", "Fraction of time memory was read or written.",
     0.01),
    ("memory.total", "nvidia_smi_memory_total_bytes", "Total GPU memory.", 1048576),
    ("memory.used", "nvidia_smi_memory_used_bytes", "Used GPU memory.", 1048576),
    ("power.draw", "nvidia_smi_power_draw_watts", "Power draw.", 1),
    ("power.limit", "nvidia_smi_power_limit_watts", "Power limit.", 1),
    ("clocks.sm", "nvidia_smi_clock_sm_hertz", "SM clock.", 1e6),
    ("clocks.mem", "nvidia_smi_clock_memory_hertz", "Memory clock.", 1e6),
    ("ecc.errors.uncorrected.volatile.total", "nvidia_smi_ecc_errors_uncorrected_volatile",
     "Uncorrected ECC errors since the driver was loaded.", 1),
    ("pstate", "nvidia_smi_pstate", "Performance state (0 = P0, maximum performance).", 1),
]
QUERY = ",".join(field for field, *_ in FIELDS)
UNAVAILABLE = {"", "n/a", "[n/a]", "[not supported]", "not supported", "[unknown error]", "[insufficient permissions]"}
OUTPUT = "nvidia_smi.prom"


def _value(text: str, field: str, scale: float) -> float | None:
    text = text.strip()
    if text.lower() in UNAVAILABLE:
        return None
    if field == "pstate":
        return float(text[1:]) if text[:1] in ("P", "p") and text[1:].isdigit() else None
    try:
        return float(text) * scale
    except ValueError:
        return None


def parse_query_gpu(output: str) -> list[dict[str, object]]:
    """``nvidia-smi --query-gpu=QUERY --format=csv,noheader,nounits`` -> one dict per GPU: labels and values."""
    gpus = []
    for row in csv.reader(io.StringIO(output), skipinitialspace=True):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(FIELDS):
            raise ValueError(f"expected {len(FIELDS)} fields per line, got {len(row)}: {','.join(row)}")
        cells = dict(zip((f for f, *_ in FIELDS), (c.strip() for c in row), strict=True))
        values = {}
        for field, metric, _help, scale in FIELDS:
            if metric:
                value = _value(cells[field], field, scale)
                if value is not None:
                    values[metric] = value
        gpus.append({"labels": {"gpu": cells["index"], "uuid": cells["uuid"], "name": cells["name"],
                                "pci_bus_id": cells["pci.bus_id"]},
                     "driver_version": cells["driver_version"], "values": values})
    return gpus


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def render(gpus: list[dict[str, object]] | None, now: float, duration: float) -> str:
    """Prometheus text format for the GPUs (None: nvidia-smi failed)."""
    lines = ["# HELP nvidia_smi_up Whether the last nvidia-smi query succeeded.", "# TYPE nvidia_smi_up gauge",
             f"nvidia_smi_up {0 if gpus is None else 1}",
             "# HELP nvidia_smi_last_run_timestamp_seconds When the exporter last ran.",
             "# TYPE nvidia_smi_last_run_timestamp_seconds gauge",
             f"nvidia_smi_last_run_timestamp_seconds {_number(round(now, 3))}",
             "# HELP nvidia_smi_query_duration_seconds How long nvidia-smi took.",
             "# TYPE nvidia_smi_query_duration_seconds gauge",
             f"nvidia_smi_query_duration_seconds {_number(round(duration, 3))}"]
    if gpus is None:
        return "\n".join(lines) + "\n"
    lines += ["# HELP nvidia_smi_gpus Number of GPUs nvidia-smi lists.", "# TYPE nvidia_smi_gpus gauge",
              f"nvidia_smi_gpus {len(gpus)}",
              "# HELP nvidia_smi_gpu_info GPU identity (value 1).", "# TYPE nvidia_smi_gpu_info gauge"]
    for gpu in gpus:
        info = {**gpu["labels"], "driver_version": gpu["driver_version"]}  # type: ignore[dict-item]
        lines.append(f"nvidia_smi_gpu_info{_labels(info)} 1")
    for _field, metric, help_text, _scale in FIELDS:
        if not metric or not any(metric in gpu["values"] for gpu in gpus):  # type: ignore[operator]
            continue
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
        for gpu in gpus:
            values = gpu["values"]
            if metric in values:  # type: ignore[operator]
                lines.append(f"{metric}{_labels({'gpu': gpu['labels']['gpu'], 'uuid': gpu['labels']['uuid']})} "  # type: ignore[index]
                             f"{_number(values[metric])}")  # type: ignore[index]
    return "\n".join(lines) + "\n"


def write_atomically(directory: str, text: str) -> str:
    """Write ``text`` to directory/nvidia_smi.prom through a temporary file and a rename (no half-read files)."""
    fd, tmp = tempfile.mkstemp(prefix=".nvidia_smi.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        path = os.path.join(directory, OUTPUT)
        os.replace(tmp, path)
        return path
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--textfile-dir", required=True, help="node exporter textfile collector directory")
    parser.add_argument("--nvidia-smi", default="nvidia-smi", help="nvidia-smi executable")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds nvidia-smi may take")
    args = parser.parse_args(argv)
    start = time.time()
    gpus = None
    try:
        proc = subprocess.run([args.nvidia_smi, f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True, timeout=args.timeout, check=False)
        if proc.returncode == 0:
            gpus = parse_query_gpu(proc.stdout)
        else:
            print(f"nvidia-smi exited {proc.returncode}: {(proc.stdout + proc.stderr).strip()}", file=sys.stderr)
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        print(f"nvidia-smi failed: {exc}", file=sys.stderr)
    write_atomically(args.textfile_dir, render(gpus, time.time(), time.time() - start))
    return 0 if gpus is not None else 1


if __name__ == "__main__":
    sys.exit(main())
