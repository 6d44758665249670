"""`baremetal lab up|down|status|ssh`: the lab's life cycle.

Everything a lab creates is named `<lab>-...` and labelled `io.baremetal-ai.lab=<lab>` (containers,
networks), or lives under its state directory `<project>/.lab/<lab>/` (keys, BMC material, PID files), so
`lab down` removes exactly that and nothing else, even after a Ctrl-C or a crash half-way through `lab up`.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from baremetal_ai.errors import UserError
from baremetal_ai.lab import aptcache, bmc, image, inventory, podman, procs, standin_repo, tls

SCHEMA_VERSION = 1
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
MAX_NODES = 32
FABRIC_MTU = 9000
NODE_READY_TIMEOUT_S = 90.0
UUID_NS = uuid.UUID("6f1c1a2e-7a38-4c1e-9d7b-2b7f0f6b1a00")


def log(msg: str) -> None:
    print(f"[lab] {msg}", flush=True)


def project_root() -> Path:
    env = os.environ.get("BAREMETAL_AI_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / "site.yml").is_file() and (d / "ansible.cfg").is_file():
            return d
    return here


class Lab:
    def __init__(self, name: str, root: Path | None = None) -> None:
        if not NAME_RE.match(name):
            raise UserError(f"lab name {name!r} is not valid: use 1-12 lowercase letters and digits, "
                            f"starting with a letter (e.g. --name lab2)")
        self.name = name
        self.root = root or project_root()
        self.state_dir = self.root / ".lab" / name
        self.inventory_dir = self.root / "inventories" / name
        self.bmc_dir = self.state_dir / "bmc"
        # The LUKS key the storage role delivers to every node of this lab (random, 0600; see ensure_storage_key).
        self.storage_key_file = self.state_dir / "storage-luks.key"

    # --- naming -------------------------------------------------------------------------------------
    @property
    def mgmt_net(self) -> str:
        return f"{self.name}-mgmt"

    @property
    def fabric_net(self) -> str:
        return f"{self.name}-fabric"

    def node_name(self, i: int) -> str:
        return f"{self.name}-node{i}"

    def mac(self, node: str, iface: str) -> str:
        h = hashlib.sha256(f"{self.name}/{node}/{iface}".encode()).digest()
        return "52:54:00:" + ":".join(f"{b:02x}" for b in h[:3])

    # --- state --------------------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.state_dir / "lab.json"

    def load(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None

    def save(self, state: dict[str, Any]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.state_file)

    @property
    def marker(self) -> str:
        """Appears in the command line of every process of this lab, and of no other lab's."""
        return str(self.state_dir) + "/"

    def bridge_pidfile(self) -> Path:
        return self.state_dir / "bridge.pid"

    def daemons(self) -> dict[str, bool]:
        return {
            "bmc-emulator": procs.alive(self.bmc_dir / "emulator.pid", str(self.bmc_dir)) is not None,
            "power-bridge": procs.alive(self.bridge_pidfile(), self.marker) is not None,
            "apt-cache": procs.alive(self.state_dir / "aptcache" / "pid",
                                     str(self.state_dir / "aptcache")) is not None,
        }


def _require_root() -> None:
    if os.geteuid() != 0:
        raise UserError("the lab needs root (rootful podman runs systemd nodes): run it with sudo")


def _other_labs_ports(me: str, root: Path) -> set[int]:
    ports = set()
    for f in (root / ".lab").glob("*/lab.json"):
        if f.parent.name != me:
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                ports.add(int(json.loads(f.read_text())["bmc"]["port"]))
    return ports


def _ssh_keygen(path: Path, comment: str) -> None:
    if path.exists():
        return
    if not shutil.which("ssh-keygen"):
        raise UserError("ssh-keygen is missing: run `make bootstrap` (or `apt-get install openssh-client`)")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)


def ensure_storage_key(lab: Lab) -> Path:
    """The lab's LUKS key file for the storage role (`storage_luks_key_src`): 64 random bytes (512 bits, as
    `dd if=/dev/urandom bs=64 count=1` would make), written 0600 from the start like the BMC password. Kept
    when it exists, so a re-written inventory never changes the key the nodes already hold."""
    if not lab.storage_key_file.exists():
        tls.write_private(lab.storage_key_file, secrets.token_bytes(64))
    return lab.storage_key_file


