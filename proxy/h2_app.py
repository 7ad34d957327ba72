"""The app's half of an h2c connection as the gate follows it (h2_gate.py). Pure.

The app's bytes go to the client as they came; this reads their frame
headers to know (1) where a frame of the gate's may go in: after the app's
first frame (the SETTINGS its preface must start with), between frames,
outside a header block; (2) its SETTINGS, whose HEADER_TABLE_SIZE bounds
the table the client's encoder may use; (3) its header blocks, decoded with
a table of their own (every block, so the table stays in step), and its
ends of streams and resets, for the call book (h2_calls.py). An app whose
blocks do not decode is not the gate's to judge: its bytes still go to
the client, and its calls go unrecorded from then on.
"""

from __future__ import annotations

from typing import Final

from gossamer.proxy.h2_calls import CallBook
from gossamer.proxy.h2_frames import (
    ACK,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    HEAD,
    HEADERS,
    PADDED,
    PRIORITY_FLAG,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    H2Error,
    fragment,
    parse_head,
    table_allowed,
)
from gossamer.proxy.hpack_reader import HeaderReader, HpackError

MAX_WAITING: Final = 256  # answers held for the end of the app's frame; a client past this is cut
MAX_APP_BLOCK: Final = 256 * 1024  # a longer header block from the app is passed on, not read
WANTED: Final = frozenset((b":status", b"grpc-status", b"content-type"))  # what the call book reads


class AppSide:
    def __init__(self, calls: CallBook, client_reader: HeaderReader | None) -> None:
        self.calls = calls
        self.client_reader = client_reader  # the gate's reader of the client's blocks; None: none
        self.reader: HeaderReader | None = HeaderReader(MAX_APP_BLOCK)  # None: gave up
        self.pending: list[bytes] = []  # the gate's frames, waiting for a boundary
        self.now = 0.0
        self._ready = False
        self._head = bytearray()
        self._left = 0
        self._frame = (0, 0, 0)  # kind, flags, stream
        self._in_block = False
        self._gather: bytearray | None = None  # a SETTINGS or header block frame's payload
        self._block = bytearray()
        self._block_of = (0, 0, 0)  # its first frame's kind, flags and stream

    def at_boundary(self) -> bool:
        """Whether a frame of the gate's may go to the client now."""
        return self._ready and not self._head and self._left == 0 and not self._in_block

    def answer(self, frames: bytes, to_client: list[bytes]) -> None:
        """Frames of the gate's for the client: now, or at the next boundary."""
        if self.at_boundary() and not self.pending:
            to_client.append(frames)
        elif len(self.pending) < MAX_WAITING:
            self.pending.append(frames)
        else:  # the app is stuck inside a frame and the client keeps being refused
            raise H2Error(ENHANCE_YOUR_CALM, f"over {MAX_WAITING} answers wait for the app")

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
                out += self.pending
                self.pending = []
            if self._left == 0:
                take = min(HEAD - len(self._head), n - at)
                self._head += view[at : at + take]
                at += take
                if len(self._head) == HEAD:
                    self._start()
                continue
            take = min(self._left, n - at)
            if self._gather is not None:
                self._gather += view[at : at + take]
            at += take
            self._left -= take
            if self._left == 0:
                self._end()
        if start < n:
            out.append(data if start == 0 else data[start:])
        if self.pending and self.at_boundary():
            out += self.pending
            self.pending = []
        return out

    def _start(self) -> None:
        length, kind, flags, stream = parse_head(self._head)
        self._head.clear()
        self._ready = True  # (a first frame that is not SETTINGS: the client will say so)
        self._frame, self._left, self._gather = (kind, flags, stream), length, None
        if kind in (HEADERS, PUSH_PROMISE, CONTINUATION):
            self._in_block = not flags & END_HEADERS
            if kind != CONTINUATION:
                self._block, self._block_of = bytearray(), (kind, flags, stream)
            if self.reader is not None:
                self._gather = bytearray()
        elif kind == SETTINGS and not flags & ACK:
            self._gather = bytearray()
        elif (kind == DATA and flags & END_STREAM) or kind == RST_STREAM:
            self.calls.ended(stream, self.now)
        if length == 0:
            self._end()

    def _end(self) -> None:
        kind, flags, _ = self._frame
        gathered, self._gather = self._gather, None
        if gathered is None:
            return
        if kind == SETTINGS:
            reader = self.client_reader  # bounds the client's encoder's table
            if reader is not None:
                reader.max_allowed = table_allowed(bytes(gathered), reader.max_allowed)
            return
        plain = not flags & (PADDED | PRIORITY_FLAG) and len(gathered) <= MAX_APP_BLOCK
        if kind == HEADERS and flags & END_HEADERS and plain:  # a whole block in one frame
            if self.reader is not None:
                self._read_block(bytes(gathered))
            return
        try:
            self._block += fragment(kind, flags, bytes(gathered))[0]
        except H2Error:
            self.reader = None  # not ours to judge: the client will
            return
        if len(self._block) > MAX_APP_BLOCK:
            self.reader = None
        if flags & END_HEADERS and self.reader is not None:
            self._read_block(bytes(self._block))

    def _read_block(self, block: bytes) -> None:
        assert self.reader is not None
        kind, flags, stream = self._block_of
        try:
            fields = self.reader.read(block, WANTED)
        except HpackError:
            self.reader = None
            return
        if kind == HEADERS:
            self.calls.headers(stream, fields, bool(flags & END_STREAM), self.now)
