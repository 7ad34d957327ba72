"""The data path: two connections joined byte for byte, with half-close.

`Relay` joins two sides (side.py, tls_side.py): what one reads is written to
the other at once, and relay_state.py's rules decide what an end or a lost
connection does to the pair. An end is passed on as an end (FIN, close_notify,
END), a loss as a loss (a reset, no close_notify, RESET): a client must not
take an answer cut short for a whole one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gossamer.proxy.linger import linger as linger_on
from gossamer.proxy.relay_state import Halves, Step
from gossamer.proxy.side import Joint, Side

if TYPE_CHECKING:
    from gossamer.intentions.model import Decision, HttpRequest


class Relay(Joint):
    """Two joined sides; `on_close(relay)` is called once, when both are closed.

    `a` is the side the connection came from (the source of its edge), `b` the
    side it goes to; `bytes_each_way()` is (a to b, b to a) so far."""

    def __init__(self, a: Side, b: Side, on_close: Callable[[Relay], None]) -> None:
        self.sides = (a, b)
        self.started = time.monotonic()
        self.halves = Halves()
        self._on_close = on_close
        a.index, b.index = 0, 1
        a.relay = b.relay = self
        if a.lost or b.lost:
            self.lost()
            return
        a.joined()
        b.joined()
        # A side whose writing filled before the join (a stream waiting for its ACK while
        # its wire was full) paused nobody then (side.py `pause_writing`): its peer is
        # paused now, or it was read without bound into the full side (found by a review).
        for side in self.sides:
            if side.full and not self.halves.closed:
                self.paused(side)

    def per_request(self) -> bool:
        """Whether each request on it is decided (h2_relay.py): a policy change then decides
        its calls in flight again (`recheck`) instead of the connection."""
        return False

    def recheck(self, judge: Callable[[HttpRequest], Decision]) -> list[Decision]:
        """Cut the calls in flight that `judge` now denies; the decisions that cut them."""
        return []

    def drain(self) -> None:
        """The proxy is stopping: nothing to say on a byte relay (h2_relay.py has GOAWAY)."""

    def bytes_each_way(self) -> tuple[int, int]:
        return self.sides[0].moved, self.sides[1].moved

    def peer_of(self, side: Side) -> Side:
        return self.sides[1 - side.index]

    def carry(self, side: Side, chunks: list[bytes], eof: bool) -> None:
        peer = self.sides[1 - side.index]
        if len(chunks) == 1:
            side.moved += len(chunks[0])
            peer.send(chunks[0])
        elif chunks:
            side.moved += sum(map(len, chunks))
            peer.send_all(chunks)  # the records of one TLS read: one write, not one each
        if eof:
            self.ended(side)

    def side_lost(self, side: Side) -> None:
        if not self.halves.closed:
            self.first_gone(side)
        if side.closed_between():  # a far HTTP sidecar's close between requests (http1.py
            # `close_between`): nothing was cut, so the other side is closed, not reset
            if self.halves.lost() is Step.CLOSE_BOTH:
                self._close(_closed)
            return
        self.lost()

    def ended(self, side: Side) -> None:
        if not self.halves.closed:
            self.first_gone(side)
        step = self.halves.end_from(side.index)
        if step is Step.FORWARD_EOF:
            self.peer_of(side).send_eof()
        elif step is Step.CLOSE_BOTH:
            self.peer_of(side).send_eof()
            self._close(_closed)

    def first_gone(self, side: Side) -> None:
        """`side` ended or was lost while the relay was still open: a relay that charges the
        calls the end cuts to whoever went first (h2_relay.py) hears of it here."""

    def lost(self) -> None:
        """A connection was lost (a reset, an error, a TLS end with no close_notify, a
        stream's RESET or its wire gone): the other is cut (`Side.cut`), what it was sent
        written first, so the loss reaches the far end as a loss. It was closed cleanly,
        and a client took a cut answer for a whole one (found by a review)."""
        if self.halves.lost() is Step.CLOSE_BOTH:
            self._close(_cut)

    def lost_lingering(self) -> None:
        """The proxy ends the pair itself (a client's protocol error, h2_relay.py), cleanly,
        but side a is read on for a while before it is closed (linger.py): what it was sent
        last (a GOAWAY) is not lost to a reset while its client is still sending."""
        if self.halves.lost() is Step.CLOSE_BOTH:
            self._close(_closed, linger=not self.halves.ended[0])

    def terminate(self) -> None:
        """Cut both connections now (policy change, revocation, drain timeout): the proxy's
        own end, not a loss: a local app or client is closed at once, a peer sidecar is
        told the end (`Side.shut`), so the client on its side sees the proxy's close, as a
        refused one does, not a loss. Neither is waited for, nor sent what was not yet sent
        (a TLS peer then gets a reset, tls_side.py: the end would be a truncation)."""
        if self.halves.lost() is Step.CLOSE_BOTH:
            self._close(_shut)

    def _close(self, end: Callable[[Side], None], *, linger: bool = False) -> None:
        a, b = self.sides
        if not linger:
            end(a)
        end(b)
        self._on_close(self)
        # Said once; let go of it: an owner that holds the relay is often in the callback
        # (an upgraded HTTP session's tunnel), and the two then waited as a cycle for the
        # collector, with the session's parsers and both connections (bench/soak.py).
        self._on_close = _said
        # Both ends are done: the sides let go of the relay now. A side's own connection_lost
        # does that for a TCP or TLS connection, but a mux stream closed here gets none, and
        # relay and sides (with their transports) then waited as a cycle for the collector:
        # ~0.8 MiB of every L4 sidecar's RSS under new connections (bench/README.md, "RSS").
        for side in self.sides:
            side.relay = None
        if linger:
            linger_on(a)


def _said(relay: Relay) -> None:
    """A closed relay's callback: it was called already."""


def _closed(side: Side) -> None:
    side.close()


def _cut(side: Side) -> None:
    side.cut()


def _shut(side: Side) -> None:
    side.shut()
