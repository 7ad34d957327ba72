"""The inbound side of muxes: each stream decided, then joined to a new app connection.

A client sidecar that agreed to frames (mux.py) sends OPEN for each client
connection (at L7: for each pooled connection, whose requests are then
decided one by one, as on a connection of its own). The handshake checks
the client's certificate only; each OPEN is decided as a new connection
would be: the certificate checked against the current trust again when
the trust changed, else at most once a second (mux.py `checked_peer`), and
the intentions asked for every stream (`Inbound._authorize`, counted and
recorded the same way), then a new connection to the local app joined to
the stream and ACKed. A mux with no stream is closed after
`INBOUND_IDLE_S`: the client side closes idle ones sooner (mux_pool.py),
so this side does not close one as it is taken. A live stream is an open
connection like any other: a policy change or a revocation cuts it.
Draining (`stop`), new streams are turned away (AWAY: the client side tries
elsewhere) and idle muxes closed.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import TYPE_CHECKING, Final

from gossamer.proxy.authorize import Refused, Trust, client_service
from gossamer.proxy.ca.verified_chain import ChainMemory
from gossamer.proxy.mux import Mux, StreamSide, checked_peer
from gossamer.proxy.mux_frames import AWAY
from gossamer.proxy.mux_pool import MAX_STREAMS
from gossamer.proxy.protocol import is_h2, is_l7
from gossamer.proxy.tls_side import TlsSide, peer_of

if TYPE_CHECKING:
    from gossamer.proxy.inbound import Inbound

INBOUND_IDLE_S: Final = 60.0


class InboundMuxes:
    def __init__(self, inbound: Inbound) -> None:
        self.inbound = inbound
        self.muxes: set[Mux] = set()
        self.xfcc: dict[TlsSide, bytes] = {}  # X-Forwarded-Client-Cert of each wire's client
        # Streams whose app connection is still being made, per wire: a stream the peer resets
        # leaves mux.streams at once, but its connection attempt runs on (local_connect_s).
        self.joining: dict[Mux, int] = {}
        self.draining = False
        self._sweep: asyncio.TimerHandle | None = None

    def start(self, wire: TlsSide, source: str) -> None:
        """A wire whose client certificate just passed as `source`'s: its streams may come."""
        identity = self.inbound._identity()
        if identity is not None:
            wire.peer_checked = (identity.trust, source, time.monotonic())
        protocol = self.inbound.config.protocol
        if is_l7(protocol) or is_h2(protocol):  # once per wire, for all its streams; before
            self.xfcc[wire] = self.inbound.xfcc_of(wire)  # the mux: it opens what came with it
        mux = Mux(wire, opener=False, on_open=self._open, on_idle=self._idle, on_lost=self._lost)
        if mux.lost:
            self.xfcc.pop(wire, None)
        else:
            self.muxes.add(mux)
        if self._sweep is None:
            loop = asyncio.get_running_loop()
            self._sweep = loop.call_later(INBOUND_IDLE_S / 2, self._swept)

    def _open(self, mux: Mux, stream: StreamSide) -> None:
        inbound, started = self.inbound, time.monotonic()
        if (self.draining or len(mux.streams) > MAX_STREAMS  # a client sidecar opens fewer
                or self.joining.get(mux, 0) >= MAX_STREAMS):  # fmt: skip
            mux.refuse(stream, AWAY)
            return
        wire, l7 = mux.wire, is_l7(inbound.config.protocol)
        identity = inbound._identity()
        trust = identity.trust if identity is not None else None
        checked = checked_peer(wire, trust, started)
        try:
            source = inbound._authorize(wire, decide=not l7, source=checked)
        except Refused as refused:
            inbound.refuse(refused.reason, peer_of(wire), str(refused))
            mux.refuse(stream)
            return
        if not checked:
            wire.peer_checked = (trust, source, started)
        if l7:  # a pooled connection of the client sidecar's: each request is decided
            mux.accept(stream)
            inbound.serve_http(stream, source, started, self.xfcc_of(stream))
            return
        task = asyncio.create_task(inbound._join(stream, source, peer_of(wire), started))
        inbound._tasks.add(task)
        self.joining[mux] = self.joining.get(mux, 0) + 1

        def joined(done: asyncio.Task[None]) -> None:
            inbound._tasks.discard(done)
            left = self.joining.pop(mux, 0) - 1
            if left > 0:
                self.joining[mux] = left

        task.add_done_callback(joined)

    def xfcc_of(self, stream: StreamSide) -> bytes:
        """The X-Forwarded-Client-Cert value for requests on `stream` (its wire's client)."""
        return self.xfcc.get(stream.mux.wire, b"")

    def _idle(self, mux: Mux) -> None:
        if self.draining:
            mux.close()

    def _lost(self, mux: Mux) -> None:
        self.muxes.discard(mux)
        self.xfcc.pop(mux.wire, None)

    def _swept(self) -> None:
        self._sweep = None
        old = time.monotonic() - INBOUND_IDLE_S
        for mux in list(self.muxes):
            if not mux.streams and mux.idle_since < old:
                mux.close()
        if self.muxes:
            self._sweep = asyncio.get_running_loop().call_later(INBOUND_IDLE_S / 2, self._swept)

    def stop(self) -> None:
        """Draining: no new stream; idle muxes closed now, the others once their streams end."""
        self.draining = True
        for mux in list(self.muxes):
            if not mux.streams:
                mux.close()

    def close_untrusted(self, trust: Trust, now: datetime, chains: ChainMemory) -> None:
        """Close every mux whose client the current trust refuses (an agent was revoked)."""
        for mux in list(self.muxes):
            try:
                client_service(mux.wire.pipe.peer_certificates(), trust, now, chains)
            except Refused:
                mux.close(abort=True)

    def close_all(self) -> None:
        self.draining = True
        for mux in list(self.muxes):
            mux.close(abort=bool(mux.streams))
        self.muxes.clear()
        self.xfcc.clear()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
