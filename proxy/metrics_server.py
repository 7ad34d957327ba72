"""The proxy's metrics listener: `GET /metrics` (Prometheus text) and `GET /stats` (JSON).

A few lines of HTTP/1.1 over an asyncio Protocol, not aiohttp (which would
add ~12 MiB to every sidecar, see agent_http.py): read the request head
(at most 8 KiB), answer, close. Rendering happens here, on the scrape,
from the plain counters the data path keeps (edge_metrics.py); nothing is
computed between scrapes. `/stats` is what the agent gathers for
`gossamer stat` and `top`: every edge's counts and histogram buckets.
Anything else is a 404, a method other than GET a 405, a head that is not
HTTP or too long a 400; the listener keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence

from gossamer.proxy.edge_metrics import stats_json
from gossamer.proxy.listen import serve
from gossamer.proxy.metrics_families import Proxy, families
from gossamer.proxy.prom_text import CONTENT_TYPE, render

log = logging.getLogger("gossamer.proxy")
MAX_HEAD = 8192
Source = Callable[[], Sequence[Proxy]]


def answer(head: bytes, proxies: Sequence[Proxy], start_s: float, now_s: float) -> bytes:
    """The whole HTTP response to one request head."""
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return _response(400, "text/plain", b"not an HTTP/1 request\n")
    method, target = parts[0], parts[1].split(b"?", 1)[0]
    if target not in (b"/metrics", b"/stats"):
        return _response(404, "text/plain", b"try /metrics or /stats\n")
    if method not in (b"GET", b"HEAD"):
        return _response(405, "text/plain", b"GET only\n")
    if target == b"/metrics":
        body = render(families(proxies, start_s)).encode()
        return _response(200, CONTENT_TYPE, body, head_only=method == b"HEAD")
    stats = [stats_json(m, now_s - start_s) for m, _ in proxies]
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
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._head += data
        if b"\r\n\r\n" in self._head or len(self._head) > MAX_HEAD:
            if b"\r\n\r\n" not in self._head:
                reply = _response(400, "text/plain", b"request head too long\n")
            else:
                reply = self._server.reply(self._head)
            self._transport.write(reply)
            self._transport.close()


class MetricsServer:
    """One listener serving the figures of `proxies()` (one proxy, or every one in node mode)."""

    def __init__(self, addr: str, proxies: Source) -> None:
        host, _, port = addr.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.proxies = proxies
        self.start_s = time.time()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await serve(lambda: _Scrape(self), self.host, self.port)
        log.info("proxy: metrics on http://%s:%d/metrics", self.host, self.port)

    def reply(self, head: bytes) -> bytes:
        return answer(head, self.proxies(), self.start_s, time.time())

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
