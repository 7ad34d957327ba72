"""Verified agent-RPC connections kept open between conversations, so a round skips the handshake.

A TLS 1.3 handshake with both chains verified costs more than a whole
digest round over it (bench/rpc_tls.py), and the Replicator talks to the
same few peers every couple of seconds. So a connection that finished a
conversation cleanly is kept, per peer address, and the next conversation
with that peer takes it instead of dialling.

Rules:
- A connection serves one conversation at a time: `take` removes it from
  the pool, `give_back` returns it; one that failed in any way is closed,
  never given back.
- It is reused only while it is fresh: idle at most `MAX_IDLE` (below the
  server's idle timeout, so the server does not close it under us), at most
  `MAX_AGE` old in all (so a peer is re-verified, with the bundle and
  revocations of the moment, at least that often), of the identity
  `trust_epoch` it was verified under (a root leaving the bundle or a
  revocation drops every pooled connection; a new root or a renewed
  certificate does not), and not closed by the peer.
- At most `PER_PEER` idle connections per address; more are closed.
The clock (seconds, monotonic) is passed in by the caller.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from gossamer.agent.sync.peer_link import IDLE_TIMEOUT, READ_CHUNK, Address, PeerError
from gossamer.catalog.sync_protocol import FrameDecoder, Message, encode

MAX_IDLE = IDLE_TIMEOUT * 2 / 3  # seconds; the server drops a connection idle for IDLE_TIMEOUT
MAX_AGE = 300.0  # seconds a connection is used before the peer is verified afresh
PER_PEER = 2  # a round and a hand-over may overlap; more than that is rare


@dataclass
class Connection:
    """Frames to and from one verified peer, one reply per request."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    epoch: int  # the identity's trust_epoch when the peer was verified
    opened: float
    peer_node: str = ""  # the node name the peer's verified certificate carries
    used: float = 0.0
    _decoder: FrameDecoder = field(default_factory=FrameDecoder)
    _pending: list[Message] = field(default_factory=list)

    async def request(self, message: Message) -> Message:
        self.writer.write(encode(message))
        await self.writer.drain()
        while not self._pending:
            data = await self.reader.read(READ_CHUNK)
            if not data:
                raise PeerError("peer closed the connection")
            self._pending.extend(self._decoder.feed(data))
        return self._pending.pop(0)

    def fresh(self, epoch: int, now: float) -> bool:
        """Whether it may serve another conversation (see the module docstring)."""
        return (
            epoch == self.epoch
            and now - self.used <= MAX_IDLE
            and now - self.opened <= MAX_AGE
            and not self._pending
            and not self.writer.is_closing()
            and not self.reader.at_eof()
        )


class ConnectionPool:
    """Idle verified connections per peer address."""

    def __init__(self) -> None:
        self._idle: dict[Address, list[Connection]] = {}

    def take(self, addr: Address, epoch: int, now: float) -> Connection | None:
        """A fresh idle connection to `addr`, removed from the pool; stale ones are closed."""
        idle = self._idle.get(addr, [])
        while idle:
            conn = idle.pop()
            if conn.fresh(epoch, now):
                return conn
            conn.writer.transport.abort()
        self._idle.pop(addr, None)
        return None

    def give_back(self, addr: Address, conn: Connection, now: float) -> None:
        """Keep a connection that ended its conversation cleanly (or close it if full)."""
        idle = self._idle.setdefault(addr, [])
        if len(idle) >= PER_PEER or conn.writer.is_closing():
            conn.writer.close()
            return
        conn.used = now
        idle.append(conn)

    def close_all(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.writer.close()
        self._idle.clear()

    @property
    def idle(self) -> int:
        return sum(len(v) for v in self._idle.values())
