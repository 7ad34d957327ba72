"""Upstream listeners: a local plain port per upstream, mutual TLS to a healthy instance.

Each accepted connection is held (not read) while an instance is picked
(balance.py: power of two choices over open connections), reached
(`connect_timeout_s`) and its certificate checked: it must carry the
upstream's SPIFFE ID (authorize.server_service). A failed attempt is
retried on another instance (at most `ATTEMPTS`) before the client sees
anything; each failure feeds the outlier detector (outlier.py). A peer
sidecar that agrees to frames (ALPN) carries each client connection as a
stream of one shared connection (mux.py, mux_pool.py); new connections
offer an earlier one's session (sessions.py). With no healthy instance the
client is closed at once and logged, once a minute. A listener bound to a
network address turns away clients from other hosts (local_peer.py), each
of which would speak as this service, unless the upstream says otherwise.

Instances come from a blocking watch of `/v1/health/connect/<name>?passing`
(warm.py feeds `set_instances`). With a `service-splitter` entry (`split`;
split_targets.py gives the other targets' instances), each connection picks
its target service by weight (split.py), then an instance of it, whose
certificate must carry that service's SPIFFE ID; retries stay within the
target. With service-resolver entries (`route`, resolver_routes.py) each
target is a chain: the subset or service it resolves to, then its failover
targets; the first with a healthy instance is taken. HTTP picks per request
(http_upstream.py); h2 is followed (h2_followed.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final

from gossamer.catalog.config_entries import SUBSET_SEP, Split
from gossamer.gossip.host_port import host_port
from gossamer.proxy import balance, split, tally
from gossamer.proxy.authorize import Refused, server_service
from gossamer.proxy.ca.verified_chain import ChainMemory
from gossamer.proxy.config import Upstream
from gossamer.proxy.edge_metrics import EdgeMetrics
from gossamer.proxy.health_rows import Instance
from gossamer.proxy.http1 import HttpSession
from gossamer.proxy.http_upstream import HttpUpstream
from gossamer.proxy.identity import Identity
from gossamer.proxy.idle_sweep import IdleSweep
from gossamer.proxy.listen import serve, take_over
from gossamer.proxy.local_peer import from_this_host, loopback
from gossamer.proxy.mux import wire_of
from gossamer.proxy.mux_open import open_stream
from gossamer.proxy.mux_pool import MuxPool
from gossamer.proxy.outlier import Outliers
from gossamer.proxy.protocol import is_h2, is_l7
from gossamer.proxy.relay import Relay
from gossamer.proxy.routing import Routing
from gossamer.proxy.sessions import SessionCache
from gossamer.proxy.side import PlainSide, Side
from gossamer.proxy.tls_side import TlsSide

log = logging.getLogger("gossamer.proxy")
ATTEMPTS: Final = 3  # instances tried for one client connection before it is closed


class UpstreamListener:
    """One upstream's local listener and its view of the upstream's instances."""

    def __init__(
        self,
        upstream: Upstream,
        identity: Callable[[], Identity | None],
        counts: tally.Tally,
        rng: random.Random | None = None,
        metrics: EdgeMetrics | None = None,
    ) -> None:
        self.upstream = upstream
        self.metrics = EdgeMetrics("") if metrics is None else metrics
        self.identity = identity  # the proxy's current one (None: none yet)
        self.tally = counts
        self.instances: list[Instance] = []
        self.split: tuple[Split, ...] = ()  # the upstream's service-splitter; () none
        self.routing: Routing | None = None  # what the service-resolvers say; None: nothing
        self.route: Mapping[str, tuple[str, ...]] | None = None  # target -> keys in order
        self.connect_timeouts: Mapping[str, float] = {}  # service -> its resolver's
        self.request_timeout_s = upstream.request_timeout_s  # or its resolver's (set_routing)
        self.targets: dict[str, list[Instance]] = {}  # other split targets' instances
        self.outstanding: dict[Instance, int] = {}  # not a Counter: its misses run Python code
        self.outliers: Outliers[Instance] = Outliers()
        self.known = 0  # instances of the upstream and of its split's other targets
        self.sessions = SessionCache()
        self.chains = ChainMemory()
        self.open: set[Relay] = set()
        self.tunnels = MuxPool(upstream.pool_idle_s, upstream.pool_idle)
        self.rng = rng or random.Random()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.on_close: Callable[[], None] = lambda: None  # the runtime's drain listens
        self.idle = IdleSweep(lambda: self.upstream.client_idle_s, lambda: self.open,
                              lambda: self._server is not None, self._idle)  # fmt: skip
        self.http = HttpUpstream(self) if is_l7(upstream.protocol) else None
        # The service-router's routes for balanced HTTP/2 calls (router_plan.RouterPlan;
        # h2_routes.py), None: none. Typed loosely, as HttpUpstream.routes.
        self.call_routes: Any = None
        # bound to a network address: clients from other hosts are turned away (local_peer.py)
        self.guarded = not (loopback(upstream.bind_address) or upstream.remote_clients)

    async def start(self, replacing: UpstreamListener | None = None) -> None:
        """Listen; on the socket of `replacing` (a listener on the same port that a change
        replaces: its caller retires it next) when it still has one (listen.take_over)."""
        u = self.upstream
        factory = lambda: PlainSide(on_connect=self._accepted)  # noqa: E731
        held = replacing._server if replacing is not None else None
        server = None
        if held is not None:
            server = await take_over(factory, held, u.bind_address, u.bind_port)
        if server is not None:
            self._server = server
        else:
            if replacing is not None:
                replacing.stop_listening()
            self._server = await serve(factory, u.bind_address, u.bind_port)
        self.idle.start()
        log.info("proxy: upstream %s listening on %s", u.name, host_port(*u.listen))

    def retire(self) -> None:
        """A registration change removed or replaced it: stop listening; its keep-alive
        clients are told to go with their next answer (`Connection: close`), an HTTP/2 one
        at once (GOAWAY: its calls under way finish), as Envoy's draining listener tells
        them. Closed while idle instead, an HTTP/1 client that sends on a kept connection
        without looking first (Python's http.client) had its next request fail, never sent,
        at every change. The drain (`stop_listening`) closes idle ones."""
        if self._server is not None:
            self._server.close()
            self._server = None
        if self.http is not None:
            self.http.draining = True
        for relay in list(self.open):
            relay.drain()  # an HTTP/2 client: GOAWAY (h2_followed.py); bytes: nothing to say

    def stop_listening(self) -> None:
        self.retire()
        if self.http is not None:  # keep-alive clients: told to go, between their requests
            for session in list(self.http.sessions):
                session.wind_down()

    def set_instances(self, instances: Sequence[Instance]) -> None:
        self.instances = sorted(set(instances))
        self._forget_gone()

    def set_target_instances(self, service: str, instances: Sequence[Instance] | None) -> None:
        """A split target's healthy instances (None: no longer a target)."""
        if instances is None:
            self.targets.pop(service, None)
        else:
            self.targets[service] = sorted(set(instances))
        self._forget_gone()

    def _forget_gone(self) -> None:
        known = set(self.instances).union(*self.targets.values())
        self.known = len(known)  # what outlier ejection's share is of: every target's
        self.outliers.forget_except(known)
        if self.http is not None:
            self.http.forget_except(known)

    def pick_target(self) -> str:
        """The target the next request or connection goes to: by weight when split, then the
        first of its resolved chain with a healthy instance (when resolvers apply): one in the
        catalog's passing set and not set aside by outlier detection, as Envoy's priority
        failover counts a host ejected by outlier detection as unhealthy."""
        key = split.choose(self.split, self.rng.random()) if self.split else self.upstream.name
        if self.route is None:
            return key
        chain = self.route.get(key, ())
        if len(chain) > 1:  # a failover: past a target whose instances are all set aside
            ejected = self.outliers.ejected(time.monotonic_ns() // 1_000_000)
            for target in chain:
                found = self.instances_for(target)
                if found and not ejected.issuperset(found):
                    return target
        for target in chain:  # (all set aside: the first with any, tried least-bad)
            if self.instances_for(target):
                return target
        return chain[0] if chain else key  # none healthy: the primary, which fails

    def service_of(self, target: str) -> str:
        """The service a target key is of (`api/v2`: api), whose SPIFFE ID its instances carry."""
        return target if self.route is None else target.partition(SUBSET_SEP)[0]

    def connect_timeout_for(self, service: str) -> float:
        """How long a dial to `service` may take: its resolver's ConnectTimeout, unless the
        upstream sets its own (resolver_routes.py)."""
        if self.connect_timeouts:
            return self.connect_timeouts.get(service, self.upstream.connect_timeout_s)
        return self.upstream.connect_timeout_s

    def set_routing(self, routing: Routing | None) -> None:
        """The resolvers' routes in force from the next request or connection; a changed
        RequestTimeout also binds the requests of clients already connected."""
        self.routing = routing
        self.route = None if routing is None else routing.chains
        self.connect_timeouts = {} if routing is None else routing.connect_s
        request_s = routing.request_s if routing is not None else 0.0
        self.request_timeout_s = request_s or self.upstream.request_timeout_s  # (h2: new ones)
        http = self.http
        if http is None:
            return
        limits = replace(http.limits, request_s=self.request_timeout_s)
        if limits != http.limits:
            http.limits = limits
            for session in http.sessions:  # from their next request
                session.deadlines.limits = limits

    def instances_for(self, service: str) -> list[Instance]:
        return self.instances if service == self.upstream.name else self.targets.get(service, [])

    def _accepted(self, side: PlainSide) -> None:
        if self.guarded and not self._local(side):
            return
        if self.http is not None:  # requests over pooled connections (http_upstream.py)
            session = HttpSession(self.http, side, "")
            self.http.sessions.add(session)
            # its connection and bytes count on the edge as an L4 one's (http_closed)
            self.metrics.outbound(self.upstream.name).connected(session, 0.0)
            session.start()
            return
        if is_h2(self.upstream.protocol) and self.upstream.balance_calls:
            from gossamer.proxy.h2_late import balanced  # (only with an h2 upstream)

            balanced(self, side, self._relay_bytes)  # h2c: each call balanced; else bytes
            return
        self._relay_bytes(side)

    def _relay_bytes(self, side: PlainSide) -> None:
        """`side` to an instance byte for byte (h2: followed, each call counted)."""
        task = asyncio.create_task(self._serve(side))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, client: PlainSide) -> None:
        started = time.monotonic()
        tried: set[Instance] = set()
        target = self.pick_target()
        candidates = self.instances_for(target)
        for _ in range(ATTEMPTS):
            now = time.monotonic_ns() // 1_000_000
            excluded = tried | self.outliers.ejected(now)
            instance = balance.choose(candidates, self.outstanding, self.rng, excluded)
            if instance is None and not tried:  # all set aside: try the least-bad anyway
                instance = balance.choose(candidates, self.outstanding, self.rng, tried)
            if instance is None:
                break
            tried.add(instance)
            # (another instance this client could still go to, were this one silent)
            elsewhere = len(tried) < ATTEMPTS and any(
                c not in tried and c not in excluded for c in candidates
            )
            try:
                opened = await open_stream(self, client, instance, target, started,
                                           elsewhere=elsewhere)  # fmt: skip
            except asyncio.CancelledError:  # the listener's end (terminate_all): its end too
                client.close(abort=True)
                raise
            if opened == "joined":  # reached (over a shared connection too: no dial to say so)
                self.outliers.succeeded(instance)
                return
            if opened == "refused":  # the inbound side said why (it counts and logs it)
                self.metrics.outbound(self.upstream.name).failed += 1  # never established
                client.close()
                return
        reason = tally.ALL_ATTEMPTS_FAILED if tried else tally.NO_HEALTHY_INSTANCE
        self.refuse(reason, self.tried(len(tried), target), target=target)
        self.metrics.outbound(self.upstream.name).failed += 1
        client.close()

    def add_outstanding(self, instance: Instance) -> None:
        """A connection (L4) or a request (HTTP) began on `instance`: what p2c compares."""
        self.outstanding[instance] = self.outstanding.get(instance, 0) + 1

    def drop_outstanding(self, instance: Instance) -> None:
        left = self.outstanding.pop(instance, 0) - 1
        if left > 0:
            self.outstanding[instance] = left

    def join(self, client: PlainSide, server: Side, instance: Instance, started: float) -> None:
        """Relay `client` to `server`: a connection of its own, or a stream of a mux."""
        self.add_outstanding(instance)
        edge = self.metrics.outbound(self.upstream.name)
        tls = server.pipe.tls if isinstance(server, TlsSide) else None

        def closed(relay: Relay) -> None:
            now = time.monotonic()
            if tls is not None and self.sessions.wants(instance, tls.context, now):
                self.sessions.keep(instance, tls.context, tls.session, now)
            self.open.discard(relay)
            edge.disconnected(relay, now - relay.started)
            self.drop_outstanding(instance)
            self.on_close()

        if is_h2(self.upstream.protocol):  # each call counted (h2_followed.py)
            # imported here, as inbound.py imports the gate: only a proxy with an HTTP/2
            # service or upstream loads the h2 modules (through h2_late.py)
            from gossamer.proxy.h2_late import followed

            relay: Relay = followed(self, client, server, closed)
        else:
            relay = Relay(client, server, closed)
        if not relay.halves.closed:
            self.open.add(relay)
            self.tally.add("outbound.connections")
            edge.connected(relay, relay.started - started)

    def recheck_peers(self) -> int:
        """Check each open connection's server certificate again (an agent was revoked);
        cut those now refused, pooled HTTP connections included. A server may be of any
        service this upstream sends to now (its own, a split target, where a resolver
        redirects or fails over): checked against its own name only, every connection to
        the others was cut at each revocation, however trusted its server."""
        identity = self.identity()
        if identity is None:
            return 0
        now = datetime.now(UTC)
        services = {self.upstream.name, *(t.partition(SUBSET_SEP)[0] for t in self.targets)}

        def refused(side: object) -> bool:
            if not isinstance(side, TlsSide) or identity is None:
                return False
            chain = side.pipe.peer_certificates()
            for service in services:  # (one, unless split or resolved elsewhere)
                try:
                    server_service(chain, identity.trust, now, service, self.chains)
                except Refused:
                    continue
                return False
            return True

        cut = [relay for relay in self.open if refused(wire_of(relay.sides[1]))]
        for relay in cut:
            relay.terminate()
        total = len(cut) + (self.http.drop_where(refused) if self.http is not None else 0)
        total += self.tunnels.drop_where(refused)
        if total:
            self.tally.add("outbound.terminated", total)
            log.warning("proxy: upstream %s: %d connection(s) terminated, the server is no "
                        "longer trusted", self.upstream.name, total)  # fmt: skip
        return total

    def _local(self, side: PlainSide) -> bool:
        """Whether `side`'s client is on this host; if not, it is refused (closed, counted)."""
        t = side.transport
        peer = t.get_extra_info("peername") if t is not None else None
        if t is not None and from_this_host(peer, t.get_extra_info("sockname")):
            return True
        shown = host_port(*peer[:2]) if isinstance(peer, tuple) else str(peer)
        self.refuse(tally.REMOTE_CLIENT, f"{shown} is not on this host and this upstream "
                     "does not take remote clients (Config.gossamer_remote_clients)")  # fmt: skip
        side.close(abort=True)
        return False

    def refuse(self, reason: str, message: str, what: str = "client connection closed",
               target: str = "") -> None:  # fmt: skip
        """Count why a client was turned away (`what` it got); logged once a minute, per split
        `target` (a canary with no instance is not the upstream's own service with none)."""
        name = self.upstream.name
        source = f"{name}/{target}" if target and target != name else name
        if self.tally.refuse("outbound", reason, source, time.time_ns() // 1_000_000):
            log.warning("proxy: upstream %s: %s (%s): %s", name, what, reason, message)

    def tried(self, count: int, target: str) -> str:
        """What a refusal's line says was tried: `count` instances, of a split's `target`."""
        if target == self.upstream.name:
            return f"{count} instance(s) tried"
        return f"{count} instance(s) of {target} (a split target) tried"

    def _idle(self, relay: Relay) -> None:
        """A TCP connection with no byte either way for `idle_timeout_ms` (idle_sweep.py)."""
        self.tally.add("outbound.idle_timeout")
        relay.terminate()

    def terminate_all(self) -> None:
        self.idle.stop()
        for task in list(self._tasks):  # (reaching an instance: each closes its client)
            task.cancel()
        for relay in list(self.open):
            relay.terminate()
        self.tunnels.close_all()
        if self.http is not None:
            self.http.close_all()

    def open_count(self) -> int:
        """Connections relayed or served, and those still reaching an instance."""
        served = len(self.http.sessions) if self.http is not None else 0
        return len(self.open) + served + len(self._tasks)
