"""The JSON Patch (RFC 6902) that meshes a pod. Pure.

What the patch adds, and why:
- an init container `gossamer-init` that registers the pod's service and
  sidecar with the node's agent (`gossamer k8s register`); init containers
  finish before app containers start, so the sidecar finds its registration;
- a container `gossamer-sidecar` running `gossamer connect proxy
  --sidecar-for <id>`, whose preStop hook deregisters (`gossamer k8s
  deregister`), so the instance leaves the catalog before the proxy drains;
- the annotation `gossamer.io/injected: "true"`, which makes a second pass
  (reinvocation, a re-applied manifest) a no-op.
Both containers find the agent at the node's IP through the downward API
(`status.hostIP`) and the agent's HTTP port; `gossamer k8s register` and
`deregister` read the pod's name, namespace and IP from the same env vars.
Patches only append, so the pod's own containers, their order and their
indices are never touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gossamer.agent.k8s.annotations import INIT_CONTAINER, INJECTED, SIDECAR_CONTAINER, Plan
from gossamer.agent.k8s.registration import SIDECAR_PORT, service_id

Op = dict[str, Any]


@dataclass(frozen=True)
class InjectorSettings:
    """How the injector shapes the sidecar; one frozen object from the flags."""

    image: str = "gossamer:latest"
    agent_http_port: int = 8500
    # An agent serving only HTTPS (`http_port: -1`): the sidecar dials https:// and
    # verifies the agent against this CA file inside the pod (the mesh root, mounted).
    agent_https: bool = False
    agent_ca_file: str | None = None
    sidecar_port: int = SIDECAR_PORT
    # namespaces never injected, whatever the webhook configuration sends
    skip_namespaces: frozenset[str] = frozenset({"kube-system", "kube-public", "gossamer"})
    # None: every namespace not skipped; else only these
    only_namespaces: frozenset[str] | None = None
    # refuse (allowed: false) a pod whose annotations are malformed
    deny_malformed: bool = False


def build_patch(pod: Mapping[str, Any], plan: Plan, settings: InjectorSettings) -> list[Op]:
    """The operations that add our containers and mark the pod injected."""
    spec = pod.get("spec") if isinstance(pod.get("spec"), Mapping) else {}
    assert isinstance(spec, Mapping)
    sid = service_id("$(POD_NAME)", "$(POD_NAMESPACE)", plan.service)  # kubelet expands these
    ops: list[Op] = []
    ops += _append(spec, "initContainers", _init_container(plan, settings))
    ops += _append(spec, "containers", _sidecar_container(sid, plan, settings))
    ops.append(_mark_injected(pod))
    return ops


def _append(spec: Mapping[str, Any], key: str, item: Mapping[str, Any]) -> list[Op]:
    if isinstance(spec.get(key), list):
        return [{"op": "add", "path": f"/spec/{key}/-", "value": item}]
    return [{"op": "add", "path": f"/spec/{key}", "value": [item]}]


def _mark_injected(pod: Mapping[str, Any]) -> Op:
    metadata = pod.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    if isinstance(annotations, Mapping):
        key = INJECTED.replace("~", "~0").replace("/", "~1")
        return {"op": "add", "path": f"/metadata/annotations/{key}", "value": "true"}
    return {"op": "add", "path": "/metadata/annotations", "value": {INJECTED: "true"}}


def _env(settings: InjectorSettings, plan: Plan) -> list[dict[str, Any]]:
    def field(name: str, path: str) -> dict[str, Any]:
        return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}

    return [
        field("HOST_IP", "status.hostIP"),
        field("POD_IP", "status.podIP"),
        field("POD_NAME", "metadata.name"),
        field("POD_NAMESPACE", "metadata.namespace"),
        {"name": "GOSSAMER_HTTP_ADDR", "value": _agent_addr(settings)},
        *_ca_file(settings),
        # Consul's variable, so a client that speaks ACLs finds it; optional:
        # a pod whose service account has no token Secret starts all the same.
        {
            "name": "CONSUL_HTTP_TOKEN",
            "valueFrom": {
                "secretKeyRef": {"name": plan.token_secret, "key": "token", "optional": True}
            },
        },
    ]


def _agent_addr(settings: InjectorSettings) -> str:
    scheme = "https://" if settings.agent_https else ""
    return f"{scheme}$(HOST_IP):{settings.agent_http_port}"


def _ca_file(settings: InjectorSettings) -> list[dict[str, Any]]:
    ca = settings.agent_ca_file
    return [{"name": "CONSUL_CACERT", "value": ca}] if ca else []


def _init_container(plan: Plan, settings: InjectorSettings) -> dict[str, Any]:
    upstreams = ",".join(f"{u.name}:{u.port}" for u in plan.upstreams)
    return {
        "name": INIT_CONTAINER,
        "image": settings.image,
        "command": ["gossamer", "k8s", "register", "--service", plan.service],
        "args": ["--port", str(plan.port), "--sidecar-port", str(settings.sidecar_port)]
        + (["--upstreams", upstreams] if upstreams else []),
        "env": _env(settings, plan),
    }


def _sidecar_container(sid: str, plan: Plan, settings: InjectorSettings) -> dict[str, Any]:
    # The kubelet does not expand $(VAR) in hook commands: the command reads
    # POD_NAME and POD_NAMESPACE from its environment itself.
    deregister = ["gossamer", "k8s", "deregister", "--service", plan.service]
    return {
        "name": SIDECAR_CONTAINER,
        "image": settings.image,
        "command": ["gossamer", "connect", "proxy", "--sidecar-for", sid]
        + (["--workers", plan.workers] if plan.workers != "1" else []),
        "env": _env(settings, plan),
        "ports": [{"name": "mesh-inbound", "containerPort": settings.sidecar_port}],
        "lifecycle": {"preStop": {"exec": {"command": deregister}}},
    }