def _create_network(name: str, lab: str, mtu: int | None, internal: bool) -> dict[str, Any]:
    if not podman.exists("network", name):
        args = ["network", "create", "--label", f"{podman.LABEL}={lab}"]
        if mtu:
            args += ["--opt", f"mtu={mtu}"]
        if internal:
            args.append("--internal")
        podman.run([*args, name])
    net = podman.inspect_network(name)
    sub = net["subnets"][0]
    return {"name": name, "subnet": sub["subnet"], "gateway": sub.get("gateway"),
            "mtu": int((net.get("options") or {}).get("mtu", 1500)), "bridge": net.get("network_interface")}


def _host_ip(subnet: str, index: int) -> str:
    return str(ipaddress.ip_network(subnet)[10 + index])


def up(name: str = "lab", nodes: int = 3, bmc_port: int | None = None, gpu_stack: bool = True) -> dict[str, Any]:
    """Create lab `name` (a no-op when it is up as asked). `gpu_stack`: lab nodes get the GPU software stack
    (inventory.group_vars); False leaves it out of their converge."""
    _require_root()
    podman.require_podman()
    lab = Lab(name)
    if not 1 <= nodes <= MAX_NODES:
        raise UserError(f"--nodes {nodes} is out of range: use 1 to {MAX_NODES}")
    state = lab.load()
    found_containers = podman.containers(name)
    found_networks = podman.networks(name)
    if state and state.get("status") == "up":
        if len(state["nodes"]) != nodes:
            raise UserError(f"lab {name!r} is already up with {len(state['nodes'])} nodes, not {nodes}: "
                            f"run `baremetal lab down --name {name}` first to change its size")
        # A lab created before the GPU stack came to the lab has no "gpu_stack" and no repository mount: without.
        if state.get("gpu_stack", False) != gpu_stack:
            have = "with" if state.get("gpu_stack", False) else "without"
            raise UserError(f"lab {name!r} is already up {have} the GPU software stack: run "
                            f"`baremetal lab down --name {name}` first to change it (--no-gpu-stack leaves it out)")
        missing = {n["container"] for n in state["nodes"]} - {c["name"] for c in found_containers}
        if missing or {lab.mgmt_net, lab.fabric_net} - set(found_networks):
            raise UserError(f"lab {name!r} is half-gone (missing: {', '.join(sorted(missing)) or 'networks'}): "
                            f"run `baremetal lab down --name {name}`, then `lab up` again")
        _ensure_daemons(lab, state)
        _ensure_apt_cache(lab, state)
        log(f"lab {name!r} is already up ({nodes} nodes); inventory: {lab.inventory_dir}/")
        return state
    if state or found_containers or found_networks or lab.state_dir.exists():
        what = [f"{len(found_containers)} containers"] if found_containers else []
        what += [f"networks {', '.join(found_networks)}"] if found_networks else []
        what += ["a state directory"] if lab.state_dir.exists() else []
        raise UserError(f"lab {name!r} is half-created ({'; '.join(what)}): "
                        f"run `baremetal lab down --name {name}` first, then `lab up` again")
    try:
        return _create(lab, nodes, bmc_port, gpu_stack)
    except KeyboardInterrupt:
        print(f"\n[lab] interrupted: run `baremetal lab down --name {name}` to remove what was created",
              file=sys.stderr)
        raise


