"""Cut a read's answer down to what the token may see (Consul's `filterACL`).

Applied by the middleware to the JSON of the routes the endpoint table
marks `filtered`. What an item is about is read from Consul's own field
names, most specific first: an intention (`DestinationName`), a service
(`ServiceName`, `Service`), a node (`Node`, or `Name` for members). The
caller sets `X-Consul-Results-Filtered-By-ACLs: true` when anything was
removed, as Consul does, so a client can tell "none" from "none you may see".
A single object the token may not see is refused whole (`None`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

May = Callable[[str, str], bool]  # (kind, name) -> may read
KEYED_BY_SERVICE = frozenset({"/v1/catalog/services"})
KEYED_LISTS = frozenset({"/v1/connect/intentions/match"})


def subject(item: Any) -> tuple[str, str] | None:
    """(kind, name) an item of an answer is about; None if it names nothing we know."""
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("DestinationName"), str):
        return "intention", item["DestinationName"]
    if isinstance(item.get("Destination"), str) and "Source" in item:  # a denial row
        return "intention", item["Destination"]
    if item.get("ServiceName"):
        return "service", str(item["ServiceName"])
    service = item.get("Service")
    if isinstance(service, str) and service:
        return "service", service
    if isinstance(service, dict) and isinstance(service.get("Service"), str):
        return "service", service["Service"]
    node = item.get("Node")
    if isinstance(node, dict):
        node = node.get("Node")
    if isinstance(node, str) and node:
        return "node", node
    kind = item.get("Kind")
    if kind == "service-intentions" and isinstance(item.get("Name"), str):
        return "intention", item["Name"]  # read with intentions:read, as Consul's
    if isinstance(kind, str) and kind.startswith("service-") and isinstance(item.get("Name"), str):
        return "service", item["Name"]  # a config entry of a service-* kind
    if isinstance(item.get("Name"), str):
        return "node", item["Name"]
    return None


def _visible(item: Any, may: May) -> bool:
    about = subject(item)
    return about is None or may(*about)


def filter_result(route: str, payload: Any, may: May) -> tuple[Any, bool]:
    """(what the token may see, whether anything was removed); (None, True) refuses it whole."""
    if isinstance(payload, list):
        kept = [item for item in payload if _visible(item, may)]
        return kept, len(kept) != len(payload)
    if not isinstance(payload, dict):
        return payload, False
    if route in KEYED_BY_SERVICE:
        kept_keys = {k: v for k, v in payload.items() if may("service", k)}
        return kept_keys, len(kept_keys) != len(payload)
    if route in KEYED_LISTS:
        removed = False
        out: dict[str, Any] = {}
        for key, items in payload.items():
            out[key], cut = filter_result("", items, may)
            removed = removed or cut
        return out, removed
    if payload and all(isinstance(v, dict) for v in payload.values()) and subject(payload) is None:
        kept_values = {k: v for k, v in payload.items() if _visible(v, may)}
        return kept_values, len(kept_values) != len(payload)
    return (payload, False) if _visible(payload, may) else (None, True)


def node_of(item: Any) -> str | None:
    """The node an item of a service or health answer runs on (`Node`, or `Node.Node`)."""
    node = item.get("Node") if isinstance(item, dict) else None
    if isinstance(node, dict):
        node = node.get("Node")
    return node if isinstance(node, str) else None


def filter_nodes(payload: Any, may: May) -> tuple[Any, bool]:
    """A named service read keeps only the instances on nodes the token may read (Consul
    needs `node:read` too for each node in `/v1/health/service/<s>` and the like)."""
    if not isinstance(payload, list):
        return payload, False
    kept = [i for i in payload if (node := node_of(i)) is None or may("node", node)]
    return kept, len(kept) != len(payload)
