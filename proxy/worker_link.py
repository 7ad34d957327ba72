"""The private channel between worker 0 and each other worker (`--workers N`).

One socket pair per worker, made by worker 0 when it starts the worker (its
end passed by file descriptor, so nothing else can connect). Over it:
- worker 0 asks for the figures behind one metrics address: `ADDR\\n`;
- the worker answers with a 4-byte big-endian length and the JSON list of
  the `fleet_sum.snapshot` of each proxy it serves there (`[]` for none).
The worker binds no metrics port: its runtimes `offer` their figures here
instead (`Offered`). When worker 0 goes away, however it went, its end
closes; the worker sees EOF and drains as on SIGTERM, so no worker outlives
the process systemd or Nomad supervises.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
from collections.abc import Callable

from gossamer.proxy.fleet_sum import Snapshot, snapshot
from gossamer.proxy.metrics_server import Source

log = logging.getLogger("gossamer.proxy")
WORKER_ENV = "GOSSAMER_PROXY_WORKER"  # "INDEX:FD" in a worker worker 0 started
MAX_ANSWER = 64 << 20  # a worker's figures: 1,024 edges x 64 routes stay far below this
ASK_TIMEOUT_S = 2.0


def worker_of(value: str | None) -> tuple[int, int] | None:
    """(index, fd) from WORKER_ENV's value; None when this is worker 0 (or the only one)."""
    if not value:
        return None
    index, _, fd = value.partition(":")
    return int(index), int(fd)


class WorkerLink(asyncio.Protocol):
    """A worker's end: answers worker 0's questions; `on_orphaned` when worker 0 is gone."""

    def __init__(self, fd: int, on_orphaned: Callable[[], None]) -> None:
        self._sock = socket.socket(fileno=fd)
        self._on_orphaned = on_orphaned
        self._offered: dict[str, Source] = {}
        self._pending = b""
        self._transport: asyncio.Transport | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_unix_connection(lambda: self, sock=self._sock)

    def offer(self, addr: str, source: Source) -> None:
        self._offered[addr] = source

    def withdraw(self, addr: str) -> None:
        self._offered.pop(addr, None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._pending += data
        while b"\n" in self._pending:
            line, self._pending = self._pending.split(b"\n", 1)
            source = self._offered.get(line.decode(errors="replace"))
            proxies = source() if source is not None else []
            body = json.dumps([snapshot(p) for p in proxies]).encode()
            self._transport.write(struct.pack(">I", len(body)) + body)

    def connection_lost(self, exc: Exception | None) -> None:
        log.warning("proxy: worker 0 is gone: draining")
        self._on_orphaned()


class Offered:
    """A worker's stand-in for a metrics listener: its figures go to worker 0 instead."""

    def __init__(self, link: WorkerLink, addr: str, source: Source) -> None:
        self.link, self.addr, self.source = link, addr, source

    async def start(self) -> None:
        self.link.offer(self.addr, self.source)

    def close(self) -> None:
        self.link.withdraw(self.addr)


class Asker:
    """Worker 0's end of one worker's link: one question at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lock = asyncio.Lock()
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def ask(self, addr: str) -> list[Snapshot] | None:
        """The worker's figures behind `addr`; None when it does not answer in time (a worker
        that is starting, or stuck: its last figures stand in, fleet_sum.Remembered)."""
        async with self._lock:
            try:
                return await asyncio.wait_for(self._ask(addr), ASK_TIMEOUT_S)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                log.warning("proxy: a worker's figures are missing from this scrape: %s",
                            exc or type(exc).__name__)  # fmt: skip
                self.close()  # a half-read answer would garble the next one: the worker restarts
                return None

    async def _ask(self, addr: str) -> list[Snapshot]:
        if self._stream is None:
            self._stream = await asyncio.open_unix_connection(sock=self._sock)
        reader, writer = self._stream
        writer.write(addr.encode() + b"\n")
        (size,) = struct.unpack(">I", await reader.readexactly(4))
        if size > MAX_ANSWER:
            raise ValueError(f"an answer of {size} bytes")
        answer = json.loads(await reader.readexactly(size))
        if not isinstance(answer, list):
            raise ValueError("an answer that is not a list")
        return answer

    def close(self) -> None:
        if self._stream is not None:
            self._stream[1].close()
            self._stream = None
        else:
            self._sock.close()
