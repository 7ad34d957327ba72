"""DNS over TCP: one protocol object per connection, framing in, prepared answers out.

Each query is a two-byte length and the message (RFC 1035 4.2.2). Every
complete frame in a read is answered through the same Responder as UDP
(with tcp=True), and the answers of one read go out in one write, so a
client pipelining queries (RFC 7766) costs one system call per batch, not
two reads and a write per query. A name forwarded to the recursors is
answered when the upstream replies, possibly after later queries (clients
match answers by ID). The connection is closed when it stays without a
complete query for TCP_IDLE_TIMEOUT seconds, when a message gets no answer
(a response sent to us, or one too short for a header), and when answering
fails; reading pauses while the client does not read what we send.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

from gossamer.agent.dns.answer import Forward
from gossamer.agent.dns.prepared import Responder

log = logging.getLogger("gossamer.dns")

TCP_IDLE_TIMEOUT = 10.0  # seconds a TCP client may go without a complete query
Spawn = Callable[[Coroutine[Any, Any, None]], None]
ForwardTcp = Callable[[bytes], Awaitable[bytes | None]]


class TcpConnection(asyncio.Protocol):
    def __init__(self, responder: Responder, spawn: Spawn, forward: ForwardTcp) -> None:
        self._respond = responder.respond
        self._rcodes = responder.rcodes
        self._spawn = spawn
        self._forward_query = forward
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._last = 0.0
        self._idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        loop = asyncio.get_running_loop()
        self._last = loop.time()
        self._idle = loop.call_later(TCP_IDLE_TIMEOUT, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        self._transport = None

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None:
            self._transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        buf = self._buffer + data if self._buffer else data
        out: list[bytes] = []
        at, end = 0, len(buf)
        while end - at >= 2:
            size = int.from_bytes(buf[at : at + 2], "big")
            if end - at - 2 < size:
                break
            wire = buf[at + 2 : at + 2 + size]
            at += 2 + size
            if not self._answer(wire, out):
                self._send(out)
                self._close()
                return
        self._buffer = buf[at:]
        if at:
            self._last = asyncio.get_running_loop().time()
        self._send(out)

    def _answer(self, wire: bytes, out: list[bytes]) -> bool:
        """Append the framed answer to `out` (or start forwarding); False to close."""
        try:
            reply = self._respond(wire, True)
        except Exception:  # a bad message must never stop the listener
            log.exception("DNS over TCP failed")
            return False
        if reply is None:
            return False
        if isinstance(reply, Forward):
            self._spawn(self._forward(wire))
            return True
        self._rcodes[reply[3] & 15] += 1
        out.append(len(reply).to_bytes(2, "big"))
        out.append(reply)
        return True

    async def _forward(self, wire: bytes) -> None:
        reply = await self._forward_query(wire)
        if reply is None:
            self._close()
        else:
            self._send([len(reply).to_bytes(2, "big"), reply])

    def _send(self, out: list[bytes]) -> None:
        if out and self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"".join(out))

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _check_idle(self) -> None:
        if self._transport is None:
            return
        loop = asyncio.get_running_loop()
        due = self._last + TCP_IDLE_TIMEOUT
        if loop.time() >= due:
            self._close()
        else:
            self._idle = loop.call_at(due, self._check_idle)
