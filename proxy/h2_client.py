"""The client's half of an h2c connection, cut into frames for the gate (h2_gate.py). Pure.

The client's bytes are cut by their 9-byte frame headers. Most frames go
to the app as they came, piece by piece (PASS). A header block's frames
are gathered whole (COLLECT): its request is decided before any of it goes
on (the gate's `_block_done`). A padded DATA frame of a body held to a
content-length waits only for its first byte, the pad length (HOLD): that
says how much of it is body, so it is judged before any of it goes on,
and the rest streams. Frames on a stream the app never saw or no
longer sees (at or below `opened`, not `CallBook.live`) are dropped (DROP), the connection window
their DATA used given back (one WINDOW_UPDATE for all a read dropped: `give_back`). The
HTTP/2 preface comes first; without it the connection is `opaque`, carried byte for byte.
Frames of the gate's own for the app (`_app_pending`) go between the client's, never
inside one. A client that breaks HTTP/2 so the gate cannot follow raises `H2Error`: a
header block interrupted, or past `max_block` counting frame heads (a flood
of empty CONTINUATIONs), a CONTINUATION with no block open, HEADERS on a
server's stream, PUSH_PROMISE, a rapid reset (h2_calls.RAPID_CALLS).
"""

from __future__ import annotations

from typing import Final

from gossamer.proxy.h2_app import AppSide
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
    PREFACE,
    PROTOCOL_ERROR,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    H2Error,
    fragment,
    parse_head,
    settings_kept,
    window_update,
)

PASS: Final = 0  # what happens to the payload of the client's current frame
DROP: Final = 1
COLLECT: Final = 2
HOLD: Final = 3  # a padded DATA frame of a body held to a content-length: its head held back
KEPT_MOST: Final = 4096  # bytes of a SETTINGS payload gathered before it is cut down