def _create(lab: Lab, nodes: int, bmc_port: int | None, gpu_stack: bool = True) -> dict[str, Any]:
    t0 = time.monotonic()
    port = bmc.pick_port(bmc_port, _other_labs_ports(lab.name, lab.root))
    state: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "name": lab.name, "status": "creating",
                             "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "gpu_stack": gpu_stack}
    lab.save(state)  # from here on, `lab down` knows this lab
    tag = image.ensure_image()
    state["image"] = tag
    _ssh_keygen(lab.state_dir / "id_ed25519", f"baremetal-ai-lab-{lab.name}")
    mgmt = _create_network(lab.mgmt_net, lab.name, None, internal=False)
    fabric = _create_network(lab.fabric_net, lab.name, FABRIC_MTU, internal=True)
    state["networks"] = {"mgmt": mgmt, "fabric": fabric}
    apt_port = aptcache.free_port("0.0.0.0")
    state["apt_cache"] = {"address": mgmt["gateway"], "port": apt_port}
    node_list = []
    for i in range(1, nodes + 1):
        n = lab.node_name(i)
        node_list.append({
            "name": n, "container": n,
            "mgmt_interface": "eth0", "mgmt_ip": _host_ip(mgmt["subnet"], i), "mgmt_mac": lab.mac(n, "mgmt"),
            "fabric_interface": "eth1", "fabric_ip": _host_ip(fabric["subnet"], i),
            "fabric_prefix": ipaddress.ip_network(fabric["subnet"]).prefixlen,
            "fabric_mac": lab.mac(n, "fabric"),
            "bmc_system_id": str(uuid.uuid5(UUID_NS, f"{lab.name}/{n}")),
        })
    state["nodes"] = node_list
    state["bmc"] = {"port": port, "endpoint": f"https://{bmc.HOST}:{port}", "username": "admin",
                    "ca_file": str(lab.bmc_dir / "ca.pem")}
    lab.save(state)

    proxy_conf = lab.state_dir / "apt-proxy.conf"
    proxy_conf.write_text(f'Acquire::http::Proxy "http://{mgmt["gateway"]}:{apt_port}";\n')
    # The stand-in for NVIDIA's CUDA repository (standin_repo.py): read-only in every node, named by an apt source
    # that the lab, not a role, manages (as a site mirror would be; the roles run with cuda_repo_manage: false).
    repo = lab.state_dir / "nvidia-repo"
    standin_repo.build(repo)
    repo_list = lab.state_dir / "nvidia-repo.list"
    repo_list.write_text(standin_repo.SOURCE_LINE)
    log(f"creating {nodes} nodes from {tag} (powered off, like servers waiting in a rack)")
    pub = lab.state_dir / "id_ed25519.pub"
    for n in node_list:
        podman.run(["create", "--name", n["container"], "--hostname", n["name"],
                    "--label", f"{podman.LABEL}={lab.name}", "--label", f"{podman.LABEL}.node={n['name']}",
                    "--network", f"{lab.mgmt_net}:ip={n['mgmt_ip']},mac={n['mgmt_mac']},interface_name=eth0",
                    "--network", f"{lab.fabric_net}:ip={n['fabric_ip']},mac={n['fabric_mac']},interface_name=eth1",
                    "--systemd=always", "--cap-add", "NET_RAW", "--cap-add", "NET_ADMIN",
                    "-v", f"{pub}:/home/ansible/.ssh/authorized_keys:ro",
                    "-v", f"{pub}:/root/.ssh/authorized_keys:ro",
                    "-v", f"{proxy_conf}:/etc/apt/apt.conf.d/01baremetal-lab-proxy:ro",
                    "-v", f"{repo}:{standin_repo.NODE_PATH}:ro",
                    "-v", f"{repo_list}:/etc/apt/sources.list.d/baremetal-lab-nvidia.list:ro",
                    tag])

    _ensure_daemons(lab, state, fresh=True)
    state["provisioned"] = provision(lab, state)
    lab.save(state)
    _ensure_apt_cache(lab, state)
    keys = _wait_nodes(node_list)
    known = lab.state_dir / "known_hosts"
    known.write_text("".join(f"{n['name']},{n['mgmt_ip']} {keys[n['name']]}\n" for n in node_list))
    ensure_storage_key(lab)
    inventory.write(lab, state)
    state["status"] = "up"
    state["up_seconds"] = round(time.monotonic() - t0, 1)
    lab.save(state)
    log(f"lab {lab.name!r} up: {nodes} nodes in {state['up_seconds']} s; BMC {state['bmc']['endpoint']}; "
        f"inventory {lab.inventory_dir}/")
    return state


