"""The app's half of an h2c connection as the gate follows it (h2_gate.py). Pure.

The app's bytes go to the client as they came (but for (5)); this reads
their frame headers to know (1) where a frame of the gate's may go in:
after the app's first frame (the SETTINGS its preface must start with),
between frames, outside a header block; (2) its SETTINGS, whose
HEADER_TABLE_SIZE bounds the table the client's encoder may use; (3) its
header blocks (read in h2_app_blocks.py), and its ends of streams and
resets, for the call book (h2_calls.py); (4) its SETTINGS ACKs, after
which a header block of the gate's may owe the client an HPACK table size
update (h2_table_sizes.py); (5) its GOAWAYs. The last stream id of GOAWAYs must
never go up (RFC 9113 §6.8), and the gate sends its own when the sidecar
drains: so one of the app's that says more than the client was told
already is lowered (`_lowered`: its 4 bytes held back until whole, the
rest streams), and one of the gate's is built when it goes.
"""

from __future__ import annotations

from typing import Final

from gossamer.proxy import h2_cut
from gossamer.proxy.h2_app_blocks import AppBlocks
from gossamer.proxy.h2_calls import CallBook
from gossamer.proxy.h2_cut import Cuts
from gossamer.proxy.h2_frames import (
    ACK,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    GOAWAY,
    HEAD,
    HEADERS,
    NO_SIZE,
    PING,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    H2Error,
    frame,
    parse_head,
    settings_kept,
    table_allowed,
)
from gossamer.proxy.h2_table_sizes import TableSizes
from gossamer.proxy.hpack_reader import HeaderReader

MAX_WAITING: Final = 256  # answers held for the end of the app's frame; a client past this is cut
MAX_STREAM: Final = 0x7FFFFFFF  # the highest stream id there is (31 bits)
KEPT_MOST: Final = 4096  # bytes of a SETTINGS or GOAWAY payload gathered before it is cut down


