"""A real HTTP/1.1 app for the proxy's L7 tests: aiohttp on its own thread and loop.

Routes: `/echo` (any method: answers `METHOD PATH` and the body it read),
`/sink` (any method: reads a body of any size as it streams in, answers its
length and SHA-256),
`/early/STATUS` (answers STATUS before reading the body, `?close=1` with
`Connection: close`),
`/chunks` (a chunked answer), `/ws` (a WebSocket that echoes text),
`/garbage` (answers bytes that are not HTTP), `/silent` (closes without
answering), `/sleep/MS` (answers after MS milliseconds of silence), `/drip/MS`
(a chunked answer whose head goes at once, then a chunk every 100 ms for MS).
`seen` lists every request line the app received, so a test
can assert that something was never forwarded.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web


@dataclass
class HttpApp:
    ip: str = "127.0.0.1"
    port: int = 0
    seen: list[str] = field(default_factory=list)
    peers: list[object] = field(default_factory=list)  # the TCP peer of each request
    broken: bool = False  # `/echo` closes the connection without answering (a failing instance)
    delay_s: float = 0.0  # `/echo` answers (or, broken, closes) after this long (a slow one)
    status: int = 200  # `/echo` answers with this status (503: an app that turns requests away)
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None

    def start(self) -> HttpApp:
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._runner is not None:  # (once: a test may stop it)
            runner, self._runner = self._runner, None
            asyncio.run_coroutine_threadsafe(runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)

    def _run(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_route("*", "/echo{tail:.*}", self._echo)
        app.router.add_route("*", "/sink", self._sink)
        app.router.add_route("*", "/early/{status:[0-9]+}", self._early)
        app.router.add_get("/chunks", self._chunks)
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/garbage", self._garbage)
        app.router.add_get("/overrun/{size:[0-9]+}", self._overrun)
        app.router.add_get("/silent", self._silent)
        app.router.add_route("*", "/sleep/{ms:[0-9]+}", self._sleep)
        app.router.add_get("/drip/{ms:[0-9]+}", self._drip)
        self._runner = web.AppRunner(app, handler_cancellation=True)  # a cut client: ended
        loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, self.ip, self.port)
        loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()
        loop.run_forever()

    def _note(self, request: web.Request) -> None:
        self.seen.append(f"{request.method} {request.path_qs}")
        self.peers.append(
            request.transport.get_extra_info("peername") if request.transport else None
        )

    async def _echo(self, request: web.Request) -> web.StreamResponse:
        self._note(request)
        await asyncio.sleep(self.delay_s)
        if self.broken:
            return _hang_up(request)
        body = await request.read()
        return web.Response(body=f"{request.method} {request.path_qs} ".encode() + body,
                            status=self.status)  # fmt: skip

    async def _sink(self, request: web.Request) -> web.StreamResponse:
        self._note(request)
        digest, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_chunked(1 << 16):  # past client_max_size
            digest.update(chunk)
            size += len(chunk)
        return web.Response(text=f"{size} {digest.hexdigest()}")

    async def _early(self, request: web.Request) -> web.StreamResponse:
        """An answer before the request's body is read (aiohttp reads and drops the rest)."""
        self._note(request)
        closing = {"Connection": "close"} if request.query.get("close") == "1" else None
        return web.Response(status=int(request.match_info["status"]), headers=closing)

    async def _sleep(self, request: web.Request) -> web.StreamResponse:
        self._note(request)
        await asyncio.sleep(int(request.match_info["ms"]) / 1000)
        return web.Response(body=b"slept")

    async def _drip(self, request: web.Request) -> web.StreamResponse:
        self._note(request)
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(int(request.match_info["ms"]) // 100):
            try:
                await response.write(b"drop,")
            except ConnectionResetError:  # the client went (the proxy cut it)
                return response
            await asyncio.sleep(0.1)
        await response.write_eof()
        return response

    async def _chunks(self, request: web.Request) -> web.StreamResponse:
        self._note(request)
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for part in (b"one,", b"two,", b"three"):
            await response.write(part)
        await response.write_eof()
        return response

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        self._note(request)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str("echo:" + msg.data)
        return ws

    async def _garbage(self, request: web.Request) -> web.StreamResponse:
        self._note(request)
        assert request.transport is not None
        request.transport.write(b"this is not HTTP at all\r\n\r\n")
        request.transport.close()
        return web.Response()

    async def _overrun(self, request: web.Request) -> web.StreamResponse:
        """A long answer and, in the same write, a second one nobody asked for; then close."""
        self._note(request)
        assert request.transport is not None
        size = int(request.match_info["size"])
        request.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size
                                + pattern(size) + OVERRUN)  # fmt: skip
        return _hang_up(request)

    async def _silent(self, request: web.Request) -> web.StreamResponse:
        self._note(request)
        return _hang_up(request)


OVERRUN = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nunasked"


def pattern(size: int) -> bytes:
    """`size` bytes that show where a piece went missing or came twice."""
    return b"".join(b"%08d" % i for i in range(0, size, 8))[:size]


def _hang_up(request: web.Request) -> web.StreamResponse:
    """Close the connection without an answer."""
    assert request.transport is not None
    request.transport.close()
    return web.Response()
