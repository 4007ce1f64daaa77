"""The VoiceService CustomResourceDefinition, generated from the pydantic models in ``spec``.

Called by ``cli`` (``voice-operator crd`` writes ``crds/voiceservices.yaml``) and by the unit
test that fails when the committed file drifts from what this module generates. Pydantic's
JSON schema is rewritten into a Kubernetes *structural* schema: references inlined, optional
fields unwrapped from ``anyOf [X, null]``, int-or-string quantities marked as such, nested
objects defaulted to ``{}`` so the API server fills in their own defaults, and the CEL rules
of the models kept as ``x-kubernetes-validations``.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from pydantic import BaseModel

from voice_operator import spec

CRD_NAME = f"{spec.PLURAL}.{spec.GROUP}"

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Replicas", "type": "string", "jsonPath": ".status.replicaSummary", "description": "ready/desired pods"},
    {"name": "Endpoint", "type": "string", "jsonPath": ".status.endpoint"},
    {"name": "Reason", "type": "string", "priority": 1, "jsonPath": '.status.conditions[?(@.type=="Ready")].reason'},
    {"name": "Checkpoint", "type": "string", "priority": 1, "jsonPath": ".status.checkpoint.revision"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def structural_schema(model: type[BaseModel], *, keep_defaults: bool = True) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of one model (aliases as property names)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    schema = _convert(raw, defs)
    _add_factory_defaults(model, schema)
    if not keep_defaults:
        _strip_defaults(schema)
    return schema


def _convert(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        merged = _convert(target, defs)
        # A field's own description and default win over the model's.
        for key, value in node.items():
            merged[key] = copy.deepcopy(value)
        node = merged
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if len(options) == 1:
            inner = _convert(options[0], defs)
            for key, value in node.items():
                inner[key] = value
            node = inner
        elif node.get("x-kubernetes-int-or-string") or _is_int_or_string(options):
            node["x-kubernetes-int-or-string"] = True
            node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
            patterns = [o["pattern"] for o in options if "pattern" in o]
            if patterns:
                node["pattern"] = patterns[0]
        else:  # pragma: no cover - the models use no other unions
            raise ValueError(f"unsupported union in schema: {options}")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("title", "discriminator", "examples"):
            continue
        if key == "additionalProperties":
            if value is False or value is True:
                continue  # forbidding extras is the API server's pruning; True is preserve-unknown below
            out[key] = _convert(value, defs)
        elif key == "properties":
            out[key] = {name: _convert(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out[key] = _convert(value, defs)
        elif key == "const":
            out["enum"] = [value]
        elif key == "default" and value is None:
            continue  # "unset" is the absence of a default, not null
        else:
            out[key] = value
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out["type"] = "object"
        out.pop("additionalProperties", None)
    if "properties" in out or "additionalProperties" in out:
        out.setdefault("type", "object")
    return out


def _is_int_or_string(options: list[dict[str, Any]]) -> bool:
    return sorted(o.get("type", "") for o in options) == ["integer", "string"]


def _add_factory_defaults(model: type[BaseModel], schema: dict[str, Any]) -> None:
    """Default nested objects built by ``default_factory`` (pydantic leaves them out).

    The API server then fills in absent objects too, so ``kubectl get -o yaml`` shows what
    the operator will use. Empty list/dict factories get no default (no noise in objects).
    """
    properties = schema.get("properties", {})
    for name, field in model.model_fields.items():
        prop = properties.get(field.alias or name)
        if prop is None:
            continue
        nested = _model_of(field.annotation)
        if nested is not None:
            _add_factory_defaults(nested, prop)
        if field.default_factory is None:
            continue
        value = field.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            # Fully expanded: the API server checks a default against the CEL rules as written.
            prop["default"] = _prune(value.model_dump(by_alias=True, exclude_none=True, mode="json"))


def _prune(value: Any) -> Any:
    """Drop empty lists and maps from a default (the API server would store them as noise)."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in ({}, [])}
    return value


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _strip_defaults(schema: Any) -> None:
    if isinstance(schema, dict):
        schema.pop("default", None)
        for value in schema.values():
            _strip_defaults(value)
    elif isinstance(schema, list):
        for value in schema:
            _strip_defaults(value)


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition object, ready to apply."""
    spec_schema = structural_schema(spec.VoiceServiceSpec)
    status_schema = structural_schema(spec.VoiceServiceStatus, keep_defaults=False)
    root: dict[str, Any] = {
        "type": "object",
        "description": "A text-to-speech service: GPU pods serving OpenAudio S1 Mini over HTTP.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
        "x-kubernetes-validations": [
            {
                "rule": f"self.metadata.name.size() <= {spec.MAX_NAME_LENGTH}",
                "message": f"metadata.name must be at most {spec.MAX_NAME_LENGTH} characters (children append suffixes)",
            },
            {
                "rule": f"self.metadata.name.matches('{spec.NAME_PATTERN}')",
                "message": "metadata.name must start with a letter and hold only lowercase letters, digits and '-' (it names a Service)",
            },
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/name": "voice-service", "app.kubernetes.io/part-of": "voice-service"},
        },
        "spec": {
            "group": spec.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": spec.KIND,
                "listKind": f"{spec.KIND}List",
                "plural": spec.PLURAL,
                "singular": spec.SINGULAR,
                "shortNames": list(spec.SHORT_NAMES),
                "categories": ["voice-service"],
            },
            "versions": [
                {
                    "name": spec.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": root},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


class _Dumper(yaml.SafeDumper):
    """Plain YAML: no anchors/aliases for schema parts pydantic shares between fields."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


_HEADER = "# Generated by `voice-operator crd` from operator/voice_operator/spec.py. Do not edit.\n"


def render_yaml() -> str:
    """The CRD as the YAML text committed in ``crds/voiceservices.yaml``."""
    return _HEADER + yaml.dump(build_crd(), Dumper=_Dumper, sort_keys=False, width=120)
