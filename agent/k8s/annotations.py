"""What a pod's annotations ask of the injector. Pure.

Rules this module keeps:
- `gossamer.io/inject` decides: "true" injects, "false" or absent leaves
  the pod alone; any other value is malformed (Kubernetes takes annotation
  values as strings, so `true` unquoted in YAML is already refused upstream).
- A pod already injected (`gossamer.io/injected: "true"`, or a container
  named like ours) is left alone, so a reinvocation never adds a second
  sidecar.
- Every problem is reported at once, each naming its annotation, so a user
  fixes them in one go. A malformed pod is admitted uninjected with the
  problems as warnings (review.py) unless the injector is told to refuse.
- The ACL token (the sidecar's and its agent's, see agent/acl/) comes from a
  Secret in the pod's namespace: `gossamer.io/acl-token-secret` names it, else it is
  `gossamer-acl-<service account>`; the patch references it as optional,
  so a pod without one runs all the same.
- The service name defaults to the first container's name and the port to
  its first containerPort (as Consul's injector did before Services were
  required); upstreams are `name:port` pairs, comma separated.
- `gossamer.io/proxy-workers` is the sidecar's `--workers`: 1 to 64, or
  `auto`, which the sidecar sizes from its cpuset and CPU limit (Linkerd's
  `config.linkerd.io/proxy-cpu-limit` plays this part); 1 when absent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gossamer.proxy.ca.errors import LeafRequestError
from gossamer.proxy.ca.leaf import check_service_name
from gossamer.proxy.config_error import ConfigError
from gossamer.proxy.config_flags import workers_text

PREFIX = "gossamer.io/"
INJECT = PREFIX + "inject"
INJECTED = PREFIX + "injected"
SERVICE = PREFIX + "connect-service"
SERVICE_PORT = PREFIX + "connect-service-port"
UPSTREAMS = PREFIX + "connect-service-upstreams"
ACL_TOKEN_SECRET = PREFIX + "acl-token-secret"
WORKERS = PREFIX + "proxy-workers"
TOKEN_SECRET_PREFIX = "gossamer-acl-"
SIDECAR_CONTAINER = "gossamer-sidecar"
INIT_CONTAINER = "gossamer-init"


@dataclass(frozen=True)
class Upstream:
    name: str
    port: int


@dataclass(frozen=True)
class Plan:
    """Inject: the service, its port and its upstreams."""

    service: str
    port: int
    upstreams: tuple[Upstream, ...] = ()
    token_secret: str = TOKEN_SECRET_PREFIX + "default"
    workers: str = "1"  # the sidecar's `--workers`: "1" to "64", or "auto"


@dataclass(frozen=True)
class Skip:
    """Leave the pod alone; `reason` says why (shown in the response's status)."""

    reason: str


@dataclass(frozen=True)
class Malformed:
    """The pod asked for injection but its annotations are wrong: every problem, each named."""

    problems: tuple[str, ...] = field(default_factory=tuple)


Decision = Plan | Skip | Malformed


def decide(pod: Mapping[str, Any]) -> Decision:
    """What to do with `pod` (a Pod object as the API server sends it)."""
    annotations = _annotations(pod)
    if isinstance(annotations, Malformed):
        return annotations
    if annotations.get(INJECTED) == "true" or _has_our_container(pod):
        return Skip("already injected")
    wanted = annotations.get(INJECT)
    if wanted is None:
        return Skip(f"no {INJECT} annotation")
    if wanted == "false":
        return Skip(f'{INJECT} is "false"')
    problems: list[str] = []
    if wanted != "true":
        problems.append(f'{INJECT}: must be "true" or "false", got {wanted!r}')
    first = _first_container(pod)
    service = _service(annotations, first, problems)
    port = _port(annotations, first, problems)
    upstreams = parse_upstreams(annotations.get(UPSTREAMS, ""), problems)
    token_secret = _token_secret(annotations, pod, problems)
    workers = _workers(annotations.get(WORKERS, "1"), problems)
    if problems or service is None or port is None:
        return Malformed(tuple(problems))
    return Plan(service, port, upstreams, token_secret, workers)


def _workers(text: str, problems: list[str]) -> str:
    try:
        return workers_text(text, WORKERS)
    except ConfigError as exc:
        problems.append(str(exc))
        return text


def parse_upstreams(text: str, problems: list[str]) -> tuple[Upstream, ...]:
    """`"db:5432, cache:6379"` as Upstreams; problems appended, naming each bad entry."""
    found: list[Upstream] = []
    ports: set[int] = set()
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        name, sep, port_text = entry.partition(":")
        where = f"{UPSTREAMS}: {entry!r}"
        if not sep or ":" in port_text:
            problems.append(f"{where}: expected NAME:PORT")
            continue
        if not _service_name_ok(name):
            problems.append(f"{where}: {name!r} is not a service name")
            continue
        port = _port_number(port_text)
        if port is None:
            problems.append(f"{where}: port must be 1-65535")
        elif port in ports:
            problems.append(f"{where}: local port {port} is used by another upstream")
        else:
            ports.add(port)
            found.append(Upstream(name, port))
    return tuple(found)


def _annotations(pod: Mapping[str, Any]) -> Mapping[str, str] | Malformed:
    metadata = pod.get("metadata") or {}
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    if annotations is None:
        return {}
    if not isinstance(annotations, Mapping) or not all(
        isinstance(v, str) for v in annotations.values()
    ):
        return Malformed(("metadata.annotations: must map names to strings",))
    return annotations


def _containers(pod: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    spec = pod.get("spec")
    items = spec.get(key) if isinstance(spec, Mapping) else None
    return [c for c in items if isinstance(c, Mapping)] if isinstance(items, list) else []


def _has_our_container(pod: Mapping[str, Any]) -> bool:
    names = {c.get("name") for c in _containers(pod, "containers")}
    names |= {c.get("name") for c in _containers(pod, "initContainers")}
    return SIDECAR_CONTAINER in names or INIT_CONTAINER in names


def _first_container(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    containers = _containers(pod, "containers")
    return containers[0] if containers else {}


def _service(
    annotations: Mapping[str, str], first: Mapping[str, Any], problems: list[str]
) -> str | None:
    if SERVICE in annotations:
        name, where = annotations[SERVICE], SERVICE
    else:
        name, where = str(first.get("name", "")), f"{SERVICE} (default: first container's name)"
    if _service_name_ok(name):
        return name
    problems.append(f"{where}: {name!r} is not a service name")
    return None


def _port(
    annotations: Mapping[str, str], first: Mapping[str, Any], problems: list[str]
) -> int | None:
    if SERVICE_PORT in annotations:
        port = _port_number(annotations[SERVICE_PORT])
        if port is None:
            problems.append(f"{SERVICE_PORT}: must be a port number 1-65535")
        return port
    ports = first.get("ports")
    if isinstance(ports, list) and ports and isinstance(ports[0], Mapping):
        number = ports[0].get("containerPort")
        if isinstance(number, int) and 0 < number < 65536:
            return number
    problems.append(f"{SERVICE_PORT}: not given and the first container declares no port")
    return None


# A Secret's name: a DNS subdomain (RFC 1123), as the API server checks it.
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _token_secret(
    annotations: Mapping[str, str], pod: Mapping[str, Any], problems: list[str]
) -> str:
    if ACL_TOKEN_SECRET in annotations:
        name = annotations[ACL_TOKEN_SECRET]
        if not _SUBDOMAIN.fullmatch(name) or len(name) > 253:
            problems.append(f"{ACL_TOKEN_SECRET}: {name!r} is not a Secret name")
        return name
    spec = pod.get("spec")
    account = spec.get("serviceAccountName") if isinstance(spec, Mapping) else None
    # The API server's ServiceAccount admission runs before webhooks and sets
    # the name; "default" is what it would set.
    return TOKEN_SECRET_PREFIX + (account if isinstance(account, str) and account else "default")


def _service_name_ok(name: str) -> bool:
    """A name the mesh can issue an identity for (the CA's rule, kept in one place)."""
    try:
        check_service_name("dc1", name)  # the datacenter does not change the rule
    except LeafRequestError:
        return False
    return True


def _port_number(text: str) -> int | None:
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 5:
        return None
    port = int(text)
    return port if 0 < port < 65536 else None
