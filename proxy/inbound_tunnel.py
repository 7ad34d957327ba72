"""The inbound side of tunnels: each stream decided, then joined to a new app connection.

A client sidecar that agreed to frames (tunnel.py) sends OPEN for each
stream. Each OPEN is decided as a new connection would be: the client's
certificate checked against the current trust and the intentions asked
again (`Inbound._authorize`, counted and recorded the same way), then a
new connection to the local app joined to the stream. The first stream
uses the decision made at the handshake a moment before; the certificate
is checked again when the trust changes, else at most once a second
(tunnel.py `checked_peer`), the intentions for every stream. Between
streams the wire waits (`Parked`), at most `INBOUND_IDLE_S`: the client
side closes idle wires sooner (tunnel_pool.py), so this side does not
close one while it is being taken. A live stream is an open connection
like any other: a policy change or a revocation cuts it (and its wire).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from gossamer.proxy.authorize import Refused
from gossamer.proxy.side import PlainSide
from gossamer.proxy.tls_side import TlsSide
from gossamer.proxy.tunnel import Frames, Parked, Tunnel, checked_peer
from gossamer.proxy.tunnel_frames import OPEN, RESET_FRAME, Deframer

if TYPE_CHECKING:
    from gossamer.proxy.inbound import Inbound

INBOUND_IDLE_S = 60.0


class InboundTunnels:
    def __init__(self, inbound: Inbound) -> None:
        self.inbound = inbound
        self.parked: dict[TlsSide, tuple[Parked, str]] = {}  # wire -> (parked, decided source)
        self._sweep: asyncio.TimerHandle | None = None

    def start(self, wire: TlsSide, source: str) -> None:
        """A wire just authorized: its first stream is `source`'s, decided already."""
        identity = self.inbound._identity()
        if identity is not None:
            wire.peer_checked = (identity.trust, source, time.monotonic())
        self._park(wire, Deframer(), source)

    def _park(self, wire: TlsSide, frames: Deframer, source: str = "") -> None:
        self.parked[wire] = (Parked(wire, frames, self._read), source)
        wire.joined()  # what came with the handshake (its first OPEN) is read now
        if self._sweep is None:
            loop = asyncio.get_running_loop()
            self._sweep = loop.call_later(INBOUND_IDLE_S / 2, self._swept)

    def _read(self, wire: TlsSide, frames: Frames | None) -> None:
        parked, source = self.parked.pop(wire, (None, ""))
        if parked is None or frames is None or frames[0][0] != OPEN:
            wire.relay = None
            wire.close()
            return
        self._open(wire, parked.frames, frames[1:], source)

    def _open(self, wire: TlsSide, deframer: Deframer, first: Frames, source: str) -> None:
        wire.relay = None  # what comes while the app is reached is held (side.py)
        wire.pause_reading()
        inbound, started = self.inbound, time.monotonic()
        if not source:
            identity = inbound._identity()
            trust = identity.trust if identity is not None else None
            checked = checked_peer(wire, trust, started)
            try:
                source = inbound._authorize(wire, l7=False, source=checked)
            except Refused as refused:
                inbound.refuse(refused.reason, _peer(wire), str(refused))
                wire.send(RESET_FRAME)  # the stream's no: not an idle close (tunnel_frames.py)
                wire.close()
                return
            if not checked:
                wire.peer_checked = (trust, source, started)

        def join(app: PlainSide) -> Tunnel:
            return Tunnel(app, wire, deframer, self._ended, opener=False, first=first)

        task = asyncio.create_task(inbound._join(wire, source, _peer(wire), started, join))
        inbound._tasks.add(task)
        task.add_done_callback(inbound._tasks.discard)

    def _ended(self, tunnel: Tunnel, rest: Frames | None) -> None:
        self.inbound._closed(tunnel)
        wire = tunnel.wire
        if rest is None:
            return
        if not rest:
            self._park(wire, tunnel.frames)
        elif rest[0][0] == OPEN:
            self._open(wire, tunnel.frames, rest[1:], "")
        else:
            wire.close()

    def _swept(self) -> None:
        self._sweep = None
        old = time.monotonic() - INBOUND_IDLE_S
        for wire, (parked, _) in list(self.parked.items()):
            if parked.since < old:
                del self.parked[wire]
                wire.relay = None
                wire.close()
        if self.parked:
            self._sweep = asyncio.get_running_loop().call_later(INBOUND_IDLE_S / 2, self._swept)

    def close_all(self) -> None:
        for wire in list(self.parked):
            wire.relay = None
            wire.close()
        self.parked.clear()


def _peer(side: TlsSide) -> str:
    peer = side.transport.get_extra_info("peername") if side.transport else None
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
