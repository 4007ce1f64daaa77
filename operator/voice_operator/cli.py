"""``voice-operator``: run the operator, or print its CRD and RBAC rules.

The public face of the package (``[project.scripts]``). ``run`` loads credentials as
kubectl does, checks the CRD is installed, builds the ``controller`` and kopf registry
(``handlers``), starts leader election, the metrics server and kopf's liveness endpoint,
and runs until SIGTERM. ``crd`` writes the generated CRD (``make crd``); ``rbac`` prints
the rules the Helm chart grants.

Examples::

    voice-operator crd > crds/voiceservices.yaml
    voice-operator run --namespace team-a --namespace team-b
    voice-operator run --all-namespaces --liveness http://0.0.0.0:8080/healthz --metrics-port 9090
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
import uuid
from collections.abc import Sequence

import kopf

from voice_operator import (
    config,
    controller,
    crd,
    handlers,
    kube,
    leader,
    metrics,
    naming,
    rbac,
    spec,
)

logger = logging.getLogger("voice_operator")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voice-operator", description="The VoiceService operator.")
    commands = parser.add_subparsers(dest="command", required=True)

    crd_cmd = commands.add_parser("crd", help="print the VoiceService CRD (YAML)")
    crd_cmd.add_argument("--output", "-o", help="write to this file instead of stdout")
    commands.add_parser("rbac", help="print the RBAC rules the operator needs (YAML)")

    run = commands.add_parser("run", help="run the operator")
    scope = run.add_mutually_exclusive_group(required=True)
    scope.add_argument("--namespace", "-n", action="append", dest="namespaces", metavar="NS", help="watch this namespace (repeatable)")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch the whole cluster")
    run.add_argument("--liveness", default=os.environ.get("VOICE_OPERATOR_LIVENESS", "http://0.0.0.0:8080/healthz"),
                     help="kopf liveness endpoint URL ('' to disable)")
    run.add_argument("--metrics-port", type=int, default=int(os.environ.get("VOICE_OPERATOR_METRICS_PORT", "9090")),
                     help="Prometheus /metrics port (0 to disable)")
    run.add_argument("--workers", type=int, default=4, help="concurrent reconciles")
    run.add_argument("--resync-seconds", type=float, default=300.0, help="reconcile everything this often (0: never)")
    run.add_argument("--leader-election", action=argparse.BooleanOptionalAction, default=True,
                     help="hold a Lease so only one replica writes (default on)")
    run.add_argument("--leader-election-namespace", default=None,
                     help="namespace of the Lease (default: $POD_NAMESPACE, else the only watched namespace, else 'default')")
    run.add_argument("--leader-election-name", default="voice-operator", help="name of the Lease")
    run.add_argument("--log-level", default=os.environ.get("VOICE_OPERATOR_LOG_LEVEL", "info"),
                     choices=["debug", "info", "warning", "error"])
    return parser


def _lease_namespace(args: argparse.Namespace) -> str:
    if args.leader_election_namespace:
        return args.leader_election_namespace
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    if args.namespaces and len(args.namespaces) == 1:
        return args.namespaces[0]
    return "default"


def _settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.peering.standalone = True  # one writer is decided by the Lease (see leader.py)
    settings.posting.enabled = False  # reconcile posts its own Events on VoiceServices
    settings.scanning.disabled = True  # no CRD/namespace watches: fewer RBAC rights
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    # Only the operator's own children reach the operator (server-side selection), so
    # memory stays proportional to the VoiceServices, not to the cluster.
    for group_version, plural in handlers.CHILD_RESOURCES.values():
        settings.watching.label_selectors[group_version, plural] = naming.MANAGED_SELECTOR
    return settings


def _check_crd(api: kube.Kube) -> str | None:
    try:
        api.get_path(f"/apis/{spec.API_VERSION}")
    except kube.KubeError as err:
        if err.status == 404:
            return (
                f"the {crd.CRD_NAME} CRD is not installed: run "
                "`kubectl apply -f crds/voiceservices.yaml` (or install the Helm chart) first"
            )
        return f"cannot reach the Kubernetes API: {err}"
    except Exception as err:  # noqa: BLE001 - connection refused, bad kubeconfig...
        return f"cannot reach the Kubernetes API: {type(err).__name__}: {err}"
    return None


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    for noisy in ("kopf.objects", "kopf.activities.probe", "urllib3", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        defaults = config.Defaults.from_env()
        client = kube.load_client()
    except Exception as err:  # noqa: BLE001 - a readable line instead of a traceback
        print(f"voice-operator: {err}", file=sys.stderr)
        return 2
    api = kube.Kube(client, config.FIELD_MANAGER)
    problem = _check_crd(api.with_tally(kube.Tally(), scope="startup"))
    if problem:
        print(f"voice-operator: {problem}", file=sys.stderr)
        return 2

    registry = kopf.OperatorRegistry()
    ctl = controller.Controller(api, defaults, workers=args.workers, resync_seconds=args.resync_seconds)
    handlers.register(registry, ctl)
    elector = None
    if args.leader_election:
        identity = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        elector = leader.LeaderElector(api.with_tally(kube.Tally(), scope="leader"), _lease_namespace(args), args.leader_election_name, identity)
    if args.metrics_port:
        metrics.serve(args.metrics_port)
    scope = "all namespaces" if args.all_namespaces else ", ".join(args.namespaces)
    logger.info("voice-operator watching %s; leader election %s", scope, "on" if elector else "off")
    asyncio.run(kopf.operator(
        registry=registry,
        settings=_settings(),
        clusterwide=args.all_namespaces,
        namespaces=args.namespaces or (),
        liveness_endpoint=args.liveness or None,
        memo=kopf.Memo(elector=elector),
    ))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "crd":
        text = crd.render_yaml()
        if args.output:
            with open(args.output, "w", encoding="utf-8") as handle:
                handle.write(text)
        else:
            sys.stdout.write(text)
        return 0
    if args.command == "rbac":
        sys.stdout.write(rbac.render_yaml())
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
