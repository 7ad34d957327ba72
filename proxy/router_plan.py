"""What a service-router entry tells one HTTP upstream listener: its routes, ready. Pure.

`plan_of` turns the router of the upstream's service into `RouterPlan`:
the routes' matcher (routes.py) and, for each route, `RouteTo`: where a
request the route takes goes. A destination that is the upstream itself,
with no subset, goes as a request no route takes (its splitter and
resolvers, `UpstreamListener.pick_target`); any other is resolved here as
Consul's chain does past a router: the destination service's splitter
(flattened, split_targets.py), then each split target's resolver chain
(resolver_chain.py), or, with a `ServiceSubset`, that subset's chain.
`queries` are the health watches its targets need beside the upstream's
own (each target key -> its query), watched as split targets are.

`RouterPlan.target_for` is what the HTTP upstream (http_upstream.py) asks
once per request when its service has a router: the route is matched when
the request is about to leave (a changed entry binds the next request on
a kept connection), and its retries keep the target it drew. The route it
took is the request's `route` label in the outbound metrics (`route_label`).
A balanced HTTP/2 upstream's calls use the same plan (h2_routes.py), each
drawing its target with `destination`.

A route's `RequestTimeout` binds the requests it takes; without one, an
unsplit destination's resolver's `RequestTimeout` does (Consul's route
takes it), unless the upstream sets its own `request_timeout_ms`, as for
the upstream's own resolver (resolver_routes.py).

A route's retry fields and `ResponseHeaders` ride on each request it takes
as `Exchange.rules` (route_rules.py), read where the HTTP path retries and
where it writes the answer's head.

A route whose destination cannot be resolved (entries replicated in a bad
order) is logged and has no target: the requests it takes get a 503.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from gossamer.catalog.config_entries import SUBSET_SEP, Split, key_of
from gossamer.catalog.config_resolver import Resolver
from gossamer.catalog.config_router import HeaderEdits, Route, routes_of
from gossamer.catalog.resolver_chain import ChainError, resolve, split_key
from gossamer.intentions.model import Decision
from gossamer.proxy import split
from gossamer.proxy.resolver_routes import entries_by_name
from gossamer.proxy.route_rules import RouteRules, rules_of
from gossamer.proxy.routes import Matcher, compile_routes, rewritten_head
from gossamer.proxy.routing import Routing

if TYPE_CHECKING:
    from gossamer.proxy.http_codec import Exchange
    from gossamer.proxy.outbound import UpstreamListener

log = logging.getLogger("gossamer.proxy")


@dataclass(frozen=True, eq=False)
class RouteTo:
    """Where the requests one route takes go, and what it changes on the way."""

    index: int
    own: bool  # the upstream itself, no subset: chosen as with no router
    splits: tuple[Split, ...] = ()  # the destination's splitter, else ()
    key: str = ""  # the target key when not split
    chains: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # key -> keys in turn
    prefix: str = ""  # the matched path prefix (or exact path) a PrefixRewrite replaces
    rewrite: str = ""
    request_s: float = 0.0
    edits: HeaderEdits = field(default_factory=HeaderEdits)
    rules: RouteRules | None = None  # retries and answer edits (route_rules.py), if any

    @property
    def changes_head(self) -> bool:
        e = self.edits
        return bool(self.rewrite or e.add or e.set or e.remove)


@dataclass(frozen=True, eq=False)
class RouterPlan:
    matcher: Matcher
    routes: tuple[RouteTo, ...]
    decisions: tuple[Decision, ...]  # what decide_request answers for each route's requests
    queries: Mapping[str, str]  # target key -> its health watch's query (not the upstream's)
    shown: str  # for the log
    connect_s: Mapping[str, float] = field(default_factory=dict)  # destinations' resolvers'

    def target_for(self, ex: Exchange, listener: UpstreamListener) -> str:
        """The target key `ex` goes to: the first route that fits it decides (its head
        rewritten, its timeout set), else the listener's own choice. No I/O: it reads the
        listener's instance lists and draws from its random source."""
        request_of = ex.request_of
        i = -1 if request_of is None else self.matcher.first(request_of())
        if i < 0:
            return listener.pick_target()
        to = self.routes[i]
        ex.decision = self.decisions[i]  # its metrics `route` label (route_label)
        ex.rules = to.rules
        if to.changes_head and not ex.sent and ex.out:
            head = ex.out[0]
            new = rewritten_head(head, to.prefix, to.rewrite, to.edits)
            ex.out[0] = new
            if ex.replay and ex.replay[0] is head:
                ex.replay[0] = new
        if to.request_s:
            ex.request_s = to.request_s
        return destination(to, listener)


