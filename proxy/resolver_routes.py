"""An upstream's routes through the service-resolver entries: what its listener obeys. Pure.

`routing_of` turns the upstream's split (or the upstream itself, when it is
not split) into `Routing` (resolver_chain.py follows the entries):
- `chains`: each split target key (the upstream's name when unsplit) ->
  the target keys to try in order: the resolved primary (a subset, or where
  Redirect led), then its Failover targets. A request or connection goes
  to the first with a healthy instance (outbound.pick_target); with none it
  goes to the primary and fails there, as before.
- `queries`: each target key -> the query of its `/v1/health/connect`
  watch (a subset's filter and health rule).
- `connect_s`: service -> its resolver's ConnectTimeout, unless the
  upstream's own `connect_timeout_ms` is set: as in Consul, where the
  upstream's value overrides every resolver's in the chain.
- `request_s`: the resolver's RequestTimeout of an unsplit upstream (where
  Envoy's route takes it in Consul), unless the upstream's own
  `request_timeout_ms` is set; 0: none given.

None when the entries change nothing for this upstream (no subset, no
redirect or failover on its way, no timeout): its listener then picks as
if no resolver existed, at no cost per request. A chain that cannot be
resolved (entries replicated in a bad order: the agent refuses writes
that would make one) is logged and its share has no target: it fails.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from gossamer.catalog.config_entries import (
    ConfigEntryError,
    Split,
    read_entry,
    target_parts,
)
from gossamer.catalog.config_resolver import Resolver, resolver_of
from gossamer.catalog.resolver_chain import ChainError, resolve
from gossamer.proxy.config import Upstream
from gossamer.proxy.routing import Routing

log = logging.getLogger("gossamer.proxy")
T = TypeVar("T")


def resolvers_by_service(body: Any) -> dict[str, Resolver]:
    """`{service: resolver}` from a `GET /v1/config/service-resolver` answer; an entry the
    proxy cannot read is logged and left out (its service resolves as itself)."""
    return entries_by_name(body, "service-resolver", resolver_of)


def entries_by_name(body: Any, kind: str, made: Callable[[dict[str, Any]], T]) -> dict[str, T]:
    """`{Name: made(entry)}` from a `GET /v1/config/<kind>` answer, each entry read as the
    agent reads it; one the proxy cannot read is logged and left out (its service goes as
    with no entry of that kind)."""
    found: dict[str, T] = {}
    for raw in body if isinstance(body, list) else []:
        if not isinstance(raw, dict):
            continue
        try:
            entry = read_entry(
                {k: v for k, v in raw.items() if k not in ("CreateIndex", "ModifyIndex")}
            )
        except ConfigEntryError as exc:
            log.error("proxy: %s entry unusable, not applied: %s", kind, exc)
            continue
        found[entry["Name"]] = made(entry)
    return found


def routing_of(upstream: Upstream, splits: tuple[Split, ...],
               resolvers: Mapping[str, Resolver]) -> Routing | None:  # fmt: skip
    """The routes of `upstream`, split as `splits` says (() unsplit); None: as if none."""
    own = upstream.name
    keys = [s.service for s in splits if s.weight > 0] if splits else [own]
    chains: dict[str, tuple[str, ...]] = {}
    queries: dict[str, str] = {}
    connect: dict[str, float] = {}
    request_s = 0.0
    plain = True  # nothing differs from no resolver at all
    for key in keys:
        try:
            route = resolve(*target_parts(key), resolvers)
        except ChainError as exc:
            log.error("proxy: upstream %s: %s cannot be resolved, its share fails: %s", own,
                      key, exc)  # fmt: skip
            chains[key], plain = (), False
            continue
        chains[key] = tuple(t.key for t in route.targets)
        plain = plain and chains[key] == (key,) and not route.primary.subset
        for target in route.targets:
            if target.key != own:
                queries[target.key] = target.query()
            resolver = resolvers.get(target.service)
            if resolver is not None and resolver.connect_timeout_s and not _own_connect(upstream):
                connect[target.service] = resolver.connect_timeout_s
        if not splits and route.request_timeout_s and not _own_request(upstream):
            request_s = route.request_timeout_s
    if plain and not connect and not request_s:
        return None
    return Routing(chains, queries, connect, request_s)


def _own_connect(upstream: Upstream) -> bool:
    return upstream.connect_timeout_set


def _own_request(upstream: Upstream) -> bool:
    return upstream.request_timeout_set
