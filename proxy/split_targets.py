"""The service-splitter entries a sidecar obeys, and the instances of each split target.

One blocking watch of `/v1/config/service-splitter` per sidecar (runtime.py)
delivers every splitter entry; `Splitters.apply` hands each upstream
listener the splits of its own service (`listener.split`, () when none), and
keeps a blocking watch of `/v1/health/connect/<target>?passing` for each
other target with weight, exactly as the upstream's own instances are
watched, feeding `listener.set_target_instances`. A changed entry applies
to the next request (or connection): no restart, no reconnect. A split
naming a target not watched before waits (the previous split stays, and
so do the watches of its targets) until that target's first answer is in,
so its first requests do not fail for want of instances the proxy has not
heard of yet, nor the old split's for want of the ones it had. An upstream
listener that is not listening yet (warm.py) is handed its splits too, and
`resolved` says when they are in force: once the entries have been heard
of and, when it is split, its targets' instances (until then its port
stays closed, at most warm.WARM_S).

A split to a service that has a splitter of its own follows that one too,
as Consul's discovery chain does (its compiler flattens adjacent splitters):
`api` 50 % to `api-v2`, whose entry sends half of its traffic to
`api-v2-beta`, sends a quarter of `api`'s to `api-v2-beta`. A split to the
entry's own service goes to that service's instances. Weights multiply,
then are rounded back to hundredths of a percent summing to 100 %
(largest remainder). A loop of splitters (Consul refuses the write that
would close it) leaves each service on it unsplit, logged.

An entry the proxy cannot read (a newer agent's shape) is logged and that
service is treated as unsplit, so traffic keeps flowing to the upstream
itself rather than nowhere.

The service-resolver entries (`/v1/config/service-resolver`, one watch per
sidecar too) turn each split target, or the upstream itself when it is not
split, into a chain of target keys (resolver_routes.py): the subset its
resolver picks or the one a split names (`service/subset`, watched as
`/v1/health/connect/<service>?passing&filter=<the subset's Filter>`), where
Redirect leads, then the Failover targets. The same rule as for a new split
target holds: a chain applies once each of its targets has been heard of.
With no resolver entry, or none that changes where this upstream's traffic
goes, `listener.route` stays None and nothing of this costs a request.

The service-router entries (`/v1/config/service-router`, a third watch)
give an HTTP upstream whose service has one its routes (router_plan.py):
`listener.http.routes`, None when it has none. The targets its routes lead
to are watched as split targets are, and the plan applies once they have
been heard of. An `http2`/`grpc` upstream balanced per call gets the same
plan (`listener.call_routes`, h2_routes.py); a TCP upstream, or an h2 one
that follows its client's connection, of a routed service is logged: its
requests go as with no router.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from gossamer.catalog.config_entries import (
    SUBSET_SEP,
    WEIGHT_TOTAL,
    ConfigEntryError,
    Split,
    splits_of,
    target_parts,
)
from gossamer.proxy.agent_http import AgentHttp
from gossamer.proxy.health_rows import Instance
from gossamer.proxy.outbound import UpstreamListener
from gossamer.proxy.protocol import is_h2
from gossamer.proxy.shared_watch import Subscription

if TYPE_CHECKING:  # imported where needed: with `decimal`, `numbers` and their C part it costs
    from fractions import Fraction  # every proxy ~0.5 MiB of RSS, for nested splitters only

    from gossamer.catalog.config_resolver import Resolver  # (and the filter parser: only
    from gossamer.catalog.config_router import Route  # a proxy that has resolvers or
    from gossamer.proxy.router_plan import RouterPlan  # routers loads them)
    from gossamer.proxy.routing import Routing

log = logging.getLogger("gossamer.proxy")
PATH = "/v1/config/service-splitter"
RESOLVERS = "/v1/config/service-resolver"
ROUTERS = "/v1/config/service-router"
Plan = tuple[tuple[Split, ...], "Routing | None", "RouterPlan | None"]  # a listener's


def splits_by_service(body: Any) -> dict[str, tuple[Split, ...]]:
    """`{service: splits}` from a `GET /v1/config/service-splitter` answer, each service's
    splits flattened through the splitters of the services it splits to."""
    entries: dict[str, tuple[Split, ...]] = {}
    for entry in body if isinstance(body, list) else []:
        if not isinstance(entry, dict):
            continue
        try:
            splits = splits_of(entry)
        except ConfigEntryError as exc:
            log.error("proxy: service-splitter entry unusable, not applied: %s", exc)
            continue
        entries[entry["Name"]] = splits
    found: dict[str, tuple[Split, ...]] = {}
    done: dict[str, dict[str, Fraction]] = {}  # shared: each splitter's shares worked out once
    for name in entries:
        try:
            found[name] = flattened(name, entries, done)
        except SplitLoop as exc:
            log.error("proxy: service-splitter of %s not applied: %s", name, exc)
    return found


class SplitLoop(ValueError):
    """Splitters that send traffic round in a loop (`a` to `b`, `b` back to `a`)."""


def flattened(name: str, entries: Mapping[str, tuple[Split, ...]],
              done: dict[str, dict[str, Fraction]] | None = None) -> tuple[Split, ...]:  # fmt: skip
    """`name`'s splits with each target that has a splitter of its own replaced by that
    one's targets, weights multiplied; in hundredths summing to WEIGHT_TOTAL. SplitLoop when
    a splitter is met again on the way. `done`: the shares of splitters already worked out
    (none of them is on a loop), shared between calls."""
    entry = entries[name]
    if all(split.service == name or split.service not in entries for split in entry):
        return entry  # nothing to follow: as written, zero weights included
    shares = _shares(name, entries, {} if done is None else done)
    exact = {service: share * WEIGHT_TOTAL for service, share in shares.items()}
    weights = {service: math.floor(w) for service, w in exact.items()}
    left = WEIGHT_TOTAL - sum(weights.values())
    order = list(exact)  # the largest remainders get what rounding down left over
    for service in sorted(order, key=lambda s: (weights[s] - exact[s], order.index(s)))[:left]:
        weights[service] += 1
    return tuple(Split(w, service) for service, w in weights.items() if w > 0)


def _shares(name: str, entries: Mapping[str, tuple[Split, ...]],
            done: dict[str, dict[str, Fraction]]) -> dict[str, Fraction]:  # fmt: skip
    """Each final service's share of `name`'s traffic, in the order first met. Each
    splitter's shares are worked out once, kept in `done` (a diamond of splitters costs no
    more than its entries)."""
    from fractions import Fraction  # (only splitters that split again need it: see above)

    def walk(service: str, path: tuple[str, ...]) -> dict[str, Fraction]:
        if service in done:
            return done[service]
        shares: dict[str, Fraction] = {}
        for split in entries[service]:
            part = Fraction(split.weight, WEIGHT_TOTAL)
            target = split.service
            if target != service and target in entries:  # it splits again (Consul's chain)
                if target in path:
                    raise SplitLoop(" -> ".join((*path, target)))
                for leaf, share in walk(target, (*path, target)).items():
                    shares[leaf] = shares.get(leaf, Fraction(0)) + part * share
            else:
                shares[target] = shares.get(target, Fraction(0)) + part
        done[service] = shares
        return shares

    return walk(name, (name,))


def _targets(listener: UpstreamListener, plan: Plan) -> dict[str, str]:
    """The targets other than the upstream's own service that `plan` may send to, each with
    the query of its health watch (resolver_routes.py)."""
    splits, routing, routes = plan
    own = listener.upstream.name
    if routing is not None:
        found = {key: query for key, query in routing.queries.items() if key != own}
    else:
        found = {s.service: "passing" for s in splits if s.weight > 0 and s.service != own}
    return found if routes is None else {**routes.queries, **found}


class Splitters:
    """The splits each upstream of one sidecar obeys, and the watches of their targets."""

    def __init__(self, agent: AgentHttp) -> None:
        self._agent = agent
        self.by_service: dict[str, tuple[Split, ...]] = {}
        self.resolvers: dict[str, Resolver] = {}
        self.routers: dict[str, tuple[Route, ...]] = {}
        # (listener id, target key) -> (its health query, the watch)
        self._watches: dict[tuple[int, str], tuple[str, Subscription]] = {}
        self._pending: dict[int, Plan] = {}  # listener id -> splits and routes waiting
        self.known = False  # the splitter entries' first answer came
        self.resolvers_known = False  # and the resolver entries'
        self.routers_known = False  # and the router entries'
        self._waiters: list[asyncio.Future[None]] = []  # `resolved` callers, woken on a change

    def on_entries(self, body: Any, listeners: Iterable[UpstreamListener]) -> None:
        self.by_service = splits_by_service(body)
        self.known = True
        for listener in listeners:
            self.apply(listener)
        self._wake()

    def on_resolvers(self, body: Any, listeners: Iterable[UpstreamListener]) -> None:
        """The service-resolver entries changed: each listener's routes again."""
        if isinstance(body, list) and body:  # (none: nothing of resolvers is imported)
            from gossamer.proxy.resolver_routes import resolvers_by_service

            self.resolvers = resolvers_by_service(body)
        else:
            self.resolvers = {}
        self.resolvers_known = True
        if self.known:
            for listener in listeners:
                self.apply(listener)
        self._wake()

    def on_routers(self, body: Any, listeners: Iterable[UpstreamListener]) -> None:
        """The service-router entries changed: each listener's routes again."""
        if isinstance(body, list) and body:  # (none: nothing of routers is imported)
            from gossamer.proxy.router_plan import routers_by_service

            self.routers = routers_by_service(body)
        else:
            self.routers = {}
        self.routers_known = True
        if self.known:
            for listener in listeners:
                self.apply(listener)
        self._wake()

    async def resolved(self, listener: UpstreamListener) -> None:
        """Return once the entries are known and `listener`'s splits are in force (every
        target they name heard of): what its port waits for before it opens (warm.py)."""
        while (not (self.known and self.resolvers_known and self.routers_known)
               or id(listener) in self._pending):  # fmt: skip
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def apply(self, listener: UpstreamListener) -> None:
        """Give `listener` its service's splits and routes; watch the targets it did not
        watch yet (or whose subset's filter changed)."""
        splits = self.by_service.get(listener.upstream.name, ())
        routing = None
        if self.resolvers or any(SUBSET_SEP in s.service for s in splits):
            from gossamer.proxy.resolver_routes import routing_of

            routing = routing_of(listener.upstream, splits, self.resolvers)
        routes = self._routes(listener, splits)
        if routes is not None:  # what the listener itself must know of the routes' targets
            from gossamer.proxy.router_plan import with_routes

            routing = with_routes(routing, routes, listener.upstream.name, splits)
        # (compared with what was said last: a plan still waiting for its targets was said,
        # and one undone before it applied would otherwise leave its line the last word)
        said = self._pending.get(id(listener)) or (listener.split, listener.routing, None)
        said_splits, said_routing = said[0], said[1]
        if splits != said_splits:
            shown = ", ".join(f"{s.service} {s.weight / 100:g}%" for s in splits) or "none"
            log.info("proxy: upstream %s split: %s", listener.upstream.name, shown)
        if routing != said_routing:
            log.info("proxy: upstream %s resolved: %s", listener.upstream.name,
                     "as itself" if routing is None else routing.shown())  # fmt: skip
        plan = (splits, routing, routes)
        for target, query in sorted(_targets(listener, plan).items()):
            held = self._watches.get((id(listener), target))
            if held is None or held[0] != query:
                if held is not None:  # a subset's filter changed: its old instances serve
                    held[1].stop()  # until the new watch's first answer
                self._watch(listener, target, query)
        self._pending[id(listener)] = plan
        self._settle(listener)

    def _routes(self, listener: UpstreamListener, splits: tuple[Split, ...]) -> RouterPlan | None:
        """The router plan of `listener`'s service (None: none, or neither an HTTP upstream
        nor one whose HTTP/2 calls are balanced one by one)."""
        name = listener.upstream.name
        routes = self.routers.get(name)
        held = listener.http.routes if listener.http is not None else listener.call_routes
        if not routes:
            if held is not None:
                log.info("proxy: upstream %s routes: none", name)
            return None
        u = listener.upstream
        if listener.http is None and not (is_h2(u.protocol) and u.balance_calls):
            log.warning("proxy: upstream %s (protocol %s): its service-router is applied to "
                        "HTTP/1 upstreams and balanced HTTP/2 calls only; requests go as with "
                        "no router", name, u.protocol)  # fmt: skip
            return None
        from gossamer.proxy.router_plan import plan_of

        by_service = {**self.by_service, name: splits}
        plan = plan_of(name, routes, by_service, self.resolvers,
                       listener.upstream.request_timeout_set,
                       listener.upstream.connect_timeout_set)  # fmt: skip
        if plan is not None and (held is None or held.shown != plan.shown):
            log.info("proxy: upstream %s routes: %s", name, plan.shown)
        return plan

    def _settle(self, listener: UpstreamListener) -> None:
        """Apply the waiting splits once every target they name has been heard of; only then
        are the targets they no longer name let go (the old split needs them until then)."""
        plan = self._pending.get(id(listener))
        if plan is None:
            return
        wanted = _targets(listener, plan)
        if not wanted.keys() <= listener.targets.keys():
            return
        del self._pending[id(listener)]
        listener.split = plan[0]
        listener.set_routing(plan[1])
        if listener.http is not None:
            listener.http.set_routes(plan[2])
        else:  # (an h2/grpc upstream's: its balanced calls read them, h2_balanced.py)
            listener.call_routes = plan[2]
        self._wake()
        for (lid, target), (_, watch) in list(self._watches.items()):
            if lid == id(listener) and target not in wanted:
                watch.stop()
                del self._watches[(lid, target)]
                listener.set_target_instances(target, None)

    def _watch(self, listener: UpstreamListener, target: str, query: str) -> None:
        def seen(instances: list[Instance]) -> None:
            listener.set_target_instances(target, instances)
            self._settle(listener)

        watch = Subscription(self._agent, target_parts(target)[0], seen, query)
        watch.start()
        self._watches[(id(listener), target)] = (query, watch)

    def forget(self, listener: UpstreamListener) -> None:
        """A listener removed: stop its targets' watches."""
        for key in [k for k in self._watches if k[0] == id(listener)]:
            self._watches.pop(key)[1].stop()
        self._pending.pop(id(listener), None)

    def stop(self) -> None:
        for _, watch in self._watches.values():
            watch.stop()
        self._watches.clear()
