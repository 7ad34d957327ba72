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
  any other reason answering OPEN is taken the same way; after the ACK, on
  a stream carrying HTTP, the request on it reached no app: it may be sent
  to another instance, whatever its method), `BETWEEN` (after the ACK, on a
  stream carrying HTTP: closed between requests, idle or draining; what
  the other side sends from now on reaches no app, so a request crossing
  the close may go elsewhere, whatever its method, and a byte relay takes
  it as a clean end; an older peer takes it as a cut);
- WINDOW: flow-control credit, a 4-byte count of bytes of the stream the
  receiver has passed on; a sender stops reading its local side once it
  has sent `WINDOW_BYTES` more than it was credited, so a slow reader on
  one stream holds no one else up and makes no proxy buffer without bound.
A stream is over once END has gone both ways, or after a RESET either
way. Anything else (an unknown kind, a payload of the wrong size; DATA or
a second END on a stream after its END, mux_stream.py) is a protocol
error: `FrameError`, and the shell closes the connection.
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
BETWEEN: Final = 4
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

    A DATA frame's payload comes out as it arrives, not gathered: a frame cut
    across reads (a 64 KiB DATA frame arrives as four or five TLS records) is
    one DATA piece per read, all of the same stream, and a read that is all
    payload comes out as the very bytes object that was fed (not copied).
    The bytes of a stream have no boundaries that matter, as over TCP. The
    other frames (13 bytes at most) come out whole.
    """

    def __init__(self) -> None:
        self._rest = b""  # the start of a header, or of a frame other than DATA, cut short
        self._stream = 0  # the stream of the DATA payload under way
        self._left = 0  # bytes of that payload still to come (0: between frames)

    def feed(self, data: bytes) -> list[Frame]:
        """The frames (and pieces of DATA payloads) `data` completes; FrameError if
        malformed."""
        frames: list[Frame] = []
        at, size = 0, len(data)
        while at < size:
            left = self._left
            if left:
                end = at + left
                if end >= size:  # the read ends inside the payload (or with it)
                    frames.append((DATA, self._stream, data if at == 0 else data[at:]))
                    self._left = end - size
                    return frames
                frames.append((DATA, self._stream, data[at:end]))
                self._left, at = 0, end
            elif self._rest:
                at = self._finish_rest(data, at, frames)
            else:
                at = self._whole(data, at, frames)
        return frames

    def _whole(self, data: bytes, at: int, frames: list[Frame]) -> int:
        """Take the frames wholly in `data` from `at`, and the start of a cut one; where
        that leaves off (the end of `data`)."""
        size = len(data)
        while size - at >= HEADER_SIZE:
            kind, stream, length = _unpack_from(data, at)
            if length > MAX_PAYLOAD or (kind != DATA and _SIZES.get(kind) != length):
                _checked(kind, stream, length)  # raises: the one message for it
            start = at + HEADER_SIZE
            end = start + length
            if end <= size:
                frames.append((kind, stream, data[start:end] if length else b""))
                at = end
            elif kind == DATA:
                if start < size:
                    frames.append((DATA, stream, data[start:]))
                self._stream, self._left = stream, end - size
                return size
            else:
                break
        if at < size:
            self._rest = data[at:]
        return size

    def _finish_rest(self, data: bytes, at: int, frames: list[Frame]) -> int:
        """Complete the header (or small frame) the last read cut short; where that leaves
        off in `data`."""
        rest, size = self._rest, len(data)
        if len(rest) < HEADER_SIZE:
            take = min(HEADER_SIZE - len(rest), size - at)
            rest, at = rest + data[at : at + take], at + take
            if len(rest) < HEADER_SIZE:
                self._rest = rest
                return at
        kind, stream, length = _checked(*_unpack_from(rest, 0))
        if kind == DATA:
            self._rest = b""
            if length:
                self._stream, self._left = stream, length
            else:
                frames.append((DATA, stream, b""))
            return at
        take = min(HEADER_SIZE + length - len(rest), size - at)
        rest, at = rest + data[at : at + take], at + take
        if len(rest) < HEADER_SIZE + length:
            self._rest = rest
            return at
        self._rest = b""
        frames.append((kind, stream, rest[HEADER_SIZE:]))
        return at

    @property
    def partial(self) -> bool:
        """Part of a frame is waiting for the rest."""
        return bool(self._rest) or self._left > 0


def _checked(kind: int, stream: int, length: int) -> tuple[int, int, int]:
    if length > MAX_PAYLOAD or (kind != DATA and _SIZES.get(kind) != length):
        raise FrameError(f"not a mux frame: kind {kind}, length {length}")
    return kind, stream, length
