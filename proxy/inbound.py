"""The inbound listener: mutual TLS in, an intention decision, a plain connection to the app.

Each accepted connection: TLS handshake with the current server context (client certificate
required; `handshake_s`, 10 s), the client's SPIFFE ID checked (authorize.client_service),
the decision made locally from the watched intentions (authorize.admit); allowed -> a plain
connection to the local app (`local_connect_s`, 1 s) joined byte for byte (relay.py; for
HTTP/2 services through an h2c gate that decides each request, h2_relay.py), or a mux whose
streams are each decided and joined so (inbound_mux.py); refused -> closed, counted by
reason, logged at most once per source per minute, with the deciding rule for a deny. A
deny (and a connection cut by a policy change) is also recorded in `denials`, reported to
the agent (denial_report.py). Open connections are kept with their source service: when
the intentions change, `recheck` decides each again and cuts those no longer allowed
("connection terminated due to policy change", as linkerd2-proxy logs it). When an agent
is revoked, `recheck_peers` checks each client's certificate again and cuts every
connection of a client no longer trusted.

One source host may have at most `MAX_HANDSHAKES_PER_SOURCE` connections
accepted and not yet served (in their handshake, decision or app connect);
past that its new ones are closed at once, counted `too-many-handshakes`.
Each such connection holds a TLS object and its buffers (~50 KiB) for up to
the handshake timeout, so without a bound one host that opens connections
and says nothing could hold as many as the process has file descriptors
(3,000 grew a sidecar by 160 MiB) and make every handshake wait. Sidecars
share a few connections between them (mux.py), so a peer seldom has more
than a handful in a handshake at once.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime

from gossamer.gossip.host_port import host_port
from gossamer.intentions.denials import DenialTable, not_known
from gossamer.intentions.model import Decision
from gossamer.proxy import tally
from gossamer.proxy.authorize import (
    ClosedEarly,
    Refused,
    admit,
    client_service,
    decided_by,
    reason_of_handshake_error,
)
from gossamer.proxy.ca.verified_chain import ChainMemory
from gossamer.proxy.config import ProxyConfig
from gossamer.proxy.edge_metrics import EdgeMetrics
from gossamer.proxy.http1 import HttpSession
from gossamer.proxy.http_limits import Limits
from gossamer.proxy.identity import Identity
from gossamer.proxy.idle_sweep import IdleSweep
from gossamer.proxy.inbound_any import listen_host
from gossamer.proxy.inbound_http import InboundHttp, now_ms
from gossamer.proxy.inbound_mux import InboundMuxes
from gossamer.proxy.listen import bound_by, serve, show, take_over
from gossamer.proxy.mux import StreamSide, is_mux, wire_of
from gossamer.proxy.mux_frames import UNREACHABLE
from gossamer.proxy.policy import Policy
from gossamer.proxy.protocol import is_h2, is_l7
from gossamer.proxy.relay import Relay
from gossamer.proxy.side import PlainSide
from gossamer.proxy.tls_side import TlsSide, peer_of

log = logging.getLogger("gossamer.proxy")

MAX_HANDSHAKES_PER_SOURCE = 256


class Inbound(InboundHttp):
    """The inbound port of one sidecar."""

    def __init__(
        self,
        config: ProxyConfig,
        identity: Callable[[], Identity | None],
        policy: Policy,
        counts: tally.Tally,
        denials: DenialTable | None = None,
        metrics: EdgeMetrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = EdgeMetrics(config.service) if metrics is None else metrics
        self._identity = identity
        self.policy = policy
        self.tally = counts
        self.denials = DenialTable() if denials is None else denials
        self.open: dict[Relay, str] = {}  # relay (a connection or a stream) -> client's service
        self.judged = 0  # open connections judged again (recheck, recheck_peers) so far
        self.tunnels = InboundMuxes(self)  # client sidecars' shared connections
        self.http_open: set[HttpSession] = set()  # decided per request, not per connection
        self.l4_decisions: dict[str, Decision | None] = {}  # inbound_http.py `_l4_decision`
        self.l4_decided_by: tuple[object, bool, object] | None = None
        self.headers_timeout_s = config.headers_timeout_s
        self.max_header_bytes = config.max_header_bytes
        self.limits = Limits(config.request_timeout_s, config.request_idle_s, config.client_idle_s)
        self.chains = ChainMemory()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.handshaking: dict[str, int] = {}  # source host -> its connections not yet served
        self.on_close: Callable[[], None] = lambda: None  # the runtime's drain listens
        self.idle = IdleSweep(lambda: self.config.client_idle_s, lambda: self.open,
                              lambda: self._server is not None, self._idle)  # fmt: skip

    async def start(self, replacing: Inbound | None = None) -> None:
        """Listen; on the socket of `replacing` (the inbound listener a change replaces, on the
        same address and port: its caller retires it next) when it has one, so no client is
        refused in between (listen.take_over), as a changed upstream takes over its port."""
        where = (listen_host(self.config.bind_address), self.config.bind_port)
        held = replacing._server if replacing is not None else None
        server = await take_over(self._protocol, held, *where) if held is not None else None
        if server is None:
            if replacing is not None:
                replacing.stop_listening()
            server = await serve(self._protocol, *where)
        self._server = server
        self.idle.start()
        log.info("proxy: inbound %s -> %s for %s", " and ".join(map(show, bound_by(server))),
                 host_port(self.config.local_address, self.config.local_port),
                 self.config.service)  # fmt: skip

    def stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self.tunnels.stop()  # no new streams over open muxes either
        for relay in list(self.open):
            relay.drain()  # h2c: GOAWAY, so clients open their next calls elsewhere
        self.draining = True  # HTTP/1: `Connection: close`, between requests (wind_down)
        for session in list(self.http_open):
            session.wind_down()

    def _protocol(self) -> asyncio.BaseProtocol:
        identity = self._identity()
        if identity is None:
            return _Refuse(self)
        return TlsSide(identity.server_tunnel, server_side=True, on_connect=self._accepted)

    def _accepted(self, side: TlsSide) -> None:
        peer = peer_of(side)
        host = peer.rsplit(":", 1)[0]
        held = self.handshaking.get(host, 0)
        if held >= MAX_HANDSHAKES_PER_SOURCE:  # (before a byte of it is read: no TLS work)
            said = f"{held} connections from {host} are in their handshake already"
            self.refuse(tally.TOO_MANY_HANDSHAKES, peer, said)
            side.close(abort=True)
            return
        self.handshaking[host] = held + 1
        task = asyncio.create_task(self._serve(side))
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._served(done, host))

    def _served(self, task: asyncio.Task[None], host: str) -> None:
        """`task` ended (served, refused, timed out or cancelled): its source's slot is free."""
        self._tasks.discard(task)
        left = self.handshaking.pop(host, 1) - 1
        if left:
            self.handshaking[host] = left

    async def _serve(self, side: TlsSide) -> None:
        started = time.monotonic()
        peer = peer_of(side)
        try:
            await asyncio.wait_for(asyncio.shield(side.handshake), self.config.timeouts.handshake_s)
            mux = is_mux(side)  # each stream is decided as it opens (inbound_mux.py)
            source = self._authorize(side, decide=not (mux or is_l7(self.config.protocol)))
        except Refused as refused:
            self.refuse(refused.reason, peer, str(refused))
            side.close()
            return
        except asyncio.CancelledError:  # the listener's end (terminate_all): its end too
            side.close(abort=True)
            raise
        except (TimeoutError, ssl.SSLError, OSError) as exc:
            # The handshake future keeps its exception, whose traceback keeps this frame and
            # so `side` and the future: drop the traceback, or that cycle (an SSLObject and
            # its buffers) waits for the collector after every TCP check of the port.
            exc.__traceback__ = None
            if isinstance(exc, ClosedEarly):
                self.tally.add("inbound.probes")  # a TCP check: counted, never logged
            else:
                self.refuse(reason_of_handshake_error(exc), peer, str(exc) or type(exc).__name__)
            side.close(abort=True)
            return
        if mux:
            self.tunnels.start(side, source)
            return
        if is_l7(self.config.protocol):
            self.serve_http(side, source, started, self.xfcc_of(side))
            return
        await self._join(side, source, peer, started)

    def serve_http(self, side: TlsSide | StreamSide, source: str, started: float,
                   xfcc: bytes) -> None:  # fmt: skip
        """Requests from `source` on `side`, each decided (inbound_http.py)."""
        session = HttpSession(self, side, source, xfcc)
        self.http_open.add(session)
        self.tally.add("inbound.allowed")
        self.metrics.inbound(source).connected(session, time.monotonic() - started)
        session.start()

    def _authorize(self, side: TlsSide, *, decide: bool, source: str = "") -> str:
        """The client's service, its certificate checked (unless `source`: checked just now);
        when `decide`, its connection decided by the intentions (else each request or stream
        is, as it comes)."""
        identity = self._identity()
        if identity is None:
            raise Refused(tally.NO_IDENTITY, "the proxy has no certificate yet")
        if not source:  # a resumed session: its leaf, checked again
            source = client_service(side.pipe.peer_certificates(), identity.trust,
                                    datetime.now(UTC), self.chains).service  # fmt: skip
        if not decide:
            return source
        edge = self.metrics.inbound(source)
        if not self.policy.known:
            edge.denied += 1
            self.denials.add(not_known(source, self.config.service, now_ms()))
            raise Refused(tally.DENIED, "the intentions are not known yet")
        if is_h2(self.config.protocol) and self._l4_decision(source) is None:
            return source  # an L7 rule applies: each request is decided (h2_gate.py)
        decision = admit(self.policy.intentions, source, self.config.service,
                         default_allow=self.policy.default_allow)  # fmt: skip
        if not decision.allowed:
            self.record_denial(source, decision)
            raise Refused(tally.DENIED, f"{source} -> {self.config.service} denied by "
                          f"{decided_by(decision)}")  # fmt: skip
        edge.allowed += 1
        return source

    async def _join(
        self, side: TlsSide | StreamSide, source: str, peer: str, started: float
    ) -> None:
        loop = asyncio.get_running_loop()
        target = (self.config.local_address, self.config.local_port)
        judged = self.judged
        try:
            _, app = await asyncio.wait_for(
                loop.create_connection(PlainSide, *target), self.config.timeouts.local_connect_s
            )
        except asyncio.CancelledError:  # the listener's end (terminate_all): its end too
            side.close(abort=True)
            raise
        except (OSError, TimeoutError) as exc:
            self.metrics.inbound(source).failed += 1
            app_at = host_port(*target)
            self.refuse(tally.LOCAL_UNREACHABLE, peer, f"local app {app_at}: {exc}")
            if isinstance(side, StreamSide):
                side.mux.refuse(side, UNREACHABLE)  # the client side tries another instance
            else:
                side.close()
            return
        if isinstance(side, StreamSide):
            side.mux.accept(side)
        if is_h2(self.config.protocol):
            from gossamer.proxy.h2_late import gated  # (not the h2 library: h2_late.py)

            xfcc = self.xfcc_of(side) if isinstance(side, TlsSide) else self.tunnels.xfcc_of(side)
            relay: Relay = gated(self, side, app, source, peer, xfcc)
        else:
            relay = Relay(side, app, self._closed)
        if not relay.halves.closed:
            self.open[relay] = source
            self.tally.add("inbound.allowed")
            self.metrics.inbound(source).connected(relay, relay.started - started)
            if self.judged != judged:  # a policy change or a revocation came while the app
                self.recheck()  # connection was made: judged now, as the open ones were
                self.recheck_peers()

    def _closed(self, relay: Relay) -> None:
        source = self.open.pop(relay, None)
        if source is not None:
            self.metrics.inbound(source).disconnected(relay, time.monotonic() - relay.started)
        self.on_close()

    def recheck(self) -> None:
        """Decide every open connection again; cut those the intentions no longer allow."""
        self.judged += 1
        for relay, source in list(self.open.items()):
            if relay.per_request():  # h2c: each call in flight, and the next as it comes
                for decision in relay.recheck(self.judge_of(source)):
                    self.terminated(source, decision, call=True)
                continue
            decision = admit(self.policy.intentions, source, self.config.service,
                             default_allow=self.policy.default_allow)  # fmt: skip
            if not decision.allowed:
                relay.terminate()
                self.terminated(source, decision)
        self.recheck_sessions()

    def recheck_peers(self) -> int:
        """Check each open connection's client certificate again; cut those now refused."""
        self.judged += 1
        identity = self._identity()
        if identity is None:
            return 0
        now, cut = datetime.now(UTC), 0
        conns: list[tuple[Relay | HttpSession, object, str]] = [
            (relay, wire_of(relay.sides[0]), source) for relay, source in self.open.items()
        ]
        conns += [(s, wire_of(s.client), s.source) for s in self.http_open]
        for conn, side, source in conns:
            if not isinstance(side, TlsSide):
                continue
            try:
                client_service(side.pipe.peer_certificates(), identity.trust, now,
                               self.chains)  # fmt: skip
            except Refused as refused:
                if isinstance(conn, Relay):
                    conn.terminate()
                else:
                    conn.close(abort=True)
                cut += 1
                self.tally.add("inbound.terminated")
                self.metrics.inbound(source).terminated += 1
                if self.tally.limiter.allow(f"untrusted/{source}", now_ms()):
                    log.warning("proxy: connection terminated, its client is no longer "
                                "trusted (%s): %s -> %s: %s", refused.reason, source,
                                self.config.service, refused)  # fmt: skip
        self.tunnels.close_untrusted(identity.trust, now, self.chains)  # streams cut above
        return cut

    def refuse(self, reason: str, peer: str, message: str) -> None:
        host = peer.rsplit(":", 1)[0]
        if self.tally.refuse("inbound", reason, host, now_ms()):
            log.warning("proxy: inbound from %s refused (%s): %s", peer, reason, message)

    def open_count(self) -> int:
        """Connections relayed, and those still in their handshake or app connect."""
        return len(self.open) + len(self.http_open) + len(self._tasks)

    def _idle(self, relay: Relay) -> None:
        """A TCP connection with no byte either way for `idle_timeout_ms` (idle_sweep.py)."""
        self.tally.add("inbound.idle_timeout")
        relay.terminate()

    def terminate_all(self) -> None:
        self.idle.stop()
        self.tunnels.close_all()
        for relay in list(self.open):
            relay.terminate()
        for session in list(self.http_open):
            session.close(abort=True)
        for task in list(self._tasks):  # (in a handshake or an app connect: each closes its side)
            task.cancel()


class _Refuse(asyncio.Protocol):
    """A connection accepted before the proxy has a certificate: counted, then closed."""

    def __init__(self, inbound: Inbound) -> None:
        self._inbound = inbound

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        shown = host_port(peer[0], peer[1]) if isinstance(peer, tuple) else str(peer)
        self._inbound.refuse(tally.NO_IDENTITY, shown, "the proxy has no certificate yet")
        transport.close()
