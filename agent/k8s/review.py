"""AdmissionReview `admission.k8s.io/v1` in, AdmissionReview out. Pure.

Rules this module keeps:
- Only a body that parses as a v1 AdmissionReview with a request uid can be
  answered; anything else is a ReviewError (the server's 400) whose message
  names the field. Nothing else raises: every review that parses gets
  `allowed` and either a patch or a `status.message` saying why not.
- The injector never blocks a pod for its own reasons: not a Pod, not a
  CREATE, a namespace not selected, no annotation, already injected - all
  allowed unchanged. Malformed annotations are allowed uninjected with one
  warning per problem (kubectl prints them), or refused when the injector
  runs with `deny_malformed`.
- Dry-run requests get the same answer: building the patch has no side
  effects (the registration happens later, in the pod), so the webhook is
  declared `sideEffects: None`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gossamer.agent.k8s.annotations import Malformed, Plan, Skip, decide
from gossamer.agent.k8s.patch import InjectorSettings, build_patch

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"


class ReviewError(ValueError):
    """A body that is not an AdmissionReview v1 we can answer (HTTP 400)."""


@dataclass(frozen=True)
class Request:
    uid: str
    kind: str
    namespace: str
    operation: str
    dry_run: bool
    obj: Mapping[str, Any] | None


def parse_review(body: bytes) -> Request:
    """The review's request; ReviewError naming the first field that is wrong."""
    try:
        review = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ReviewError("body: not JSON") from None
    if not isinstance(review, dict):
        raise ReviewError("body: not a JSON object")
    version = review.get("apiVersion")
    if version != API_VERSION:
        raise ReviewError(f"apiVersion: {version!r} is not supported (only {API_VERSION})")
    if review.get("kind") != KIND:
        raise ReviewError(f"kind: {review.get('kind')!r} is not {KIND}")
    request = review.get("request")
    if not isinstance(request, dict):
        raise ReviewError("request: missing or not an object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise ReviewError("request.uid: missing or not a string")
    kind = request.get("kind")
    obj = request.get("object")
    return Request(
        uid=uid,
        kind=str(kind.get("kind", "")) if isinstance(kind, dict) else "",
        namespace=_text(request.get("namespace")),
        operation=_text(request.get("operation")),
        dry_run=request.get("dryRun") is True,
        obj=obj if isinstance(obj, dict) else None,
    )


def answer(request: Request, settings: InjectorSettings) -> dict[str, Any]:
    """The AdmissionReview to send back for `request`."""
    skipped = _not_ours(request, settings)
    if skipped is not None:
        return _review(request.uid, True, message=f"not injected: {skipped}")
    assert request.obj is not None
    decision = decide(request.obj)
    if isinstance(decision, Skip):
        return _review(request.uid, True, message=f"not injected: {decision.reason}")
    if isinstance(decision, Malformed):
        problems = list(decision.problems)
        text = "; ".join(problems)
        if settings.deny_malformed:
            return _review(request.uid, False, message=f"refused: {text}", code=400)
        return _review(request.uid, True, message=f"not injected: {text}", warnings=problems)
    assert isinstance(decision, Plan)
    patch = build_patch(request.obj, decision, settings)
    return _review(request.uid, True, patch=patch)


def _not_ours(request: Request, settings: InjectorSettings) -> str | None:
    if request.kind != "Pod":
        return f"a {request.kind or 'request without kind'}, not a Pod"
    if request.operation != "CREATE":
        return f"operation {request.operation or '(none)'}: only CREATE is injected"
    if request.namespace in settings.skip_namespaces:
        return f"namespace {request.namespace!r} is never injected"
    only = settings.only_namespaces
    if only is not None and request.namespace not in only:
        return f"namespace {request.namespace!r} is not selected"
    if request.obj is None:
        return "request.object: no pod in the request"
    return None


def _review(
    uid: str,
    allowed: bool,
    *,
    patch: list[dict[str, Any]] | None = None,
    message: str | None = None,
    code: int = 200,
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if patch is not None:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    if message is not None:
        response["status"] = {"code": code, "message": message}
    if warnings:
        response["warnings"] = warnings
    return {"apiVersion": API_VERSION, "kind": KIND, "response": response}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
