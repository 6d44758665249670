"""The monitoring role on a node without GPUs: the node exporter really runs, hardened, and answers on
127.0.0.1:9100 with the textfile collector; no GPU exporter."""

import json
import re
import time

EXPOSURE_MAX = 3.0


def scrape(host):
    out = host.run("python3 -c \"import urllib.request; "
                   "print(urllib.request.urlopen('http://127.0.0.1:9100/metrics', timeout=5).read().decode())\"")
    assert out.rc == 0, out.stderr
    return out.stdout


def exposure(host, unit):
    out = host.check_output(f"systemd-analyze security --no-pager {unit}")
    return float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out).group(1))


def test_node_exporter_running(host):
    assert host.package("prometheus-node-exporter").is_installed
    svc = host.service("prometheus-node-exporter")
    assert svc.is_running and svc.is_enabled
    assert host.socket("tcp://0.0.0.0:9100").is_listening or host.socket("tcp://:::9100").is_listening


def test_node_exporter_flags(host):
    text = host.file("/etc/default/prometheus-node-exporter").content_string
    assert 'ARGS="--web.listen-address=:9100 --collector.textfile.directory=/var/lib/prometheus/node-exporter"' in text
    cmdline = host.check_output("cat /proc/$(systemctl show -p MainPID --value prometheus-node-exporter)/cmdline")
    assert "--collector.textfile.directory=/var/lib/prometheus/node-exporter" in cmdline.replace("\0", " ")


def test_textfile_dir(host):
    d = host.file("/var/lib/prometheus/node-exporter")
    assert d.is_directory and (d.user, d.group, d.mode) == ("root", "root", 0o755)


def test_metrics_served_with_textfile(host):
    # a validation module's file appears in the scrape: the path from textfile dir to Prometheus works
    host.run("printf '# TYPE bmai_molecule_probe gauge\\nbmai_molecule_probe 42\\n' "
             "> /var/lib/prometheus/node-exporter/bmai_molecule_probe.prom")
    try:
        text = scrape(host)
        assert "node_exporter_build_info" in text
        assert 'node_scrape_collector_success{collector="textfile"} 1' in text
        assert "bmai_molecule_probe 42" in text
    finally:
        host.run("rm -f /var/lib/prometheus/node-exporter/bmai_molecule_probe.prom")


def test_node_exporter_hardened(host):
    dropin = host.file("/etc/systemd/system/prometheus-node-exporter.service.d/50-baremetal-ai-hardening.conf")
    assert dropin.mode == 0o644
    props = dict(line.split("=", 1) for line in host.check_output(
        "systemctl show prometheus-node-exporter -p ProtectSystem -p NoNewPrivileges -p PrivateTmp "
        "-p ProtectHome -p CapabilityBoundingSet -p DropInPaths").splitlines())
    assert props["ProtectSystem"] == "strict"
    assert props["NoNewPrivileges"] == "yes" and props["PrivateTmp"] == "yes" and props["ProtectHome"] == "yes"
    assert props["CapabilityBoundingSet"] == ""
    assert "50-baremetal-ai-hardening.conf" in props["DropInPaths"]
    assert exposure(host, "prometheus-node-exporter.service") <= EXPOSURE_MAX
    # the sandbox does not break collectors: still running after a scrape (a seccomp kill would restart it)
    pid = host.check_output("systemctl show -p MainPID --value prometheus-node-exporter")
    scrape(host)
    time.sleep(1)
    assert host.check_output("systemctl show -p MainPID --value prometheus-node-exporter") == pid


def test_no_gpu_exporter_without_gpus(host):
    assert not host.file("/etc/systemd/system/nvidia-smi-exporter.timer").exists
    assert not host.file("/usr/local/lib/baremetal-ai/nvidia_smi_exporter.py").exists
    assert not host.file("/var/lib/prometheus/node-exporter/nvidia_smi.prom").exists
    assert json.loads(host.check_output("systemctl list-timers --all --output=json")) is not None