def provision(lab: Lab, state: dict[str, Any]) -> dict[str, Any]:
    """Take every node under management through its BMC with the declare stage's own Redfish provider
    (in-process, no Pulumi CLI): one-time PXE boot override, power On, wait until the BMC shows it. The power
    bridge then starts each node's container. Returns what the provider recorded, without credentials."""
    from baremetal_ai.declare.redfish import RedfishServerProvider

    provider = RedfishServerProvider()
    password = (lab.bmc_dir / "password").read_text().strip()

    def one(n: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        props = {"endpoint": state["bmc"]["endpoint"], "username": state["bmc"]["username"],
                 "password": password, "system_id": n["bmc_system_id"], "ca_file": state["bmc"]["ca_file"],
                 "power_state": "On", "boot_override": "Pxe", "power_timeout_s": 60, "node_name": n["name"]}
        checked = provider.check({}, props)
        if checked.failures:
            raise UserError(f"lab provisioning of {n['name']}: " +
                            "; ".join(f"{f.property}: {f.reason}" for f in checked.failures))
        res = provider.create(checked.inputs)
        inv = res.outs["inventory"]
        return n["name"], {"id": res.id, "power_state": inv.get("power_state"), "boot": inv.get("boot"),
                           "macs": res.outs["macs"], "serial": inv.get("serial"), "model": inv.get("model")}

    t0 = time.monotonic()
    with cf.ThreadPoolExecutor(max_workers=min(16, len(state["nodes"]))) as ex:
        done = dict(ex.map(one, state["nodes"]))
    log(f"provisioned {len(done)} nodes through Redfish (PXE override + power On) in {time.monotonic() - t0:.1f} s")
    return done


def _emulator_systems(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"uuid": n["bmc_system_id"], "name": n["name"], "power_state": "Off", "external_notifier": False,
             "nics": [{"mac": n["mgmt_mac"], "ip": n["mgmt_ip"]}, {"mac": n["fabric_mac"], "ip": n["fabric_ip"]}]}
            for n in state["nodes"]]


def _ensure_apt_cache(lab: Lab, state: dict[str, Any], wait_s: float = 30.0) -> None:
    """Start the apt cache on the management bridge's gateway. podman creates that bridge (and its address)
    only when the first node of the network runs, so wait for the address; with no node powered on there is
    nothing to serve, and the next `lab up` starts the cache."""
    if lab.daemons()["apt-cache"]:
        return
    cache = state["apt_cache"]
    deadline = time.monotonic() + wait_s
    while not aptcache.address_present(cache["address"]):
        if time.monotonic() > deadline:
            log(f"apt cache not started: no node is powered on, so {cache['address']} does not exist yet "
                "(`baremetal lab up` starts it once a node runs)")
            return
        time.sleep(0.2)
    aptcache.start_on(lab.state_dir, lab.name, cache["address"], cache["port"], image.host_mirrors())


def _ensure_daemons(lab: Lab, state: dict[str, Any], fresh: bool = False) -> None:
    """Start (or restart after a host reboot) the BMC emulator and the power bridge."""
    alive = lab.daemons()
    if fresh and not (lab.bmc_dir / "password").exists():
        bmc.setup(lab.bmc_dir, lab.name)
    if not alive["bmc-emulator"]:
        bmc.start(lab.bmc_dir, state["bmc"]["port"], _emulator_systems(state))
    if not alive["power-bridge"]:
        procs.start([sys.executable, "-m", "baremetal_ai.lab.bridge", lab.marker],
                    lab.bridge_pidfile(), lab.state_dir / "bridge.log", lab.marker)


def _wait_node(n: dict[str, Any]) -> str:
    """Wait until sshd on the node answers; return its ed25519 host key, read through podman (a trusted
    channel), never accepted on first use from the network."""
    deadline = time.monotonic() + NODE_READY_TIMEOUT_S
    key = ""
    while time.monotonic() < deadline:
        if not key:
            p = podman.run(["exec", n["container"], "cat", "/etc/ssh/ssh_host_ed25519_key.pub"], check=False)
            if p.returncode == 0 and p.stdout.startswith("ssh-ed25519 "):
                key = " ".join(p.stdout.split()[:2])
        if key:
            try:
                with socket.create_connection((n["mgmt_ip"], 22), timeout=1) as s:
                    s.settimeout(2)
                    if s.recv(64).startswith(b"SSH-2.0"):
                        return key
            except OSError:
                pass
        time.sleep(0.3)
    raise UserError(f"node {n['name']} did not start sshd within {NODE_READY_TIMEOUT_S:.0f} s: "
                    f"see `podman logs {n['container']}`, then `baremetal lab down` and `lab up` again")


