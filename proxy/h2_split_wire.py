"""HTTP/2 framing for the per-call splitter (h2_split.py): frames cut out of a byte stream,
SETTINGS read and written, DATA written, and the events a connection's frames make for
its calls. Pure.

The gate's helpers (h2_frames.py) read frames as they pass between two ends; the
splitter ends each connection itself, so it needs a reader that holds at most
one frame (the size it advertised, SETTINGS_MAX_FRAME_SIZE, left at RFC 9113's
16384 so a frame in waiting is never more than that) and checks the frame
shapes RFC 9113 §6 fixes before anyone acts on them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final, NamedTuple

from gossamer.proxy.h2_frames import (
    CONTINUATION,
    DATA,
    END_STREAM,
    FLOW_CONTROL_ERROR,
    FRAME_SIZE_ERROR,
    GOAWAY,
    HEAD,
    HEADERS,
    MIN_MAX_FRAME,
    PADDED,
    PING,
    PREFACE,
    PRIORITY,
    PROTOCOL_ERROR,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    H2Error,
    frame,
    parse_head,
)

ENABLE_PUSH: Final = 0x2
MAX_CONCURRENT_STREAMS: Final = 0x3
INITIAL_WINDOW_SIZE: Final = 0x4
MAX_FRAME_SIZE: Final = 0x5
MAX_HEADER_LIST_SIZE: Final = 0x6
MAX_WINDOW: Final = (1 << 31) - 1  # a flow-control window's ceiling (RFC 9113 §6.9.1)
DEFAULT_WINDOW: Final = 65535  # every window's size until SETTINGS or WINDOW_UPDATE say more
_SETTING: Final = struct.Struct(">HI")
_WORD: Final = struct.Struct(">I")
# Frames whose payload length RFC 9113 fixes: a frame of another length is FRAME_SIZE_ERROR.
_FIXED: Final = {PRIORITY: 5, RST_STREAM: 4, PING: 8, WINDOW_UPDATE: 4}
# Frames that belong to the connection (stream 0) and those that never do.
_CONNECTION_ONLY: Final = frozenset((SETTINGS, PING, GOAWAY))
_STREAM_ONLY: Final = frozenset((DATA, HEADERS, PRIORITY, RST_STREAM, PUSH_PROMISE, CONTINUATION))


Fields = list[tuple[bytes, bytes]]


class Frame(NamedTuple):
    kind: int
    flags: int
    stream: int
    payload: bytes


class FrameReader:
    """Whole frames out of one connection's bytes, however they were cut. `preface`: the
    connection is a client's, which opens with RFC 9113's 24-byte preface."""

    def __init__(self, *, preface: bool, max_frame: int = MIN_MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._preface = preface
        self.max_frame = max_frame

    def feed(self, data: bytes) -> Iterator[Frame]:
        """The frames `data` completes, one at a time (what a frame does is done before the
        next is read); H2Error for a bad preface or a frame over the size advertised or of a
        shape RFC 9113 forbids."""
        self._buffer += data
        if self._preface:
            seen = bytes(self._buffer[: len(PREFACE)])
            if not PREFACE.startswith(seen):
                raise H2Error(PROTOCOL_ERROR, "not the HTTP/2 connection preface")
            if len(seen) < len(PREFACE):
                return
            del self._buffer[: len(PREFACE)]
            self._preface = False
        while len(self._buffer) >= HEAD:
            length, kind, flags, stream = parse_head(self._buffer)
            if length > self.max_frame:
                raise H2Error(FRAME_SIZE_ERROR, f"a frame of {length} bytes")
            if len(self._buffer) < HEAD + length:
                if kind == DATA and not flags & PADDED and len(self._buffer) > HEAD:
                    yield checked(self._piece(length, flags, stream))
                break
            payload = bytes(self._buffer[HEAD : HEAD + length])
            del self._buffer[: HEAD + length]
            yield checked(Frame(kind, flags, stream, payload))

    def _piece(self, length: int, flags: int, stream: int) -> Frame:
        """What came of an unpadded DATA frame still coming, as a DATA frame of its own (no
        END_STREAM); the rest is left as a frame of the rest's length. A body that comes
        slowly goes on as it comes: held for the whole frame, its call looked idle, here and
        at the far side (a 12 KiB frame over 2 s was cut by a 0.5 s idle limit)."""
        got = bytes(self._buffer[HEAD:])
        rest = length - len(got)
        self._buffer[:] = rest.to_bytes(3, "big") + bytes((DATA, flags)) + _WORD.pack(stream)
        return Frame(DATA, flags & ~END_STREAM, stream, got)


def checked(got: Frame) -> Frame:
    """`got` if its stream and length fit its type (RFC 9113 §6), else H2Error."""
    fixed = _FIXED.get(got.kind)
    if fixed is not None and len(got.payload) != fixed:
        raise H2Error(FRAME_SIZE_ERROR, f"a frame of type {got.kind} with {len(got.payload)} bytes")
    if got.kind in _CONNECTION_ONLY and got.stream:
        raise H2Error(PROTOCOL_ERROR, f"a frame of type {got.kind} on a stream")
    if got.kind in _STREAM_ONLY and not got.stream:
        raise H2Error(PROTOCOL_ERROR, f"a frame of type {got.kind} on stream 0")
    if got.kind == SETTINGS and (len(got.payload) % 6 or (got.flags & 1 and got.payload)):
        raise H2Error(FRAME_SIZE_ERROR, "a SETTINGS frame of a bad length")
    if got.kind == GOAWAY and len(got.payload) < 8:
        raise H2Error(FRAME_SIZE_ERROR, "a GOAWAY frame under 8 bytes")
    return got


def settings(payload: bytes) -> list[tuple[int, int]]:
    """A SETTINGS payload's entries, each value checked (RFC 9113 §6.5.2)."""
    entries = [(ident, value) for ident, value in _SETTING.iter_unpack(payload)]
    for ident, value in entries:
        if ident == ENABLE_PUSH and value > 1:
            raise H2Error(PROTOCOL_ERROR, "SETTINGS_ENABLE_PUSH neither 0 nor 1")
        if ident == INITIAL_WINDOW_SIZE and value > MAX_WINDOW:
            raise H2Error(FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1")
        if ident == MAX_FRAME_SIZE and not MIN_MAX_FRAME <= value < 1 << 24:
            raise H2Error(PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE out of its range")
    return entries


def settings_frame(entries: dict[int, int]) -> bytes:
    return frame(SETTINGS, 0, 0, b"".join(_SETTING.pack(k, v) for k, v in entries.items()))


def word(payload: bytes, at: int = 0) -> int:
    """The 31-bit number at `at` (a stream id or a window increment; the top bit is reserved)."""
    return int(_WORD.unpack_from(payload, at)[0]) & 0x7FFFFFFF


def error_code(payload: bytes, at: int = 0) -> int:
    return int(_WORD.unpack_from(payload, at)[0])


def unpadded(payload: bytes, flags: int, padded_flag: int = 0x8) -> tuple[bytes, int]:
    """(a DATA payload without its padding, bytes of padding with its length byte)."""
    if not flags & padded_flag:
        return payload, 0
    if not payload or payload[0] >= len(payload):
        raise H2Error(PROTOCOL_ERROR, "padding as long as the frame or longer")
    pad = payload[0]
    return payload[1 : len(payload) - pad], pad + 1


def data_frame(stream: int, data: bytes, end: bool) -> bytes:
    return frame(DATA, END_STREAM if end else 0, stream, data)


# What a connection's frames mean for its calls (h2_split_peer.Peer.feed yields them).


class Headers(NamedTuple):
    stream: int
    fields: Fields
    end: bool  # END_STREAM
    malformed: bool  # a field RFC 9113 §8.2.1 forbids
    over: bool  # the list is over the size we allow


class Data(NamedTuple):
    stream: int
    data: bytes  # without padding
    end: bool


class Reset(NamedTuple):
    stream: int
    code: int


class Window(NamedTuple):
    """The peer gave `increment` more on `stream` (0: the connection's, already counted)."""

    stream: int
    increment: int


class Initial(NamedTuple):
    """The peer's SETTINGS_INITIAL_WINDOW_SIZE moved by `delta`: every stream's window does."""

    delta: int


class GoAway(NamedTuple):
    last: int
    code: int


class StreamError(NamedTuple):
    """The peer broke RFC 9113 on one stream only: the call ends with RST_STREAM `code`."""

    stream: int
    code: int


Event = Headers | Data | Reset | Window | Initial | GoAway | StreamError
