"""module_utils/bm_parsers.py on the fixtures in tests/fixtures/<tool>/ (README.md there: real vs constructed)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "module_utils"))

import bm_parsers as bp  # noqa: E402 - module_utils/ is put on sys.path just above

FIX = ROOT / "tests" / "fixtures"


def fx(rel: str) -> str:
    return (FIX / rel).read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------ nvidia-smi XML

def test_nvsmi_xml_v12_healthy_and_degraded_gpu() -> None:
    r = bp.parse_nvsmi_xml(fx("nvidia-smi/h100-2gpu-v12.xml"))
    assert (r["schema"], r["driver_version"], r["cuda_version"], r["attached_gpus"]) == ("v12", "535.54.03", "12.2", 2)
    g0, g1 = r["gpus"]
    assert g0["name"] == "NVIDIA H100 80GB HBM3"
    assert g0["uuid"].startswith("GPU-") and g0["serial"] == "1654923000001" and g0["vbios"] == "96.00.74.00.0D"
    assert g0["pci_bus_id"] == "00000000:18:00.0"
    assert (g0["memory_total_mib"], g0["memory_used_mib"]) == (81559, 2)
    assert g0["pcie"] == {"gen_current": 5, "gen_max": 5, "gen_device_max": 5, "gen_host_max": 5,
                          "width_current": 16, "width_max": 16, "replay_counter": 0}
    assert g0["ecc_mode_current"] is True and g0["ecc_mode_pending"] is True
    assert g0["ecc_errors"]["volatile"]["correctable"] == 0 and g0["ecc_errors"]["aggregate"]["uncorrectable"] == 0
    assert g0["remapped_rows"] == {"correctable": 0, "uncorrectable": 0, "pending": False, "failure": False}
    assert g0["retired_pages"] is None  # all N/A on Hopper
    assert g0["clocks_event_reasons_active"] == []
    assert g0["clocks"]["sm_mhz"] == 1980 and g0["clocks"]["sm_max_mhz"] == 1980 and g0["clocks"]["mem_max_mhz"] == 2619
    assert g0["persistence_mode"] is True and g0["mig_mode_current"] is False and g0["mig_mode_pending"] is False
    assert (g0["power_draw_w"], g0["power_limit_w"], g0["temperature_c"]) == (71.42, 700.0, 33)
    assert g0["fabric"] == {"state": "Completed", "status": "Success"}
    # the second GPU carries every fault the health checks look for
    assert (g1["pcie"]["gen_current"], g1["pcie"]["width_current"]) == (4, 8)
    assert g1["ecc_errors"]["volatile"] == {
        "correctable": 15, "uncorrectable": 1,
        "detail": {"sram_correctable": 3, "sram_uncorrectable": 0, "dram_correctable": 12, "dram_uncorrectable": 1},
    }
    assert g1["ecc_errors"]["aggregate"]["uncorrectable"] == 2
    assert g1["remapped_rows"] == {"correctable": 2, "uncorrectable": 1, "pending": True, "failure": False}
    assert g1["clocks_event_reasons_active"] == ["sw_power_cap", "hw_slowdown"]
    assert g1["clocks"]["sm_mhz"] == 1410


def test_nvsmi_xml_v11_old_names_mig_and_na_remapped_rows() -> None:
    r = bp.parse_nvsmi_xml(fx("nvidia-smi/a100-mig-v11.xml"))
    assert r["schema"] == "v11" and r["driver_version"] == "470.182.03"
    (g,) = r["gpus"]
    assert g["clocks_event_reasons_active"] == ["gpu_idle"]  # from <clocks_throttle_reasons>
    assert g["power_limit_w"] == 400.0 and g["power_draw_w"] == 62.18  # from <power_readings>
    assert g["ecc_errors"]["aggregate"]["correctable"] == 7  # single_bit/total
    assert g["ecc_errors"]["volatile"]["uncorrectable"] == 0  # double_bit/total
    assert g["remapped_rows"] is None  # bare N/A leaf with MIG enabled
    assert g["mig_mode_current"] is True and g["persistence_mode"] is False
    assert g["architecture"] is None and g["fabric"] is None


def test_nvlink_status() -> None:
    r = bp.parse_nvlink_status(fx("nvidia-smi/nvlink-status.txt"))
    g0, g1 = r["gpus"]
    assert g0["index"] == 0 and g0["uuid"] == "GPU-5b7c9a1e-0d2f-4c4b-9d0e-1a2b3c4d5e6f"
    assert g0["active_links"] == 18 and g0["links"][0]["speed_gbps"] == 26.562
    assert (g1["active_links"], g1["inactive_links"]) == (16, 2)
    assert [lk["link"] for lk in g1["links"] if not lk["active"]] == [6, 7]


def test_nvsmi_csv_noheader_and_header_with_units() -> None:
    fields = ["index", "name", "pci.bus_id", "driver_version", "memory.total", "memory.used",
              "pcie.link.gen.current", "pcie.link.gen.max", "pcie.link.width.current", "pcie.link.width.max",
              "ecc.mode.current", "ecc.errors.uncorrected.volatile.total", "remapped_rows.pending",
              "remapped_rows.failure", "clocks_event_reasons.active"]
    rows = bp.parse_nvsmi_csv(fx("nvidia-smi/query-gpu-noheader-nounits.csv"), fields)
    assert len(rows) == 2
    assert rows[1]["pci.bus_id"] == "00000000:2A:00.0" and rows[1]["pcie.link.width.current"] == 8
    assert rows[1]["ecc.errors.uncorrected.volatile.total"] == 1 and rows[1]["remapped_rows.pending"] == "Yes"
    assert bp.decode_clock_event_reasons(rows[1]["clocks_event_reasons.active"]) == ["sw_power_cap", "hw_slowdown"]
    assert bp.decode_clock_event_reasons(rows[0]["clocks_event_reasons.active"]) == []
    text = fx("nvidia-smi/query-gpu-header-units.csv")
    with_header = bp.parse_nvsmi_csv(text)  # names from the header, units stripped
    assert with_header[0]["memory.total"] == 81251 and with_header[0]["power.draw"] == 62.18
    assert with_header[1]["power.draw"] is None and with_header[1]["ecc.errors.uncorrected.volatile.total"] is None
    named = bp.parse_nvsmi_csv(text, ["index", "name", "memory.total", "memory.used", "temperature.gpu",
                                      "power.draw", "clocks.sm", "ecc.errors.uncorrected.volatile.total"])
    assert named == with_header
    with pytest.raises(bp.ParseError, match="expected 3 columns"):
        bp.parse_nvsmi_csv("0, a\n", ["index", "name", "uuid"])


def test_decode_clock_event_reasons_unknown_bits_and_na() -> None:
    assert bp.decode_clock_event_reasons(0x1 | 0x800) == ["gpu_idle", "bit_0x800"]
    assert bp.decode_clock_event_reasons("[N/A]") is None


# ------------------------------------------------------------------------------------------ topo -m

def test_topo_matrix_hgx() -> None:
    r = bp.parse_topo_matrix(fx("nvidia-smi-topo/hgx-h100-8gpu-4nic.txt"))
    assert r["gpus"] == [f"GPU{i}" for i in range(8)] and r["nics"] == [f"NIC{i}" for i in range(4)]
    m = r["matrix"]
    assert m["GPU0"]["GPU0"] == "X" and m["GPU0"]["GPU7"] == "NV18"
    assert (m["GPU0"]["NIC0"], m["GPU0"]["NIC1"], m["GPU0"]["NIC2"]) == ("PIX", "NODE", "SYS")
    assert m["NIC2"]["GPU4"] == "PIX"
    assert r["affinity"]["GPU0"] == {"cpu": "0-51,104-155", "numa": 0, "gpu_numa_id": None}
    assert r["affinity"]["GPU7"]["numa"] == 1
    assert r["nic_legend"] == {f"NIC{i}": f"mlx5_{i}" for i in range(4)}
    assert set(r["legend"]) == {"X", "SYS", "NODE", "PHB", "PXB", "PIX", "NV#"}


def test_topo_matrix_old_driver_soc_and_named_nic() -> None:
    r = bp.parse_topo_matrix(fx("nvidia-smi-topo/old-driver-soc-4gpu.txt"))
    assert r["nics"] == ["mlx5_0"]
    assert r["matrix"]["GPU0"]["GPU2"] == "SOC" and r["matrix"]["GPU2"]["GPU3"] == "PXB"
    assert r["matrix"]["mlx5_0"]["GPU1"] == "PHB"
    assert r["affinity"]["GPU2"] == {"cpu": "10-19,30-39", "numa": None, "gpu_numa_id": None}


# ------------------------------------------------------------------------------------------ nccl-tests

def test_nccl_tests_current_format_with_info_lines() -> None:
    r = bp.parse_nccl_tests(fx("nccl-tests/all_reduce_perf-8gpu-info.txt"))
    assert r["test"] == "all_reduce_perf"
    assert r["header"]["nGpus"] == 8 and r["header"]["maxBytes"] == 8589934592 and r["header"]["iters"] == 20
    assert r["header"]["warmup_iters"] == 1 and r["header"]["step"] == "8(factor)"
    assert len(r["devices"]) == 8 and r["devices"][1]["bus"] == "0x2a"
    assert len(r["rows"]) == 11
    big = r["rows"][-1]
    assert (big["size"], big["type"], big["redop"], big["root"]) == (8589934592, "float", "sum", -1)
    assert big["out_of_place"]["busbw_gbps"] == 479.72 and big["in_place"]["busbw_gbps"] == 482.13
    assert r["avg_bus_bandwidth_gbps"] == 178.8
    assert r["out_of_bounds"] == {"count": 0, "ok": True}
    assert r["wrong_total"] == 0 and r["max_busbw_gbps"] == 482.13


def test_nccl_tests_old_error_column_without_root() -> None:
    r = bp.parse_nccl_tests(fx("nccl-tests/all_reduce_perf-old-error-column.txt"))
    (row,) = r["rows"]
    assert row["root"] is None and row["out_of_place"]["wrong"] == 0 and row["in_place"]["algbw_gbps"] == 1.14
    assert r["header"]["validation"] == 1 and r["devices"][1]["host"] == "node-b" and r["devices"][1]["group"] is None
    assert r["avg_bus_bandwidth_gbps"] == 1.14294


def test_nccl_tests_wrong_results_are_reported() -> None:
    r = bp.parse_nccl_tests(fx("nccl-tests/all_reduce_perf-wrong-results.txt"))
    assert r["wrong_total"] == 4096
    assert r["out_of_bounds"] == {"count": 4096, "ok": False}
    assert r["rank_errors"] == ["rank=5 #wrong=2048"]
    assert len(r["warnings"]) == 1 and "NCCL WARN" in r["warnings"][0]


def test_nccl_tests_wrong_na_when_check_disabled() -> None:
    text = (
        "#  size  count  type  redop  root  time  algbw  busbw #wrong  time  algbw  busbw #wrong\n"
        "   134217728  33554432  float  sum  -1  507.3  264.55  462.97  N/A  504.8  265.88  465.30  N/A\n"
    )
    r = bp.parse_nccl_tests(text)
    assert r["rows"][0]["out_of_place"]["wrong"] is None and r["wrong_total"] == 0
    assert r["avg_bus_bandwidth_gbps"] is None


# ------------------------------------------------------------------------------------------ perftest

def test_perftest_write_bw_gbits() -> None:
    r = bp.parse_perftest(fx("perftest/ib_write_bw-report_gbits-all-sizes.txt"))
    assert r["test"] == "RDMA_Write BW Test" and r["kind"] == "bw"
    assert (r["device"], r["link_type"], r["gid_index"], r["mtu_bytes"], r["qps"]) == ("mlx5_0", "Ethernet", 3, 4096, 1)
    assert r["transport_type"] == "IB" and r["connection_type"] == "RC" and r["header"]["rdma_cm QPs"] == "OFF"
    assert r["bw_unit"] == "Gb/sec" and len(r["rows"]) == 23
    assert r["rows"][-1] == {"bytes": 8388608, "iterations": 5000, "bw_peak": 393.57, "bw_average": 392.0,
                             "msg_rate_mpps": 0.005841}
    assert r["bw_average_gbps"] == 392.0


def test_perftest_read_bw_default_units_are_converted() -> None:
    r = bp.parse_perftest(fx("perftest/ib_read_bw-mb-65536.txt"))
    assert r["test"] == "RDMA_Read BW Test" and r["bw_unit"] == "MB/sec" and r["link_type"] == "IB"
    assert r["rows"][0]["bw_average"] == 11640.87
    assert r["bw_average_gbps"] == pytest.approx(11640.87 * 8 * 1.048576e-3, abs=1e-3)  # perftest's MB is 2^20


def test_perftest_write_lat() -> None:
    r = bp.parse_perftest(fx("perftest/ib_write_lat-all-sizes.txt"))
    assert r["kind"] == "lat" and r["bw_average_gbps"] is None
    assert r["columns"] == ["bytes", "iterations", "t_min_us", "t_max_us", "t_typical_us", "t_avg_us", "t_stdev_us",
                            "p99_us", "p99_9_us"]
    first = r["rows"][0]
    assert first == {"bytes": 2, "iterations": 1000, "t_min_us": 1.66, "t_max_us": 7.01, "t_typical_us": 1.71,
                     "t_avg_us": 1.73, "t_stdev_us": 0.03, "p99_us": 2.14, "p99_9_us": 4.96}


SIZES_2_TO_8M = [2 ** i for i in range(1, 24)]  # perftest -a: 2 bytes .. 8 MiB


def test_perftest_real_write_bw_gbits_all_sizes_roce() -> None:
    """Real: NVIDIA GPU Operator docs, ib_write_bw -a -F --report_gbits between two pods over 100G RoCE."""
    r = bp.parse_perftest(fx("perftest/real-ib_write_bw-gbits-all-sizes-roce-cx.txt"))
    assert r["test"] == "RDMA_Write BW Test" and r["kind"] == "bw" and r["warnings"] == []
    assert (r["device"], r["link_type"], r["gid_index"], r["mtu_bytes"], r["qps"]) == ("mlx5_0", "Ethernet", 5, 1024, 1)
    assert (r["transport_type"], r["connection_type"]) == ("IB", "RC")
    assert r["header"]["TX depth"] == "128" and r["header"]["CQ Moderation"] == "100"
    assert r["header"]["Max inline data"] == "0[B]" and r["header"]["Data ex. method"] == "Ethernet"
    assert r["bw_unit"] == "Gb/sec" and r["columns"] == ["bytes", "iterations", "bw_peak", "bw_average",
                                                         "msg_rate_mpps"]
    assert [row["bytes"] for row in r["rows"]] == SIZES_2_TO_8M
    assert {row["iterations"] for row in r["rows"]} == {5000}
    assert r["rows"][0] == {"bytes": 2, "iterations": 5000, "bw_peak": 0.11, "bw_average": 0.11,
                            "msg_rate_mpps": 6.897101}
    by_size = {row["bytes"]: row for row in r["rows"]}
    assert (by_size[1024]["bw_peak"], by_size[1024]["bw_average"]) == (59.65, 58.81)
    assert by_size[65536]["bw_average"] == 92.38 and by_size[65536]["msg_rate_mpps"] == 0.176196
    assert r["rows"][-1] == {"bytes": 8388608, "iterations": 5000, "bw_peak": 92.39, "bw_average": 92.39,
                             "msg_rate_mpps": 0.001377}
    assert r["bw_average_gbps"] == 92.39 and r["bw_peak_gbps"] == 92.39  # Gb/sec: no conversion


def test_perftest_real_read_bw_mb_all_sizes_with_cpu_frequency_line() -> None:
    """Real: ib_read_bw -a on ConnectX-3 IB, default MB/sec; a 'Conflicting CPU frequency' line sits in the table."""
    text = fx("perftest/real-ib_read_bw-mlx4-mb-all-sizes.txt")
    assert "Conflicting CPU frequency values detected" in text
    r = bp.parse_perftest(text)
    assert r["test"] == "RDMA_Read BW Test" and r["kind"] == "bw" and r["bw_unit"] == "MB/sec"
    assert (r["device"], r["link_type"], r["gid_index"], r["mtu_bytes"]) == ("mlx4_0", "IB", None, 2048)
    assert r["header"]["Outstand reads"] == "16"
    assert [row["bytes"] for row in r["rows"]] == SIZES_2_TO_8M  # the interleaved line costs no row
    by_size = {row["bytes"]: row for row in r["rows"]}
    assert by_size[1048576] == {"bytes": 1048576, "iterations": 20000, "bw_peak": 3666.83, "bw_average": 3666.65,
                                "msg_rate_mpps": 0.003667}
    assert by_size[2097152] == {"bytes": 2097152, "iterations": 20000, "bw_peak": 3667.22, "bw_average": 3667.1,
                                "msg_rate_mpps": 0.001834}
    assert r["rows"][-1]["bw_average"] == 3666.44 and r["rows"][-1]["bw_peak"] == 3667.13
    assert r["bw_average_gbps"] == pytest.approx(3666.44 * 8 * 1.048576e-3, abs=1e-3)  # ~30.76 Gb/s
    assert r["bw_peak_gbps"] == pytest.approx(3667.13 * 8 * 1.048576e-3, abs=1e-3)


LAT_COLUMNS = ["bytes", "iterations", "t_min_us", "t_max_us", "t_typical_us", "t_avg_us", "t_stdev_us", "p99_us",
               "p99_9_us"]


def test_perftest_real_write_lat_all_sizes() -> None:
    """Real: ib_write_lat -a --iter 20000 on ConnectX-3 InfiniBand (rows carry trailing spaces)."""
    r = bp.parse_perftest(fx("perftest/real-ib_write_lat-mlx4-all-sizes.txt"))
    assert r["test"] == "RDMA_Write Latency Test" and r["kind"] == "lat" and r["columns"] == LAT_COLUMNS
    assert (r["device"], r["link_type"], r["gid_index"], r["mtu_bytes"], r["qps"]) == ("mlx4_0", "IB", None, 2048, 1)
    assert r["header"]["Max inline data"] == "220[B]" and r["header"]["TX depth"] == "1"
    assert r["bw_unit"] is None and r["bw_average_gbps"] is None and r["bw_peak_gbps"] is None
    assert [row["bytes"] for row in r["rows"]] == SIZES_2_TO_8M
    assert r["rows"][0] == {"bytes": 2, "iterations": 20000, "t_min_us": 0.88, "t_max_us": 6.84, "t_typical_us": 0.98,
                            "t_avg_us": 1.03, "t_stdev_us": 0.2, "p99_us": 1.21, "p99_9_us": 5.42}
    assert {row["bytes"]: row["t_max_us"] for row in r["rows"]}[4096] == 49.03
    assert r["rows"][-1] == {"bytes": 8388608, "iterations": 20000, "t_min_us": 2296.01, "t_max_us": 2345.48,
                             "t_typical_us": 2302.01, "t_avg_us": 2304.98, "t_stdev_us": 6.43, "p99_us": 2327.01,
                             "p99_9_us": 2335.48}


def test_perftest_real_read_lat_all_sizes() -> None:
    """Real: ib_read_lat -a --iter 20000, same nodes."""
    r = bp.parse_perftest(fx("perftest/real-ib_read_lat-mlx4-all-sizes.txt"))
    assert r["test"] == "RDMA_Read Latency Test" and r["kind"] == "lat" and r["columns"] == LAT_COLUMNS
    assert (r["device"], r["link_type"], r["mtu_bytes"]) == ("mlx4_0", "IB", 2048)
    assert r["header"]["Outstand reads"] == "16"
    assert [row["bytes"] for row in r["rows"]] == SIZES_2_TO_8M
    assert r["rows"][0] == {"bytes": 2, "iterations": 20000, "t_min_us": 1.91, "t_max_us": 13.87, "t_typical_us": 1.99,
                            "t_avg_us": 2.01, "t_stdev_us": 0.32, "p99_us": 2.13, "p99_9_us": 9.95}
    assert r["rows"][-1] == {"bytes": 8388608, "iterations": 20000, "t_min_us": 2177.92, "t_max_us": 2240.08,
                             "t_typical_us": 2184.09, "t_avg_us": 2184.33, "t_stdev_us": 2.24, "p99_us": 2192.22,
                             "p99_9_us": 2202.42}


# ------------------------------------------------------------------------------------------ dcgmi diag

def test_dcgmi_diag_r1_pass() -> None:
    r = bp.parse_dcgmi_diag(fx("dcgmi/diag-r1-pass.txt"))
    assert r["format"] == "table" and r["overall"] == "Pass" and r["failed"] == [] and r["warned"] == []
    assert r["metadata"]["DCGM Version"] == "3.3.5"
    assert len(r["tests"]) == 9 and {t["category"] for t in r["tests"]} == {"Deployment"}


def test_dcgmi_diag_r2_fail_per_gpu_and_wrapped_messages() -> None:
    r = bp.parse_dcgmi_diag(fx("dcgmi/diag-r2-fail.txt"))
    assert r["overall"] == "Fail" and r["failed"] == ["Persistence Mode", "PCIe"] and r["warned"] == ["Targeted Stress"]
    tests = {t["name"]: t for t in r["tests"]}
    assert tests["PCIe"]["results"] == [{"status": "Pass", "gpus": [0]}, {"status": "Fail", "gpus": [1]}]
    assert tests["PCIe"]["category"] == "Integration"
    assert tests["PCIe"]["messages"] == [
        "Warning: GPU 1 GPU 1 is running at PCI link width 8X, which is below the minimum allowed link width of 16X "
        "(parameter 'min_pci_width')"
    ]
    assert 'running "nvidia-smi -i <gpuId> -pm 1" as root.' in tests["Persistence Mode"]["messages"][0]
    assert tests["Inforom"]["status"] == "Skip"
    assert tests["GPU Memory"]["results"] == [{"status": "Pass", "gpus": "all"}]
    assert tests["Targeted Stress"]["results"][0]["gpus"] == [0, 1]


def test_dcgmi_diag_json() -> None:
    r = bp.parse_dcgmi_diag(fx("dcgmi/diag-r1-json.json"))
    assert r["format"] == "json" and r["overall"] == "Fail" and r["failed"] == ["Page Retirement/Row Remap"]
    remap = next(t for t in r["tests"] if t["name"] == "Page Retirement/Row Remap")
    assert remap["results"] == [{"status": "Fail", "gpus": [1]}] and "row remapping failed" in remap["messages"][0]
    assert r["metadata"]["version"] == "3.3.5"


def test_dcgmi_diag_real_r1_h200_persistence_fail_wrapped_error() -> None:
    """Real: dcgmi diag -r 1, DCGM 3.1.8, 8x H200, persistence mode off; the Error text wraps every 45 chars."""
    r = bp.parse_dcgmi_diag(fx("dcgmi/real-diag-r1-h200-persistence-fail.txt"))
    assert r["format"] == "table" and r["overall"] == "Fail"
    assert r["failed"] == ["Persistence Mode"] and r["warned"] == []
    assert r["metadata"] == {"DCGM Version": "3.1.8", "Driver Version Detected": "550.127.08",
                             "GPU Device IDs Detected": ",".join(["2335"] * 8)}
    assert [t["name"] for t in r["tests"]] == [
        "Denylist", "NVML Library", "CUDA Main Library", "Permissions and OS Blocks", "Persistence Mode",
        "Environment Variables", "Page Retirement/Row Remap", "Graphics Processes", "Inforom"]
    assert {t["category"] for t in r["tests"]} == {"Deployment"}
    tests = {t["name"]: t for t in r["tests"]}
    assert tests["Persistence Mode"]["results"] == [{"status": "Fail", "gpus": "all"}]
    assert all(t["status"] == "Pass" and t["messages"] == [] for n, t in tests.items() if n != "Persistence Mode")
    [msg] = tests["Persistence Mode"]["messages"]
    # 22 continuation rows joined exactly as dcgmi cut them: no space inserted at a cut, none lost at a cut
    assert msg.startswith(
        "Error: Persistence mode for GPU 0 is currently disabled. The DCGM diagnostic requires peristence mode to "
        'be enabled. Enable persistence mode by running "nvidia-smi -i <gpuId> -pm 1 " as root., Persistence mode '
        "for GPU 1 is currently disabled.")
    for gpu in range(6):
        assert f"Persistence mode for GPU {gpu} is currently disabled." in msg
    assert msg.count('Enable persistence mode by running "nvidia-smi -i <gpuId> -pm 1 " as root.') == 5
    assert msg.endswith("The DCGM diagnostic requires peristence mod")  # dcgmi's own cut at 1023 characters
    assert len(msg) == len("Error: ") + 1023
    for broken in ("disab led", "b y running", "r oot", "peris tence", "cur rently", "diagnos tic", "E nable"):
        assert broken not in msg


def test_dcgmi_diag_real_r2_a100_p4de_pass() -> None:
    """Real: dcgmi diag -r 2 on AWS p4de.24xlarge, DCGM 3.3.3: all Pass, an empty Stress section."""
    r = bp.parse_dcgmi_diag(fx("dcgmi/real-diag-r2-a100-p4de-pass.txt"))
    assert r["format"] == "table" and r["overall"] == "Pass" and r["failed"] == [] and r["warned"] == []
    assert r["metadata"] == {"DCGM Version": "3.3.3", "Driver Version Detected": "535.104.12",
                             "GPU Device IDs Detected": ",".join(["20b2"] * 8)}
    assert len(r["tests"]) == 11
    cats = {t["name"]: t["category"] for t in r["tests"]}
    assert sum(c == "Deployment" for c in cats.values()) == 9
    assert (cats["PCIe"], cats["GPU Memory"]) == ("Integration", "Hardware") and "Stress" not in cats.values()
    tests = {t["name"]: t for t in r["tests"]}
    assert tests["PCIe"]["results"] == [{"status": "Pass", "gpus": "all"}]
    assert tests["GPU Memory"]["results"] == [{"status": "Pass", "gpus": "all"}]
    assert all(t["status"] == "Pass" and t["messages"] == [] for t in r["tests"])


# ------------------------------------------------------------------------------------------ Xid

def test_xid_dmesg_T() -> None:
    events = bp.parse_xid(fx("xid/dmesg-T-mixed.txt"))
    assert [e["xid"] for e in events] == [13, 13, 63, 79, 999]
    e13 = events[0]
    assert (e13["pci"], e13["pid"], e13["process"], e13["severity"]) == ("0000:2a:00", 48211, "python3", "warn")
    assert e13["timestamp"] == "[Fri Nov 27 03:40:17 2026]"
    assert events[2]["pid"] is None and events[2]["process"] == "<unknown>"
    assert events[3]["meaning"] == "GPU has fallen off the bus" and events[3]["severity"] == "fatal"
    assert events[4]["severity"] == "unknown" and events[4]["meaning"] is None
    assert [e["xid"] for e in bp.fatal_xids(events)] == [79]


def test_xid_journalctl_and_clean_log() -> None:
    events = bp.parse_xid(fx("xid/journalctl-k.txt"))
    assert [(e["xid"], e["severity"]) for e in events] == [(48, "fatal"), (94, "warn")]
    assert events[0]["timestamp"] == "Nov 27 06:31:02" and events[0]["process"] == "pt_main_thread"
    assert [e["xid"] for e in bp.fatal_xids(events)] == [48]
    assert bp.parse_xid(fx("xid/clean-dmesg.txt")) == []


def test_xid_info_table() -> None:
    fatal = {code for code, info in bp.XID_INFO.items() if info.severity == "fatal"}
    assert {48, 64, 74, 79, 95} <= fatal
    assert bp.XID_INFO[94].severity == "warn" and bp.XID_INFO[63].severity == "warn"
    for info in bp.XID_INFO.values():
        meaning, severity, action, source = info
        assert meaning and action and source and severity in {"fatal", "warn"}


# ------------------------------------------------------------------------------------------ fio / iperf3 (real)

def test_fio_randrw_real_capture() -> None:
    r = bp.parse_fio_json(fx("fio/randrw-psync-2s.json"))
    assert r["fio_version"] == "fio-3.33" and r["preamble"] == []
    (job,) = r["jobs"]
    assert job["name"] == "bm-randrw" and job["error"] == 0
    rd, wr = job["read"], job["write"]
    assert rd["bw_bytes"] == 70246092 and rd["bw_kib"] == 68599  # bw is KiB/s, bw_bytes B/s
    assert rd["bw_bytes"] // 1024 == rd["bw_kib"]
    assert rd["iops"] > 0 and wr["iops"] > 0 and wr["bw_bytes"] > 0
    assert rd["clat_ns"]["p50"] > 0 and rd["clat_ns"]["p99"] >= rd["clat_ns"]["p50"]
    assert r["totals"]["read"]["bw_bytes"] == rd["bw_bytes"]


def test_fio_with_warning_before_json_real_capture() -> None:
    r = bp.parse_fio_json(fx("fio/write-verify-warning-2s.json"))
    assert r["preamble"] == ["fio: verification read phase will never start because write phase uses all of runtime"]
    (job,) = r["jobs"]
    assert job["write"]["bw_bytes"] > 0 and job["read"]["io_bytes"] == 0


def test_iperf3_real_captures() -> None:
    ok = bp.parse_iperf3_json(fx("iperf3/tcp-loopback-2s.json"))
    assert ok["error"] is None and ok["protocol"] == "TCP" and ok["num_streams"] == 1 and ok["duration"] == 2
    assert ok["received_bps"] == pytest.approx(24251037958.13546) and ok["sent_bps"] > 1e9
    assert ok["retransmits"] == 0 and ok["tcp_mss_default"] == 32768 and ok["version"] == "iperf 3.12"
    refused = bp.parse_iperf3_json(fx("iperf3/connection-refused.json"))
    assert refused["error"] == "unable to connect to server: Connection refused" and refused["received_bps"] is None


def test_iperf3_udp_sum() -> None:
    doc = ('{"start": {"test_start": {"protocol": "UDP", "num_streams": 1}}, "intervals": [], "end": {"sum": '
           '{"bits_per_second": 1000000.0, "jitter_ms": 0.01, "lost_percent": 0.5}}}')
    r = bp.parse_iperf3_json(doc)
    assert r["received_bps"] == 1e6 and r["lost_percent"] == 0.5 and r["retransmits"] is None


# ------------------------------------------------------------------------------------------ RDMA text tools

def test_ibv_devinfo_verbose() -> None:
    r = bp.parse_ibv_devinfo(fx("ibv_devinfo/two-hca-v.txt"))
    d0, d1 = r["devices"]
    assert d0["hca_id"] == "mlx5_0" and d0["fw_ver"] == "28.39.1002" and d0["phys_port_cnt"] == 1
    (p,) = d0["ports"]
    assert (p["state"], p["active_mtu"], p["max_mtu"], p["link_layer"]) == ("PORT_ACTIVE", 4096, 4096, "Ethernet")
    assert p["gids"][3] == {"index": 3, "gid": "::ffff:10.200.1.11", "type": "RoCE v2"}
    assert d1["ports"][0]["state"] == "PORT_DOWN" and d1["ports"][0]["link_layer"] == "InfiniBand"
    rows = [{"dev": "mlx5_0", "port": 1, **g} for g in p["gids"]]
    assert bp.roce_v2_gid_index(bp.parse_gid_table(rows)) == 3


def test_ibv_devinfo_without_rdma_real_capture() -> None:
    r = bp.parse_ibv_devinfo(fx("ibv_devinfo/no-uverbs.txt"))
    assert r == {"devices": [], "error": "Failed to get IB devices list: Function not implemented"}
    assert bp.parse_ibv_devinfo("No IB devices found\n") == {"devices": [], "error": None}


def test_show_gids_and_roce_v2_index() -> None:
    gids = bp.parse_gid_table(fx("show_gids/show_gids.txt"))
    assert len(gids) == 6
    g3 = gids[3]
    assert (g3["dev"], g3["port"], g3["index"], g3["ipv4"], g3["type"], g3["netdev"]) == (
        "mlx5_0", 1, 3, "10.200.1.11", "RoCE v2", "ens1f0np0")
    assert gids[0]["link_local"] and gids[0]["version"] == "v1"
    assert bp.roce_v2_gid_index(gids, dev="mlx5_0") == 3  # IPv4-mapped v2 beats link-local v2
    assert bp.roce_v2_gid_index(gids, dev="mlx5_1") == 1  # only link-local v2
    assert bp.roce_v2_gid_index(gids, netdev="ens1f1np1") == 1
    assert bp.roce_v2_gid_index(gids, dev="mlx5_9") is None


def test_gid_rows_from_sysfs_drop_empty_slots() -> None:
    rows = [
        ("mlx5_0", 1, 0, "fe80:0000:0000:0000:a288:c2ff:fe45:7e10", "IB/RoCE v1", "eth2"),
        ("mlx5_0", 1, 1, "fe80:0000:0000:0000:a288:c2ff:fe45:7e10", "RoCE v2", "eth2"),
        ("mlx5_0", 1, 2, "0000:0000:0000:0000:0000:0000:0000:0000", None, None),
        ("mlx5_0", 1, 3, "2001:0db8:0000:0000:0000:0000:0000:0011", "RoCE v2", "eth2"),
    ]
    gids = bp.parse_gid_table(rows)
    assert [g["index"] for g in gids] == [0, 1, 3] and gids[0]["type"] == "RoCE v1"
    assert bp.roce_v2_gid_index(gids) == 3  # global IPv6 beats link-local


# ------------------------------------------------------------------------------------------ lspci

def test_lspci_real_vm_capture() -> None:
    devs = bp.parse_lspci_vvv(fx("lspci/vm-virtio-lspci-vvv.txt"))
    assert devs[0]["bdf"] == "0000:00:00.0" and devs[0]["class"] == "Host bridge"
    net = next(d for d in devs if d["class"] == "Ethernet controller")
    assert net["bdf"] == "0000:00:03.0" and net["driver"] == "virtio-pci"
    assert net["lnkcap"] is None and net["link_degraded"] is None  # virtio: no PCIe capability


def test_lspci_gpu_node_link_and_acs() -> None:
    devs = {d["bdf"]: d for d in bp.parse_lspci_vvv(fx("lspci/gpu-node-lspci-vvv-nn-D.txt"))}
    bridge, ok_gpu, bad_gpu = devs["0000:17:01.0"], devs["0000:18:00.0"], devs["0000:2a:00.0"]
    assert bridge["class_id"] == "0604"
    assert bridge["acsctl"]["SrcValid"] is True and bridge["acsctl"]["DirectTrans"] is False
    assert (ok_gpu["vendor_id"], ok_gpu["device_id"], ok_gpu["numa_node"]) == ("10de", "2330", 0)
    assert ok_gpu["lnkcap"]["speed_gts"] == 32.0 and ok_gpu["lnksta"]["width"] == 16 and not ok_gpu["link_degraded"]
    assert bad_gpu["lnksta"] == {"speed_gts": 16.0, "width": 8, "speed_note": "downgraded", "width_note": "downgraded"}
    assert bad_gpu["link_degraded"] is True
    assert devs["0000:19:00.0"]["driver"] == "mlx5_core"


def test_normalize_bdf() -> None:
    assert bp.normalize_bdf("00000000:2A:00.0") == "0000:2a:00.0"
    assert bp.normalize_bdf("18:00.1") == "0000:18:00.1"
    with pytest.raises(ValueError):
        bp.normalize_bdf("not-a-bdf")


# ------------------------------------------------------------------------------------------ detection, garbage

FIXTURE_KINDS = {
    "nvidia-smi/h100-2gpu-v12.xml": "nvsmi_xml",
    "nvidia-smi/a100-mig-v11.xml": "nvsmi_xml",
    "nvidia-smi/nvlink-status.txt": "nvlink_status",
    "nvidia-smi/query-gpu-header-units.csv": "nvsmi_csv",
    "nvidia-smi/h200-1gpu-v13-q-x.xml": "nvsmi_xml",
    "nvidia-smi/h200-query-gpu.csv": "nvsmi_csv",
    "nvidia-smi-topo/h200-1gpu-vm.txt": "topo_matrix",
    "gpubench/h200-device0.json": "gpubench_json",
    "gpubench/h200-list.json": "gpubench_json",
    "gpubench/h200-p2p-single-gpu.json": "gpubench_json",
    "gpubench/h200-bad-arg.json": "gpubench_json",
    "nvidia-smi-topo/hgx-h100-8gpu-4nic.txt": "topo_matrix",
    "nvidia-smi-topo/old-driver-soc-4gpu.txt": "topo_matrix",
    "nccl-tests/all_reduce_perf-8gpu-info.txt": "nccl_tests",
    "nccl-tests/all_reduce_perf-old-error-column.txt": "nccl_tests",
    "nccl-tests/all_reduce_perf-wrong-results.txt": "nccl_tests",
    "nccl-tests/real-h200-1gpu-8B-1G.txt": "nccl_tests",
    "nccl-tests/real-h200-1gpu-info-1G-4G.txt": "nccl_tests",
    "perftest/ib_write_bw-report_gbits-all-sizes.txt": "perftest",
    "perftest/ib_read_bw-mb-65536.txt": "perftest",
    "perftest/ib_write_lat-all-sizes.txt": "perftest",
    "perftest/real-ib_write_bw-gbits-all-sizes-roce-cx.txt": "perftest",
    "perftest/real-ib_read_bw-mlx4-mb-all-sizes.txt": "perftest",
    "perftest/real-ib_write_lat-mlx4-all-sizes.txt": "perftest",
    "perftest/real-ib_read_lat-mlx4-all-sizes.txt": "perftest",
    "dcgmi/diag-r1-pass.txt": "dcgmi_diag",
    "dcgmi/diag-r2-fail.txt": "dcgmi_diag",
    "dcgmi/diag-r1-json.json": "dcgmi_diag",
    "dcgmi/real-diag-r1-h200-persistence-fail.txt": "dcgmi_diag",
    "dcgmi/real-diag-r2-a100-p4de-pass.txt": "dcgmi_diag",
    "xid/dmesg-T-mixed.txt": "xid",
    "xid/journalctl-k.txt": "xid",
    "fio/randrw-psync-2s.json": "fio_json",
    "fio/write-verify-warning-2s.json": "fio_json",
    "iperf3/tcp-loopback-2s.json": "iperf3_json",
    "iperf3/connection-refused.json": "iperf3_json",
    "ibv_devinfo/two-hca-v.txt": "ibv_devinfo",
    "ibv_devinfo/no-uverbs.txt": "ibv_devinfo",
    "show_gids/show_gids.txt": "gid_table",
    "lspci/vm-virtio-lspci-vvv.txt": "lspci_vvv",
    "lspci/gpu-node-lspci-vvv-nn-D.txt": "lspci_vvv",
}


@pytest.mark.parametrize(("rel", "kind"), sorted(FIXTURE_KINDS.items()))
def test_detect_kind_and_kinds_parse_every_fixture(rel: str, kind: str) -> None:
    text = fx(rel)
    assert bp.detect_kind(text) == kind
    assert bp.KINDS[kind](text)  # parses, non-empty
    assert bp.detect_kind(text.encode()) == kind  # bytes are accepted too


def test_every_fixture_dir_is_covered_and_documented() -> None:
    dirs = {rel.split("/")[0] for rel in FIXTURE_KINDS}
    for d in dirs:
        assert (FIX / d / "README.md").is_file(), f"tests/fixtures/{d}/README.md is missing"
        on_disk = {f"{d}/{p.name}" for p in (FIX / d).iterdir() if p.name != "README.md"}
        assert on_disk <= set(FIXTURE_KINDS) | {"nvidia-smi/query-gpu-noheader-nounits.csv",
                                                  "nvidia-smi/h200-query-gpubench-noheader-nounits.csv",
                                                  "nccl-tests/real-h200-invalid-gpus.txt",
                                                  "xid/real-h200-dmesg-nvrm-no-xid.txt",
                                                  "nvidia-smi/query-gpu-h100x8.csv", "xid/clean-dmesg.txt"}


@pytest.mark.parametrize("text", ["", "   \n", "hello world\nthis is not tool output\n",
                                  "<html><body>502</body></html>", '{"unrelated": true}', "\x00\x01\x02 binary"])
def test_detect_kind_garbage(text: str) -> None:
    assert bp.detect_kind(text) is None


GARBAGE = [
    "",
    "hello world\nthis is not tool output\nline 3\n",
    "<html><body>502 Bad Gateway</body></html>",
    '{"unrelated": true}',
    "\n".join(f"line {i}" for i in range(40)),
    "<?xml version='1.0'?><nvidia_smi_log><gpu><unclosed></nvidia_smi_log>",
    "#bytes",
    "| Diagnostic | Result |\n| nothing | here |",
]

PARSERS: dict[str, Callable[[Any], Any]] = {
    name: fn for name, fn in bp.KINDS.items() if name not in {"xid", "nvsmi_csv"}
}


@pytest.mark.parametrize("name", sorted(PARSERS))
@pytest.mark.parametrize("text", GARBAGE)
def test_garbage_raises_parse_error_with_head(name: str, text: str) -> None:
    with pytest.raises(bp.ParseError) as err:
        PARSERS[name](text)
    assert err.value.head == "\n".join(text.splitlines()[: bp.HEAD_LINES])
    assert "expected" in str(err.value) or "Error" in str(err.value)


def test_parse_error_head_is_the_first_ten_lines() -> None:
    text = "\n".join(f"line {i}" for i in range(40))
    with pytest.raises(bp.ParseError) as err:
        bp.parse_nccl_tests(text)
    assert err.value.head.splitlines() == [f"line {i}" for i in range(10)]
    assert "line 0" in str(err.value) and "line 11" not in str(err.value)
    assert isinstance(err.value, ValueError)


def test_non_text_input_is_a_parse_error() -> None:
    for fn in list(bp.KINDS.values()):
        if fn is bp.parse_gid_table:
            continue  # takes rows (an iterable) too
        with pytest.raises(bp.ParseError):
            fn(None)
    with pytest.raises(bp.ParseError):
        bp.parse_gid_table([{"no_index": 1}])
    with pytest.raises(bp.ParseError):
        bp.parse_nvsmi_csv("garbage without a header")
    assert bp.parse_xid("no xid here\n") == []


@pytest.mark.parametrize(("rel", "kind"), sorted(FIXTURE_KINDS.items()))
def test_truncated_fixtures_never_raise_anything_but_parse_error(rel: str, kind: str) -> None:
    text = fx(rel)
    for frac in (0.1, 0.33, 0.5, 0.77, 0.95):
        cut = text[: int(len(text) * frac)]
        with contextlib.suppress(bp.ParseError):
            bp.KINDS[kind](cut)


def test_nccl_tests_real_h200_output():
    """Real all_reduce_perf 2.19.6 output (NCCL 2.28.3) from one H200: the version line before the header, one
    rank, busbw 0 by definition, 'Avg bus bandwidth : 0', algbw printed as 3e+06 for the in-place rows."""
    r = bp.parse_nccl_tests(fx("nccl-tests/real-h200-1gpu-8B-1G.txt"))
    assert r["test"] == "all_reduce_perf" and r["header"]["nGpus"] == 1 and len(r["rows"]) == 14
    assert r["devices"] == [{"rank": 0, "group": 0, "pid": 664, "host": "vm", "device": 0, "bus": "0000:00:06",
                             "name": "NVIDIA H200"}]
    last = r["rows"][-1]
    assert last["size"] == 536870912 and last["out_of_place"]["algbw_gbps"] == 2096.7
    assert last["in_place"]["algbw_gbps"] == 3e6 and r["max_busbw_gbps"] == 0.0
    assert r["out_of_bounds"] == {"count": 0, "ok": True} and r["wrong_total"] == 0
    info = bp.parse_nccl_tests(fx("nccl-tests/real-h200-1gpu-info-1G-4G.txt"))  # NCCL INFO lines interleaved
    assert [row["size"] for row in info["rows"]] == [1 << 30, 2 << 30, 4 << 30]


def test_nccl_tests_real_failure_is_a_parse_error_showing_the_cause():
    with pytest.raises(bp.ParseError) as e:
        bp.parse_nccl_tests(fx("nccl-tests/real-h200-invalid-gpus.txt"))
    assert "Invalid number of GPUs: 2 requested but only 1 were found" in e.value.head


def test_real_nvrm_lines_without_xid_are_no_events():
    text = fx("xid/real-h200-dmesg-nvrm-no-xid.txt")
    assert "NVRM: loading NVIDIA UNIX Open Kernel Module" in text
    assert bp.parse_xid(text) == [] and bp.fatal_xids(bp.parse_xid(text)) == []
