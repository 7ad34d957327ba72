"""Shared pieces of the Kubernetes tests: pods, reviews, and the schemas they are checked against.

No Kubernetes API server can run here. Pods (patched by the injector) and
the manifests are validated against the Kubernetes OpenAPI schemas that the
`kubernetes-validate` package ships (strict: unknown fields fail too);
AdmissionReview is not a served resource, so it has no OpenAPI schema:
ADMISSION_REVIEW_SCHEMA below is written from the admission/v1 Go types
(AdmissionReview, AdmissionResponse, metav1.Status) and checked with jsonschema.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import uuid
from typing import Any

import jsonpatch  # type: ignore[import-untyped]
import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]

K8S_VERSION = "1.30.0"

_STATUS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "status": {"type": "string"},
        "message": {"type": "string"},
        "reason": {"type": "string"},
        "details": {"type": "object"},
        "code": {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    },
}
ADMISSION_REVIEW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "response"],
    "properties": {
        "apiVersion": {"const": "admission.k8s.io/v1"},
        "kind": {"const": "AdmissionReview"},
        "response": {
            "type": "object",
            "additionalProperties": False,
            "required": ["uid", "allowed"],
            "properties": {
                "uid": {"type": "string", "minLength": 1},
                "allowed": {"type": "boolean"},
                "status": _STATUS,
                "patch": {"type": "string", "contentEncoding": "base64"},
                "patchType": {"const": "JSONPatch"},
                "auditAnnotations": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                },
                "warnings": {"type": "array", "items": {"type": "string"}},
            },
            # the API server rejects a patch without its type
            "dependentRequired": {"patch": ["patchType"]},
        },
    },
}


def pod(
    annotations: dict[str, str] | None = None,
    containers: list[dict[str, Any]] | None = None,
    init_containers: list[dict[str, Any]] | None = None,
    name: str = "web-7d9f",
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "shop", "labels": {"app": "web"}}
    if annotations is not None:
        metadata["annotations"] = annotations
    spec: dict[str, Any] = {
        "containers": containers
        or [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 8080}]}]
    }
    if init_containers is not None:
        spec["initContainers"] = init_containers
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def review(
    obj: dict[str, Any] | None,
    *,
    namespace: str = "shop",
    operation: str = "CREATE",
    kind: str = "Pod",
    dry_run: bool = False,
) -> dict[str, Any]:
    """An AdmissionReview v1 request as the API server sends it."""
    request: dict[str, Any] = {
        "uid": str(uuid.uuid4()),
        "kind": {"group": "", "version": "v1", "kind": kind},
        "resource": {"group": "", "version": "v1", "resource": kind.lower() + "s"},
        "requestKind": {"group": "", "version": "v1", "kind": kind},
        "requestResource": {"group": "", "version": "v1", "resource": kind.lower() + "s"},
        "namespace": namespace,
        "operation": operation,
        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
        "object": obj,
        "oldObject": None,
        "dryRun": dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
    }
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def check_response(sent: dict[str, Any], got: dict[str, Any]) -> dict[str, Any]:
    """The response, after checking it against the AdmissionReview schema and the request's uid."""
    jsonschema.validate(got, ADMISSION_REVIEW_SCHEMA)
    response: dict[str, Any] = got["response"]
    assert response["uid"] == sent["request"]["uid"]
    return response


def patched(obj: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """The pod after the response's JSON Patch, applied by the jsonpatch library."""
    ops = json.loads(base64.b64decode(response["patch"]))
    result: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(obj), ops)
    return result


def valid_k8s(obj: dict[str, Any]) -> None:
    """Raises kubernetes_validate.ValidationError if `obj` breaks the Kubernetes schema."""
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's `$(VAR)` expansion (command, args, env values); unknown names stay."""
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), text)
