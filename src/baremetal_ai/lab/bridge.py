"""The lab's power bridge: makes each podman node follow its Redfish system's power state, and back.

sushy-tools' fake driver only records power state; this loop makes it real:
- a power transition seen at the BMC (On→Off, Off→On, a Restart) stops or starts the node's container;
- a container that stopped or started behind the BMC's back (crash, `podman stop`) is reported to the BMC
  with a ForceOff/On, so that BMC state and node state agree.
The fake driver applies a power change lazily, on the next read of the system, so the loop's polling is also
what makes pending changes happen.

Run as `python -m baremetal_ai.lab.bridge STATE_DIR` (started by `baremetal lab up`).
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import requests

from baremetal_ai.errors import UserError
from baremetal_ai.lab import podman
from baremetal_ai.lab.redfish import Bmc

POLL_S = 0.5
RESYNC_GRACE_S = 15.0


def log(msg: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {msg}", flush=True)


class Bridge:
    def __init__(self, bmc: Bmc, nodes: dict[str, str]) -> None:
        self.bmc = bmc
        self.nodes = nodes  # container name -> Redfish system id
        self.last_power: dict[str, str | None] = dict.fromkeys(nodes)
        self.requested: dict[str, float] = {}

    def step(self) -> None:
        running = {c["name"]: c["state"] == "running" for c in podman.containers_by_names(list(self.nodes))}
        for name, sid in self.nodes.items():
            if name not in running:
                continue  # container gone (lab going down): nothing to follow
            power = self.bmc.power_state(sid)
            last = self.last_power[name]
            self.last_power[name] = power
            is_on = running[name]
            first_look = last is None
            if (not first_look and power != last) or (first_look and (power == "On") != is_on):
                # A transition at the BMC (or the first look): the container follows the BMC.
                self._apply(name, power, is_on)
                self.requested.pop(name, None)
            elif (power == "On") != is_on and time.monotonic() - self.requested.get(name, -1e9) > RESYNC_GRACE_S:
                # The container changed behind the BMC's back: tell the BMC, so both agree again.
                reset = "On" if is_on else "ForceOff"
                log(f"{name}: container {'running' if is_on else 'stopped'} while BMC says {power}: {reset} at BMC")
                self.bmc.reset(sid, reset)
                self.requested[name] = time.monotonic()

    def _apply(self, name: str, power: str, is_on: bool) -> None:
        if power == "On" and not is_on:
            log(f"{name}: BMC power On -> podman start")
            podman.run(["start", name], check=False)
        elif power == "Off" and is_on:
            log(f"{name}: BMC power Off -> podman stop")
            podman.run(["stop", "-t", "10", name], check=False)


def main(argv: list[str] | None = None) -> int:
    state_dir = Path((argv or sys.argv[1:])[0])
    cfg = json.loads((state_dir / "lab.json").read_text())
    password = (state_dir / "bmc" / "password").read_text().strip()
    bmc = Bmc(cfg["bmc"]["endpoint"], cfg["bmc"]["username"], password, cfg["bmc"]["ca_file"])
    bridge = Bridge(bmc, {n["container"]: n["bmc_system_id"] for n in cfg["nodes"]})
    stop = False

    def _term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    log(f"bridge for lab {cfg['name']} watching {len(bridge.nodes)} nodes via {bmc.endpoint}")
    while not stop:
        if not (state_dir / "lab.json").exists():
            log("lab state is gone (lab down): exiting")
            break
        try:
            bridge.step()
        except (requests.RequestException, UserError) as exc:
            log(f"poll failed: {exc}")
            time.sleep(2)
        time.sleep(POLL_S)
    log("bridge stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
