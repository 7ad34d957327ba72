"""HTTP/2 frames as h2_gate.py reads and writes them (RFC 9113 §4, §6). Pure.

Only what a gate between an h2c client and its app needs: the frame header,
the few frames it makes itself (a header block split into HEADERS and
CONTINUATION, RST_STREAM, WINDOW_UPDATE, GOAWAY), a header block's fragment
without its padding and priority fields, SETTINGS entries, and a header
block made of literals that touch no HPACK dynamic table (RFC 7541 §6.2.2),
which is what lets the gate answer inside a connection whose tables belong
to the client and the app.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Final

from hpack.struct import NeverIndexedHeaderTuple

# Final: compiled, each use is the constant itself, not a look-up in the module's dict
PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEAD: Final = 9  # bytes of a frame header
DATA: Final = 0
HEADERS: Final = 1
PRIORITY: Final = 2
RST_STREAM: Final = 3
SETTINGS: Final = 4
PUSH_PROMISE: Final = 5
PING: Final = 6
GOAWAY: Final = 7
WINDOW_UPDATE: Final = 8
CONTINUATION: Final = 9
END_STREAM: Final = 0x1
ACK: Final = 0x1
END_HEADERS: Final = 0x4
PADDED: Final = 0x8
PRIORITY_FLAG: Final = 0x20
NO_ERROR: Final = 0x0
PROTOCOL_ERROR: Final = 0x1
FLOW_CONTROL_ERROR: Final = 0x3
STREAM_CLOSED: Final = 0x5
FRAME_SIZE_ERROR: Final = 0x6
REFUSED_STREAM: Final = 0x7
CANCEL: Final = 0x8
COMPRESSION_ERROR: Final = 0x9
ENHANCE_YOUR_CALM: Final = 0xB
HEADER_TABLE_SIZE: Final = 0x1  # the SETTINGS entry that bounds the client's HPACK table
NO_SIZE: Final = 1 << 32  # past any table size a SETTINGS entry can say: none said
MIN_MAX_FRAME: Final = 16384  # every peer takes frames this large (SETTINGS_MAX_FRAME_SIZE's floor)
_LENGTH: Final = struct.Struct(">I")
_ID: Final = struct.Struct(">I")
_SETTING: Final = struct.Struct(">HI")


class H2Error(Exception):
    """The client broke HTTP/2 in a way the gate cannot carry on from: the connection ends
    with GOAWAY carrying `code`."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def parse_head(head: bytes | bytearray) -> tuple[int, int, int, int]:
    """(payload length, type, flags, stream id) of a 9-byte frame header."""
    length = _LENGTH.unpack(b"\0" + bytes(head[:3]))[0]
    return length, head[3], head[4], _ID.unpack(bytes(head[5:9]))[0] & 0x7FFFFFFF


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return _LENGTH.pack(len(payload))[1:] + bytes((kind, flags)) + _ID.pack(stream) + payload


def header_frames(stream: int, block: bytes, *, end_stream: bool, priority: bytes = b"") -> bytes:
    """A header block as one HEADERS frame and as many CONTINUATIONs as it needs."""
    first = priority + block[: MIN_MAX_FRAME - len(priority)]
    rest = block[MIN_MAX_FRAME - len(priority) :]
    flags = (END_STREAM if end_stream else 0) | (PRIORITY_FLAG if priority else 0)
    out = [frame(HEADERS, flags | (0 if rest else END_HEADERS), stream, first)]
    while rest:
        piece, rest = rest[:MIN_MAX_FRAME], rest[MIN_MAX_FRAME:]
        out.append(frame(CONTINUATION, 0 if rest else END_HEADERS, stream, piece))
    return b"".join(out)


def appended(frames: list[bytes], stream: int, block: bytes) -> list[bytes]:
    """A header block's frames as they came, with `block` (whole representations) after
    what they hold: the last no longer ends the block, a CONTINUATION with `block` does."""
    last = frames[-1]
    ends = last[:4] + bytes((last[4] & ~END_HEADERS,)) + last[5:]
    return [*frames[:-1], ends, frame(CONTINUATION, END_HEADERS, stream, block)]


