"""A thin, counted Kubernetes API client: server-side apply, get, delete, status patch, events.

Sits below ``reconcile`` (which calls it from a worker thread) and ``leader`` (Lease reads
and writes). It speaks to the API by path with plain dicts through the official client's
``ApiClient`` (which also loads kubeconfig or in-cluster credentials, as kubectl does), so
one small module covers every kind the operator owns. Every request is counted per verb
in a ``Tally``: the benchmark reads API requests per reconcile from there and from the
``voice_operator_api_requests_total`` metric.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import threading
import uuid
from collections import Counter
from collections.abc import Mapping
from typing import Any, Final

import kubernetes
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from voice_operator import kinds, metrics

_TIMEOUT: Final = (5.0, 30.0)  # connect, read


class KubeError(Exception):
    """An API error with the server's own message (what a condition shows the user)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @classmethod
    def from_api(cls, err: ApiException) -> KubeError:
        message = err.reason or ""
        reason = err.reason or ""
        try:
            body = json.loads(err.body or "{}")
            message = body.get("message") or message
            reason = body.get("reason") or reason
        except (ValueError, TypeError, AttributeError):
            pass
        return cls(int(err.status or 0), str(reason), str(message))


@dataclasses.dataclass
class Tally:
    """Requests made, by verb (one tally per reconcile, summed by the benchmark)."""

    counts: Counter[str] = dataclasses.field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def writes(self) -> int:
        return sum(n for verb, n in self.counts.items() if verb not in ("get", "list"))


def path(kind: str, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
    """The REST path of a kind's collection or object."""
    group_version, plural = kinds.RESOURCES[kind]
    prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    parts = [prefix]
    if namespace:
        parts.append(f"namespaces/{namespace}")
    parts.append(plural)
    if name:
        parts.append(name)
    if subresource:
        parts.append(subresource)
    return "/".join(parts)


def load_client() -> ApiClient:
    """An ApiClient configured as kubectl would be: KUBECONFIG/~/.kube/config, else in-cluster."""
    configuration = kubernetes.client.Configuration()
    kubeconfig = os.environ.get("KUBECONFIG")
    if kubeconfig or not os.environ.get("KUBERNETES_SERVICE_HOST"):
        kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    # Workers run reconciles in threads; let each have a connection.
    configuration.connection_pool_maxsize = 16
    return ApiClient(configuration)


class Kube:
    """Requests against one API server, counted into ``tally`` (swap it per reconcile)."""

    def __init__(self, client: ApiClient, field_manager: str, tally: Tally | None = None, scope: str = "reconcile") -> None:
        self.client = client
        self.field_manager = field_manager
        self.tally = tally if tally is not None else Tally()
        self.scope = scope  # the metric label: whose requests these are
        self._lock = threading.Lock()

    def with_tally(self, tally: Tally, scope: str | None = None) -> Kube:
        """The same connection, counting into another tally (and metric scope)."""
        return Kube(self.client, self.field_manager, tally, scope or self.scope)

    # -- raw request ---------------------------------------------------------------------

    def _request(
        self,
        verb: str,
        method: str,
        resource_path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> dict[str, Any]:
        with self._lock:
            self.tally.counts[verb] += 1
        metrics.API_REQUESTS.labels(verb=verb, scope=self.scope).inc()
        try:
            response = self.client.call_api(
                resource_path,
                method,
                query_params=query or [],
                header_params={"Content-Type": content_type, "Accept": accept},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=_TIMEOUT,
            )
        except ApiException as err:
            raise KubeError.from_api(err) from None
        data = response.data
        return json.loads(data) if data else {}

    # -- verbs ---------------------------------------------------------------------------

    def get(self, kind: str, namespace: str | None, name: str, *, metadata_only: bool = False) -> dict[str, Any] | None:
        """The object, or None when it does not exist.

        ``metadata_only`` asks for PartialObjectMetadata: enough to know a Secret exists
        without pulling its data into the operator's memory.
        """
        accept = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1" if metadata_only else "application/json"
        try:
            return self._request("get", "GET", path(kind, namespace, name), accept=accept)
        except KubeError as err:
            if err.status == 404:
                return None
            raise

    def get_path(self, resource_path: str) -> dict[str, Any]:
        """GET any API path (discovery documents, for one)."""
        return self._request("get", "GET", resource_path)

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply under the operator's field manager; returns the live object.

        ``force`` takes over fields another manager (say ``kubectl edit``) changed:
        the operator owns what it renders, which is how drift gets repaired.
        """
        meta = manifest["metadata"]
        return self._request(
            "apply",
            "PATCH",
            path(manifest["kind"], meta.get("namespace"), meta["name"]),
            query=[("fieldManager", self.field_manager), ("force", "true")],
            body=manifest,
            content_type="application/apply-patch+yaml",
        )

    def delete(self, kind: str, namespace: str, name: str, *, uid: str | None = None) -> bool:
        """Delete (background propagation); False when it was already gone.

        With ``uid``, only that incarnation is deleted (a precondition), never a
        same-named object created since.
        """
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self._request("delete", "DELETE", path(kind, namespace, name), body=body)
            return True
        except KubeError as err:
            if err.status in (404, 409):
                return False
            raise

    def patch_status(self, kind: str, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        """JSON merge patch of the status subresource (None values remove keys)."""
        return self._request(
            "patch_status",
            "PATCH",
            path(kind, namespace, name, "status"),
            body={"status": dict(status)},
            content_type="application/merge-patch+json",
        )

    def create(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        meta = manifest["metadata"]
        return self._request("create", "POST", path(manifest["kind"], meta.get("namespace")), body=manifest)

    def replace(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """PUT with the manifest's resourceVersion: fails with 409 if someone wrote first."""
        meta = manifest["metadata"]
        return self._request("update", "PUT", path(manifest["kind"], meta.get("namespace"), meta["name"]), body=manifest)

    def post_event(
        self,
        involved: Mapping[str, Any],
        *,
        type: str,
        reason: str,
        message: str,
        component: str,
        now: datetime.datetime | None = None,
    ) -> None:
        """Record a core/v1 Event on an object (what ``kubectl describe`` shows)."""
        meta = involved["metadata"]
        stamp = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:12]}", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": component},
            "reportingComponent": component,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        self.create(event)
