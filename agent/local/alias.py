"""What an alias check sees of the node it watches: this node's live state or a peer's.

An alias check mirrors the health of another service or node. For this node
the registered services and checks as they stand now are used (they may be
newer than the catalog's copy); for a peer, its record in the catalog with
the node-level checks the catalog derives (serfHealth). Only checks in a
known state (passing, warning, critical) count.
"""

from __future__ import annotations

from collections.abc import Iterable

from gossamer.agent.checks.status import AliasedCheck, NodeHealth
from gossamer.catalog import merge
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.model import Check


def own_health(node: str, services: Iterable[str], checks: Iterable[Check]) -> NodeHealth:
    return NodeHealth(node=node, services=frozenset(services), checks=_aliased(checks))


def peer_health(catalog: LiveCatalog, node: str) -> NodeHealth | None:
    """None when the catalog does not know the node."""
    record = catalog.record(node)
    if record is None:
        return None
    checks = list(merge.node_checks(catalog.state, record)) + [
        c for c in record.checks if c.service_id
    ]
    services = frozenset(s.id for s in record.services)
    return NodeHealth(node=node, services=services, checks=_aliased(checks))


def _aliased(checks: Iterable[Check]) -> tuple[AliasedCheck, ...]:
    return tuple(
        AliasedCheck(name=c.name, status=c.status, output=c.output, service_id=c.service_id)  # type: ignore[arg-type]
        for c in checks
        if c.status in ("passing", "warning", "critical")
    )
