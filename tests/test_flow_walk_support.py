"""What the flow-control walks share (tests/test_flow_walk*.py): real apps that write and
read without end, and clients that stop reading.

The HTTP app (`db`'s): `/big/N` answers N bytes (64 KiB pieces, each numbered, so a piece
lost, doubled or moved changes the hash); `/close/N` the same with neither a length nor
chunks (the close ends them); `/reset/N` that, ended by a reset once all is sent (an app
that crashed); `/sink` reads a body and answers its size and SHA-256, `/held` the same
once `hold` is set; `/echo` answers at once; `/ws` is a WebSocket whose `big N` message
makes it send N bytes in 64 KiB binary messages, whose `hold` makes it read nothing more
until `hold` is set, and which answers each binary message with its size and SHA-256.
The byte app (`raw`'s): `flood N` makes it write N bytes the same way, `sink` makes it
read nothing until `hold` is set, then all (to the client's end), and answer the size and
hash; anything else is echoed. The gRPC app (`rpc`'s): `GrpcApp`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import socket
import struct
import termios
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from aiohttp import WSMsgType, web

from tests.harness.cluster import AgentProc
from tests.harness.poll import eventually

PIECE = 64 * 1024
MiB = 1 << 20


def piece(i: int) -> bytes:
    """The i-th 64 KiB piece of a long answer: its number, over and over."""
    return i.to_bytes(4, "big") * (PIECE // 4)


def digest_of(size: int) -> str:
    h = hashlib.sha256()
    for i, at in enumerate(range(0, size, PIECE)):
        h.update(piece(i)[: size - at])
    return h.hexdigest()


class HttpBig:
    """The HTTP app (module docstring), on its own thread and loop."""

    def __init__(self) -> None:
        self.port = 0
        self.hold = threading.Event()  # `/held` reads nothing of its body until this is set
        self.hold.set()
        self.cut = threading.Event()  # set when a `/close` answer's connection was cut under it
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None

    def start(self) -> HttpBig:
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        assert ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._runner is not None:
            runner, self._runner = self._runner, None
            asyncio.run_coroutine_threadsafe(runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)

    def _run(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        app = web.Application(client_max_size=1 << 40)
        app.router.add_get("/big/{n:[0-9]+}", self._big)
        app.router.add_get("/close/{n:[0-9]+}", self._close)
        app.router.add_get("/reset/{n:[0-9]+}", self._close)
        app.router.add_route("*", "/sink", self._sink)
        app.router.add_route("*", "/held", self._held)
        app.router.add_route("*", "/echo", self._echo)
        app.router.add_get("/ws", self._ws)
        self._runner = web.AppRunner(app, handler_cancellation=True)
        loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=4096)
        loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()
        loop.run_forever()

    async def _big(self, request: web.Request) -> web.StreamResponse:
        size = int(request.match_info["n"])
        response = web.StreamResponse()
        response.content_length = size
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for i, at in enumerate(range(0, size, PIECE)):
                await response.write(piece(i)[: size - at])
            await response.write_eof()
        return response

    async def _close(self, request: web.Request) -> web.StreamResponse:
        """N bytes with neither a length nor chunks: the body ends with the connection."""
        size = int(request.match_info["n"])
        transport = request.transport
        assert transport is not None
        transport.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        try:
            for i, at in enumerate(range(0, size, PIECE)):
                if transport.is_closing():
                    self.cut.set()
                    return web.Response()
                transport.write(piece(i)[: size - at])
                while transport.get_write_buffer_size() > MiB and not transport.is_closing():  # noqa: ASYNC110
                    await asyncio.sleep(0.01)  # (a raw transport: no event says it drained)
        except asyncio.CancelledError:  # the connection was lost (handler_cancellation)
            self.cut.set()
            raise
        if request.path.startswith("/reset/"):  # all of it sent, then a reset: a crash
            sock = transport.get_extra_info("socket")
            while not transport.is_closing() and (  # noqa: ASYNC110  (no event says
                transport.get_write_buffer_size() or _unsent(sock)  # the kernel sent it)
            ):
                await asyncio.sleep(0.01)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.close()
        return web.Response()

    async def _sink(self, request: web.Request) -> web.StreamResponse:
        h, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_chunked(PIECE):
            h.update(chunk)
            size += len(chunk)
        return web.Response(text=f"{size} {h.hexdigest()}")

    async def _held(self, request: web.Request) -> web.StreamResponse:
        await asyncio.to_thread(self.hold.wait, 60)
        return await self._sink(request)

    async def _echo(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"echo " + await request.read())

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT and msg.data.startswith("big "):
                size = int(msg.data[4:])
                with contextlib.suppress(ConnectionError):
                    for i, at in enumerate(range(0, size, PIECE)):
                        await ws.send_bytes(piece(i)[: size - at])
                    await ws.send_str("done")
            elif msg.type == WSMsgType.BINARY:
                await ws.send_str(f"got {len(msg.data)} {hashlib.sha256(msg.data).hexdigest()}")
            elif msg.type == WSMsgType.TEXT and msg.data == "hold":  # reads nothing for now
                await asyncio.to_thread(self.hold.wait, 60)
            elif msg.type == WSMsgType.TEXT:
                await ws.send_str("echo:" + msg.data)
        return ws


@dataclass
class RawApp:
    """The byte app (module docstring): one thread a connection."""

    port: int = 0
    hold: threading.Event = field(default_factory=threading.Event)  # `sink` waits for it
    _sock: socket.socket | None = None

    def __post_init__(self) -> None:
        self.hold.set()

    def start(self) -> RawApp:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(1024)
        self.port, self._sock = s.getsockname()[1], s
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
            self._sock = None

    def _accept(self) -> None:
        while self._sock is not None:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, c: socket.socket) -> None:
        with c, contextlib.suppress(OSError):
            first = c.recv(64)
            if first.startswith(b"flood "):
                size = int(first[6:])
                for i, at in enumerate(range(0, size, PIECE)):
                    c.sendall(piece(i)[: size - at])
                c.shutdown(socket.SHUT_WR)
                c.recv(1)
            elif first.startswith(b"sink"):
                # (its receive buffer left alone: shrunk on a live socket and grown again,
                # the kernel's window stayed shut now and then, the app reading nothing)
                self.hold.wait(60)
                h, size = hashlib.sha256(), 0
                rest = first[4:]
                while True:
                    h.update(rest)
                    size += len(rest)
                    rest = c.recv(1 << 20)
                    if not rest:
                        break
                c.sendall(f"{size} {h.hexdigest()}".encode())
            else:
                d = first
                while d:
                    c.sendall(d)
                    d = c.recv(65536)


def _unsent(sock: socket.socket) -> int:
    """Bytes the kernel still holds for the peer (SIOCOUTQ)."""
    return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, bytes(4)))[0])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def unread_socket(address: tuple[str, int]) -> socket.socket:
    """A client whose receive buffer is small, so what it does not read stays upstream."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(30)
    s.connect(address)
    return s


