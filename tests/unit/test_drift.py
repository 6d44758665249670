"""The watch stage without a lab: library/drift_facts.py (parsers, comparison, main() on a fake root),
plugins/callback/baremetal_drift.py (report, verdicts, Markdown, JUnit) and a real ansible-playbook run of a
small drift-shaped playbook on a local host, which proves check mode changes nothing, diffs are collected,
no_log hides secrets, and the exit status follows the verdict."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest
from ansible.module_utils.testing import patch_module_args

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


df = load(ROOT / "library" / "drift_facts.py", "bm_library_drift_facts")
cb = load(ROOT / "plugins" / "callback" / "baremetal_drift.py", "bm_callback_baremetal_drift")

MOUNTINFO = """\
25 1 0:21 / / rw,relatime - overlay overlay rw,lowerdir=/l/A:/l/B,upperdir=/u,workdir=/w
26 25 0:22 / /proc rw,nosuid - proc proc rw
27 25 0:23 / /sys ro - sysfs sysfs ro
28 25 9:0 / /data rw,noatime - xfs /dev/md0 rw,attr2,inode64
29 25 0:24 / /dev/shm rw,nosuid,nodev - tmpfs shm rw,size=64000k
30 27 0:25 / /sys/fs/cgroup rw - tmpfs tmpfs rw
31 25 8:1 / /mnt/with\\040space rw - ext4 /dev/sda1 rw
"""


# ------------------------------------------------------------------------------------------ drift_facts parsers

def test_parse_mountinfo_keeps_real_filesystems_only():
    m = df.parse_mountinfo(MOUNTINFO)
    assert m == {"/": "overlay overlay", "/data": "xfs /dev/md0 rw,noatime", "/dev/shm": "tmpfs shm rw,nosuid,nodev",
                 "/mnt/with space": "ext4 /dev/sda1 rw"}


def test_parse_dpkg_installed_and_held_only():
    text = ("jq\t1.6-2.1\tii \nlibnccl2\t2.21.5-1+cuda12.4\thi \nold\t1.0\trc \nhalf\t2.0\tiU \n"
            "nvidia-driver\t535.183.01-1\tii \n")
    assert df.parse_dpkg(text) == {"jq": "1.6-2.1", "libnccl2": "2.21.5-1+cuda12.4 hold",
                                   "nvidia-driver": "535.183.01-1"}


def test_parse_services_enabled_non_template_with_state():
    listed = "ssh.service enabled enabled\ngetty@.service enabled enabled\nnode-exp.service enabled enabled\n"
    shown = "Id=ssh.service\nActiveState=active\n\nId=node-exp.service\nActiveState=inactive\n"
    assert df.parse_services(listed, shown) == {"node-exp": "enabled/inactive", "ssh": "enabled/active"}


def test_parse_sysctl_conf_later_files_win_and_comments_ignored():
    a = "# c\nnet.core.rmem_max = 1\n; x\n-net/core/wmem_max=2\n"
    b = "net.core.rmem_max=3\nnet.ipv4.tcp_rmem = 4096  87380\t134217728\n"
    assert df.parse_sysctl_conf([a, b]) == {"net.core.rmem_max": "3", "net.core.wmem_max": "2",
                                            "net.ipv4.tcp_rmem": "4096 87380 134217728"}


def test_parse_gpu_csv_count_models_driver_and_width_per_bus_id():
    text = ("0, 00000000:18:00.0, NVIDIA H100 80GB HBM3, 570.86.15, 16, 16\n"
            "1, 00000000:2A:00.0, NVIDIA H100 80GB HBM3, 570.86.15, 8, 16\n")
    items = df.parse_gpu_csv(text)
    assert items["gpu.count"] == 2
    assert items["gpu.models"] == "NVIDIA H100 80GB HBM3"
    assert items["gpu.driver_version"] == "570.86.15"
    assert items["gpu.00000000:2a:00.0.pcie_width"] == "x8/x16"


# ------------------------------------------------------------------------------------------ comparison

BASE = {"schema_version": 1, "items": {"mtu.eth1": 9000, "package.jq": "1.6", "service.ssh": "enabled/active",
                                       "gpu.count": 8, "sysctl.net.core.rmem_max": "134217728"}}


def test_compare_equal_is_empty_and_numbers_compare_as_numbers():
    cur = dict(BASE["items"])
    assert df.compare(BASE, {"mtu.eth1": "9000"}, cur, [], ["nvidia-*"]) == []


def test_compare_names_each_changed_removed_and_new_item():
    cur = {"mtu.eth1": 1500, "service.ssh": "enabled/inactive", "gpu.count": 7,
           "sysctl.net.core.rmem_max": "134217728", "package.fio": "3.33", "package.nvidia-driver": "570",
           "mount./data": "xfs /dev/md0 rw"}
    diffs = {d["item"]: d for d in df.compare(BASE, {}, cur, [], ["nvidia-*"])}
    assert diffs["mtu.eth1"]["baseline"] == 9000 and diffs["mtu.eth1"]["current"] == 1500
    assert diffs["package.jq"]["current"] is None  # removed
    assert diffs["gpu.count"]["current"] == 7
    assert diffs["service.ssh"]["current"] == "enabled/inactive"
    assert "package.nvidia-driver" in diffs  # a new GPU-stack package is drift
    assert "mount./data" in diffs  # a new mount is drift
    assert "package.fio" not in diffs  # a new benchmark tool is not


def test_compare_declared_wins_over_recorded_and_ignore_patterns():
    cur = dict(BASE["items"], **{"gpu.count": 8})
    diffs = df.compare(BASE, {"gpu.count": 7}, cur, [], [])
    assert diffs == [{"item": "gpu.count", "baseline": 7, "current": 8, "source": "inventory"}]
    assert df.compare(BASE, {"gpu.count": 7}, cur, ["gpu.*"], []) == []


def test_compare_without_baseline_is_never_clean_unless_told():
    diffs = df.compare(None, {"mtu.eth1": 9000}, {"mtu.eth1": 9000}, [], [])
    assert [d["item"] for d in diffs] == ["baseline"]
    assert "no baseline" in diffs[0]["reason"]
    assert df.compare(None, {"mtu.eth1": 9000}, {"mtu.eth1": 9000}, [], [], require_baseline=False) == []
    assert df.compare(None, {"mtu.eth1": 9000}, {"mtu.eth1": 1500}, [], [], require_baseline=False)[0]["current"] \
        == 1500


# ------------------------------------------------------------------------------------------ main() on a fake root

@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    (tmp_path / "sys/class/net/eth1/device").mkdir(parents=True)
    (tmp_path / "sys/class/net/eth1/mtu").write_text("9000\n")
    (tmp_path / "sys/class/net/eth1/device/current_link_width").write_text("16\n")
    (tmp_path / "sys/class/net/eth1/device/max_link_width").write_text("16\n")
    (tmp_path / "sys/class/net/lo").mkdir(parents=True)
    (tmp_path / "sys/class/net/lo/mtu").write_text("65536\n")
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/mountinfo").write_text(MOUNTINFO)
    (tmp_path / "proc/cmdline").write_text("BOOT_IMAGE=/vmlinuz iommu=pt\n")
    (tmp_path / "proc/sys/kernel").mkdir(parents=True)
    (tmp_path / "proc/sys/kernel/osrelease").write_text("6.1.0-28-amd64\n")
    (tmp_path / "proc/sys/net/core").mkdir(parents=True)
    (tmp_path / "proc/sys/net/core/rmem_max").write_text("212992\n")
    (tmp_path / "etc/sysctl.d").mkdir(parents=True)
    (tmp_path / "etc/sysctl.d/90-x.conf").write_text("net.core.rmem_max = 134217728\n")
    (tmp_path / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (tmp_path / "usr/lib/x86_64-linux-gnu/libnccl.so.2.21.5").write_text("")
    return tmp_path


def run_main(args: dict, monkeypatch) -> dict:
    # No nvidia-smi, dpkg-query or systemctl: the fake root is all there is.
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(df.AnsibleModule, "get_bin_path", lambda self, *a, **k: None)
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        df.main()
    assert exc.value.code in (0, 1)
    return exc.value.code


def capture(monkeypatch, args: dict) -> dict:
    out: dict = {}

    def exit_json(self, **kw):
        out.update(kw)
        raise SystemExit(0)

    def fail_json(self, **kw):
        out.update(kw, failed=True)
        raise SystemExit(1)

    monkeypatch.setattr(df.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(df.AnsibleModule, "fail_json", fail_json)
    run_main(args, monkeypatch)
    return out


def test_main_snapshot_items_from_the_fake_root(fake_root, monkeypatch):
    out = capture(monkeypatch, {"sysfs_root": str(fake_root)})
    items = out["items"]
    assert out["changed"] is False and "differences" not in out
    assert items["mtu.eth1"] == 9000 and "mtu.lo" not in items
    assert items["pcie.eth1.width"] == "x16/x16"
    assert items["kernel.cmdline"] == "BOOT_IMAGE=/vmlinuz iommu=pt"
    assert items["kernel.release"] == "6.1.0-28-amd64"
    assert items["sysctl_conf.net.core.rmem_max"] == "134217728"
    assert items["sysctl.net.core.rmem_max"] == "212992"
    assert items["nccl.version"] == "2.21.5"
    assert items["gpu.count"] == 0
    assert items["mount./data"] == "xfs /dev/md0 rw,noatime"


def test_nccl_version_of_the_wheel_layout(tmp_path):
    # The nccl role's wheel source: /opt/nccl/<version>/lib/libnccl.so.2 and /opt/nccl/current -> <version>.
    (tmp_path / "opt/nccl/2.21.5/lib").mkdir(parents=True)
    (tmp_path / "opt/nccl/2.21.5/lib/libnccl.so.2").write_text("")
    assert df.library_versions(str(tmp_path))["nccl.version"] is None  # no current link: not the role's layout
    (tmp_path / "opt/nccl/current").symlink_to("2.21.5")
    assert df.library_versions(str(tmp_path))["nccl.version"] == "2.21.5"
    (tmp_path / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (tmp_path / "usr/lib/x86_64-linux-gnu/libnccl.so.2.28.3").write_text("")  # a packaged NCCL beside it
    assert df.library_versions(str(tmp_path))["nccl.version"] == "2.21.5, 2.28.3"
    (tmp_path / "opt/nccl/current").unlink()
    (tmp_path / "opt/nccl/current").symlink_to("/opt/nccl/not-a-version")
    assert df.library_versions(str(tmp_path))["nccl.version"] == "2.28.3"


def test_main_compare_reports_changed_with_a_diff(fake_root, monkeypatch):
    snap = capture(monkeypatch, {"sysfs_root": str(fake_root)})
    (fake_root / "sys/class/net/eth1/mtu").write_text("1500\n")
    out = capture(monkeypatch, {"sysfs_root": str(fake_root), "compare": True,
                                "baseline": {"schema_version": 1, "items": snap["items"]}})
    assert out["changed"] is True and out["baseline_missing"] is False
    assert out["differences"] == [{"item": "mtu.eth1", "baseline": 9000, "current": 1500, "source": "baseline"}]
    assert "mtu.eth1: 9000" in out["diff"]["before"] and "mtu.eth1: 1500" in out["diff"]["after"]


def test_main_rejects_a_baseline_of_another_schema(fake_root, monkeypatch):
    out = capture(monkeypatch, {"sysfs_root": str(fake_root), "compare": True,
                                "baseline": {"schema_version": 7, "items": {}}})
    assert out["failed"] and "baseline.schema_version" in out["msg"]
    out = capture(monkeypatch, {"sysfs_root": str(fake_root), "compare": True,
                                "baseline": {"schema_version": 1, "items": [1]}})
    assert out["failed"] and "baseline.items" in out["msg"]


def test_ansible_doc_renders_the_module_and_the_callback():
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg")}
    mod = subprocess.run([str(BIN / "ansible-doc"), "-M", str(ROOT / "library"), "--json", "drift_facts"],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=120)
    assert mod.returncode == 0, mod.stderr
    assert "compare" in json.loads(mod.stdout)["drift_facts"]["doc"]["options"]
    cbdoc = subprocess.run([str(BIN / "ansible-doc"), "-t", "callback", "--json", "baremetal_drift"], cwd=ROOT,
                           env=env, capture_output=True, text=True, check=False, timeout=120)
    assert cbdoc.returncode == 0, cbdoc.stderr
    assert json.loads(cbdoc.stdout)["baremetal_drift"]["doc"]["name"] == "baremetal_drift"


# ------------------------------------------------------------------------------------------ callback report

def host(**kw) -> dict:
    h = {"seen": True, "changes": [], "facts": [], "failed_tasks": [], "unreachable": None, "facts_checked": True}
    h.update(kw)
    return h


def test_verdict_precedence_and_statuses():
    clean = host()
    drift = host(facts=[{"item": "mtu.eth1", "baseline": 9000, "current": 1500, "source": "inventory"}])
    unreach = host(unreachable="ssh: connect to host 10.0.0.1 port 22: No route to host")
    silent = host(seen=False, facts_checked=False)
    assert cb.verdict({"a": clean}) == "clean"
    assert cb.verdict({"a": clean, "b": drift}) == "drift"
    assert cb.verdict({"a": clean, "b": drift, "c": host(failed_tasks=[{"task": "t", "msg": "m"}])}) == "error"
    assert cb.verdict({"a": clean, "b": drift, "c": unreach}) == "unreachable"
    assert cb.verdict({"a": clean, "d": silent}) == "unreachable"  # no result is never drift-free
    assert cb.verdict({"a": host(facts_checked=False)}) == "drift"  # comparison did not run: not clean
    assert cb.verdict({}) == "error"


def test_report_markdown_and_junit_name_host_and_item(tmp_path):
    hosts = {"n1": host(changes=[{"task": "common : Install", "role": "common", "action": "ansible.builtin.apt",
                                  "item": None, "diff": "+ jq", "handler": False}],
                        facts=[{"item": "package.jq", "baseline": "1.6", "current": None, "source": "baseline"}]),
             "n2": host(), "n3": host(unreachable="Failed to connect", seen=True)}
    rep = cb.build_report("r1", "2026-11-27T00:00:00Z", 12.34, "drift.yml", True, hosts, finished=True)
    assert rep["schema_version"] == 1 and rep["verdict"] == "unreachable"
    assert rep["counts"] == {"drift": 1, "clean": 1, "unreachable": 1}
    assert rep["hosts"]["n1"]["status"] == "drift"
    path = cb.write_report(rep, str(tmp_path))
    assert json.loads(Path(path).read_text())["hosts"]["n3"]["status"] == "unreachable"
    md = (tmp_path / "r1.md").read_text()
    assert "| n1 | drift | 1 | 1 |" in md and "`package.jq`" in md and "(absent)" in md and "## n3: unreachable" in md
    suite = ET.parse(tmp_path / "r1.junit.xml").getroot()
    assert suite.get("tests") == "3" and suite.get("failures") == "1" and suite.get("errors") == "1"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert "differs: package.jq" in cases["n1"].find("failure").text
    assert cases["n3"].find("error").get("type") == "unreachable"
    assert cases["n2"].find("failure") is None and cases["n2"].find("error") is None


# ------------------------------------------------------------------------------------------ a real run

PLAYBOOK = """\
- name: start
  hosts: localhost
  gather_facts: false
  vars: {baremetal_drift_run: true}
  tasks:
    - ansible.builtin.set_fact:
        baremetal_drift: {run_id: "{{ rid }}", dir: "{{ out }}"}
