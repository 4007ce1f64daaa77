#!/usr/bin/env python3
"""How the operator scales: time for 1, 50 and 200 VoiceServices to reach Ready, API
requests per reconcile, and the operator's peak memory. Prints a table.

Run by ``make bench-operator``. Uses the local control plane of the e2e tests (a running
``make cluster-up`` cluster, else one started here and stopped at the end; or
``--kubeconfig`` for any cluster with kwok's simulated nodes). The operator runs as a real
process (``python -m voice_operator run``); pods are simulated by kwok, so the numbers are
the operator's and the API server's work, not a model's start-up time. Stopped by Ctrl-C,
SIGTERM or SIGHUP, it still stops the operator, deletes its namespaces and stops a cluster
it started (``tests.lifetime``); tests/e2e/test_scripts.py checks that.

For each size N, in a namespace of its own: create N mock-engine VoiceServices with one
``kubectl apply``, wait until every one reports Ready=True, then touch each (an annotation:
a watch event with nothing to change) and count what those reconciles cost. Requests are
the operator's own (``voice_operator_api_requests_total``; Lease renewals left out).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys
import tempfile
import time
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests import lifetime
from tests.cluster import client, launcher
from tests.e2e.operator_fixtures import (
    CRD_FILE,
    GPU_TOLERATION,
    OperatorProcess,
    voiceservice,
)

RECONCILE_VERBS = ("apply", "patch_status", "delete", "create", "get")
WRITE_VERBS = ("apply", "patch_status", "delete", "create")


def peak_rss_mib(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reconciles(op: OperatorProcess) -> float:
    return op.metric("voice_operator_reconciles_total")


def ready_count(cluster: client.Cluster, namespace: str) -> int:
    items = cluster.kubectl_json("get", "voiceservices", "-n", namespace)["items"]
    return sum(
        1 for vs in items
        for c in vs.get("status", {}).get("conditions", [])
        if c["type"] == "Ready" and c["status"] == "True"
    )


def run_size(cluster: client.Cluster, op: OperatorProcess, namespace: str, n: int, timeout: float) -> dict[str, Any]:
    # Tolerating the GPU taint lets the (GPU-less) mock pods use all three simulated nodes.
    items = [voiceservice(f"tts-{i:03d}", tolerations=[GPU_TOLERATION]) for i in range(n)]
    requests0, writes0, reconciles0 = op.api_requests(RECONCILE_VERBS), op.api_requests(WRITE_VERBS), reconciles(op)
    started = time.monotonic()
    # Server-side apply: one request per object, no client-side GET first.
    cluster.kubectl("apply", "--server-side", "-n", namespace, "-f", "-",
                    input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}), timeout=timeout)
    applied = time.monotonic()
    deadline = started + timeout
    while (ready := ready_count(cluster, namespace)) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: only {ready}/{n} VoiceServices Ready after {timeout:.0f}s")
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    op.wait_idle(timeout)  # the last Ready status is written; its Events follow in the same reconcile
    requests1, writes1, reconciles1 = op.api_requests(RECONCILE_VERBS), op.api_requests(WRITE_VERBS), reconciles(op)

    # Touch every VoiceService: each gets a reconcile that should find nothing to do.
    cluster.kubectl("annotate", "voiceservices", "--all", "-n", namespace, f"bench/touched={time.time_ns()}", "--overwrite")
    client.Cluster.wait_for(f"{n} reconciles after the touch", lambda: reconciles(op) >= reconciles1 + n, timeout=timeout)
    op.wait_idle(timeout)
    requests2, reconciles2 = op.api_requests(RECONCILE_VERBS), reconciles(op)
    noop_reconciles = max(reconciles2 - reconciles1, 1)
    return {
        "n": n,
        "apply_s": applied - started,
        "ready_s": elapsed,
        "reconciles": reconciles1 - reconciles0,
        "requests": requests1 - requests0,
        "writes": writes1 - writes0,
        "per_reconcile": (requests1 - requests0) / max(reconciles1 - reconciles0, 1),
        "per_service": (requests1 - requests0) / n,
        "noop_reconciles": reconciles2 - reconciles1,
        "noop_per_reconcile": (requests2 - requests1) / noop_reconciles,
        "rss_mib": peak_rss_mib(op.process.pid) if op.process else float("nan"),
    }


def clean(cluster: client.Cluster, namespace: str, timeout: float) -> None:
    """Delete one size's VoiceServices (their pods go by garbage collection) before the next."""
    cluster.kubectl("delete", "voiceservices", "--all", "-n", namespace, "--wait=true", timeout=timeout)
    client.Cluster.wait_for(
        f"pods of {namespace} gone",
        lambda: not cluster.kubectl("get", "pods", "-n", namespace, "-o", "name").stdout.strip(),
        timeout=timeout,
    )


