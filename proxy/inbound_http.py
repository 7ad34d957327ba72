"""The inbound port's HTTP side: what an `HttpSession` (http1.py) asks of it. Shell.

`Inbound` (inbound.py) is this host: each request is decided by the L7
permissions of the matching intention (`decide_request`; the `HttpRequest`
is only built when such a rule applies), counted on the inbound edge and
reported when denied; the app connection is the local app, one per session.
Each mTLS connection's X-Forwarded-Client-Cert is made here, once (xfcc.py).
A policy change applies to each session's next request, and also to what
is open now (`recheck_sessions`), as to a TCP connection: a request in
flight (a long download, a stream of events) or queued, and a WebSocket's
upgrade request for as long as its tunnel lasts, are decided again, and the
session is cut when one is no longer allowed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from gossamer.gossip.host_port import host_port
from gossamer.intentions.decide import decide
from gossamer.intentions.denials import DenialTable, denial_of, not_known
from gossamer.intentions.model import Decision, HttpRequest
from gossamer.proxy import tally
from gossamer.proxy.authorize import decided_by
from gossamer.proxy.ca.verified_chain import ChainMemory
from gossamer.proxy.config import ProxyConfig
from gossamer.proxy.edge_metrics import CLASSES, EdgeMetrics, class_index
from gossamer.proxy.http1 import HttpSession
from gossamer.proxy.http_codec import DENIED, DENIED_BODY, Exchange, Outcome
from gossamer.proxy.http_limits import Limits
from gossamer.proxy.identity import Identity
from gossamer.proxy.side import PlainSide, Side
from gossamer.proxy.tls_side import TlsSide
from gossamer.proxy.xfcc import header_value

if TYPE_CHECKING:
    from gossamer.proxy.policy import Policy

log = logging.getLogger("gossamer.proxy")
NOT_KNOWN: Final = Decision(False, "the intentions are not known yet")
TERMINATED: Final = "connection terminated due to policy change"
CALL_TERMINATED: Final = "call terminated due to policy change"  # one h2c call (h2_cut.py)
MAX_SOURCES: Final = 4096  # cached sources (peers are services with verified leaves: few)
_BY_CLASS: Final = [f"http.responses.{c}" for c in CLASSES]  # the counter names, made once


class InboundHttp:
    """The `HttpHost` methods of the inbound port (mixed into `Inbound`)."""

    config: ProxyConfig
    policy: Policy
    tally: tally.Tally
    denials: DenialTable
    metrics: EdgeMetrics
    http_open: set[HttpSession]
    on_close: Callable[[], None]
    pooled = False  # an HTTP session keeps its app connection
    refusal = DENIED  # a request the L7 permissions deny
    draining = False  # (stop_listening)
    limits: Limits  # local_request_timeout_ms, local_idle_timeout_ms, idle_timeout_ms
    l4_decisions: dict[str, Decision | None]  # source -> its decision when no L7 rule applies
    l4_decided_by: tuple[object, bool, object] | None  # (intentions, default, config) of those
    chains: ChainMemory
    _identity: Callable[[], Identity | None]

    def xfcc_of(self, wire: TlsSide) -> bytes:
        """The X-Forwarded-Client-Cert value for requests from `wire`'s client (xfcc.py)."""
        identity = self._identity()
        if identity is None:
            return b""
        chain = wire.pipe.peer_certificates()
        return header_value(identity.uri, chain, identity.trust, datetime.now(UTC), self.chains)

    def take_idle(self, ex: Exchange) -> Side | None:
        return None  # the app connection is opened per session (open_backend)

    async def open_backend(self, ex: Exchange) -> Side:
        """The local app, for an HTTP session (kept by the session across its requests). One
        that cannot be reached is counted and logged as for a TCP connection (inbound.py
        `_join`): the 503 its request gets does not say whether the app is down."""
        target = (self.config.local_address, self.config.local_port)
        connecting = asyncio.get_running_loop().create_connection(PlainSide, *target)
        try:
            _, app = await asyncio.wait_for(connecting, self.config.timeouts.local_connect_s)
        except (OSError, TimeoutError) as exc:
            if self.tally.refuse("inbound", tally.LOCAL_UNREACHABLE, "local-app", now_ms()):
                log.warning("proxy: local app %s unreachable, request answered 503: %s",
                            host_port(*target), exc)  # fmt: skip
            raise
        return app

    def release_backend(self, side: Side, *, failed: bool = False, timed: bool = True,
                        status: int = 0) -> object:  # fmt: skip
        side.close()  # not pooled: never called
        return None

    def may_retry(self) -> bool:
        return False  # the app is local: nowhere else to send a request

    def elsewhere(self, ex: Exchange) -> bool:
        return False

    def decide_request(self, source: str, request: Callable[[], HttpRequest]) -> Decision:
        """May this request of `source` in? The L7 permissions of the matching intention decide;
        the request is only built when such a rule applies. A deny is counted and reported."""
        policy, service = self.policy, self.config.service
        edge = self.metrics.inbound(source)
        if not policy.known:
            edge.denied += 1
            self.denials.add(not_known(source, service, now_ms()))
            self.tally.add("http.denied")
            return NOT_KNOWN
        decision = self._decision(source, request)
        if decision.allowed:
            edge.allowed += 1
        else:
            self.tally.add("http.denied")
            self.record_denial(source, decision)
        return decision

    def _decision(self, source: str, request: Callable[[], HttpRequest]) -> Decision:
        """The intentions' word on a request of `source` (built only if an L7 rule applies)."""
        decision = self._l4_decision(source)
        if decision is None:  # an L7 rule applies: this request decides
            policy = self.policy
            decision = decide(policy.intentions, source, self.config.service, request=request(),
                              default_allow=policy.default_allow)  # fmt: skip
        return decision

    def judge_of(self, source: str) -> Callable[[HttpRequest], Decision]:
        """How a policy change decides a request of `source` again (not counted: it is no
        new request)."""
        return lambda request: self._decision(source, lambda: request)

    def recheck_sessions(self) -> None:
        """Decide again each request in flight or queued, and each WebSocket's upgrade
        request. One the app has not seen is answered `403` in its turn; a session whose
        request at the app or tunnel is no longer allowed is cut (`403` when the answer has
        not begun). An idle session waits: its next request is decided as it comes."""
        # Decisions kept by source are made again as requests come; the set replaced is not
        # held here meanwhile, to be let go by the next request in one piece (runtime.py).
        self.l4_decided_by = None
        self.l4_decisions.clear()
        for session in list(self.http_open):
            if session.closed:
                continue
            tunneled = session.tunneled
            if tunneled is not None:
                decision = self._decision(session.source, tunneled)
                if not decision.allowed:
                    session.close(abort=True)
                    self.terminated(session.source, decision)
                continue
            for ex in list(session.queue):
                if not ex.allowed or ex.request_of is None:
                    continue  # a denied one is being answered already
                decision = self._decision(session.source, ex.request_of)
                if decision.allowed:
                    continue
                if not ex.sent:  # the app has not seen it: denied as if it came now
                    session.withdraw(ex, decision)
                    self.record_denial(session.source, decision)
                    continue
                session.fail(403, DENIED_BODY, linger=False)  # (only the oldest is ever sent)
                self.terminated(session.source, decision)
                break

    def terminated(self, source: str, decision: Decision, *, call: bool = False) -> None:
        """A connection (or, `call`, one h2c call) of `source` cut by a policy change:
        counted, reported, logged."""
        self.tally.add("inbound.terminated")
        self.metrics.inbound(source).terminated += 1
        what = CALL_TERMINATED if call else TERMINATED
        cut = denial_of(decision, source, self.config.service, now_ms())
        self.denials.add(replace(cut, reason=f"{what}: {cut.reason}"))
        log.warning("proxy: %s: %s -> %s (%s)", what,
                    source, self.config.service, decided_by(decision))  # fmt: skip

    def record_denial(self, source: str, decision: Decision) -> None:
        """A deny of `source` (a connection or a request): on its edge, in the denials."""
        self.metrics.inbound(source).denied += 1
        self.denials.add(denial_of(decision, source, self.config.service, now_ms()))

    def _l4_decision(self, source: str) -> Decision | None:
        """`source`'s decision when no L7 rule applies to it, None when one does. Kept per
        source until the intentions (replaced as a whole), the default or the config change:
        `decide`'s decision without a request, without its look-ups on every request."""
        policy, cache = self.policy, self.l4_decisions
        by = self.l4_decided_by
        if (by is None or by[0] is not policy.intentions or by[1] != policy.default_allow
                or by[2] is not self.config):  # fmt: skip
            cache.clear()
            self.l4_decided_by = (policy.intentions, policy.default_allow, self.config)
        if source in cache:
            return cache[source]
        service = self.config.service
        rules = policy.intentions.rules_for(source, service)
        found = None if any(rule.permissions for rule in rules) else decide(
            policy.intentions, source, service, default_allow=policy.default_allow)  # fmt: skip
        if len(cache) < MAX_SOURCES:
            cache[source] = found
        return found

    def http_outcome(self, outcome: Outcome) -> None:
        """Every request of the HTTP path, once (status 0: none was sent), under its route:
        the L7 permission that decided it (rules.py `route_name`), "" when none did."""
        self.tally.add(_BY_CLASS[class_index(outcome.status)])
        self.metrics.inbound(outcome.source).answered(outcome.status, outcome.seconds,
                                                      outcome.route)  # fmt: skip

    def http_event(self, name: str) -> None:
        self.tally.add(f"http.{name}")

    def http_closed(self, session: HttpSession) -> None:
        self.http_open.discard(session)
        self.metrics.inbound(session.source).disconnected(
            session, time.monotonic() - session.started
        )
        self.on_close()


def now_ms() -> int:
    """Wall-clock milliseconds: a denial record's time, the log limiter's windows."""
    return time.time_ns() // 1_000_000
