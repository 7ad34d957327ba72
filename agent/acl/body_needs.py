"""The permissions a write needs when its subject is in the body or behind an ID.

For the endpoint table's `by_body` rows: a registration names its service
in the body, a deregistration names an ID the agent maps to a service, an
intention by ID has its destination in the store. `Lookups` answers those
ID questions, so this stays pure. An ID nothing holds needs the permission
on the ID itself, so an unknown ID still gets the handler's 404 only for a
token that could have written it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gossamer.agent.acl.rules import Access
from gossamer.catalog.config_entries import related_services
from gossamer.intentions.config_entry import is_config_entry

W, R = Access.WRITE, Access.READ
Need = tuple[str, str, Access]  # kind, name, access


@dataclass(frozen=True)
class Lookups:
    own_node: str
    service_name: Callable[[str], str | None]  # local service ID -> name
    check_service: Callable[[str], str | None]  # local check ID -> its service name ("" none)
    intention_destination: Callable[[str], str | None]  # intention ID -> destination


def _field(body: Any, key: str) -> Any:
    """`body[key]` matched case-insensitively, as Go's encoding/json (and so Consul, and our
    registration parsers) read it: py-consul sends `{"name": ...}`."""
    if not isinstance(body, dict):
        return None
    if key in body:
        return body[key]
    lower = key.lower()
    return next((v for k, v in body.items() if isinstance(k, str) and k.lower() == lower), None)


def _text(body: Any, key: str) -> str:
    value = _field(body, key)
    return value if isinstance(value, str) else ""


def _check(check_id: str, look: Lookups) -> list[Need]:
    service = look.check_service(check_id)
    return [("service", service, W)] if service else [("node", look.own_node, W)]


def body_needs(
    route: str, method: str, body: Any, params: Mapping[str, str], look: Lookups
) -> list[Need]:
    """What the request must be allowed; never empty (nothing to check is not "allowed").

    An empty name means the body lacks it (the route would 400); a body naming no
    subject at all (an empty denial report, an intention without a destination)
    needs a management token, so a malformed write never passes unchecked."""
    return _needs(route, method, body, params, look) or [("acl", "", W)]


def _needs(
    route: str, method: str, body: Any, params: Mapping[str, str], look: Lookups
) -> list[Need]:
    if route == "/v1/agent/service/register":
        return [("service", _text(body, "Name") or _text(body, "ID"), W)]
    if route.startswith(("/v1/agent/service/deregister/", "/v1/agent/service/maintenance/")):
        sid = params.get("service_id", "")
        return [("service", look.service_name(sid) or sid, W)]
    if route == "/v1/agent/check/register":
        sid = _text(body, "ServiceID")
        if sid:
            return [("service", look.service_name(sid) or sid, W)]
        return [("node", look.own_node, W)]
    if route.startswith("/v1/agent/check/"):
        return _check(params.get("check_id", ""), look)
    if route == "/v1/agent/connect/authorize":
        return [("service", _text(body, "Target"), W)]
    if route in ("/v1/catalog/register", "/v1/catalog/deregister"):
        needs: list[Need] = [("node", _text(body, "Node"), W)]
        service = _field(body, "Service")
        if isinstance(service, dict):
            needs.append(("service", _text(service, "Service") or _text(service, "ID"), W))
        if _text(body, "ServiceID"):
            needs.append(("service", _text(body, "ServiceID"), W))
        return needs
    if route == "/v1/connect/intentions/denials":
        rows = body if isinstance(body, list) else []
        names = sorted({_text(r, "Destination") for r in rows})
        return [("service", n, W) for n in names]
    if route.startswith("/v1/connect/intentions"):
        needs = []
        if "id" in params:
            held = look.intention_destination(params["id"])
            needs.append(("intention", held if held is not None else params["id"], W))
        if method in ("POST", "PUT") and _text(body, "DestinationName"):
            needs.append(("intention", _text(body, "DestinationName"), W))
        return needs
    if route == "/v1/config":  # a service-* entry is written with service:write on its Name,
        # a service-intentions one with intentions:write, as Consul checks it
        # (the same test that sends the body to the intentions: any key spelling it takes)
        if is_config_entry(body):
            return [("intention", _text(body, "Name"), W)]
        # a splitter or resolver also needs service:read on each service it sends traffic
        # to (Consul's canWriteDiscoveryChain): else a token for `api` alone could redirect
        # api's callers to any service
        related = [("service", s, R) for s in related_services(body)]
        return [("service", _text(body, "Name"), W), *related]
    return [("acl", "", W)]  # a by_body row this function does not know: management only