def rst_stream(stream: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, stream, _ID.pack(code))


def window_update(stream: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream, _ID.pack(increment))


def goaway(last_stream: int, code: int, debug: bytes = b"") -> bytes:
    return frame(GOAWAY, 0, 0, _ID.pack(last_stream) + _ID.pack(code) + debug)


def fragment(kind: int, flags: int, payload: bytes) -> tuple[bytes, bytes]:
    """(header block fragment, priority fields) of a HEADERS, PUSH_PROMISE or CONTINUATION
    payload: without padding, priority fields or a promised stream."""
    start, end = 0, len(payload)
    if kind != CONTINUATION and flags & PADDED:
        if not payload:
            raise H2Error(PROTOCOL_ERROR, "a padded frame without its pad length")
        start, end = 1, len(payload) - payload[0]
    priority = b""
    if kind == HEADERS and flags & PRIORITY_FLAG:
        priority, start = payload[start : start + 5], start + 5
    elif kind == PUSH_PROMISE:
        start += 4  # the promised stream
    if end < start:
        raise H2Error(PROTOCOL_ERROR, "a frame's padding is longer than the frame")
    return payload[start:end], priority


def table_allowed(payload: bytes, allowed: int) -> int:
    """The HPACK table a reader must take after a SETTINGS payload (whole entries only) sent
    by its side: the largest HEADER_TABLE_SIZE in it, never below `allowed` (the other side
    may not have seen the smaller one yet)."""
    for at in range(0, len(payload) - len(payload) % 6, 6):
        ident, value = _SETTING.unpack_from(payload, at)
        if ident == HEADER_TABLE_SIZE:
            allowed = max(allowed, value)
    return allowed


def table_size(payload: bytes) -> int:
    """The HEADER_TABLE_SIZE a SETTINGS payload (whole entries only) sets, the last one it
    holds; NO_SIZE when it sets none."""
    size = NO_SIZE
    for at in range(0, len(payload) - len(payload) % 6, 6):
        ident, value = _SETTING.unpack_from(payload, at)
        if ident == HEADER_TABLE_SIZE:
            size = value
    return size


def settings_kept(payload: bytearray) -> None:
    """A SETTINGS payload being gathered, cut down in place to what `table_allowed` and
    `table_size` read of it: its largest and its last HEADER_TABLE_SIZE entries, then the
    start of an entry still to come. A frame may say 16 MiB of entries; none of the others
    need be held while the rest of it comes."""
    whole = len(payload) - len(payload) % 6
    sizes = [value for ident, value in _SETTING.iter_unpack(payload[:whole])
             if ident == HEADER_TABLE_SIZE]  # fmt: skip
    kept = b""
    if sizes:
        kept = _SETTING.pack(HEADER_TABLE_SIZE, max(sizes)) + _SETTING.pack(
            HEADER_TABLE_SIZE, sizes[-1]
        )
    payload[:whole] = kept


def size_update(size: int) -> bytes:
    """An HPACK dynamic table size update (RFC 7541 §6.3): 001, then a 5-bit prefix integer."""
    return _integer(size, 5, 0x20)


def literal_block(fields: Iterable[tuple[bytes, bytes]]) -> bytes:
    """A header block of literals with new names, no Huffman, never added to a table (RFC
    7541 §6.2.2; §6.2.3 for a field that came never-indexed, hpack's `indexable` False, which
    an intermediary must pass on so): any HPACK decoder reads it whatever its dynamic table
    holds, and its table stays as it was."""
    out = bytearray()
    for field in fields:  # (not getattr(field, "indexable", True): a tuple has no such
        # attribute, and each such getattr made and dropped an AttributeError)
        out.append(0x10 if isinstance(field, NeverIndexedHeaderTuple) else 0)
        for text in field:
            out += _integer(len(text)) + text
    return bytes(out)


def _integer(value: int, bits: int = 7, flags: int = 0) -> bytes:
    """An HPACK integer with a `bits`-bit prefix after `flags` (RFC 7541 §5.1); by default
    the form of a string's length."""
    top = (1 << bits) - 1
    if value < top:
        return bytes((flags | value,))
    out, value = bytearray((flags | top,)), value - top
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)