def print_table(rows: list[dict[str, Any]], workers: int) -> None:
    print()
    print(f"voice-operator bench: mock-engine VoiceServices, kwok pods, {workers} reconcile workers")
    header = (
        f"{'VoiceServices':>13} {'created (s)':>11} {'all Ready (s)':>13} {'per VS (ms)':>11} {'reconciles':>10} {'API req':>8} "
        f"{'req/reconcile':>13} {'req/VS':>7} {'no-op req/reconcile':>19} {'peak RSS (MiB)':>14}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['n']:>13} {r['apply_s']:>11.1f} {r['ready_s']:>13.1f} {1000 * r['ready_s'] / r['n']:>11.0f} {r['reconciles']:>10.0f} "
            f"{r['requests']:>8.0f} {r['per_reconcile']:>13.2f} {r['per_service']:>7.1f} "
            f"{r['noop_per_reconcile']:>19.2f} {r['rss_mib']:>14.1f}"
        )
    print()
    print("created: the one `kubectl apply --server-side` of the N objects (kubectl's own pace).")
    print("all Ready: from the start of that apply to the last Ready=True condition.")
    print("API req: the operator's reconcile requests while they came up (applies, status patches, events, Secret")
    print("  checks); Lease renewals and kopf's watch streams are not counted.")
    print("no-op: reconciles caused by touching every VoiceService afterwards; 0 means a no-op reconcile writes nothing.")
    print("peak RSS: the operator process's VmHWM after that size (sizes run in order, one process, each size's")
    print("  VoiceServices deleted before the next).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,50,200", help="comma-separated VoiceService counts")
    parser.add_argument("--kubeconfig", type=pathlib.Path, help="an existing cluster with kwok nodes")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=600, help="seconds per size")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]

    plane = None
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="bench-operator-"))
    if args.kubeconfig:
        bin_dir = launcher.tools_bin_dir()
        cluster = client.Cluster(args.kubeconfig, bin_dir, local=False, cache_dir=workdir / "kube-cache")
    elif (state := launcher.running_state(launcher.DEFAULT_DIR)) is not None:
        cluster = client.Cluster(pathlib.Path(state.kubeconfig), pathlib.Path(state.bin_dir), local=True,
                                 cache_dir=launcher.DEFAULT_DIR / "run" / "kube-cache")
    else:
        bin_dir = launcher.tools_bin_dir()
        launcher.ensure_tools(bin_dir)
        plane = launcher.ControlPlane(workdir / "cluster", bin_dir, owned=True)
        print("bench: starting a local control plane ...", flush=True)
        plane.start()
        cluster = client.Cluster(plane.kubeconfig, bin_dir, local=True, cache_dir=plane.run_dir / "kube-cache")

    namespaces = [cluster.create_namespace(prefix=f"bench-{n}") for n in sizes]
    op: OperatorProcess | None = None
    try:
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
        cluster.wait_crd_established("voiceservices.voice-service.io")
        op = OperatorProcess(cluster, namespaces, workdir / "operator.log", "--workers", str(args.workers),
                             "--leader-election-namespace", namespaces[0]).start()
        assert op.process is not None
        print(f"bench: operator pid {op.process.pid} in namespaces {' '.join(namespaces)}; log {op.log}", flush=True)
        rows = []
        for n, namespace in zip(sizes, namespaces, strict=True):
            print(f"bench: {n} VoiceServices ...", flush=True)
            rows.append(run_size(cluster, op, namespace, n, args.timeout))
            clean(cluster, namespace, args.timeout)
        print_table(rows, args.workers)
        print(json.dumps({"results": rows}), file=sys.stderr)
    finally:
        if op is not None:
            op.stop()
        if plane is not None:
            plane.stop()  # its namespaces go with it (on SIGTERM its own handler stopped it already)
        else:
            for namespace in namespaces:
                cluster.delete_namespace(namespace)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(lifetime.run_main(main))