def _wait_nodes(node_list: list[dict[str, Any]]) -> dict[str, str]:
    with cf.ThreadPoolExecutor(max_workers=min(16, len(node_list))) as ex:
        return dict(zip([n["name"] for n in node_list], ex.map(_wait_node, node_list), strict=True))


def down(name: str = "lab", purge_cache: bool = False) -> dict[str, int]:
    """Remove everything lab `name` created. Succeeds (removing nothing) when nothing is up."""
    _require_root()
    lab = Lab(name)
    removed = {"processes": 0, "containers": 0, "networks": 0}
    removed["processes"] += bool(procs.stop(lab.bridge_pidfile(), lab.marker))
    removed["processes"] += bool(bmc.stop(lab.bmc_dir))
    removed["processes"] += bool(aptcache.stop(lab.state_dir))
    if lab.state_dir.exists():
        # Leftovers whose PID file was lost, and SSH ControlPersist masters of this lab's hosts (their command
        # line names the lab's known_hosts file).
        for pid in procs.pids_with_marker(lab.marker):
            try:
                os.kill(pid, 15)
                removed["processes"] += 1
            except ProcessLookupError:
                pass
    if shutil.which("podman"):
        found = podman.containers(name)
        if found:
            podman.run(["rm", "-f", "-t", "5", *[c["name"] for c in found]])
            removed["containers"] = len(found)
        for net in podman.networks(name):
            podman.run(["network", "rm", "-f", net])
            removed["networks"] += 1
    shutil.rmtree(lab.state_dir, ignore_errors=True)
    shutil.rmtree(lab.inventory_dir, ignore_errors=True)
    if purge_cache:
        aptcache.purge(name)
    if any(removed.values()):
        log(f"lab {name!r} removed: {removed['containers']} containers, {removed['networks']} networks, "
            f"{removed['processes']} processes")
    else:
        log(f"lab {name!r}: nothing to remove")
    return removed


def status(name: str = "lab") -> dict[str, Any]:
    lab = Lab(name)
    state = lab.load()
    containers = {c["name"]: c["state"] for c in podman.containers(name)} if shutil.which("podman") else {}
    out: dict[str, Any] = {"name": name, "status": (state or {}).get("status", "absent"),
                           "daemons": lab.daemons(), "nodes": []}
    power: dict[str, str] = {}
    if state and state.get("bmc") and out["daemons"]["bmc-emulator"]:
        try:
            client = bmc.client(lab.bmc_dir, state["bmc"]["port"])
            power = {n["name"]: client.power_state(n["bmc_system_id"]) for n in state.get("nodes", [])}
        except (UserError, OSError) as exc:
            out["bmc_error"] = str(exc)
    for n in (state or {}).get("nodes", []):
        out["nodes"].append({"name": n["name"], "container": containers.get(n["container"], "absent"),
                             "power": power.get(n["name"], "unknown"), "mgmt_ip": n["mgmt_ip"],
                             "fabric_ip": n["fabric_ip"], "bmc_system_id": n["bmc_system_id"]})
    if state:
        out["bmc"] = state.get("bmc")
        out["inventory"] = str(lab.inventory_dir)
    stray = set(containers) - {n["container"] for n in (state or {}).get("nodes", [])}
    if stray:
        out["stray_containers"] = sorted(stray)
    return out


def ssh_command(name: str, node: str, command: list[str]) -> list[str]:
    lab = Lab(name)
    state = lab.load()
    if not state:
        raise UserError(f"lab {name!r} is not up: run `baremetal lab up --name {name}`")
    by_name = {n["name"]: n for n in state["nodes"]}
    short = {n["name"].removeprefix(f"{name}-"): n for n in state["nodes"]}
    n = by_name.get(node) or short.get(node)
    if not n:
        raise UserError(f"no node {node!r} in lab {name!r}: choose one of {', '.join(by_name)}")
    return ["ssh", "-i", str(lab.state_dir / "id_ed25519"),
            "-o", f"UserKnownHostsFile={lab.state_dir / 'known_hosts'}", "-o", "StrictHostKeyChecking=yes",
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", f"ansible@{n['mgmt_ip']}", *command]
