"""Unit tests of the lab's pure parts: mirrors, image hash, ports, TLS, credentials, inventory, the power
bridge's decisions, PID-file safety, naming and CLI errors. No podman needed."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest
import yaml
from cryptography import x509

from baremetal_ai import cli
from baremetal_ai.errors import UserError
from baremetal_ai.lab import bmc, bridge, core, image, inventory, procs, tls

DEB822 = """Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_mirrors_from_deb822(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    (tmp_path / "sources.list.d" / "other.list").write_text("deb https://packages.example/apt stable main\n")
    m = image.host_mirrors(tmp_path)
    assert m == image.Mirrors("http://mirror.example/debian", "http://mirror.example/debian-security")


def test_mirrors_from_one_line_list_and_default_security(tmp_path):
    (tmp_path / "sources.list").write_text("# comment\ndeb [arch=amd64] http://m.example/debian bookworm main\n")
    m = image.host_mirrors(tmp_path)
    assert m.main == "http://m.example/debian"
    assert m.security == "http://m.example/debian-security"


def test_mirrors_fallback_when_nothing_configured(tmp_path):
    assert image.host_mirrors(tmp_path).main == image.DEFAULT_MIRROR


def test_recipe_hash_follows_recipe_content(tmp_path, monkeypatch):
    recipe = tmp_path / "node-image"
    recipe.mkdir()
    (recipe / "Containerfile").write_text("FROM x\n")
    monkeypatch.setattr(image, "RECIPE_DIR", recipe)
    m = image.Mirrors("http://a/debian", "http://a/debian-security")
    h1 = image.recipe_hash(m)
    assert h1 == image.recipe_hash(m)
    (recipe / "Containerfile").write_text("FROM x\nRUN true\n")
    assert image.recipe_hash(m) != h1
    assert image.recipe_hash(image.Mirrors("http://b/debian", m.security)) != image.recipe_hash(m)


def test_explicit_taken_port_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(UserError, match=rf"port {port} .* taken: pass --bmc-port"):
            bmc.pick_port(port, set())


def test_auto_port_skips_ports_of_other_labs():
    first = bmc.pick_port(None, set())
    assert bmc.pick_port(None, {first}) != first


def test_tls_chain_verifies_and_key_is_private(tmp_path):
    ca_p, cert_p, key_p = tls.make_ca_and_server_cert(tmp_path, "t")
    ca = x509.load_pem_x509_certificate(ca_p.read_bytes())
    cert = x509.load_pem_x509_certificate(cert_p.read_bytes())
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    assert key_p.stat().st_mode & 0o777 == 0o600
    assert not list(tmp_path.glob("ca.key")), "the CA key must not be kept"


def test_tls_served_by_a_real_server_verifies_with_the_ca(tmp_path):
    """openssl s_server with our cert, verified by Python's ssl against our CA (what clients do)."""
    import ssl

    ca_p, cert_p, key_p = tls.make_ca_and_server_cert(tmp_path, "t")
    ctx = ssl.create_default_context(cafile=str(ca_p))
    srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    srv.load_cert_chain(cert_p, key_p)
    with socket.socket() as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen()
        port = ls.getsockname()[1]
        import threading

        def serve() -> None:
            conn, _ = ls.accept()
            with srv.wrap_socket(conn, server_side=True) as s:
                s.recv(1)

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        with socket.create_connection(("127.0.0.1", port)) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as c:
            assert c.version()
            c.send(b"x")
        t.join(5)


def test_credentials_are_random_private_and_bcrypt(tmp_path):
    user, pw = tls.make_credentials(tmp_path)
    _, pw2 = tls.make_credentials(tmp_path / "b")
    assert pw != pw2 and len(pw) >= 20
    name, hashed = (tmp_path / "htpasswd").read_text().strip().split(":", 1)
    assert name == user and bcrypt.checkpw(pw.encode(), hashed.encode())
    for f in ("password", "htpasswd"):
        assert (tmp_path / f).stat().st_mode & 0o777 == 0o600


def _state(lab: core.Lab) -> dict:
    return {
        "name": lab.name,
        "networks": {"fabric": {"mtu": 9000}},
        "bmc": {"endpoint": "https://127.0.0.1:8000", "username": "admin", "ca_file": "/x/ca.pem"},
        "nodes": [{"name": f"{lab.name}-node{i}", "mgmt_ip": f"10.0.0.{10 + i}", "mgmt_interface": "eth0",
                   "fabric_interface": "eth1", "fabric_ip": f"10.0.1.{10 + i}", "fabric_prefix": 24,
                   "bmc_system_id": f"id{i}", "mgmt_mac": f"52:54:00:00:00:0{i}"} for i in (1, 2)],
    }


def _write_lab_inventory(tmp_path: Path, name: str, password: str) -> core.Lab:
    lab = core.Lab(name, root=tmp_path)
    lab.bmc_dir.mkdir(parents=True)
    (lab.bmc_dir / "password").write_text(password)
    inventory.write(lab, _state(lab))
    return lab


def test_inventory_contract_and_no_secret(tmp_path):
    lab = _write_lab_inventory(tmp_path, "t1", "s3cret-value")
    files = sorted(p.relative_to(lab.inventory_dir).as_posix() for p in lab.inventory_dir.rglob("*") if p.is_file())
    assert files == ["group_vars/all.yml", "lab.baremetal_pulumi.yml"]
    text = "".join((lab.inventory_dir / f).read_text() for f in files)
    outputs = (lab.state_dir / "stack-outputs.json").read_text()
    assert "s3cret-value" not in text + outputs
    out = json.loads(outputs)
    assert out["nodes_schema_version"] == 1
    assert [n["name"] for n in out["nodes"]] == ["t1-node1", "t1-node2"]
    assert out["nodes"][0]["fabric_address"] == "10.0.1.11/24" and out["nodes"][0]["mtu"] == 9000
    gv = yaml.safe_load((lab.inventory_dir / "group_vars/all.yml").read_text())
    assert "UserKnownHostsFile=" in gv["ansible_ssh_common_args"]
    assert "StrictHostKeyChecking=no" not in text


def test_storage_key_is_random_private_and_kept(tmp_path):
    lab, other = core.Lab("k1", root=tmp_path), core.Lab("k2", root=tmp_path)
    path = core.ensure_storage_key(lab)
    assert path == lab.state_dir / "storage-luks.key"  # next to the lab's other secrets, removed by `lab down`
    assert path.stat().st_mode & 0o777 == 0o600
    key = path.read_bytes()
    assert len(key) == 64 and key != core.ensure_storage_key(other).read_bytes()
    core.ensure_storage_key(lab)  # a second `lab up` (or inventory rewrite) keeps the key the nodes hold
    assert path.read_bytes() == key


def test_inventory_declares_encrypted_storage_by_key_path_only(tmp_path):
    lab = core.Lab("t3", root=tmp_path)
    key = core.ensure_storage_key(lab).read_bytes()
    lab.bmc_dir.mkdir(parents=True)
    (lab.bmc_dir / "password").write_text("pw")
    inventory.write(lab, _state(lab))
    gv = yaml.safe_load((lab.inventory_dir / "group_vars/all.yml").read_text())
    assert gv["storage_enabled"] is True and gv["storage_encrypt"] is True
    assert gv["storage_devices"] == ["/dev/nvme1n1", "/dev/nvme2n1"]
    assert gv["storage_luks_key_src"] == str(lab.state_dir / "storage-luks.key")
    assert "storage_luks_key" not in gv  # the key itself is never in the inventory, only its file's path
    raw = b"".join(p.read_bytes() for p in lab.inventory_dir.rglob("*") if p.is_file())
    raw += (lab.state_dir / "stack-outputs.json").read_bytes()
    for form in (key, key.hex().encode(), base64.b64encode(key)):
        assert form not in raw


def test_inventory_gpu_stack_on_by_default_and_off_on_request(tmp_path):
    lab = core.Lab("g1", root=tmp_path)
    lab.bmc_dir.mkdir(parents=True)
    (lab.bmc_dir / "password").write_text("pw")
    inventory.write(lab, {**_state(lab), "gpu_stack": True})  # what `lab up` records by default
    gv = yaml.safe_load((lab.inventory_dir / "group_vars/all.yml").read_text())
    # Nodes declare no GPU (stack outputs say so) and still get the stack: Debian's driver, the stand-in CUDA
    # repository that the lab manages (not the role), NCCL's checksum-pinned wheel.
    assert json.loads((lab.state_dir / "stack-outputs.json").read_text())["nodes"][0]["gpu_count"] == 0
    assert gv["gpu_stack_enabled"] is True
    assert (gv["nvidia_driver_source"], gv["nvidia_driver_branch"]) == ("distro", "535")
    assert (gv["cuda_source"], gv["cuda_repo_manage"], gv["cuda_version"]) == ("cuda_repo", False, "12.2")
    assert gv["nccl_source"] == "wheel" and len(gv["nccl_wheel_sha256"]["x86_64"]) == 64
    # --no-gpu-stack, and a lab created before the stack came to the lab (no "gpu_stack" in its state, no
    # repository mounted in its nodes): without
    for state in ({**_state(lab), "gpu_stack": False}, _state(lab)):
        inventory.write(lab, state)
        gv = yaml.safe_load((lab.inventory_dir / "group_vars/all.yml").read_text())
        assert gv["gpu_stack_enabled"] is False
        assert not [k for k in gv if k.startswith(("nvidia_driver_", "cuda_", "nccl_"))]


def test_up_refuses_to_change_the_gpu_stack_of_an_up_lab(tmp_path, monkeypatch):
    monkeypatch.setattr(core, "_require_root", lambda: None)
    monkeypatch.setattr(core.podman, "require_podman", lambda: None)
    monkeypatch.setattr(core.podman, "containers", lambda name: [])
    monkeypatch.setattr(core.podman, "networks", lambda name: [])
    monkeypatch.setattr(core, "project_root", lambda: tmp_path)
    lab = core.Lab("g2", root=tmp_path)
    lab.save({**_state(lab), "status": "up", "gpu_stack": True})
    with pytest.raises(UserError, match=r"already up with the GPU software stack.*lab down --name g2"):
        core.up("g2", nodes=2, gpu_stack=False)
    lab.save({k: v for k, v in {**_state(lab), "status": "up"}.items() if k != "gpu_stack"})  # an older lab
    with pytest.raises(UserError, match=r"already up without the GPU software stack"):
        core.up("g2", nodes=2)


def test_inventory_parses_with_ansible_and_the_plugin(tmp_path):
    """The lab inventory goes through the real baremetal_pulumi plugin, as a declared cluster's would."""
    lab = _write_lab_inventory(tmp_path, "t2", "pw")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "ANSIBLE_CONFIG": str(root / "ansible.cfg")}
    out = subprocess.run([str(Path(sys.executable).with_name("ansible-inventory")), "-i", str(lab.inventory_dir),
                          "--list"], capture_output=True, text=True, check=True, cwd=root, env=env).stdout
    inv = json.loads(out)
    assert sorted(inv["gpu_nodes"]["hosts"]) == ["t2-node1", "t2-node2"]
    # Values from stack outputs are marked unsafe (never templated): --list shows them wrapped.
    hv = {k: v["__ansible_unsafe"] if isinstance(v, dict) and "__ansible_unsafe" in v else v
          for k, v in inv["_meta"]["hostvars"]["t2-node2"].items()}
    assert hv["ansible_host"] == "10.0.0.12" and hv["node_fabric_address"] == "10.0.1.12"
    assert hv["node_fabric_prefix"] == 24 and hv["node_fabric_mtu"] == 9000
    assert hv["node_fabric_interface"] == "eth1" and hv["bmc_system_id"] == "id2"
    assert hv["ansible_user"] == "ansible"  # from group_vars/all.yml
    assert hv["storage_enabled"] is True and hv["storage_luks_key_src"].endswith("/.lab/t2/storage-luks.key")


