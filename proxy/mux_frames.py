"""The frames of a multiplexed sidecar-to-sidecar connection: bytes in, frames out. Pure.

One mTLS connection between two sidecars carries many client connections
at once, each a stream with its own id (mux.py), so a new client
connection costs no TLS handshake, and the frames of every stream that
had something to say in one turn of the event loop go out as one TLS
record and one write. Inside the TLS stream every piece is a frame: a
9-byte header (kind, stream id, payload length) and the payload:
- OPEN: a new stream; ids come from the client side, each higher than the
  last (the client side sends it first, data or not: a server-first
  protocol has nothing to send until the app speaks);
- ACK: the inbound side's answer to OPEN once the stream is allowed and
  its app connection made; until then the client side holds the client's
  bytes, so a connection that died unseen (a cut host) costs a retry
  elsewhere, not the client's connection;
- DATA: bytes of a stream, in its direction;
- END: this direction of the stream has ended (half-close, as a TCP FIN);
- RESET: the stream is over, with a one-byte reason: `CUT` (its
  connection was lost, or a policy change cut it), `REFUSED` (the answer
  to OPEN: the intentions said no; final), `AWAY` (the answer to OPEN
  from a draining inbound side: try another connection), `UNREACHABLE`
  (the answer to OPEN: the app behind that sidecar did not take the
  connection, a failed attempt at that instance: try another instance;
  any other reason answering OPEN is taken the same way);
- WINDOW: flow-control credit, a 4-byte count of bytes of the stream the
  receiver has passed on; a sender stops reading its local side once it
  has sent `WINDOW_BYTES` more than it was credited, so a slow reader on
  one stream holds no one else up and makes no proxy buffer without bound.
A stream is over once END has gone both ways, or after a RESET either
way. Anything else (an unknown kind, a payload of the wrong size) is a
protocol error: `FrameError`, and the shell closes the connection.
"""

from __future__ import annotations

import struct
from typing import Final

DATA: Final = 0
END: Final = 1
RESET: Final = 2
OPEN: Final = 3
ACK: Final = 4
WINDOW: Final = 5
CUT: Final = 0  # RESET's reasons
REFUSED: Final = 1
AWAY: Final = 2
UNREACHABLE: Final = 3
HEADER: Final = struct.Struct("!BII")
HEADER_SIZE: Final = HEADER.size
MAX_PAYLOAD: Final = 1 << 20  # chunks are at most 64 KiB (side.py); more is not a peer of ours
WINDOW_BYTES: Final = 256 * 1024  # credit per stream, each way (1 MiB: same MiB/s, +1 MiB RSS)
_SIZES: Final = {END: 0, RESET: 1, OPEN: 0, ACK: 0, WINDOW: 4}  # DATA: any
_COUNT: Final = struct.Struct("!I")
pack_header = HEADER.pack
_unpack_from: Final = HEADER.unpack_from

Frame = tuple[int, int, bytes]  # kind, stream id, payload


class FrameError(ValueError):
    """The peer sent something that is not a frame of this protocol."""


def control(kind: int, stream: int) -> bytes:
    """An OPEN, ACK or END frame."""
    return pack_header(kind, stream, 0)


def reset(stream: int, reason: int) -> bytes:
    return pack_header(RESET, stream, 1) + bytes((reason,))


def window(stream: int, count: int) -> bytes:
    return pack_header(WINDOW, stream, 4) + _COUNT.pack(count)


def credit_of(payload: bytes) -> int:
    """A WINDOW frame's count."""
    count: int = _COUNT.unpack(payload)[0]
    return count


class Deframer:
    """Frames out of a byte stream that may cut them anywhere.

    A frame whose payload spans several pieces (a 64 KiB DATA frame arrives
    as four or five TLS records) is gathered as views of those pieces and
    joined once when complete: each byte copied once, not once per piece.
    """

    def __init__(self) -> None:
        self._rest = b""  # the start of a header cut short (fewer than HEADER_SIZE bytes)
        self._head: tuple[int, int, int] | None = None  # a frame whose payload is gathered
        self._parts: list[memoryview] = []
        self._have = 0

    def feed(self, data: bytes) -> list[Frame]:
        """The whole frames `data` completes; FrameError if malformed. `data` is kept (as
        views) until its frame is complete: bytes, never a buffer that is written again."""
        frames: list[Frame] = []
        at, size = 0, len(data)
        while True:
            if self._head is None:
                if self._rest:
                    take = HEADER_SIZE - len(self._rest)
                    if size - at < take:
                        self._rest += data[at:]
                        return frames
                    header, self._rest = self._rest + data[at : at + take], b""
                    at += take
                    self._head = _checked(*_unpack_from(header, 0))
                else:
                    at, cut = self._whole(data, at, frames)
                    if cut is None:
                        return frames
                    self._head = cut
            kind, stream, length = self._head
            need = length - self._have
            if size - at < need:
                if at < size:
                    self._parts.append(memoryview(data)[at:])
                    self._have += size - at
                return frames
            parts, self._parts, self._head, self._have = self._parts, [], None, 0
            if parts:
                parts.append(memoryview(data)[at : at + need])
                frames.append((kind, stream, b"".join(parts)))
            else:
                frames.append((kind, stream, data[at : at + need]))
            at += need

    def _whole(self, data: bytes, at: int, frames: list[Frame]
               ) -> tuple[int, tuple[int, int, int] | None]:  # fmt: skip
        """Take the frames wholly in `data` from `at`; where the first cut one's payload
        starts, and its header (None: no frame is cut, or only a header is). Returned, not
        set on self: the caller's check of `self._head is None` would keep mypy's narrowing
        across this call, and compiled code checks values against it."""
        size = len(data)
        while size - at >= HEADER_SIZE:
            kind, stream, length = _unpack_from(data, at)
            if length > MAX_PAYLOAD or (kind != DATA and _SIZES.get(kind) != length):
                _checked(kind, stream, length)  # raises: the one message for it
            end = at + HEADER_SIZE + length
            if end > size:
                return at + HEADER_SIZE, (kind, stream, length)
            frames.append((kind, stream, data[at + HEADER_SIZE : end] if length else b""))
            at = end
        if at < size:
            self._rest = data[at:]
        return size, None

    @property
    def partial(self) -> bool:
        """Part of a frame is waiting for the rest."""
        return bool(self._rest) or self._head is not None


def _checked(kind: int, stream: int, length: int) -> tuple[int, int, int]:
    if length > MAX_PAYLOAD or (kind != DATA and _SIZES.get(kind) != length):
        raise FrameError(f"not a mux frame: kind {kind}, length {length}")
    return kind, stream, length
