"""One stream over a reusable sidecar-to-sidecar connection: a plain side joined to a tunnel.

`Tunnel` joins a local plain connection (the client on the upstream side,
the app on the inbound side) to the TLS connection between the sidecars
(the wire), framing what goes over the wire (tunnel_frames.py). The
half-close rules are relay_state.py's, spelt in frames: a local end goes
out as END and an END received is passed on as the local connection's
end; once END has gone both ways the local connection is closed and the
wire is handed back (`on_end(tunnel, rest)`: `rest` the frames that came
after, for the next stream; None when the wire cannot serve again). A
lost local connection sends RESET and closes the wire; a lost wire, a
RESET or a malformed frame closes the local connection.

`Parked` is a wire between streams: anything it reads, or its end,
goes to `on_read(wire, frames)` (frames None: ended or malformed).
`Opening` is the client side's wire between its OPEN and the ACK.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from gossamer.proxy.identity import TUNNEL_ALPN
from gossamer.proxy.side import Joint, Side
from gossamer.proxy.tls_side import TlsSide
from gossamer.proxy.tunnel_frames import (
    ACK,
    ACK_FRAME,
    DATA,
    END,
    END_FRAME,
    OPEN_FRAME,
    RESET,
    RESET_FRAME,
    Deframer,
    FrameError,
    data_frame,
)

Frames = list[tuple[int, bytes]]


class Tunnel(Joint):
    """A stream: `local` <-> frames on `wire`. `sides` is (source, destination)."""

    def __init__(
        self,
        local: Side,
        wire: TlsSide,
        frames: Deframer,
        on_end: Callable[[Tunnel, Frames | None], None],
        *,
        opener: bool,
        first: Frames | None = None,
        born: float | None = None,
    ) -> None:
        self.local, self.wire = local, wire
        self.sides: tuple[Side, Side] = (local, wire) if opener else (wire, local)
        self.started = time.monotonic()
        self.born = self.started if born is None else born  # when the wire was made
        self.done = False
        self.frames = frames
        self._on_end = on_end
        self._out = self._in = 0  # bytes local -> wire, wire -> local
        self._opener = opener
        self._local_ended = self._wire_ended = False
        self.sides[0].index, self.sides[1].index = 0, 1
        local.relay = wire.relay = self
        if local.lost or wire.lost:
            self._cut(abort=False)
            return
        if not opener:
            wire.send(ACK_FRAME)  # the stream is allowed and its app reached
        local.joined()
        if first:
            self._apply(first)
        if not self.done:
            wire.joined()

    def bytes_each_way(self) -> tuple[int, int]:
        return (self._out, self._in) if self._opener else (self._in, self._out)

    def peer_of(self, side: Side) -> Side:
        return self.wire if side is self.local else self.local

    def carry(self, side: Side, chunks: list[bytes], eof: bool) -> None:
        if self.done:
            return
        if side is self.local:
            wire = self.wire
            for chunk in chunks:
                self._out += len(chunk)
                wire.send(data_frame(chunk))
            if eof and not self._local_ended:
                self._local_ended = True
                wire.send(END_FRAME)
                self._maybe_done([])
            return
        try:
            frames = [f for chunk in chunks for f in self.frames.feed(chunk)]
        except FrameError:
            frames = None
        if frames:
            self._apply(frames)
        if frames is None or (eof and not self.done):  # the peer closed the wire mid-stream
            self._cut(abort=False)

    def _apply(self, frames: Frames) -> None:
        local = self.local
        for i, (kind, payload) in enumerate(frames):
            if kind == DATA and not self._wire_ended:
                self._in += len(payload)
                local.send(payload)
            elif kind == END and not self._wire_ended:
                self._wire_ended = True
                local.send_eof()
                if self._maybe_done(frames[i + 1 :]):
                    return
            else:  # RESET, or anything out of turn
                self._cut(abort=False)
                return

    def _maybe_done(self, rest: Frames) -> bool:
        if not (self._local_ended and self._wire_ended):
            return False
        self.done = True
        self.local.close()
        self.wire.relay = None
        self._on_end(self, rest)
        return True

    def side_lost(self, side: Side) -> None:
        if not self.done and side is self.local and not self.wire.lost:
            self.wire.send(RESET_FRAME)
        self._cut(abort=False)

    def terminate(self) -> None:
        """Cut the stream and its wire now (policy change, drain timeout)."""
        self._cut(abort=True)

    def _cut(self, *, abort: bool) -> None:
        if self.done:
            return
        self.done = True
        self.local.close(abort=abort)
        self.wire.close(abort=abort)
        self._on_end(self, None)


class Parked(Joint):
    """A wire between streams: what it reads (or its end) goes to `on_read`."""

    def __init__(
        self, wire: TlsSide, frames: Deframer, on_read: Callable[[TlsSide, Frames | None], None]
    ) -> None:
        self.wire = wire
        self.since = time.monotonic()
        self.frames = frames
        self._on_read = on_read
        wire.relay = self

    def peer_of(self, side: Side) -> Side:
        return side

    def carry(self, side: Side, chunks: list[bytes], eof: bool) -> None:
        if self.wire.relay is not self:
            return
        try:
            frames = [f for chunk in chunks for f in self.frames.feed(chunk)]
        except FrameError:
            frames = None
        if eof or frames is None:
            self._on_read(self.wire, None)
        elif frames:
            self._on_read(self.wire, frames)

    def side_lost(self, side: Side) -> None:
        if self.wire.relay is self:
            self._on_read(self.wire, None)


class Opening(Joint):
    """OPEN sent; `answer` is the frames after the ACK, or None: the wire was lost or sent
    something else (`refused` when that was a RESET: the inbound side said no), or ended
    cleanly (`closed`: refused by a peer that answers no RESET, or closed idle as taken)."""

    def __init__(self, wire: TlsSide, frames: Deframer) -> None:
        self.wire = wire
        self.frames = frames
        self.refused = self.closed = False
        self.answer: asyncio.Future[Frames | None] = asyncio.get_running_loop().create_future()
        wire.relay = self
        wire.send(OPEN_FRAME)
        wire.joined()

    def peer_of(self, side: Side) -> Side:
        return side

    def carry(self, side: Side, chunks: list[bytes], eof: bool) -> None:
        try:
            frames = [f for chunk in chunks for f in self.frames.feed(chunk)]
        except FrameError:
            frames = None
        if frames:
            self.refused = frames[0][0] == RESET
            self._answer(frames[1:] if frames[0][0] == ACK else None)
        elif frames is None or eof:  # a close_notify: the inbound side closed it on purpose
            self.closed = frames is not None and self.wire.pipe.close_notified
            self._answer(None)

    def side_lost(self, side: Side) -> None:
        self._answer(None)

    def _answer(self, frames: Frames | None) -> None:
        if self.wire.relay is self:
            self.wire.relay = None  # what comes next is held until the stream is joined
        if not self.answer.done():
            self.answer.set_result(frames)


RECHECK_S = 1.0


def checked_peer(wire: TlsSide, trust: object, now: float) -> str:
    """The peer service a wire's certificate was found to carry under `trust` within the last
    `RECHECK_S`, or "": checked again when the trust changes (new roots, a revocation) at
    once, and at least every second for the rest (a leaf that expires), not for every
    stream (parsing the leaf again costs ~20 us a stream on each side)."""
    found = wire.peer_checked
    if found is None or found[0] is not trust or now - found[2] >= RECHECK_S:
        return ""
    return found[1]


def is_tunnel(side: TlsSide) -> bool:
    """Whether the peer sidecar agreed to frames (ALPN) on this connection."""
    return side.pipe.handshaken and side.pipe.tls.selected_alpn_protocol() == TUNNEL_ALPN