class AppSide:
    def __init__(self, calls: CallBook, client_reader: HeaderReader | None,
                 cuts: Cuts | None = None) -> None:  # fmt: skip
        self.calls = calls
        self.cuts = cuts or Cuts()  # calls cut by a policy change, waiting for the app's ACK
        self.client_reader = client_reader  # the gate's reader of the client's blocks; None: none
        self.blocks = AppBlocks(calls)
        self.sizes = TableSizes()
        self.pending: list[bytes] = []  # the gate's frames, waiting for a boundary
        self.now = 0.0
        self._ready = False
        self._head = bytearray()
        self._left = 0
        self._frame = (0, 0, 0)  # kind, flags, stream
        self._in_block = False
        self._gather: bytearray | None = None  # a SETTINGS or header block frame's payload
        # While cuts wait: a PING ACK is held back (one of the gate's is not the client's),
        # and so is the start of a frame header at the end of a read, until it says its kind.
        # A GOAWAY's last stream id is held back too, to be lowered (`_lowered`).
        self._held: bytearray | None = None
        self._hold_left = 0  # bytes of the frame still to hold before `_release`
        self._withheld = 0  # bytes of `_head` not passed on yet
        # RFC 9113 §6.8: the last stream id of GOAWAYs sent on a connection never goes up
        # (nghttp2 and grpc-go fail the calls in flight when it does). The app's and the
        # gate's both reach the client: the lowest either went with so far (none: the top).
        self.away = MAX_STREAM
        # Whether the app's GOAWAYs are held to be lowered: the gate's are, as it sends its own
        # and goes on; the follower's are only read (`away`), as its one GOAWAY, on an idle
        # connection, goes just before the close. It holds nothing then but PING ACKs while its
        # cuts wait, so bytes of a connection found not to be h2c are never kept back.
        self.lowers = True

    @property
    def reader(self) -> HeaderReader | None:
        """The reader of the app's header blocks; None once they go unread."""
        return self.blocks.reader

    def unspoken(self) -> bool:
        """Whether nothing of the app's has reached the client yet, not even a frame's start."""
        return not self._ready and not self._head

    def speak_first(self) -> bytes:
        """An empty SETTINGS frame, the server's preface, for the gate to open the client's
        side with when the connection ends before the app spoke (`unspoken`): a client
        reads a GOAWAY only after one. The app's own bytes must not follow."""
        self._ready = True
        return frame(SETTINGS, 0, 0)

    def at_boundary(self) -> bool:
        """Whether a frame of the gate's may go to the client now."""
        return self._ready and not self._head and self._left == 0 and not self._in_block

    def client_settings(self, payload: bytes) -> None:
        """A SETTINGS payload of the client's, on its way to the app."""
        reader = self.blocks.reader
        if reader is not None:
            reader.max_allowed = table_allowed(payload, reader.max_allowed)
        self.sizes.asked(payload)

    def table_update(self) -> bytes:
        """What a header block of the gate's for the client opens with: the size update the
        client's decoder waits for, if any (sent again, it changes nothing)."""
        return self.sizes.update()

    def answer(self, frames: bytes, to_client: list[bytes]) -> None:
        """Frames of the gate's for the client: now, or at the next boundary."""
        if self.at_boundary() and not self.pending:
            to_client.append(self._placed(frames))
        elif len(self.pending) < MAX_WAITING:
            self.pending.append(frames)
        else:  # the app is stuck inside a frame and the client keeps being refused
            raise H2Error(
                ENHANCE_YOUR_CALM, f"over {MAX_WAITING} answers wait for the end of a frame"
            )

    def flush(self, out: list[bytes]) -> None:
        """The gate's frames that waited for a boundary (there is one now) go on."""
        for frames in self.pending:
            out.append(self._placed(frames))
        self.pending = []

    def _placed(self, frames: bytes) -> bytes:
        """Frames of the gate's as they go to the client, in their place among the app's: a
        GOAWAY (made alone) is built when it goes, since one of the app's that went first
        may have said a lower last stream than the gate knew of when it made it."""
        if frames[3] != GOAWAY:
            return frames
        return frames[:HEAD] + self._lowered(frames[HEAD : HEAD + 4]) + frames[HEAD + 4 :]

    def _lowered(self, field: bytes) -> bytes:
        """A GOAWAY's last stream id as it goes to the client: never above what an earlier
        one said. Lowering the app's is exact: a GOAWAY of the gate's was lower only because
        the gate refused every stream after it, so the app never saw them."""
        last = int.from_bytes(field, "big") & MAX_STREAM
        if last <= self.away:
            self.away = last
            return field
        return self.away.to_bytes(4, "big")

    def feed(self, data: bytes, now: float) -> list[bytes]:
        """The bytes for the client after the app sent `data`, answers put in between."""
        self.now = now
        out: list[bytes] = []
        view, n, at, start = memoryview(data), len(data), 0, 0
        while at < n:
            if self.pending and self.at_boundary():
                if at > start:
                    out.append(data[start:at])
                    start = at
                self.flush(out)
            if self._left == 0:
                prior = len(self._head)
                take = min(HEAD - prior, n - at)
                self._head += view[at : at + take]
                at += take
                if len(self._head) == HEAD:
                    if self._withheld or self.cuts.waiting:
                        start = self._hold_or_pass(data, at - take, start, prior, out)
                    self._start()
                continue
            take = min(self._left, n - at)
            if self._held is not None:  # (its bytes before go on first)
                take = min(take, self._hold_left)
                if at > start:
                    out.append(data[start:at])
                self._held += view[at : at + take]
                at += take
                start = at
                self._left -= take
                self._hold_left -= take
                if self._hold_left == 0:
                    self._release(out)
                continue
            if self._gather is not None:
                self._gather += view[at : at + take]
                if len(self._gather) > KEPT_MOST:
                    self._kept(self._gather)
            at += take
            self._left -= take
            if self._left == 0:
                self._end()
        end = n
        if (
            self.cuts.waiting
            and self._left == 0
            and self._head
            and (self._withheld or len(self._head) <= n - start)
        ):  # none passed on yet
            end, self._withheld = n - (len(self._head) - self._withheld), len(self._head)
        if start < end:
            out.append(data if start == 0 and end == n else data[start:end])
        if self.pending and self.at_boundary():
            self.flush(out)
        if self._left:  # a frame under way: its call is not idle (stamped once per read)
            self.calls.touch(self._frame[2], now)
        return out

    def _hold_or_pass(self, data: bytes, began: int, start: int, prior: int,
                      out: list[bytes]) -> int:  # fmt: skip
        """A frame header just completed while cuts wait (or after some of it was held back):
        hold the frame if it is a PING ACK whose header is all still here, else pass on what
        of its header was held back. Where the bytes to pass on now start."""
        withheld, self._withheld = self._withheld, 0
        length, kind, flags, _ = parse_head(self._head)
        whole = prior == withheld  # nothing of this header went to the client yet
        if kind == PING and flags & ACK and length == 8 and whole:
            if began > start:
                out.append(data[start:began])
            self._held, self._hold_left = bytearray(self._head), length
            return began + HEAD - prior
        if withheld:  # (`start` is 0: the header's rest opens this read)
            out.append(bytes(self._head[:withheld]))
        return start

    def _release(self, out: list[bytes]) -> None:
        """A GOAWAY's last stream id is whole: it goes on, lowered if need be (the rest of the
        frame then streams). A held PING ACK is whole: the gate's ends its cuts' wait
        (h2_cut.py); the client's goes on."""
        held, self._held = self._held, None
        assert held is not None
        if self._frame[0] == GOAWAY:
            out.append(self._lowered(bytes(held)))
            return
        streams = self.cuts.acked(bytes(held[HEAD:]))
        if streams is None:
            out.append(bytes(held))
            return
        for stream in streams:
            call = self.calls.cut(stream, self.now)
            if ending := h2_cut.ending(stream, call, self.reader is not None, self.table_update()):
                self.answer(ending, out)

    def give_up(self, now: float) -> list[bytes]:
        """The app did not answer the PINGs behind cuts in time, and the connection is about
        to be cut: the cut calls' ends for the client now, when the app's bytes are between
        whole frames (else nothing: the connection's end is all there is), so a call cut by
        a deny or a timeout ends as one (403, DEADLINE_EXCEEDED), not as a lost connection."""
        out: list[bytes] = []
        if not self.at_boundary():
            return out
        self.flush(out)
        waiting, self.cuts.waiting = self.cuts.waiting, {}
        for streams in waiting.values():
            for stream in streams:
                call = self.calls.cut(stream, now)
                update = self.table_update()
                if ending := h2_cut.ending(stream, call, self.reader is not None, update):
                    out.append(ending)
        return out

    def _start(self) -> None:
        length, kind, flags, stream = parse_head(self._head)
        self._head.clear()
        self._ready = True  # (a first frame that is not SETTINGS: the client will say so)
        self._frame, self._left, self._gather = (kind, flags, stream), length, None
        if kind in (HEADERS, PUSH_PROMISE, CONTINUATION):
            self.calls.touch(stream, self.now)
            self._in_block = not flags & END_HEADERS
            if kind != CONTINUATION:  # (it opens with the size update the client waits for)
                self.sizes.due = NO_SIZE
            if self.blocks.starts(kind, flags, stream, length, self.now):
                self._gather = bytearray()
        elif kind == SETTINGS:
            if not flags & ACK:
                self._gather = bytearray()
            else:
                reader = self.blocks.reader
                self.sizes.acked(reader.table_max if reader is not None else -1)
        elif kind == DATA:
            self.calls.touch(stream, self.now)  # (not idle: h2_deadlines.py)
            if flags & END_STREAM:
                self.calls.ended(stream, self.now)
        elif kind == RST_STREAM:
            if length == 4:  # (its code says whose fault it was: read at its end)
                self._gather = bytearray()
            else:
                self.calls.closed(stream, self.now)
        elif kind == GOAWAY and length >= 8:  # (shorter: broken, the client's to say)
            if self.lowers:
                self._held, self._hold_left = bytearray(), 4  # its last stream id
            else:
                self._gather = bytearray()
        if length == 0:
            self._end()

    def _kept(self, gathered: bytearray) -> None:
        """A SETTINGS or GOAWAY payload being gathered, past KEPT_MOST: cut down to what is
        read of it (a frame may say 16 MiB). A header block's frame is bounded at its start."""
        kind = self._frame[0]
        if kind == SETTINGS:
            settings_kept(gathered)
        elif kind == GOAWAY:
            del gathered[4:]  # (its last stream id; the debug data is not read)

    def _end(self) -> None:
        kind, flags, _ = self._frame
        gathered, self._gather = self._gather, None
        if gathered is None:
            return
        if kind == RST_STREAM:
            self.calls.reset_by_app(self._frame[2], self.now, int.from_bytes(gathered, "big"))
            return
        if kind == GOAWAY:  # (read, not held: `lowers` off)
            self.away = min(self.away, int.from_bytes(gathered[:4], "big") & MAX_STREAM)
            return
        if kind == SETTINGS:
            reader = self.client_reader  # bounds the client's encoder's table
            if reader is not None:
                reader.max_allowed = table_allowed(bytes(gathered), reader.max_allowed)
            return
        self.blocks.ends(kind, flags, gathered, self.now)