- name: converge
  hosts: nodes
  gather_facts: false
  tasks:
    - name: Render the config
      ansible.builtin.copy: {content: "mtu = 9000\\n", dest: "{{ out }}/{{ inventory_hostname }}.conf", mode: "0644"}
    - name: Write the secret
      ansible.builtin.copy: {content: "{{ secret }}\\n", dest: "{{ out }}/{{ inventory_hostname }}.key", mode: "0600"}
      no_log: true
    - name: Compare
      drift_facts: {compare: true, require_baseline: false, declared: "{{ declared }}"}
- name: verdict
  hosts: localhost
  gather_facts: false
  vars:
    report: "{{ lookup('ansible.builtin.file', out ~ '/' ~ rid ~ '.json') | from_json }}"
  tasks:
    - ansible.builtin.fail: {msg: "{{ report.verdict }}"}
      when: report.verdict != 'clean'
"""


def run_local(tmp: Path, rid: str, declared: dict) -> subprocess.CompletedProcess[str]:
    (tmp / "pb.yml").write_text(PLAYBOOK)
    (tmp / "hosts.yml").write_text(
        "nodes:\n  hosts:\n    fake1:\n      ansible_connection: local\n"
        f"      ansible_python_interpreter: {sys.executable}\n")
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_BECOME": "false",
           "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_LOCALHOST_WARNING": "false"}
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", str(tmp / "hosts.yml"), str(tmp / "pb.yml"),
                           "--check", "--diff", "-e", f"rid={rid}", "-e", f"out={tmp}", "-e",
                           "secret=hunter2-s3cr3t", "-e", f"ansible_python_interpreter={sys.executable}",
                           "-e", json.dumps({"declared": declared})],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=300)


def test_real_run_collects_diffs_hides_no_log_and_fails_on_drift(tmp_path):
    proc = run_local(tmp_path, "run1", {"mtu.bm-no-such-if0": 9000})
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert not (tmp_path / "fake1.conf").exists(), "check mode must not change anything"
    rep = json.loads((tmp_path / "run1.json").read_text())
    h = rep["hosts"]["fake1"]
    assert rep["verdict"] == "drift"
    tasks = {c["task"]: c for c in h["changes"]}
    assert "mtu = 9000" in tasks["Render the config"]["diff"]
    assert tasks["Write the secret"]["diff"] == cb.HIDDEN
    for suffix in (".json", ".md", ".junit.xml"):
        assert "hunter2-s3cr3t" not in (tmp_path / f"run1{suffix}").read_text()
    assert h["status"] == "drift"
    assert h["facts"] == [{"item": "mtu.bm-no-such-if0", "baseline": 9000, "current": None, "source": "inventory"}]
    assert rep["summary_lines"][0].startswith("fake1: drift (2 task(s) would change, 1 fact(s) differ)")


def test_real_run_is_clean_when_nothing_would_change(tmp_path):
    (tmp_path / "fake1.conf").write_text("mtu = 9000\n")
    (tmp_path / "fake1.key").write_text("hunter2-s3cr3t\n")
    os.chmod(tmp_path / "fake1.key", 0o600)
    proc = run_local(tmp_path, "run2", {})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    rep = json.loads((tmp_path / "run2.json").read_text())
    assert rep["verdict"] == "clean" and rep["hosts"]["fake1"] == {
        "status": "clean", "changes": [], "facts": [], "failed_tasks": [], "unreachable": None,
        "baseline_missing": True}