class FakeBmc:
    def __init__(self, power: dict[str, str]) -> None:
        self.power = power
        self.resets: list[tuple[str, str]] = []

    def power_state(self, sid: str) -> str:
        return self.power[sid]

    def reset(self, sid: str, reset: str) -> None:
        self.resets.append((sid, reset))


@pytest.fixture
def fake_podman(monkeypatch):
    containers = {"n1": "running"}
    calls: list[list[str]] = []
    monkeypatch.setattr(bridge.podman, "containers_by_names",
                        lambda names: [{"name": n, "state": containers[n]} for n in names if n in containers])

    def run(args, check=True):
        calls.append(list(args))
        containers[args[-1]] = "running" if args[0] == "start" else "exited"

    monkeypatch.setattr(bridge.podman, "run", run)
    return containers, calls


def test_bridge_follows_bmc_transitions(fake_podman):
    containers, calls = fake_podman
    fb = FakeBmc({"s1": "On"})
    b = bridge.Bridge(fb, {"n1": "s1"})
    b.step()
    assert calls == []  # consistent at first look: nothing to do
    fb.power["s1"] = "Off"
    b.step()
    assert calls[-1][0] == "stop" and containers["n1"] == "exited"
    fb.power["s1"] = "On"
    b.step()
    assert calls[-1] == ["start", "n1"] and containers["n1"] == "running"
    assert fb.resets == []


