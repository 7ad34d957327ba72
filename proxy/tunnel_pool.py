"""The upstream side's idle tunnels: sidecar connections kept between streams, per instance.

A stream that ended cleanly (END both ways, tunnel.py) leaves its wire
here; the next client connection to the same instance takes it instead of
a new TCP connection and TLS handshake. A wire is taken only while
- it was made with the current client context (a new leaf or new roots
  make a new one: older wires are closed, never reused);
- it is younger than `MAX_AGE_S` and was idle less than the upstream's
  `pool_idle_s` (the inbound side keeps idle wires longer, so it does not
  close one while it is being taken);
- its server still passes the caller's check (the server's SPIFFE ID and
  the current trust, a lookup once its chain was verified).
At most `pool_idle` wires wait per instance; anything a parked wire reads
(or its end) closes it. The inbound side decides every stream again.

`open_stream` gives a client connection its stream: an idle wire, else a
new connection (outbound.py's `attempt`); OPEN, then the client's bytes
wait for the ACK (`connect_timeout_s`). A wire that does not answer is
closed and counted as a failed attempt (a reused one is followed by a new
connection to the same instance). A RESET is the inbound side's no
(intentions, its app unreachable): no retry. A reused wire that ends
cleanly with no answer was closed idle as it was taken (the inbound side's
sweep, a drain): a new connection is tried, not counted as a failure; a
new one that does was refused by a peer that sends no RESET.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from gossamer.proxy import tally
from gossamer.proxy.authorize import Refused, server_service
from gossamer.proxy.ca.verified_chain import ChainMemory
from gossamer.proxy.identity import Identity
from gossamer.proxy.side import PlainSide
from gossamer.proxy.tls_side import TlsSide
from gossamer.proxy.tunnel import Frames, Opening, Parked, checked_peer, is_tunnel
from gossamer.proxy.tunnel_frames import Deframer

if TYPE_CHECKING:
    from gossamer.proxy.health_rows import Instance
    from gossamer.proxy.outbound import UpstreamListener

MAX_AGE_S = 60.0
MAX_IDLE_S = 30.0  # below the inbound side's INBOUND_IDLE_S whatever the config says


class _Wire:
    def __init__(self, parked: Parked, context: ssl.SSLContext, born: float) -> None:
        self.parked, self.context, self.born = parked, context, born


class TunnelPool:
    def __init__(self, idle_s: float, capacity: int) -> None:
        self.idle: dict[Hashable, list[_Wire]] = {}
        self._idle_s = min(idle_s, MAX_IDLE_S)
        self._capacity = capacity
        self._sweep: asyncio.TimerHandle | None = None

    def take(
        self, instance: Hashable, identity: Identity, service: str, known: ChainMemory
    ) -> tuple[TlsSide, Deframer, float] | None:
        """An idle wire to `instance` fit for a new stream to `service` (wire, its frames,
        born), or None."""
        conns = self.idle.get(instance)
        now = time.monotonic()
        while conns:
            wire = conns.pop()
            side = wire.parked.wire
            fresh = now - wire.born < MAX_AGE_S and now - wire.parked.since < self._idle_s
            open_ = not side.lost and side.transport is not None and not side.transport.is_closing()
            if wire.context is identity.client_tunnel and fresh and open_:
                if checked_peer(side, identity.trust, now) == service:
                    return side, wire.parked.frames, wire.born
                try:
                    server_service(side.pipe.peer_certificates(), identity.trust,
                                   datetime.now(UTC), service, known)  # fmt: skip
                except Refused:
                    pass
                else:
                    side.peer_checked = (identity.trust, service, now)
                    return side, wire.parked.frames, wire.born
            side.relay = None
            side.close()
        return None

    def park(
        self, instance: Hashable, side: TlsSide, frames: Deframer, context: ssl.SSLContext,
        born: float,
    ) -> None:  # fmt: skip
        conns = self.idle.setdefault(instance, [])
        if len(conns) >= self._capacity:
            side.close()
            return
        conns.append(_Wire(Parked(side, frames, self._evict), context, born))
        side.joined()
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(self._idle_s, self._swept)

    def _evict(self, side: TlsSide, frames: Frames | None) -> None:
        """A parked wire read something or ended: it cannot serve again."""
        self.drop_where(lambda s: s is side)

    def _swept(self) -> None:
        self._sweep = None
        now = time.monotonic()
        self.drop_where(lambda s: False, older_than=now - self._idle_s)
        if any(self.idle.values()):
            self._sweep = asyncio.get_running_loop().call_later(self._idle_s / 2, self._swept)

    def drop_where(self, refused: Callable[[TlsSide], bool], older_than: float = -1.0) -> int:
        """Close the idle wires `refused` names (or idle since before `older_than`)."""
        dropped = 0
        for instance, conns in list(self.idle.items()):
            keep = []
            for wire in conns:
                side = wire.parked.wire
                if refused(side) or wire.parked.since < older_than:
                    side.relay = None
                    side.close()
                    dropped += 1
                else:
                    keep.append(wire)
            if keep:
                self.idle[instance] = keep
            else:
                del self.idle[instance]
        return dropped

    def close_all(self) -> None:
        self.drop_where(lambda s: True)
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None


async def open_stream(
    listener: UpstreamListener, client: PlainSide, instance: Instance, target: str, started: float
) -> Literal["joined", "refused", "failed"]:
    """Join `client` to a stream to `instance` (see the module's docstring)."""
    identity = listener._identity()
    found: tuple[TlsSide, Deframer, float] | None = None
    if identity is not None and listener.tunnels.idle:
        found = listener.tunnels.take(instance, identity, target, listener.chains)
    for fresh in (found is None, True):
        if fresh:
            server = await listener.attempt(instance, target, tunnel=True)
            if server is None:
                return "failed"
            if not is_tunnel(server):  # a peer without frames: one connection per client
                listener._join(client, server, instance, started)
                return "joined"
            found = (server, Deframer(), time.monotonic())
        if found is None:
            return "failed"
        wire, frames, born = found
        opening = Opening(wire, frames)
        try:
            rest = await asyncio.wait_for(opening.answer, listener.upstream.connect_timeout_s)
        except TimeoutError:
            rest = None
        if rest is not None:
            if not fresh:
                listener.tally.add("outbound.reused")
            listener._join(client, wire, instance, started, frames, born, rest)
            return "joined"
        wire.close(abort=not (opening.refused or opening.closed))
        if opening.refused or (opening.closed and fresh):
            return "refused"
        if opening.closed:  # closed idle as it was taken: a new connection, no failure
            continue
        listener._failed(instance, tally.CONNECT_FAILED, TimeoutError("no answer to OPEN"))
        if fresh:
            return "failed"
    return "failed"
