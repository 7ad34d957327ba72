"""The proxy's metrics listener: `GET /metrics` (Prometheus text) and `GET /stats` (JSON).

A few lines of HTTP/1.1 over an asyncio Protocol, not aiohttp (which would
add ~12 MiB to every sidecar, see agent_http.py): read the request head
(at most 8 KiB), answer, close. Rendering happens here, on the scrape,
from the plain counters the data path keeps (edge_metrics.py); nothing is
computed between scrapes. `/stats` is what the agent gathers for
`gossamer stat` and `top`: every edge's counts and histogram buckets.
Anything else is a 404, a method other than GET a 405, a head that is not
HTTP or too long a 400; the listener keeps serving. With worker processes
(workers.py), worker 0's listener adds the other workers' figures, asked
for on each scrape (`others`), before rendering.

Uptime (`UptimeSeconds`, `gossamer_proxy_start_time_seconds`) runs from each
proxy's start (`EdgeMetrics.started_s`), never from the listener's: the
runtime reopens its listener on a changed address or a port that was taken,
the counters run on, and an uptime that started over would read as a
restart to `gossamer stat`, its whole count taken for the last interval's.

Who may read: a connection from this host (a loopback peer, or one whose
address is the listener's own: the agent, `gossamer stat`, a local
Prometheus) is served plain HTTP, as a loopback-only listener would serve
it. Any other peer must speak TLS and present a service certificate of
this mesh, checked as the inbound port checks a client (`tls()`: the
proxy's server context and trust; its issuer not revoked): a Prometheus
elsewhere scrapes with a leaf the agent issued it (`tls_config`). Every
connection has REQUEST_S for its handshake and request head. Refusals are
logged at most once per peer per minute.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol, cast

from gossamer.proxy.authorize import Refused, client_service
from gossamer.proxy.ca.verified_chain import ChainMemory
from gossamer.proxy.edge_metrics import stats_json
from gossamer.proxy.fleet_sum import Snapshot, summed
from gossamer.proxy.identity import Identity
from gossamer.proxy.listen import serve
from gossamer.proxy.local_peer import from_this_host, loopback
from gossamer.proxy.log_limit import LogLimiter
from gossamer.proxy.metrics_families import Proxy, families
from gossamer.proxy.prom_text import CONTENT_TYPE, render
from gossamer.proxy.tls_pipe import TlsPipe

log = logging.getLogger("gossamer.proxy")
MAX_HEAD = 8192
REQUEST_S = 10.0  # a connection's TLS handshake and request head, from its start: or it is cut
Source = Callable[[], Sequence[Proxy]]
# The identity a peer from another host is checked with (its server context and its trust, as
# the inbound port checks a client); None: none yet.
Tls = Callable[[], Identity | None]


class MetricsLike(Protocol):
    """A metrics listener, or a worker's stand-in for one (worker_link.Offered)."""

    async def start(self) -> None: ...

    def close(self) -> None: ...


class Fleet(Protocol):
    """This process's part among worker processes (workers.py): how it serves metrics."""

    def metrics_server(self, addr: str, source: Source, tls: Tls) -> MetricsLike: ...


Others = Callable[[str], Awaitable[list[list[Snapshot]]]]  # metrics address -> their figures


def answer(head: bytes, proxies: Sequence[Proxy], now_s: float) -> bytes:
    """The whole HTTP response to one request head; each proxy's uptime from its own start."""
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return _response(400, "text/plain", b"not an HTTP/1 request\n")
    method, target = parts[0], parts[1].split(b"?", 1)[0]
    if target not in (b"/metrics", b"/stats"):
        return _response(404, "text/plain", b"try /metrics or /stats\n")
    if method not in (b"GET", b"HEAD"):
        return _response(405, "text/plain", b"GET only\n")
    start_s = min((m.started_s for m, _ in proxies), default=now_s)  # one proxy per listener
    if target == b"/metrics":
        body = render(families(proxies, start_s)).encode()
        return _response(200, CONTENT_TYPE, body, head_only=method == b"HEAD")
    stats = [stats_json(m, max(now_s - m.started_s, 0.0)) for m, _ in proxies]
    data = json.dumps({"StartTime": start_s, "Proxies": stats}).encode()
    return _response(200, "application/json", data, head_only=method == b"HEAD")


def _response(status: int, ctype: str, body: bytes, *, head_only: bool = False) -> bytes:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}[status]
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")  # fmt: skip
    return head.encode() + (b"" if head_only else body)


