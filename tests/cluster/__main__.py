"""Command line of the local control plane: `python -m tests.cluster up|down|status|attach-kwok`.

Run by the targets in mk/cluster.mk (`make cluster-up`, `make cluster-down`, `make
e2e-kind`); the real work is in `tests.cluster.launcher`.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from . import launcher


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster", description=__doc__)
    parser.add_argument("--dir", type=pathlib.Path, default=launcher.DEFAULT_DIR, help="cluster folder (default .cluster)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start the control plane in the background (no-op if running)")
    commands.add_parser("down", help="stop the processes that `up` started")
    commands.add_parser("status", help="say whether the cluster runs (exit 1 if not)")
    attach = commands.add_parser("attach-kwok", help="run kwok and the fake nodes against an existing cluster")
    attach.add_argument("--kubeconfig", type=pathlib.Path, required=True)
    args = parser.parse_args(argv)

    directory: pathlib.Path = args.dir.resolve()
    try:
        if args.command == "up":
            state = launcher.up(directory)
            print(f"export KUBECONFIG={state.kubeconfig}")
        elif args.command == "down":
            launcher.down(directory)
        elif args.command == "status":
            state = launcher.running_state(directory)
            if state is None:
                print("cluster: not running")
                return 1
            print(f"cluster: running at {state.server or state.kubeconfig}")
            for proc in state.processes:
                print(f"  {proc.name:<24} pid {proc.pid:<8} log {proc.log}")
        elif args.command == "attach-kwok":
            launcher.attach_kwok(args.kubeconfig.resolve(), directory)
    except launcher.ClusterError as err:
        print(f"cluster: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
