"""HTTP upstreams: requests over a pool of long-lived connections to the instances.

For an upstream with `Config.protocol: http`, each local client connection
is an `HttpSession` (http1.py) whose app connection is borrowed from here
for one request and given back once its answer has ended: many client
connections share a few pooled connections per instance, and a new client
connection costs no TLS handshake (Linkerd pools HTTP/1 the same way
between its proxies). Each pooled connection is a stream of the one mTLS
connection to the instance (mux_pool.py), so the requests of every client
in one turn of the event loop travel as one TLS record; a peer sidecar
that takes no frames gets mTLS connections of its own. The instance is
chosen per request by power of two choices over peak-EWMA latency x
requests in flight (peak_ewma.py), skipping instances set aside by
outlier detection; an idle connection to it is reused, else one is opened
(a new stream; a new mTLS connection when there is none: connect,
handshake, the upstream's SPIFFE ID checked, resumption), trying up to
`ATTEMPTS` instances before the client gets a 503. At most `pool_idle`
idle connections are kept per instance
(`Upstreams[].Config.max_idle_connections`, 256), each closed after
`pool_idle_s` idle (`idle_timeout_ms`, 10 s) or as soon as the other side
closes it or sends anything while idle.

With a `service-splitter` entry for the upstream's service, each request
first draws its target service by weight (outbound.py's `pick_target`) and
then an instance of that service as above. The draw is made once per
request and kept with it (`Exchange.target`): whether a target had an idle
connection never biases which target a request goes to, and its retries
stay on that target (a failing canary's requests are not rescued by the
stable service). With a `service-router` entry (`routes`, router_plan.py)
the first route that fits the request picks its destination instead, and
may rewrite its path and headers and set its own request timeout; with
none, the one cost per request is the test that `routes` is None.

The destination's sidecar decides each request (its intentions); this side
does not, so `decide_request` allows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from gossamer.intentions.model import Decision, HttpRequest
from gossamer.proxy import balance, tally
from gossamer.proxy.dial import outlier_failed
from gossamer.proxy.http_codec import DENIED, Exchange, Outcome
from gossamer.proxy.http_limits import Limits
from gossamer.proxy.mux_open import backend_stream
from gossamer.proxy.peak_ewma import PeakEwma
from gossamer.proxy.protocol import HEADERS_TIMEOUT_S, MAX_HEADER_BYTES
from gossamer.proxy.retry_budget import RetryBudget
from gossamer.proxy.side import Joint, Side

if TYPE_CHECKING:
    from gossamer.proxy.health_rows import Instance
    from gossamer.proxy.http1 import HttpSession
    from gossamer.proxy.outbound import UpstreamListener

ALLOWED: Final = Decision(True, "decided by the destination's sidecar")
ATTEMPTS: Final = 3  # instances tried for one request before the client gets a 503
AVOID_S: Final = 1.0
FAILURE_S: Final = 1.0  # a failed request counts as an answer this slow (peak_ewma.py)
# An answer with one of these says the instance could not serve the request (its app down or
# broken, or too slow): a failure of the instance, not a fast answer (`release_backend`).
FAILURE_STATUSES: Final = frozenset((502, 503, 504))


class _Idle(Joint):
    """A pooled connection's idle state: made once per connection, parked after each answer.
    While parked, anything it reads ends it. One timer per connection, re-armed when it fires
    early (not set and cancelled per request): it ends the connection `pool_idle_s` after it
    was last parked, if nobody took it since."""

    def __init__(self, pool: HttpUpstream, instance: Instance, side: Side) -> None:
        self.pool, self.instance, self.side = pool, instance, side
        self.since = 0.0
        self.timer: asyncio.TimerHandle | None = None

    def park(self, now: float) -> None:
        self.since = now
        self.side.relay = self
        if self.timer is None:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_later(self.pool.listener.upstream.pool_idle_s, self._due)

    def _due(self) -> None:
        self.timer = None
        if self.side.relay is not self:
            return  # in use: parking it again arms the timer
        left = self.since + self.pool.listener.upstream.pool_idle_s - time.monotonic()
        if left > 0:
            self.timer = asyncio.get_running_loop().call_later(left, self._due)
            return
        self.end()

    def peer_of(self, side: Side) -> Side:
        return side

    def carry(self, side: Side, chunks: list[bytes], eof: bool) -> None:
        self.end()

    def side_lost(self, side: Side) -> None:
        self.end()

    def forget(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.pool.parked.pop(self.side, None)

    def end(self) -> None:
        self.forget()
        idle = self.pool.idle.get(self.instance, [])
        if self in idle:
            idle.remove(self)
        self.side.relay = None
        self.side.close()


class HttpUpstream:
    """The `HttpHost` of one HTTP upstream listener: its pool and its per-request figures."""

    pooled = True
    draining = False  # (UpstreamListener.stop_listening)
    refusal = DENIED  # (never used: every request is let through)

    def __init__(self, listener: UpstreamListener) -> None:
        self.listener = listener
        self.headers_timeout_s = HEADERS_TIMEOUT_S
        self.max_header_bytes = MAX_HEADER_BYTES
        u = listener.upstream
        self.limits = Limits(u.request_timeout_s, u.request_idle_s, u.client_idle_s)
        self.idle: dict[Instance, list[_Idle]] = {}
        self.parked: dict[Side, _Idle] = {}  # every pooled connection's idle state, idle or not
        self.in_use: dict[Side, tuple[Instance, float]] = {}  # -> (instance, when borrowed)
        self.latency: PeakEwma[Instance] = PeakEwma()
        self.sessions: set[HttpSession] = set()
        self.budget = RetryBudget(u.retry_ratio, u.retry_min_per_s)
        self.avoid: dict[Instance, float] = {}  # instance -> until when a retry skips it
        # The service-router's routes (router_plan.RouterPlan), None: it has none. Typed
        # loosely: a sidecar with no router never loads the router modules.
        self.routes: Any = None

    def decide_request(self, source: str, request: Callable[[], HttpRequest]) -> Decision:
        self.budget.request(time.monotonic())  # each first attempt earns retry budget
        return ALLOWED

    def may_retry(self) -> bool:
        allowed = self.budget.try_retry(time.monotonic())
        self.listener.tally.add("outbound.http.retries" if allowed else "outbound.http.no_budget")
        return allowed

    def elsewhere(self, ex: Exchange) -> bool:
        """Whether the request's target has an instance none of its tries failed on: its
        next try goes there (`_pick`, even to one set aside), so a retry of a try that
        reached no app goes at once, with no back-off (http_app_link.py)."""
        failed = ex.failed_on
        return any(i not in failed for i in self.listener.instances_for(ex.target))

    def http_outcome(self, outcome: Outcome) -> None:
        self.listener.metrics.outbound(self.listener.upstream.name).answered(
            outcome.status,
            outcome.seconds,
            outcome.route,  # a router's route, else ""
        )

    def http_event(self, name: str) -> None:
        self.listener.tally.add(f"outbound.http.{name}")

    def http_closed(self, session: HttpSession) -> None:
        self.sessions.discard(session)
        self.listener.metrics.outbound(self.listener.upstream.name).disconnected(
            session, time.monotonic() - session.started
        )
        self.listener.on_close()

    def forget_except(self, known: set[Instance]) -> None:
        """Instances gone from the catalog: their latency and avoidance go (bounded memory)."""
        self.latency.forget_except(known)
        self.avoid = {i: until for i, until in self.avoid.items() if i in known}

    def take_idle(self, ex: Exchange) -> Side | None:
        """The chosen instance's idle connection, at once (no task, no await), if it has one."""
        if not ex.target:
            ex.target = self._target_of(ex)
        instance = self._pick(ex.target, set(), ex.failed_on)
        return None if instance is None else self._idle_of(instance)

    async def open_backend(self, ex: Exchange) -> Side:
        """A verified mTLS connection to an instance: an idle one, else a new one."""
        tried: set[Instance] = set()
        if not ex.target:
            ex.target = self._target_of(ex)
        target, skip = ex.target, ex.failed_on
        for _ in range(ATTEMPTS):
            instance = self._pick(target, tried, skip)
            if instance is None:
                break
            tried.add(instance)
            side = self._idle_of(instance)
            if side is not None:
                return side
            server = await backend_stream(self.listener, instance, target)
            if server is not None:  # reached; its answer says whether it succeeded: counted as
                # one here, an app answering 503 was never set aside (each retry reconnects)
                return self._take(server, instance)
        reason = tally.ALL_ATTEMPTS_FAILED if tried else tally.NO_HEALTHY_INSTANCE
        self.listener.refuse(reason, self.listener.tried(len(tried), target),
                             "request answered 503", target)  # fmt: skip
        raise ConnectionError(f"upstream {self.listener.upstream.name}: "
                              f"{len(tried)} instance(s) failed")  # fmt: skip

    def _target_of(self, ex: Exchange) -> str:
        """Where a request goes: its router's route, else the listener's draw (split.py)."""
        routes = self.routes
        if routes is None:
            return self.listener.pick_target()
        target: str = routes.target_for(ex, self.listener)
        return target

    def set_routes(self, routes: Any) -> None:
        """The router's routes in force from the next request (None: none)."""
        self.routes = routes

    def _pick(self, target: str, tried: set[Instance], skip: tuple[object, ...]) -> Instance | None:
        """An instance for a request (balance.choose_for_request); `skip`: where it failed
        before. A further attempt of one connection (`tried`) takes no fallback: None."""
        lst, now = self.listener, time.monotonic()
        candidates = lst.instances_for(target)
        excluded = tried | lst.outliers.ejected(time.monotonic_ns() // 1_000_000)
        if self.avoid:
            excluded |= {i for i, until in self.avoid.items() if until > now}
        # one candidate needs no prices (balance.choose takes it without a draw)
        costs = self.latency.costs(candidates, lst.outstanding, now) if len(candidates) > 1 else {}
        failed_here = [c for c in candidates if c in skip] if skip else []
        if tried:  # a further connection attempt: only where it may go without a fallback
            return balance.choose(candidates, costs, lst.rng, {*excluded, *failed_here})
        return balance.choose_for_request(candidates, costs, lst.rng, excluded, failed_here)

    def _idle_of(self, instance: Instance) -> Side | None:
        """The instance's last parked connection still open and current (`MuxPool.current`);
        the ones passed over end."""
        idle = self.idle.get(instance, [])
        if not idle:
            return None
        lst = self.listener
        identity, now = lst.identity(), time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.side.is_open():
                conn.forget()
            elif lst.tunnels.current(conn.side, identity, now):
                return self._take(conn.side, instance)
            else:  # an old leaf's or an aged mux's: a new stream instead
                conn.end()
        return None

    def _take(self, side: Side, instance: Instance) -> Side:
        side.relay = None
        self.in_use[side] = (instance, time.monotonic())
        self.listener.add_outstanding(instance)
        return side

    def release_backend(self, side: Side, *, failed: bool = False, timed: bool = True,
                        status: int = 0) -> object:  # fmt: skip
        """A connection back from a session: pooled if it can serve again, else closed.
        A `failed` one (lost mid-request, or retried), or one whose answer (`status`, as the
        session read it; 0: none ended) was a 502, 503 or 504, is a failure of its instance:
        skipped by the next request's choice for a second, priced as a slow answer until it
        does better (a fast 503 priced as fast would draw every request to an instance whose
        app is down), and counted by outlier detection.
        Otherwise, unless `timed` is False (a tunnel after a 101: its life is no request's
        latency), the time it was borrowed is a latency sample. Returns the instance (None
        for one not borrowed from here)."""
        borrowed = self.in_use.pop(side, None)
        if borrowed is None:
            return None
        instance, now = borrowed[0], time.monotonic()
        is_open = side.is_open()
        failed = failed or status in FAILURE_STATUSES
        lst = self.listener
        if failed:  # skipped for a second, then priced as a slow answer until it does better
            self.avoid[instance] = now + AVOID_S
            self.latency.observe(instance, FAILURE_S, now)
            outlier_failed(lst, instance)
        else:
            lst.outliers.succeeded(instance)
            if timed:  # one request's latency on that instance (its answer has ended)
                self.latency.observe(instance, now - borrowed[1], now)
        lst.drop_outstanding(instance)
        parked = self.parked.get(side)
        if not is_open:
            if parked is not None:
                parked.forget()
            return instance
        idle = self.idle.get(instance)
        if idle is None:
            idle = self.idle[instance] = []
        if len(idle) >= lst.upstream.pool_idle:
            if parked is not None:
                parked.forget()
            side.close()
            return instance
        if parked is None:
            parked = self.parked[side] = _Idle(self, instance, side)
        parked.park(now)
        idle.append(parked)
        return instance

    def drop_where(self, refused: Callable[[Side], bool]) -> int:
        """Close the pooled connections `refused` names (a revoked server): idle ones, and
        borrowed ones cut mid-request (their session answers as for a lost app)."""
        idle = [conn for conns in self.idle.values() for conn in conns if refused(conn.side)]
        for conn in idle:
            conn.end()
        borrowed = [side for side in self.in_use if refused(side)]
        for side in borrowed:
            side.close(abort=True)
        return len(idle) + len(borrowed)

    def close_all(self) -> None:
        for session in list(self.sessions):
            session.close(abort=True)
        for idle in list(self.idle.values()):
            for conn in list(idle):
                conn.end()
