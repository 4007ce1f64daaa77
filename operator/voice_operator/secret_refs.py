"""The Secrets a VoiceService names, and whether they exist.

Called by ``reconcile`` (step 3) before it renders the children: a missing Secret holds back
the child that mounts it (no pod that cannot start) and becomes a ``Degraded`` problem.
Only existence is checked, by a metadata-only GET, so no Secret data enters the operator.
"""

from __future__ import annotations

import dataclasses
import logging

from voice_operator import kinds, kube, spec, status

logger = logging.getLogger(__name__)

REASONS = frozenset({"SecretNotFound", "SecretCheckFailed"})  # a later reconcile looks again


@dataclasses.dataclass
class Check:
    problems: list[status.Problem] = dataclasses.field(default_factory=list)
    blocked: set[str] = dataclasses.field(default_factory=set)  # child kinds held back
    retry: bool = False


def referenced(s: spec.VoiceServiceSpec) -> list[tuple[str, str, str]]:
    """(secret name, spec field, the kind of child that needs it)."""
    out = []
    if s.api_key_secret is not None:
        out.append((s.api_key_secret.name, "spec.apiKeySecret", kinds.DEPLOYMENT.name))
    refs = s.references
    if refs.storage == "huggingface" and refs.huggingface is not None and refs.huggingface.token_secret is not None:
        out.append((refs.huggingface.token_secret.name, "spec.references.huggingface.tokenSecret", kinds.DEPLOYMENT.name))
    if refs.storage == "s3" and refs.s3 is not None and refs.s3.credentials_secret is not None:
        out.append((refs.s3.credentials_secret.name, "spec.references.s3.credentialsSecret", kinds.DEPLOYMENT.name))
    if s.checkpoint is not None:
        src = s.checkpoint.source
        if src.huggingface is not None and src.huggingface.token_secret is not None:
            out.append((src.huggingface.token_secret.name, "spec.checkpoint.source.huggingface.tokenSecret", kinds.JOB.name))
        if src.s3 is not None and src.s3.credentials_secret is not None:
            out.append((src.s3.credentials_secret.name, "spec.checkpoint.source.s3.credentialsSecret", kinds.JOB.name))
    return out


def check(api: kube.Kube, namespace: str, s: spec.VoiceServiceSpec) -> Check:
    """Look up every Secret the spec names (one metadata-only GET each)."""
    out = Check()
    for secret_name, field, child in referenced(s):
        try:
            found = api.get("Secret", namespace, secret_name, metadata_only=True)
        except kube.KubeError as err:
            if err.status == 403:
                logger.warning(
                    "not allowed to read Secret %s/%s (%s): the operator's RBAC lacks get on secrets there",
                    namespace, secret_name, field,
                )
            out.problems.append(status.Problem("SecretCheckFailed", f"cannot read Secret {secret_name} ({field}): {err.message}"))
            out.retry = True
            continue
        if found is None:
            out.problems.append(status.Problem("SecretNotFound", f"Secret {secret_name} ({field}) not found in namespace {namespace}"))
            out.blocked.add(child)
            out.retry = True
    return out
