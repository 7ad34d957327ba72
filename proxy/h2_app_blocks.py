"""The app's header blocks on an h2c connection, read for the call book. Pure.

Every block the app sends is decoded with a table of its own, so the table stays in
step with the app's encoder, and the fields the call book reads (WANTED) go to it. An
app whose blocks do not decode, or that sends one past MAX_APP_BLOCK, is not the gate's
to judge: its bytes still reach the client, its blocks go unread from then on (`reader`
None), and a block that ends its stream still ends the call, so a long connection's
calls never pile up in the book.
"""

from __future__ import annotations

from typing import Final

from gossamer.proxy.h2_calls import CallBook
from gossamer.proxy.h2_frames import (
    CONTINUATION,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    PADDED,
    PRIORITY_FLAG,
    H2Error,
    fragment,
)
from gossamer.proxy.hpack_reader import HeaderReader, HpackError

MAX_APP_BLOCK: Final = 256 * 1024  # a longer header block from the app is passed on, not read
WANTED: Final = frozenset((b":status", b"grpc-status", b"content-type"))  # what the book reads


class AppBlocks:
    def __init__(self, calls: CallBook) -> None:
        self.calls = calls
        self.reader: HeaderReader | None = HeaderReader(MAX_APP_BLOCK)  # None: gave up
        self._block = bytearray()  # the block so far, its frames' fragments joined
        self._of = (0, 0, 0)  # its first frame's kind, flags and stream

    def starts(self, kind: int, flags: int, stream: int, length: int, now: float) -> bool:
        """A frame of a header block begins (HEADERS and PUSH_PROMISE open one): whether its
        `length` bytes of payload are to be gathered and read (`ends`). One that would take
        the block past MAX_APP_BLOCK is not gathered first (a frame may say 16 MiB)."""
        if kind != CONTINUATION:
            self._block, self._of = bytearray(), (kind, flags, stream)
        if self.reader is None:
            if kind == HEADERS and flags & END_STREAM:  # unread, and it ends the call all
                self.calls.ended(stream, now)  # the same: the book must not fill up
            return False
        if length + len(self._block) > MAX_APP_BLOCK:
            self.give_up(now)
            return False
        return True

    def ends(self, kind: int, flags: int, payload: bytearray, now: float) -> None:
        """A header block's frame, gathered whole: read the block once it is complete."""
        plain = not flags & (PADDED | PRIORITY_FLAG) and len(payload) <= MAX_APP_BLOCK
        if kind == HEADERS and flags & END_HEADERS and plain:  # a whole block in one frame
            if self.reader is not None:
                self._read(bytes(payload), now)
            return
        try:
            self._block += fragment(kind, flags, bytes(payload))[0]
        except H2Error:
            self.give_up(now)  # not ours to judge: the client will
            return
        if len(self._block) > MAX_APP_BLOCK:
            self.give_up(now)
        if flags & END_HEADERS and self.reader is not None:
            self._read(bytes(self._block), now)

    def _read(self, block: bytes, now: float) -> None:
        assert self.reader is not None
        kind, flags, stream = self._of
        try:
            fields = self.reader.read(block, WANTED)
        except HpackError:
            self.give_up(now)
            return
        if kind == HEADERS:
            self.calls.headers(stream, fields, bool(flags & END_STREAM), now)

    def give_up(self, now: float) -> None:
        """The app's blocks go unread from here on; the one that made it so still ends its
        call when it ends the stream."""
        self.reader = None
        kind, flags, stream = self._of
        if kind == HEADERS and flags & END_STREAM:
            self.calls.ended(stream, now)
