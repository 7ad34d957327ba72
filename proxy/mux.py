"""Many streams over one sidecar-to-sidecar TLS connection (the wire); frames in mux_frames.py.

`Mux` is the wire's joint: it splits what the wire reads into frames and
hands each to its stream, and gathers what the streams send into one write
per turn of the event loop (one TLS record and one syscall for every
stream that spoke, where one connection per client needs one each).
Each stream is a `StreamSide` (mux_stream.py), which a relay joins to a
plain connection as it would a TCP or TLS connection. A full wire (its
transport's buffer) pauses every stream as a stream out of credit is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final

from gossamer.proxy.identity import TUNNEL_ALPN
from gossamer.proxy.mux_frames import (
    ACK,
    DATA,
    END,
    OPEN,
    REFUSED,
    RESET,
    WINDOW,
    Deframer,
    FrameError,
    control,
    credit_of,
    reset,
)
from gossamer.proxy.mux_stream import ACKED, StreamSide
from gossamer.proxy.side import Joint, Side
from gossamer.proxy.tls_side import TlsSide, peer_of

log = logging.getLogger("gossamer.proxy")
MAX_STREAM_ID: Final = (1 << 31) - 1  # past it a wire takes no new stream
# What one write carries at most (a frame is never split): writes of several 64 KiB bodies at
# once made buffers past glibc's mmap threshold, which then rose, and the heap kept the high
# mark (bench/proxy_rss.py: db's sidecar 27 -> 38 MiB after 1 MiB bodies; 29 with the cap).
FLUSH_BYTES: Final = 64 * 1024
# A peer may open this many streams while its wire takes no more of this side's writes (Go's
# HTTP/2 server bounds its queued control frames the same way); past it, the wire is closed.
OPENS_WHILE_FULL: Final = 4096
__all__ = ["ACKED", "Mux", "StreamSide", "checked_peer", "is_mux", "wire_of"]


class Mux(Joint):
    """A wire's streams. The opener (upstream side) numbers them; the other side gets each
    new one through `on_open(mux, stream)`. `on_idle(mux)`: no stream left; `on_lost(mux)`:
    the wire is gone (every stream with it)."""

    def __init__(
        self,
        wire: TlsSide,
        *,
        opener: bool,
        on_open: Callable[[Mux, StreamSide], None] | None = None,
        on_idle: Callable[[Mux], None] = lambda mux: None,
        on_lost: Callable[[Mux], None] = lambda mux: None,
    ) -> None:
        self.wire = wire
        self.opener = opener
        self.streams: dict[int, StreamSide] = {}
        self.born = self.idle_since = time.monotonic()
        self.wire_full = False
        self._opened_while_full = 0  # OPENs read while the wire could take no more writes
        self.lost = False
        self.closed_cleanly = False  # the peer ended the wire with close_notify
        # Reads from the wire: a sign of the peer's life that costs one add a read, by which
        # the opener tells a dead wire from a slow answer to one OPEN (mux_pool.py).
        self.reads = 0
        self._on_open, self._on_idle, self._on_lost = on_open, on_idle, on_lost
        self._last_id = 0
        self._frames = Deframer()
        self._out: list[bytes] = []
        self._loop = asyncio.get_running_loop()
        self._fanout = _Fanout(self)
        wire.relay = self
        wire.joined()

    @property
    def full(self) -> bool:
        """No new stream can start here."""
        return self.lost or self._last_id >= MAX_STREAM_ID

    def open(self) -> StreamSide:
        """A new stream (the opener's): OPEN is sent, `answer` resolves with ACKED or why not."""
        self._last_id += 1
        stream = StreamSide(self, self._last_id)
        stream.answer = self._loop.create_future()
        if self.lost:
            stream.answer.set_result(None)
            stream.closed = True
            return stream
        self.streams[stream.id] = stream
        self.queue(control(OPEN, stream.id))
        return stream

    def accept(self, stream: StreamSide) -> None:
        """The inbound side's yes to a stream's OPEN."""
        if not stream.closed:
            self.queue(control(ACK, stream.id))

    def refuse(self, stream: StreamSide, reason: int = REFUSED) -> None:
        """The inbound side's no, with its reason (mux_frames.py: REFUSED is final)."""
        if not stream.closed:
            self.queue(reset(stream.id, reason))
            stream.finish()

    def queue(self, *pieces: bytes) -> None:
        """Bytes for the wire, written with everything else queued in this loop turn."""
        if self.lost:
            return
        if not self._out:
            self._loop.call_soon(self.flush)
        self._out.extend(pieces)

    def flush(self) -> None:
        out, self._out = self._out, []
        if not out or self.lost:
            return
        send_all = self.wire.send_all  # the frames of a write in the records of their join
        if sum(map(len, out)) <= FLUSH_BYTES:
            send_all(out)
            return
        batch: list[bytes] = []  # big bodies: at most ~FLUSH_BYTES a write, see FLUSH_BYTES
        size = 0
        for piece in out:
            batch.append(piece)
            size += len(piece)
            if size >= FLUSH_BYTES:
                send_all(batch)
                batch, size = [], 0
        if batch:
            send_all(batch)

    def forget(self, stream: StreamSide) -> None:
        if self.streams.pop(stream.id, None) is not None and not self.streams:
            self.idle_since = time.monotonic()
            self._on_idle(self)

    def close(self, *, abort: bool = False) -> None:
        """Close the wire (every stream on it is lost)."""
        if not abort:
            self.flush()
        self.wire.close(abort=abort)
        self._lose()

    # The wire's joint.

    def peer_of(self, side: Side) -> Side:
        return self._fanout  # the wire's buffer full or drained: every stream

    def carry(self, side: Side, chunks: list[bytes], eof: bool) -> None:
        if self.lost:
            return
        self.reads += 1
        run: list[bytes] = []  # DATA pieces of one stream in a row: passed on together
        run_id = 0
        try:
            for chunk in chunks:
                for kind, stream, payload in self._frames.feed(chunk):
                    if kind == DATA and (stream == run_id or not run):
                        run.append(payload)
                        run_id = stream
                        continue
                    if run:
                        self._received(run_id, run)
                        run = []
                    if kind == DATA:
                        run, run_id = [payload], stream
                    else:
                        self._dispatch(kind, stream, payload)
            if run:
                self._received(run_id, run)
        except FrameError as exc:  # a peer of ours never does this: logged, not limited
            log.warning("proxy: sidecar connection with %s closed: %s", peer_of(self.wire), exc)
            self.close(abort=True)
            return
        if eof:
            self.closed_cleanly = self.wire.pipe.close_notified
            self.close()

    def side_lost(self, side: Side) -> None:
        self._lose()

    def _received(self, id_: int, pieces: list[bytes]) -> None:
        stream = self.streams.get(id_)
        if stream is not None:
            stream.received(pieces)

    def _dispatch(self, kind: int, id_: int, payload: bytes) -> None:
        """A frame other than DATA (`_received`)."""
        stream = self.streams.get(id_)
        if kind == WINDOW:
            if stream is not None:
                stream.credited(credit_of(payload))
        elif kind == END:
            if stream is not None:
                stream.ended()
        elif kind == RESET:
            if stream is not None:
                stream.reset_by_peer(payload[0])
        elif kind == ACK and self.opener:
            if stream is not None and stream.answer is not None and not stream.answer.done():
                stream.answer.set_result(ACKED)
        elif kind == OPEN and not self.opener and id_ > self._last_id and self._on_open:
            if self.wire_full:  # each OPEN is answered (ACK, RESET): a peer that reads none
                self._opened_while_full += 1  # of them would have those pile up here
                if self._opened_while_full > OPENS_WHILE_FULL:
                    raise FrameError(f"{self._opened_while_full} streams opened while not "
                                     "reading their answers")  # fmt: skip
            self._last_id = id_
            stream = self.streams[id_] = StreamSide(self, id_)
            self._on_open(self, stream)
        else:
            raise FrameError(f"frame kind {kind} out of turn on stream {id_}")

    def _lose(self) -> None:
        if self.lost:
            return
        self.lost = True
        self._out = []
        for stream in list(self.streams.values()):
            stream.wire_lost()
        self.wire.relay = None
        # The mux and its fanout point at each other: left so, every closed mux, with its TLS
        # connection, waited for the cyclic collector's full pass (bench/soak.py found each
        # one in the collector's garbage, on both sides).
        self._fanout.mux = None
        self._on_lost(self)

    def set_full(self, full: bool) -> None:
        self.wire_full = full
        self._opened_while_full = 0
        for stream in list(self.streams.values()):
            stream._check_stall()


class _Fanout(Side):
    """What a wire's flow control reaches: every stream of its mux (none once it is lost)."""

    def __init__(self, mux: Mux) -> None:
        super().__init__()
        self.mux: Mux | None = mux

    def pause_reading(self) -> None:
        if self.mux is not None:
            self.mux.set_full(True)

    def resume_reading(self) -> None:
        if self.mux is not None:
            self.mux.set_full(False)


RECHECK_S: Final = 1.0


def checked_peer(wire: TlsSide, trust: object, now: float) -> str:
    """The peer service a wire's certificate was found to carry under `trust` within the last
    `RECHECK_S`, or "": checked again when the trust changes (new roots, a revocation) at
    once, and at least every second for the rest (a leaf that expires), not for every
    stream (parsing the leaf again costs ~20 us a stream on each side)."""
    found = wire.peer_checked
    if found is None or found[0] is not trust or now - found[2] >= RECHECK_S:
        return ""
    return found[1]


def is_mux(side: TlsSide) -> bool:
    """Whether the peer sidecar agreed to frames (ALPN) on this connection."""
    return side.pipe.handshaken and side.pipe.tls.selected_alpn_protocol() == TUNNEL_ALPN


def wire_of(side: Side) -> Side:
    """The connection a side travels over: a stream's wire, else the side itself."""
    return side.mux.wire if isinstance(side, StreamSide) else side
