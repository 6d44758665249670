"""The monitoring role on a GPU node (stand-in nvidia-smi printing a documented 8x H100 CSV): the nvidia-smi
exporter runs on its timer, sandboxed, and its metrics reach the node exporter's scrape."""

import re
import time

EXPOSURE_MAX = 3.0


def scrape(host):
    out = host.run("python3 -c \"import urllib.request; "
                   "print(urllib.request.urlopen('http://127.0.0.1:9100/metrics', timeout=5).read().decode())\"")
    assert out.rc == 0, out.stderr
    return out.stdout


def test_exporter_installed(host):
    f = host.file("/usr/local/lib/baremetal-ai/nvidia_smi_exporter.py")
    assert (f.user, f.mode) == ("root", 0o755)
    assert host.file("/etc/systemd/system/nvidia-smi-exporter.service").mode == 0o644


def test_timer_active_and_service_succeeds(host):
    assert host.service("nvidia-smi-exporter.timer").is_enabled
    assert host.check_output("systemctl is-active nvidia-smi-exporter.timer") == "active"
    host.run("systemctl start nvidia-smi-exporter.service")
    assert host.check_output("systemctl show -p Result --value nvidia-smi-exporter.service") == "success"


def test_textfile_written(host):
    f = host.file("/var/lib/prometheus/node-exporter/nvidia_smi.prom")
    assert (f.user, f.mode) == ("root", 0o644)
    text = f.content_string
    assert "nvidia_smi_up 1" in text and "nvidia_smi_gpus 8" in text
    assert 'nvidia_smi_utilization_gpu_ratio{gpu="3",uuid="GPU-00000003-8a51-4b7a-9d1e-2c4b6a8f0e03"} 0.97' in text


def test_timer_refreshes_the_file(host):
    before = host.check_output("stat -c %Y /var/lib/prometheus/node-exporter/nvidia_smi.prom")
    time.sleep(7)  # interval 5 s in this scenario
    assert host.check_output("stat -c %Y /var/lib/prometheus/node-exporter/nvidia_smi.prom") != before


def test_gpu_metrics_in_scrape(host):
    text = scrape(host)
    # the node exporter re-renders values (8.5520809984e+10): compare numbers, not text
    total = re.search(r'^nvidia_smi_memory_total_bytes\{gpu="0",uuid="[^"]+"\} (\S+)$', text, re.M)
    assert total and float(total.group(1)) == 81559 * 1048576
    assert "nvidia_smi_up 1" in text
    assert 'nvidia_smi_gpu_info{driver_version="535.183.01",gpu="7"' in text


def test_exporter_sandboxed(host):
    props = dict(line.split("=", 1) for line in host.check_output(
        "systemctl show nvidia-smi-exporter.service -p ProtectSystem -p ReadWritePaths -p PrivateNetwork "
        "-p NoNewPrivileges").splitlines())
    assert props["ProtectSystem"] == "strict"
    assert props["ReadWritePaths"] == "/var/lib/prometheus/node-exporter"
    assert props["PrivateNetwork"] == "yes" and props["NoNewPrivileges"] == "yes"
    out = host.check_output("systemd-analyze security --no-pager nvidia-smi-exporter.service")
    assert float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out).group(1)) <= EXPOSURE_MAX