def destination(to: RouteTo, listener: UpstreamListener) -> str:
    """The target key a request (or an HTTP/2 call: h2_routes.py) that `to` took goes to:
    the listener's own draw for the upstream itself, else one of the route's targets, drawn
    past its splitter and down its resolver chain."""
    if to.own:
        return listener.pick_target()
    key = split.choose(to.splits, listener.rng.random()) if to.splits else to.key
    chain = to.chains.get(key, ())
    if len(chain) > 1:  # past a target whose instances are all set aside (as pick_target)
        ejected = listener.outliers.ejected(time.monotonic_ns() // 1_000_000)
        for target in chain:
            found = listener.instances_for(target)
            if found and not ejected.issuperset(found):
                return target
    for target in chain:
        if listener.instances_for(target):
            return target
    return chain[0] if chain else key  # none healthy (or unresolvable): it fails there


def routers_by_service(body: Any) -> dict[str, tuple[Route, ...]]:
    """`{service: routes}` from a `GET /v1/config/service-router` answer; an entry the proxy
    cannot read is logged and left out (its service is routed as with no router)."""
    return entries_by_name(body, "service-router", routes_of)


def plan_of(own: str, routes: tuple[Route, ...], splits: Mapping[str, tuple[Split, ...]],
            resolvers: Mapping[str, Resolver], own_timeout: bool = False,
            own_connect: bool = False) -> RouterPlan | None:  # fmt: skip
    """The plan of upstream `own` under `routes`; None when it has none. `own_timeout`,
    `own_connect`: the upstream sets its own request or connect timeout, which a resolver's
    yields to (a route's RequestTimeout does not)."""
    if not routes:
        return None
    found: list[RouteTo] = []
    queries: dict[str, str] = {}
    connect: dict[str, float] = {}
    shown: list[str] = []
    for i, route in enumerate(routes):
        d, http = route.destination, route.http
        base = RouteTo(i, True, prefix=http.path_prefix or http.path_exact,
                       rewrite=d.prefix_rewrite, request_s=d.request_timeout_s,
                       edits=d.request_headers, rules=rules_of(d))  # fmt: skip
        where = key_of(d.service, d.subset)
        shown.append(f"{_match_shown(route)} -> {where}")
        if d.service == own and not d.subset:
            found.append(base)
            continue
        dest_splits = () if d.subset else splits.get(d.service, ())
        request_s = d.request_timeout_s  # else an unsplit destination's resolver's
        keys = [s.service for s in dest_splits if s.weight > 0] or [where]
        chains: dict[str, tuple[str, ...]] = {}
        for key in keys:
            try:
                resolved = resolve(*split_key(key), resolvers)
            except ChainError as exc:
                log.error("proxy: upstream %s: route %d to %s cannot be resolved, its requests "
                          "fail: %s", own, i, key, exc)  # fmt: skip
                chains[key] = ()
                continue
            chains[key] = tuple(t.key for t in resolved.targets)
            if not dest_splits and not request_s and not own_timeout:  # as routing_of does
                request_s = resolved.request_timeout_s
            for target in resolved.targets:
                if target.key != own:
                    queries[target.key] = target.query()
                resolver = resolvers.get(target.service)
                if resolver is not None and resolver.connect_timeout_s and not own_connect:
                    connect[target.service] = resolver.connect_timeout_s
        found.append(RouteTo(i, False, dest_splits, where, chains, base.prefix, base.rewrite,
                             request_s, base.edits, base.rules))  # fmt: skip
    decisions = tuple(Decision(True, f"service-router route {i}",
                               route=route_label(i, key_of(r.destination.service,
                                                           r.destination.subset)))
                      for i, r in enumerate(routes))  # fmt: skip
    return RouterPlan(compile_routes(routes, decisions), tuple(found), decisions, queries,
                      "; ".join(shown), connect)  # fmt: skip


def route_label(index: int, destination: str) -> str:
    """The outbound metrics `route` label of a router's route: `route 1 -> api-v2/canary`.
    Its index says which route (Envoy and Consul number a router's routes in order, and two
    may share a destination); its destination says where its requests went, since the edge
    is named after the upstream. Bounded by the routes an operator wrote, never by what
    clients send; a request no route takes has no label, as with no router."""
    return f"route {index} -> {destination}"


def with_routes(routing: Routing | None, plan: RouterPlan, own: str,
                splits: tuple[Split, ...]) -> Routing | None:  # fmt: skip
    """The listener's resolver routing made to know what `plan`'s targets need of it: a
    subset's key dialled as its service (`service_of` reads keys only with a routing), and
    the ConnectTimeouts of the destinations' resolvers. `routing` as it is when they need
    nothing."""
    subset = any(SUBSET_SEP in key for r in plan.routes for c in r.chains.values() for key in c)
    if not subset and not plan.connect_s:
        return routing
    if routing is None:  # the upstream itself resolves as itself: a routing that says so
        keys = [s.service for s in splits if s.weight > 0] or [own]
        routing = Routing({k: (k,) for k in keys}, {k: "passing" for k in keys if k != own})
    if plan.connect_s:
        routing = replace(routing, connect_s={**plan.connect_s, **routing.connect_s})
    return routing


def _match_shown(route: Route) -> str:
    h = route.http
    path = (h.path_exact or (h.path_prefix + "*" if h.path_prefix else "")
            or (f"~{h.path_regex}" if h.path_regex else "*"))  # fmt: skip
    more = [f"{x.name}" for x in h.headers] + [f"?{q.name}" for q in route.query]
    methods = ",".join(h.methods)
    return " ".join(p for p in (methods, path, *more) if p)