def test_bridge_reports_container_stopped_behind_bmc_once_per_grace(fake_podman):
    containers, calls = fake_podman
    fb = FakeBmc({"s1": "On"})
    b = bridge.Bridge(fb, {"n1": "s1"})
    b.step()
    containers["n1"] = "exited"  # crashed / stopped with podman
    b.step()
    b.step()  # BMC still shows On (its change is pending): no second reset inside the grace period
    assert fb.resets == [("s1", "ForceOff")]
    assert calls == [], "the bridge must not restart a node the BMC has not powered on"


def test_bridge_first_look_makes_container_follow_bmc(fake_podman):
    containers, calls = fake_podman
    containers["n1"] = "exited"
    b = bridge.Bridge(FakeBmc({"s1": "On"}), {"n1": "s1"})  # e.g. after a host reboot
    b.step()
    assert calls == [["start", "n1"]]


def test_pidfile_is_trusted_only_with_marker(tmp_path):
    pidfile = tmp_path / "p.pid"
    marker = str(tmp_path)
    # a process that never forks: `sh -c "sleep 30"` may fork its sleep, and for a moment that child still carries
    # the marker in its command line (the flaky [pid, pid + 1])
    pid = procs.start([sys.executable, "-c", "import time; time.sleep(30)", marker], pidfile, tmp_path / "log",
                      marker)
    try:
        assert procs.alive(pidfile, marker) == pid
        assert procs.alive(pidfile, "/some/other/lab") is None  # a recycled PID is never ours
        assert procs.pids_with_marker(marker) == [pid]
    finally:
        assert procs.stop(pidfile, marker)
    assert procs.alive(pidfile, marker) is None and not pidfile.exists()
    assert not procs.stop(pidfile, marker)


