"""The record this agent publishes for its own node: who the node is, and the record built from
what is registered on it. Pure: LocalNode (node.py) decides when to publish and persists.

`unchanged` is what keeps a publish that a reader could not tell apart from
the last one from costing a new version (and a push to every peer).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from gossamer.catalog.model import Check, NodeRecord, Service


@dataclass(frozen=True)
class NodeIdentity:
    node: str
    node_id: str
    datacenter: str
    address: str
    meta: Mapping[str, str] = field(default_factory=dict)
    # Registered by the agent itself, not through the API: every agent is an
    # instance of service `consul` (port: its agent RPC port), as Consul's
    # servers are, so `consul.service.consul` finds the agents.
    builtin_services: tuple[Service, ...] = ()


def own_record(
    identity: NodeIdentity, version: int, services: Iterable[Service], checks: Iterable[Check]
) -> NodeRecord:
    """The node record for `identity` at `version`, with these services and checks."""
    i = identity
    return NodeRecord(
        node=i.node,
        node_id=i.node_id,
        datacenter=i.datacenter,
        address=i.address,
        version=version,
        origin=i.node,
        # `lan` alone: the family-specific tag (lan_ipv4 or lan_ipv6) is derived from it when
        # answering (catalog/tagged.py); naming lan_ipv4 here tagged an IPv6 node's address so.
        tagged_addresses={"lan": i.address},
        meta=dict(i.meta),
        services=tuple(services),
        checks=tuple(sorted(checks, key=lambda c: c.check_id)),
    )


def unchanged(current: NodeRecord | None, candidate: NodeRecord) -> bool:
    """Whether `candidate` differs from the record held only in its version."""
    return current is not None and replace(current, version=0) == replace(candidate, version=0)