def read_exactly(s: socket.socket, size: int) -> bytes:
    got = bytearray()
    while len(got) < size:
        chunk = s.recv(min(1 << 20, size - len(got)))
        assert chunk, f"closed after {len(got)} of {size} bytes"
        got += chunk
    return bytes(got)


def hash_exactly(s: socket.socket, size: int) -> str:
    h, left = hashlib.sha256(), size
    while left:
        chunk = s.recv(min(1 << 20, left))
        assert chunk, f"closed after {size - left} of {size} bytes"
        h.update(chunk)
        left -= len(chunk)
    return h.hexdigest()


def http_head(s: socket.socket) -> bytes:
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = s.recv(1)
        assert chunk, f"closed in the head: {got!r}"
        got += chunk
    return got


def timed_get(address: tuple[str, int], path: str = "/echo") -> float:
    """Seconds for one GET on a new connection (its answer read whole)."""
    start = time.monotonic()
    with socket.create_connection(address, timeout=10) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: db\r\nConnection: close\r\n\r\n" % path.encode())
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    assert got.startswith(b"HTTP/1.1 200"), got[:200]
    return time.monotonic() - start


def timed_echo(address: tuple[str, int]) -> float:
    start = time.monotonic()
    with socket.create_connection(address, timeout=10) as s:
        s.sendall(b"ping")
        assert s.recv(16) == b"ping"
    return time.monotonic() - start