@pytest.mark.parametrize("name", ["", "Lab", "1lab", "lab_1", "a" * 13, "lab-1"])
def test_bad_lab_names_are_refused(name):
    with pytest.raises(UserError, match="lab name"):
        core.Lab(name)


def test_macs_are_stable_unique_and_locally_administered(tmp_path):
    lab = core.Lab("lab", root=tmp_path)
    macs = {lab.mac(lab.node_name(i), iface) for i in range(1, 9) for iface in ("mgmt", "fabric")}
    assert len(macs) == 16
    assert lab.mac("lab-node1", "mgmt") == core.Lab("lab", root=tmp_path).mac("lab-node1", "mgmt")
    assert all(m.startswith("52:54:00:") for m in macs)


def test_up_as_non_root_is_one_clear_line(monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cli.main(["lab", "up"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs root" in err and "sudo" in err


def test_missing_podman_is_one_clear_line(monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(core.podman.shutil, "which", lambda _: None)
    assert cli.main(["lab", "up"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "podman is not installed" in err and "make bootstrap" in err


def test_nodes_out_of_range(monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(core.podman.shutil, "which", lambda _: "/usr/bin/podman")
    assert cli.main(["lab", "up", "--nodes", "0"]) == 2
    assert "--nodes 0 is out of range" in capsys.readouterr().err


def test_ssh_command_pins_host_key(tmp_path, monkeypatch):
    lab = core.Lab("t3", root=tmp_path)
    lab.save(_state(lab))
    monkeypatch.setattr(core, "project_root", lambda: tmp_path)
    cmd = core.ssh_command("t3", "node2", ["hostname"])
    assert "StrictHostKeyChecking=yes" in cmd and cmd[-2:] == ["ansible@10.0.0.12", "hostname"]
    with pytest.raises(UserError, match="choose one of t3-node1, t3-node2"):
        core.ssh_command("t3", "node9", [])


def test_ctrl_c_exits_130_at_once_even_with_busy_worker_threads():
    """An interrupted command (e.g. `lab up` while its Redfish worker threads power nodes on) exits with 130 at
    once instead of waiting for the threads; the interrupted `lab up` in the lab e2e test relies on it."""
    import subprocess
    import sys
    import time

    code = (
        "import threading, time, sys\n"
        "from baremetal_ai import cli\n"
        "def busy(_args):\n"
        "    threading.Thread(target=time.sleep, args=(60,)).start()\n"
        "    raise KeyboardInterrupt\n"
        "cli.planner_cli.run_plan = busy\n"
        "sys.exit(cli.main(['plan', '--model', 'x']))\n"
    )
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=50, check=False)
    assert p.returncode == 130, p.stderr
    assert time.monotonic() - t0 < 20
