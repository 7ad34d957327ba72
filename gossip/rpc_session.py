"""One TCP connection to a serf agent's RPC port.

A session owns the socket, an `RpcCodec`, one reader task that routes every
frame to its waiter by Seq, and a write lock. It knows nothing of handshake,
auth or reconnecting; `SerfRpcClient` builds those on top.

Concurrency contract: any number of tasks may call `request`/`subscribe`
at once; writes are serialised by the lock, replies are matched by Seq. When
the connection ends, every pending waiter fails at the same moment with one
`SerfConnectionError`, and `on_lost` is called once. Nothing here times out
on its own: callers wrap calls in `asyncio.timeout`, and a cancelled call
cleans up after itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from gossamer.gossip.errors import SerfConnectionError, SerfRpcError
from gossamer.gossip.rpc_codec import Frame, ProtocolError, RpcCodec, Stray

log = logging.getLogger(__name__)

READ_CHUNK = 64 * 1024

Route = Callable[[Frame], None]


def split_addr(addr: str) -> tuple[str, int]:
    """Split "host:port" or "[v6]:port"; a port is required (serf has no default here)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"RPC address must be host:port, got {addr!r}")
    return host.strip("[]"), int(port)


class RpcSession:
    """A live RPC connection; create it with `RpcSession.open`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        next_seq: Callable[[], int],
        on_lost: Callable[[RpcSession, SerfConnectionError], None],
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._next_seq = next_seq
        self._on_lost = on_lost
        self._codec = RpcCodec()
        self._pending: dict[int, asyncio.Future[Frame]] = {}
        self._routes: dict[int, Route] = {}
        self._write_lock = asyncio.Lock()
        self._lost: SerfConnectionError | None = None
        self._after_orphan = False
        self._reader_task = asyncio.create_task(self._read_loop(), name="serf-rpc-reader")

    @classmethod
    async def open(
        cls,
        addr: str,
        next_seq: Callable[[], int],
        on_lost: Callable[[RpcSession, SerfConnectionError], None],
    ) -> RpcSession:
        """Connect to `addr`; SerfConnectionError if that fails."""
        host, port = split_addr(addr)
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError as exc:
            raise SerfConnectionError(f"cannot connect to serf RPC at {addr}: {exc}") from exc
        return cls(reader, writer, next_seq, on_lost)

    @property
    def alive(self) -> bool:
        return self._lost is None

    async def request(
        self, command: str, body: dict[str, Any] | None, route: Route | None = None
    ) -> Frame:
        """Send one request and return its first response frame.

        With `route`, later frames on the same Seq (stream records) go to it;
        it is registered before the request is written so none is missed.
        Raises SerfConnectionError if the connection is or gets lost.
        """
        if self._lost is not None:
            raise self._lost
        seq = self._next_seq()
        waiter: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._pending[seq] = waiter
        if route is not None:
            self._routes[seq] = route
        try:
            await self._write(self._codec.send(command, seq, body))
            frame = await waiter
        except BaseException:  # lost, cancelled or timed out: serf's late reply is dropped
            self.unsubscribe(seq)
            raise
        finally:
            self._pending.pop(seq, None)
        return frame

    async def subscribe(self, command: str, body: dict[str, Any], route: Route) -> int:
        """Start a stream and return its Seq; records then go to `route`."""
        frame = await self.request(command, body, route)
        if frame.error:
            raise SerfRpcError(frame.error)
        return frame.seq

    def unsubscribe(self, seq: int) -> None:
        """Drop the route of `seq`; records serf still sends are discarded."""
        self._routes.pop(seq, None)
        self._codec.forget(seq)

    async def close(self) -> None:
        """Close the socket and fail pending waiters; `on_lost` is not called."""
        self._fail(SerfConnectionError("RPC session closed"), notify=False)
        self._reader_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader_task

    async def _write(self, data: bytes) -> None:
        try:
            async with self._write_lock:
                self._writer.write(data)
                await self._writer.drain()
        except OSError as exc:
            self._fail(SerfConnectionError(f"serf RPC write failed: {exc}"))
        if self._lost is not None:
            raise self._lost

    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._reader.read(READ_CHUNK)
                if not data:
                    reason = "serf closed the RPC connection"
                    break
                for event in self._codec.feed(data):
                    self._dispatch(event)
        except ProtocolError as exc:
            reason = str(exc)
        except OSError as exc:
            reason = f"serf RPC read failed: {exc}"
        self._fail(SerfConnectionError(reason))

    def _dispatch(self, event: Frame | Stray) -> None:
        if isinstance(event, Stray):
            # After an orphan frame a stray is expected (its late body).
            level = logging.DEBUG if self._after_orphan else logging.WARNING
            log.log(level, "dropping stray object from serf: %.200r", event.obj)
            self._after_orphan = False
            return
        self._after_orphan = False
        route = self._routes.pop(event.seq, None) if event.last else self._routes.get(event.seq)
        waiter = self._pending.pop(event.seq, None)
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(event)
        elif route is not None:
            route(event)
        else:
            self._after_orphan = True
            log.debug("frame for unknown seq %d (stopped or timed out)", event.seq)

    def _fail(self, exc: SerfConnectionError, notify: bool = True) -> None:
        if self._lost is not None:
            return
        self._lost = exc
        self._writer.close()
        pending, self._pending = self._pending, {}
        for waiter in pending.values():
            if not waiter.done():
                waiter.set_exception(exc)
        self._routes.clear()
        if notify:
            log.info("%s", exc)
            self._on_lost(self, exc)