class ClientFrames:
    """The frames of one connection's client, for its gate."""

    def __init__(self, calls: CallBook, app: AppSide, max_block: int) -> None:
        self.calls = calls
        self.app = app
        self.max_block = max_block  # a longer header block ends the connection
        self.opaque = False  # no preface: carried byte for byte
        self.speaking = False  # the preface came: each stream is decided
        self._matched = 0  # preface bytes seen so far
        self._app_pending: list[bytes] = []  # frames of the gate's for the app, at a boundary
        self._now = 0.0
        self._head = bytearray()  # the client's frame header being read
        self._left = 0  # its payload bytes still to come
        self._in_frame, self._mode = False, PASS
        self._frame = (0, 0, 0)  # kind, flags, stream of the current frame
        self._payload = bytearray()  # a HEADERS or CONTINUATION frame being gathered
        self._settings: bytearray | None = None  # a SETTINGS payload passing through
        self._raw: list[bytes] = []  # the current header block's frames, as they came
        self._block = bytearray()
        self._taken = 0  # the block's frames' bytes, heads and all (a flood of empty ones too)
        self._block_of = (0, 0)  # its stream, its HEADERS frame's flags
        self._priority = b""
        self._in_block = False
        self._credit = 0  # connection window used by dropped DATA, to give back
        # The highest stream the client opened (refused ones too). Streams open in increasing
        # order, so one at or below it that the app does not have open (`CallBook.live`) is
        # closed to the app for good: no set of dropped streams to keep, or forget.
        self.opened = 0

    def from_client(self, data: bytes, now: float = 0.0, give_back: bool = True
                    ) -> tuple[list[bytes], list[bytes]]:  # fmt: skip
        """(bytes for the app, bytes for the client) after the client sent `data`. With
        `give_back` False the window of DATA dropped so far waits for a later call: a relay
        gives it back once per read (one WINDOW_UPDATE, not one for each of its records)."""
        if self.opaque:
            return [data], []
        self._now = now
        to_app: list[bytes] = []
        to_client: list[bytes] = []
        at = 0
        if not self.speaking:
            piece = data[: len(PREFACE) - self._matched]
            if PREFACE[self._matched : self._matched + len(piece)] != piece:
                self.opaque = True
                return [PREFACE[: self._matched] + data], []
            self._matched += len(piece)
            if self._matched < len(PREFACE):
                return [], []
            self.speaking, at = True, len(piece)
            to_app.append(PREFACE)
        view, n = memoryview(data), len(data)
        while at < n:
            if not self._in_frame:
                take = min(HEAD - len(self._head), n - at)
                self._head += view[at : at + take]
                at += take
                if len(self._head) == HEAD:
                    self._start_frame(to_app)
                    if self._left == 0:
                        self._end_frame(to_app, to_client)
                continue
            take = min(self._left, n - at)
            if self._mode == PASS:
                to_app.append(data[at : at + take] if take < n else data)
                if self._settings is not None:
                    self._settings += view[at : at + take]
                    if len(self._settings) > KEPT_MOST:  # (only what the tables read of it)
                        settings_kept(self._settings)
            elif self._mode == HOLD:  # its pad length, which says how much of it is body
                take = 1
                self._padded(data[at], to_app)
            elif self._mode == COLLECT:
                self._payload += view[at : at + take]
            at += take
            self._left -= take
            if self._left == 0:
                self._end_frame(to_app, to_client)
        if self._credit and give_back:
            self.app.answer(window_update(0, self._credit), to_client)
            self._credit = 0
        if self._app_pending:
            to_app += self._pending_now()
        if self._in_frame:  # a frame under way: its call is not idle (stamped once per read)
            self.calls.touch(self._frame[2], now)
        return to_app, to_client

    def _pending_now(self) -> list[bytes]:
        """The gate's frames for the app that may go now: all of them, unless a frame of the
        client's is passing through (then they wait for its end)."""
        if self._in_frame and self._mode == PASS:
            return []
        pending, self._app_pending = self._app_pending, []
        return pending

    def _malformed(self, stream: int) -> None:
        """`stream`'s body broke its content-length (its frame is dropped): the gate's to
        end it."""
        raise NotImplementedError

    def _block_done(self, to_app: list[bytes], to_client: list[bytes]) -> None:
        """A whole header block came (`_raw`, `_block`, `_block_of`, `_priority`): the
        gate's to read and decide."""
        raise NotImplementedError

    def _start_frame(self, to_app: list[bytes]) -> None:
        if self._app_pending:
            to_app += self._app_pending
            self._app_pending = []
        length, kind, flags, stream = parse_head(self._head)
        self._frame, self._left, self._in_frame = (kind, flags, stream), length, True
        if self._in_block and (kind != CONTINUATION or stream != self._block_of[0]):
            raise H2Error(PROTOCOL_ERROR, "a header block was interrupted by another frame")
        if kind in (HEADERS, CONTINUATION):
            if kind == CONTINUATION and not self._in_block:
                raise H2Error(PROTOCOL_ERROR, "a CONTINUATION frame with no header block open")
            if kind == HEADERS:
                if stream == 0 or stream % 2 == 0:
                    raise H2Error(PROTOCOL_ERROR, f"HEADERS on stream {stream}, not a client's")
                self._in_block, self._block_of, self._priority = True, (stream, flags), b""
                self._raw, self._block, self._taken = [], bytearray(), 0
            self._taken += HEAD + length
            if self._taken > self.max_block:
                raise H2Error(ENHANCE_YOUR_CALM, f"a header block over {self.max_block} bytes")
            self._mode, self._payload = COLLECT, bytearray(self._head)
        elif kind == PUSH_PROMISE:
            raise H2Error(PROTOCOL_ERROR, "PUSH_PROMISE from a client")
        elif stream and stream <= self.opened and not self.calls.live(stream):
            self._mode = DROP  # a stream the app never saw, or no longer does: closed to it
            if kind == DATA:
                self._credit += length
        elif kind == DATA and flags & PADDED and self.calls.tracks(stream):
            if length == 0:
                raise H2Error(PROTOCOL_ERROR, "a padded frame without its pad length")
            self._mode = HOLD
            return  # (its head is kept for `_padded`)
        elif kind == DATA and not self.calls.body(stream, length, bool(flags & END_STREAM),
                                                  self._now):  # fmt: skip
            self._mode, self._credit = DROP, self._credit + length
            self._malformed(stream)
        else:
            self._mode = PASS
            to_app.append(bytes(self._head))
            if kind == SETTINGS and not flags & ACK:
                self._settings = bytearray()
            elif kind == RST_STREAM and self.calls.reset_by_client(stream, self._now):
                raise H2Error(ENHANCE_YOUR_CALM, "over half the calls reset before an answer")
        self._head.clear()

    def _padded(self, pad: int, to_app: list[bytes]) -> None:
        """The first byte of a padded DATA frame held back (HOLD): its body's length is
        known, so it is judged now, and the rest of it streams on (PASS) or is dropped. No
        more than its head and this byte is ever held, whatever length the head says."""
        _, flags, stream = self._frame
        length = self._left  # (this byte included)
        if pad >= length:
            raise H2Error(PROTOCOL_ERROR, "a frame's padding is longer than the frame")
        if self.calls.body(stream, length - 1 - pad, bool(flags & END_STREAM), self._now):
            self._mode = PASS
            to_app.append(bytes(self._head) + bytes((pad,)))
        else:
            self._mode, self._credit = DROP, self._credit + length
            self._malformed(stream)
        self._head.clear()

    def _end_frame(self, to_app: list[bytes], to_client: list[bytes]) -> None:
        self._in_frame = False
        if self._settings is not None:  # (they bound the app's encoder's table)
            self.app.client_settings(bytes(self._settings))
            self._settings = None
        if self._mode < COLLECT:
            return
        kind, flags, _ = self._frame
        raw = bytes(self._payload)
        self._raw.append(raw)
        block, priority = fragment(kind, flags, raw[HEAD:])
        if kind == HEADERS:
            self._priority = priority
        self._block += block
        if flags & END_HEADERS:
            self._in_block = False
            self._block_done(to_app, to_client)
