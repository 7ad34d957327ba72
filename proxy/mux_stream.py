"""A stream of a mux (mux.py), seen as a connection: a `Side` a relay joins like any other.

A relay (relay.py) joins it to a plain connection (the client on the
upstream side, the app on the inbound side) as it would a TCP or TLS
connection, so half-close, policy cuts and metrics are the relay's as for
any connection: `send` becomes DATA frames, `send_eof` END, a close before
both ends RESET (after END when it is clean, alone when it passes on a
loss). A RESET from the peer, or the wire lost under it (even with
close_notify: the stream had not ended), is the stream lost, which the
relay passes on as a loss, never as an end.

Flow control: a stream may send `WINDOW_BYTES` more than its peer has
credited; past that its relay stops reading the local side
(`pause_writing`) until WINDOW frames come. The receiver credits what it
has passed on, and stops crediting while its local side cannot take more
(`pause_reading`), so what a proxy holds for a stalled reader is bounded.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from gossamer.proxy.mux_frames import (
    BETWEEN,
    CUT,
    DATA,
    END,
    MAX_PAYLOAD,
    UNREACHABLE,
    WINDOW_BYTES,
    FrameError,
    control,
    pack_header,
    reset,
    window,
)
from gossamer.proxy.side import Side

if TYPE_CHECKING:
    from gossamer.proxy.mux import Mux

FRAME_BYTES: Final = 64 * 1024  # `send_all`'s pieces per frame at most (a read's worth: side.py)
ACKED: Final = -1  # a stream's answer to OPEN (else a RESET's reason; None: the wire was lost)


class StreamSide(Side):
    """One stream of a mux, seen as a connection."""

    def __init__(self, mux: Mux, stream: int) -> None:
        super().__init__()
        self.mux, self.id = mux, stream
        self.answer: asyncio.Future[int | None] | None = None  # the opener's, until ACK
        self._credit = WINDOW_BYTES  # what may still be sent before the peer credits more
        self._owed = 0  # received and passed on, not yet credited back
        self._reading = True  # the local side takes what comes (credit is returned)
        # No credit or a full wire: the local side is not read (a stream opened on a full
        # wire starts so: its relay pauses the client at the join, relay.py).
        self.stalled = self.full = mux.wire_full
        self.end_sent = self.end_got = False
        self.closed = False
        self.reset_got = -1  # the reason of the peer's RESET, once one came

    # What the relay asks of it, as of any side.

    def send(self, data: bytes) -> None:
        if self._out is not None:  # held (side.py `hold`): one frame for the lot
            self._out.append(data)
            return
        if self.closed or self.end_sent or not data:  # (after END: a peer's FrameError)
            return
        if len(data) > FRAME_BYTES:  # more than a read (a body held while a stream opened)
            self.send_all([data])
            return
        self.mux.queue(pack_header(DATA, self.id, len(data)), data)
        self._credit -= len(data)
        if self._credit <= 0 or self.mux.wire_full:
            self._stall()

    def send_all(self, chunks: list[bytes]) -> None:
        """DATA frames of up to FRAME_BYTES for the lot (one, for a held head and body), the
        pieces queued as they are (not joined here); a piece longer than a frame is cut, as a
        peer takes no frame over MAX_PAYLOAD and closes the connection of every stream."""
        if self._out is not None:
            self._out += chunks
            return
        if self.closed or self.end_sent:
            return
        frame: list[bytes] = []
        size = 0
        for chunk in chunks:
            n = len(chunk)
            if size and size + n > FRAME_BYTES:  # what a stream held while unjoined
                self._frame(frame, size)
                frame, size = [], 0
            if n > FRAME_BYTES:
                for at in range(0, n, FRAME_BYTES):
                    piece = chunk[at : at + FRAME_BYTES]
                    self._frame([piece], len(piece))
                continue
            frame.append(chunk)
            size += n
        self._frame(frame, size)

    def _frame(self, pieces: list[bytes], size: int) -> None:
        if size:
            self.mux.queue(pack_header(DATA, self.id, size), *pieces)
            self._credit -= size
            if self._credit <= 0 or self.mux.wire_full:
                self._stall()

    def send_eof(self) -> None:
        if self._out is not None:
            self.flush()  # what was held goes before the end
        if not self.closed and not self.end_sent:
            self.end_sent = True
            self.mux.queue(control(END, self.id))

    def close(self, *, abort: bool = False) -> None:
        """Closed by its joint: cleanly, END first (as close_notify before a TLS close), so
        the far side passes on an end and then, with RESET, that nothing more is read here;
        aborted (`cut`: its peer was lost), RESET alone, which the far side passes on as the
        loss it is."""
        if self.closed:
            return
        if self._out is not None:
            self.flush()  # what was held goes before the end
        if not abort and self.relay is not None:
            self.send_eof()
        if not (self.end_sent and self.end_got):
            self.mux.queue(reset(self.id, CUT))
        self.finish()
        # No connection_lost follows a close of its own: let go of the joint as that would,
        # or joint and stream keep each other in a cycle (relay.py lets go the same way).
        self.relay = None

    def say_unreached(self, *, between: bool = False) -> bool:
        """RESET UNREACHABLE: the request on this stream never reached the app (http1.py), so
        the client sidecar may send it to another instance; RESET BETWEEN (`between`): closed
        between requests, the same to an HTTP client sidecar, an end to a byte relay."""
        if self.closed:
            return False
        self.mux.queue(reset(self.id, BETWEEN if between else UNREACHABLE))
        self.finish()
        self.relay = None  # (as `close`: no connection_lost follows)
        return True

    def unreached(self) -> bool:
        return self.reset_got in (UNREACHABLE, BETWEEN)

    def closed_between(self) -> bool:
        return self.reset_got == BETWEEN

    def cut(self) -> None:
        self.close(abort=True)

    def shut(self) -> None:
        self.close()  # END, then RESET: the proxy's own end, passed on as an end

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        self._reading = True
        if self._owed >= WINDOW_BYTES // 2:  # less: the peer still has half its credit
            self._credit_back()

    def is_open(self) -> bool:
        return not self.closed and not self.lost

    # What the mux tells it.

    def received(self, pieces: list[bytes]) -> None:
        """DATA, in the pieces it arrived in (mux_frames.Deframer). After the stream's END it
        is a frame out of turn: it was written to the app after its FIN (write_eof), which
        uvloop refuses with a fatal error that took the wire down (found by a review)."""
        if self.end_got:
            raise FrameError(f"stream {self.id}: data after its end")
        self._owed += sum(map(len, pieces))
        if self._owed > WINDOW_BYTES + MAX_PAYLOAD:  # one send may overshoot, never more
            raise FrameError(f"stream {self.id}: {self._owed} bytes past its credit")
        if self._reading and self._owed >= WINDOW_BYTES // 2:
            self._credit_back()
        self.deliver(pieces, False)

    def ended(self) -> None:
        if self.end_got:
            raise FrameError(f"stream {self.id}: a second end")
        self.end_got = True
        self.deliver([], True)

    def credited(self, count: int) -> None:
        self._credit += count
        self._check_stall()

    def reset_by_peer(self, reason: int) -> None:
        """RESET: an answer to OPEN, or the stream cut (UNREACHABLE after the ACK: an HTTP
        request on it reached no app, `unreached`)."""
        self.reset_got = reason
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(reason)
        self.finish()
        self.connection_lost(None)

    def wire_lost(self) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(None)
        self.finish()
        self.connection_lost(None)

    def _stall(self) -> None:
        """Sent to while out of credit or on a full wire: what feeds it is paused, again if
        it was already stalled. Only a flip used to pause it, and a stream that stalled
        before it was joined had no relay to reach then (side.py `pause_writing`), so the
        client behind it was read without bound, far past the credit, until the peer closed
        the wire of every stream (found by a review)."""
        self.stalled = True
        self.pause_writing()

    def _check_stall(self) -> None:
        stalled = self._credit <= 0 or self.mux.wire_full
        if stalled != self.stalled:
            self.stalled = stalled
            self.pause_writing() if stalled else self.resume_writing()

    def _credit_back(self) -> None:
        if not self.closed:
            self.mux.queue(window(self.id, self._owed))
        self._owed = 0

    def finish(self) -> None:
        self.closed = True
        self.mux.forget(self)
        self.drop_parser()
