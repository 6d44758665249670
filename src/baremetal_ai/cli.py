"""`baremetal`: the command line of baremetal-ai.

Exit codes: 0 ok, 1 a check failed (e.g. validation, drift), 2 a usage or environment problem the message
explains, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from baremetal_ai import __version__, checklist, pilot, report
from baremetal_ai import inspect as inspect_cmd  # aliased: the stdlib has an `inspect` too
from baremetal_ai.errors import UserError
from baremetal_ai.planner import cli as planner_cli


def _lab_parser(sub: argparse._SubParsersAction) -> None:
    lab = sub.add_parser("lab", help="the local lab: podman nodes + Redfish BMC emulator + apt cache",
                         description="Run the whole path on one machine: podman 'nodes' (Debian 12, systemd, "
                                     "sshd) with a management and a fabric (MTU 9000) network, a Redfish BMC "
                                     "per node and an apt cache. Needs root.")
    ls = lab.add_subparsers(dest="lab_cmd", required=True)
    name_kw = {"default": os.environ.get("BAREMETAL_LAB", "lab"),
               "help": "lab name (default: $BAREMETAL_LAB or 'lab'); labs with different names coexist"}
    p = ls.add_parser("up", help="create the lab (a no-op when it is already up)")
    p.add_argument("--nodes", type=int, default=3, help="number of nodes (default 3)")
    p.add_argument("--name", **name_kw)
    p.add_argument("--bmc-port", type=int, default=None,
                   help="port of the Redfish emulator on 127.0.0.1 (default: first free from 8000)")
    p.add_argument("--no-gpu-stack", dest="gpu_stack", action="store_false",
                   help="leave the GPU software stack (nvidia_driver, cuda, nccl) out of the nodes' converge; by "
                        "default lab nodes get it although they have no GPU (docs/lab.md)")
    p = ls.add_parser("down", help="remove everything the lab created (succeeds when nothing is up)")
    p.add_argument("--name", **name_kw)
    p.add_argument("--purge-cache", action="store_true", help="also delete the lab's apt cache")
    p = ls.add_parser("status", help="nodes, container and BMC power state, daemons")
    p.add_argument("--name", **name_kw)
    p.add_argument("--json", action="store_true", help="print JSON")
    p = ls.add_parser("ssh", help="ssh to a node as the `ansible` user (host key pinned)")
    p.add_argument("node", help="node name, e.g. node1 or lab-node1")
    p.add_argument("command", nargs=argparse.REMAINDER, help="command to run (default: a shell)")
    p.add_argument("--name", **name_kw)
    p = ls.add_parser("image", help="build the node image if its recipe changed")
    p.add_argument("--force", action="store_true", help="rebuild base and node images")
    p.add_argument("--print-tag", action="store_true", help="only print the current image tag")


def _print_status(st: dict) -> None:
    print(f"lab {st['name']}: {st['status']}")
    for k, v in st["daemons"].items():
        print(f"  {k:13s} {'running' if v else 'stopped'}")
    if st.get("bmc"):
        print(f"  BMC endpoint  {st['bmc']['endpoint']} (CA {st['bmc']['ca_file']})")
    if st["nodes"]:
        print(f"  {'node':14s} {'container':10s} {'power':8s} {'mgmt':15s} fabric")
        for n in st["nodes"]:
            print(f"  {n['name']:14s} {n['container']:10s} {n['power']:8s} {n['mgmt_ip']:15s} {n['fabric_ip']}")
    if st.get("inventory"):
        print(f"  inventory     {st['inventory']}")
    if st.get("stray_containers"):
        print(f"  stray containers: {', '.join(st['stray_containers'])} (run `baremetal lab down`)")


def _run_lab(args: argparse.Namespace) -> int:
    from baremetal_ai.lab import core, image

    if args.lab_cmd == "up":
        core.up(args.name, args.nodes, args.bmc_port, gpu_stack=args.gpu_stack)
    elif args.lab_cmd == "down":
        core.down(args.name, args.purge_cache)
    elif args.lab_cmd == "status":
        st = core.status(args.name)
        print(json.dumps(st, indent=2)) if args.json else _print_status(st)
        return 0 if st["status"] in ("up", "absent") else 1
    elif args.lab_cmd == "ssh":
        cmd = core.ssh_command(args.name, args.node, args.command)
        os.execvp(cmd[0], cmd)
    elif args.lab_cmd == "image":
        print(image.node_tag()) if args.print_tag else image.ensure_image(force=args.force)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="baremetal", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"baremetal-ai {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True)
    _lab_parser(sub)
    planner_cli.add_plan_parser(sub)
    planner_cli.add_tco_parser(sub)
    pilot.add_pilot_parser(sub)
    checklist.add_checklist_parser(sub)
    inspect_cmd.add_inspect_parser(sub)
    report.add_report_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.cmd == "lab":
            return _run_lab(args)
        if args.cmd == "plan":
            return planner_cli.run_plan(args)
        if args.cmd == "tco":
            return planner_cli.run_tco(args)
        if args.cmd == "pilot":
            return pilot.run_pilot_report(args)
        if args.cmd == "checklist":
            return checklist.run_checklist(args)
        if args.cmd == "inspect":
            return inspect_cmd.run_inspect(args)
        if args.cmd == "report":
            return report.run_report(args)
    except UserError as exc:
        print(f"baremetal: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        # Exit now: worker threads still busy (e.g. `lab up` powering nodes on through Redfish) would otherwise
        # hold the interpreter until they finish. What was created is recorded; the message said how to remove it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    return 2


if __name__ == "__main__":
    sys.exit(main())