def passing(agent: AgentProc, name: str) -> bool:
    return len(agent.get(f"/v1/health/connect/{name}?passing")) == 1


def wait_passing(agent: AgentProc, *names: str) -> None:
    for name in names:
        eventually(lambda n=name: passing(agent, n), 30, what=f"{name}'s sidecar passing")


class GrpcApp:
    """A grpcio server (h2c): `Unary` echoes; `Watch` (`n:size`) streams n messages of
    `size` bytes, each its number over and over; `Upload` reads messages only once `hold`
    is set, and answers their count and SHA-256."""

    def __init__(self) -> None:
        self.hold = threading.Event()
        self.hold.set()
        self.port = 0
        self._server: grpc.Server | None = None

    def start(self) -> GrpcApp:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=32), options=GRPC_OPTIONS)
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("flow.F", {
            "Unary": grpc.unary_unary_rpc_method_handler(lambda req, ctx: req),
            "Watch": grpc.unary_stream_rpc_method_handler(self._watch),
            "Upload": grpc.stream_unary_rpc_method_handler(self._upload)})])  # fmt: skip
        self.port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(0)
            self._server = None

    @staticmethod
    def _watch(request: bytes, context: Any) -> Iterator[bytes]:
        n, size = (int(x) for x in request.split(b":"))
        for i in range(n):
            yield message(i, size)

    @staticmethod
    def digest(n: int, size: int) -> str:
        h = hashlib.sha256()
        for i in range(n):
            h.update(message(i, size))
        return h.hexdigest()

    def _upload(self, requests: Iterator[bytes], context: Any) -> bytes:
        self.hold.wait(60)
        h, count = hashlib.sha256(), 0
        for request in requests:
            h.update(request)
            count += 1
        return f"{count} {h.hexdigest()}".encode()


GRPC_OPTIONS = [("grpc.max_receive_message_length", 8 * MiB),
                ("grpc.max_send_message_length", 8 * MiB)]  # fmt: skip


def message(i: int, size: int) -> bytes:
    return i.to_bytes(4, "big") * (size // 4)


def ws_upgrade(s: socket.socket) -> bytes:
    """A WebSocket handshake on `s` (to `/ws`); the 101's head."""
    s.sendall(
        b"GET /ws HTTP/1.1\r\nHost: db\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = http_head(s)
    assert head.startswith(b"HTTP/1.1 101"), head
    return head


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """A client's (masked, all-zero mask) final frame."""
    n = len(payload)
    if n < 126:
        length = bytes((0x80 | n,))
    elif n < 1 << 16:
        length = bytes((0x80 | 126,)) + n.to_bytes(2, "big")
    else:
        length = bytes((0x80 | 127,)) + n.to_bytes(8, "big")
    return bytes((0x80 | opcode,)) + length + b"\0\0\0\0" + payload


def ws_stream_digest(size: int) -> tuple[int, str]:
    """What the app's `big N` puts on the wire: its binary frames and a text `done`."""
    h, total = hashlib.sha256(), 0
    for i, at in enumerate(range(0, size, PIECE)):
        body = piece(i)[: size - at]
        n = len(body)
        head = b"\x82" + (bytes((126,)) + n.to_bytes(2, "big") if n < 1 << 16
                          else bytes((127,)) + n.to_bytes(8, "big"))  # fmt: skip
        h.update(head + body)
        total += len(head) + n
    h.update(b"\x81\x04done")
    return total + 6, h.hexdigest()