class _Scrape(asyncio.Protocol):
    def __init__(self, server: MetricsServer) -> None:
        self._server = server
        self._head = b""
        self._answering = False  # one request per connection: what follows it is ignored
        self._transport: asyncio.Transport | None = None
        self._tls: TlsPipe | None = None  # a peer from elsewhere: TLS, driven here (tls_pipe.py)
        self._checked = False  # its certificate, once the handshake is done
        self._peer: object = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)  # (uvloop's: no subclass)
        self._peer = peer = transport.get_extra_info("peername")
        asyncio.get_running_loop().call_later(REQUEST_S, self._late)
        if from_this_host(peer, transport.get_extra_info("sockname")):
            return
        identity = self._server.tls()
        if identity is None:
            self._refuse("the proxy has no certificate yet")
            return
        self._tls = TlsPipe(identity.server, server_side=True)

    def _late(self) -> None:
        if not self._answering and not self._closed():
            self._refuse(f"no request within {REQUEST_S:.0f} s")

    def _refuse(self, why: str) -> None:
        self._server.refused(self._peer, why)
        assert self._transport is not None
        self._transport.abort()

    def _closed(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    def data_received(self, data: bytes) -> None:
        if self._tls is None:
            self._plain(data)
            return
        try:
            chunks = self._tls.feed(data)
        except ssl.SSLError as exc:  # not TLS, no certificate, another CA's, ...
            self._refuse(f"a certificate of this mesh is required: {exc.reason or exc}")
            return
        if out := self._tls.pending():
            assert self._transport is not None
            self._transport.write(out)
        if not self._checked and self._tls.handshaken:
            self._checked = True  # as the inbound port checks a client: a service of this mesh,
            if why := self._server.refusal(self._tls):  # its issuer not revoked
                self._refuse(why)
                return
        for chunk in chunks:
            self._plain(chunk)

    def _plain(self, data: bytes) -> None:
        if self._answering:
            return
        self._head += data
        if b"\r\n\r\n" in self._head or len(self._head) > MAX_HEAD:
            self._answering = True
            if b"\r\n\r\n" not in self._head:
                self._send(_response(400, "text/plain", b"request head too long\n"))
            elif self._server.others is None:
                self._send(self._server.reply(self._head))
            else:
                self._server.spawn(self._summed(self._head))

    async def _summed(self, head: bytes) -> None:
        self._send(await self._server.reply_summed(head))

    def _send(self, reply: bytes) -> None:
        assert self._transport is not None
        if not self._transport.is_closing():
            if self._tls is not None:
                reply = self._tls.encrypt(reply) + self._tls.close_write()
            self._transport.write(reply)
            self._transport.close()


class MetricsServer:
    """One listener serving the figures of `proxies()` (one proxy, or every one in node mode)."""

    def __init__(
        self, addr: str, proxies: Source, others: Others | None = None, tls: Tls = lambda: None
    ) -> None:
        self.addr = addr
        self.tls = tls
        self._limiter = LogLimiter()
        self.chains = ChainMemory()  # a resumed session's leaf finds the chain verified before
        host, _, port = addr.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.proxies = proxies
        self.others = others
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await serve(lambda: _Scrape(self), self.host, self.port, own=True)
        shown = f"[{self.host}]" if ":" in self.host else self.host
        log.info("proxy: metrics on http://%s:%d/metrics%s", shown, self.port,
                 "" if loopback(self.host) else " (from another host: TLS and a certificate "
                 "of this mesh)")  # fmt: skip

    def reply(self, head: bytes) -> bytes:
        return answer(head, self.proxies(), time.time())

    async def reply_summed(self, head: bytes) -> bytes:
        """The reply with every worker's figures summed (worker 0 of `--workers N`)."""
        assert self.others is not None
        theirs = await self.others(self.addr)
        own = self.proxies()
        try:
            proxies = summed(own, theirs)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.error("proxy: a worker's figures cannot be added, serving worker 0's: %r", exc)
            proxies = list(own)
        for (mine, _), (total, _) in zip(own, proxies, strict=True):  # (summed keeps the order)
            total.started_s = mine.started_s  # a sum is fresh EdgeMetrics: the proxy's start
        return answer(head, proxies, time.time())

    def refusal(self, pipe: TlsPipe) -> str:
        """Why a peer from elsewhere, its handshake done, may not read; "" when it may."""
        identity = self.tls()
        if identity is None:
            return "the proxy has no certificate yet"
        try:
            client_service(pipe.peer_certificates(), identity.trust, datetime.now(UTC),
                           self.chains)  # fmt: skip
        except Refused as exc:
            return f"a service certificate of this mesh is required: {exc.reason}: {exc}"
        return ""

    def refused(self, peer: object, why: str) -> None:
        host = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        if self._limiter.allow(host, time.monotonic_ns() // 1_000_000):
            log.warning("proxy: metrics listener refused %s: %s", host, why)

    def spawn(self, job: Awaitable[None]) -> None:
        task = asyncio.ensure_future(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None


async def open_metrics(
    addr: str, source: Source, tls: Tls, fleet: Fleet | None
) -> MetricsLike | None:
    """The metrics listener at `addr`: None when none is asked for or its port cannot be had
    (logged); with worker processes, `fleet`'s part of it."""
    if not addr:
        return None
    server = (
        fleet.metrics_server(addr, source, tls) if fleet else MetricsServer(addr, source, tls=tls)
    )
    try:
        await server.start()
    except OSError as exc:
        log.error("proxy: cannot serve metrics on %s: %s", addr, exc)
        return None
    return server
