"""The frames of a reusable sidecar-to-sidecar connection (a tunnel): bytes in, frames out. Pure.

A tunnel carries one client connection (a stream) at a time, then the
next, so a new client connection costs no TLS handshake between the
sidecars (tunnel.py). Inside the TLS stream every piece is a frame: a
5-byte header (kind, payload length) and the payload:
- OPEN: a new stream (the client side sends it first, data or not: a
  server-first protocol has nothing to send until the app speaks);
- ACK: the inbound side's answer to OPEN once the stream is allowed and
  its app connection made; until then the client side holds the client's
  bytes, so a wire that died unseen (a cut host) costs a retry elsewhere,
  not the client's connection;
- DATA: bytes of the current stream, in its direction;
- END: this direction of the stream has ended (half-close, as a TCP FIN);
- RESET: the stream was cut (its connection lost), or, as the answer to
  OPEN, refused (intentions, the app unreachable); the tunnel is closed
  after it, never reused, so no late frame of a cut stream can land in
  the next one. A tunnel that ends with no answer to its OPEN was closed
  idle as it was taken (the inbound side's idle sweep, a drain): the
  client side tries a new connection.
A stream is over once END has gone both ways; the next frame opens the
next stream. Anything else (an unknown kind, a payload on END) is a
protocol error: `FrameError`, and the shell closes the tunnel.
"""

from __future__ import annotations

import struct

DATA, END, RESET, OPEN, ACK = 0, 1, 2, 3, 4
HEADER = struct.Struct("!BI")
_HEADER_SIZE = HEADER.size
MAX_PAYLOAD = 1 << 20  # chunks are at most 64 KiB (side.py); more is not a peer of ours
END_FRAME = HEADER.pack(END, 0)
RESET_FRAME = HEADER.pack(RESET, 0)
OPEN_FRAME = HEADER.pack(OPEN, 0)
ACK_FRAME = HEADER.pack(ACK, 0)
_pack = HEADER.pack
_unpack_from = HEADER.unpack_from


class FrameError(ValueError):
    """The peer sent something that is not a frame of this protocol."""


def data_frame(payload: bytes) -> bytes:
    return _pack(DATA, len(payload)) + payload


class Deframer:
    """Frames out of a byte stream that may cut them anywhere."""

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """The whole frames `data` completes, as (kind, payload); FrameError if malformed."""
        if self._rest:
            data, self._rest = self._rest + data, b""
        frames: list[tuple[int, bytes]] = []
        at, size = 0, len(data)
        while size - at >= _HEADER_SIZE:
            kind, length = _unpack_from(data, at)
            if kind > ACK or length > MAX_PAYLOAD or (kind != DATA and length):
                raise FrameError(f"not a tunnel frame: kind {kind}, length {length}")
            end = at + _HEADER_SIZE + length
            if end > size:
                break
            if at == 0 and end == size and kind == DATA:
                frames.append((kind, data[_HEADER_SIZE:]))  # the common case: one frame
            else:
                frames.append((kind, data[at + _HEADER_SIZE : end]))
            at = end
        if at < size:
            self._rest = data[at:]
        return frames

    @property
    def partial(self) -> bool:
        """Part of a frame is waiting for the rest."""
        return bool(self._rest)
