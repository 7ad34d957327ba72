"""The private channel between worker 0 and each other worker (`--workers N`).

One socket pair per worker, made by worker 0 when it starts the worker (its
end passed by file descriptor, so nothing else can connect). Over it:
- worker 0 asks for the figures behind one metrics address: `ID ADDR\\n`,
  ID a decimal number it gives no other question still waiting;
- the worker answers with a 4-byte big-endian length, the question's ID
  (4 bytes, big-endian) and the JSON list of the `fleet_sum.snapshot` of
  each proxy it serves there (`[]` for none).
Worker 0 waits ASK_TIMEOUT_S for an answer, then scrapes without it (the
worker's last figures stand in, fleet_sum.Remembered). An answer that comes
later (the worker was held up by a long GC pause, a CPU hog, a throttled
cgroup) is discarded when it arrives: its ID matches no question still
waiting, and the length lets worker 0 skip it whole. The link stays up, for
its end closing is what tells a worker worker 0 is gone.
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
# well under the 2 s the agent gives a sidecar's /stats (gossamer stat), so a stalled worker
# leaves its last figures in the answer rather than the whole sidecar out of it
ASK_TIMEOUT_S = 1.0
HEADER = struct.Struct(">II")  # an answer's length (of the JSON alone), its question's ID


def worker_of(value: str | None) -> tuple[int, int] | None:
    """(index, fd) from WORKER_ENV's value; None when this is worker 0 (or the only one)."""
    if not value:
        return None
    index, _, fd = value.partition(":")
    return int(index), int(fd)


def answer_frame(question_id: int, body: bytes) -> bytes:
    """One answer as the worker writes it."""
    return HEADER.pack(len(body), question_id) + body


def take_answers(pending: bytearray) -> list[tuple[int, bytes]]:
    """The whole answers at the start of `pending` as (question ID, JSON), removed from it;
    a partial one stays for the next read. ValueError for a length over MAX_ANSWER: the
    stream is garbled past that point, nothing after it can be framed."""
    answers = []
    while len(pending) >= HEADER.size:
        size, question_id = HEADER.unpack_from(pending)
        if size > MAX_ANSWER:
            raise ValueError(f"an answer of {size} bytes")
        end = HEADER.size + size
        if len(pending) < end:
            break
        answers.append((question_id, bytes(pending[HEADER.size : end])))
        del pending[:end]
    return answers


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

    def withdraw(self, addr: str, source: Source) -> None:
        """`source` no longer offered at `addr`; a later offer there (a node proxy's sidecar
        started anew while the one it replaces drains on) is not its to withdraw."""
        if self._offered.get(addr) is source:
            del self._offered[addr]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._pending += data
        while b"\n" in self._pending:
            line, self._pending = self._pending.split(b"\n", 1)
            question_id, _, addr = line.partition(b" ")
            source = self._offered.get(addr.decode(errors="replace"))
            proxies = source() if source is not None else []
            body = json.dumps([snapshot(p) for p in proxies]).encode()
            self._transport.write(answer_frame(int(question_id), body))

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
        self.link.withdraw(self.addr, self.source)


class Asker(asyncio.Protocol):
    """Worker 0's end of one worker's link. Each question has its own ID and each answer
    goes to the question it names, so a late answer cannot pass for a later question's, and
    questions (concurrent scrapes) need not wait for each other."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._transport: asyncio.Transport | None = None
        self._connecting: asyncio.Task[tuple[asyncio.Transport, Asker]] | None = None
        self._closed = False
        self._pending = bytearray()
        self._waiting: dict[int, asyncio.Future[list[Snapshot]]] = {}
        self._last_id = 0

    async def ask(self, addr: str) -> list[Snapshot] | None:
        """The worker's figures behind `addr`; None when it does not answer in time (a worker
        that is starting, or stalled: its last figures stand in, fleet_sum.Remembered)."""
        question_id = self._new_id()
        answer: asyncio.Future[list[Snapshot]] = asyncio.get_running_loop().create_future()
        self._waiting[question_id] = answer
        try:
            async with asyncio.timeout(ASK_TIMEOUT_S):
                # shielded: a scrape given up (timed out, its client gone) must not close the
                # link half made, which the worker would read as worker 0 gone
                await asyncio.shield(self._connection())
                if self._transport is None:
                    raise ConnectionResetError("the worker's link is closed")
                self._transport.write(b"%d %s\n" % (question_id, addr.encode()))
                return await answer
        except (OSError, TimeoutError, ValueError) as exc:
            log.warning("proxy: a worker's figures are missing from this scrape: %s",
                        str(exc) or type(exc).__name__)  # fmt: skip
            return None  # the link stays: a late answer is dropped when it comes
        finally:
            self._waiting.pop(question_id, None)

    def _new_id(self) -> int:
        self._last_id = self._last_id % 0xFFFF_FFFF + 1
        return self._last_id

    def _connection(self) -> asyncio.Task[tuple[asyncio.Transport, Asker]]:
        """Made once, on the first question (the loop was not running when worker 0 made
        the socket pair); its failure, if any, stands for every later question too."""
        if self._connecting is None:
            loop = asyncio.get_running_loop()
            self._connecting = asyncio.create_task(
                loop.create_unix_connection(lambda: self, sock=self._sock)
            )
        return self._connecting

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._closed:  # closed while the link was being made
            transport.close()
            return
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._pending += data
        try:
            answers = take_answers(self._pending)
        except ValueError as exc:  # nothing past it can be read: the worker restarts
            log.error("proxy: a worker's link is garbled (%s): closing it", exc)
            self.close()
            return
        for question_id, body in answers:
            waiter = self._waiting.get(question_id)
            if waiter is None or waiter.done():
                log.debug("proxy: a worker's late answer to question %d discarded", question_id)
                continue
            try:
                figures = json.loads(body)
                if not isinstance(figures, list):
                    raise ValueError("an answer that is not a list")
            except ValueError as exc:  # framed all the same: only this answer is lost
                waiter.set_exception(exc)
            else:
                waiter.set_result(figures)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._closed = True
        for waiter in self._waiting.values():  # they need not wait for the timeout
            if not waiter.done():
                waiter.set_exception(ConnectionResetError("the worker's link closed"))

    def close(self) -> None:
        """Worker 0 is done with this worker (it ended): the link's end closes."""
        self._closed = True
        if self._transport is not None:
            self._transport.close()
        elif self._connecting is None or self._connecting.done():
            self._sock.close()  # (else connection_made closes the transport it gets)
