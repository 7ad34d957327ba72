"""The data path: two connections joined byte for byte, with flow control and half-close.

Protocol callbacks, not streams (measured ~1.5x faster on uvloop, see
../shared/reference/measured-anchors.md). Each side is a `BufferedProtocol`
reading into its own preallocated buffer; a chunk read on one side is
written to the other at once. Flow control: when a side's transport says
its write buffer is full (`pause_writing`), the *other* side stops reading
until it drains (`resume_writing`), so a slow reader never makes the proxy
buffer without bound.

`PlainSide` is a TCP connection (the local app, or a local client of an
upstream listener). `TlsSide` is a TCP connection carrying TLS that this
module drives itself through `tls_pipe.TlsPipe` (asyncio's TLS transport
cannot half-close). Before it is joined, a side buffers what it decrypted
and stops reading; `Relay` joins two sides and applies relay_state.py's
rules for ends and closes.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from typing import cast

from gossamer.proxy.relay_state import Halves, Step
from gossamer.proxy.tls_pipe import TlsPipe

READ_SIZE = 64 * 1024
# One read buffer for every side: uvloop fills it and calls buffer_updated at once, which
# copies the bytes out (to the peer's transport, or into the TLS pipe) before any other read,
# so sharing it is safe on the loop's one thread and saves 64 KiB per connection.
_READ_VIEW = memoryview(bytearray(READ_SIZE))


class Joint:
    """What a side is joined to: a byte relay (`Relay`), or an HTTP session (http1.py)."""

    def peer_of(self, side: Side) -> Side:
        raise NotImplementedError

    def carry(self, side: Side, chunks: list[bytes], eof: bool) -> None:
        """Plaintext read from `side` (and whether it has ended)."""
        raise NotImplementedError

    def side_lost(self, side: Side) -> None:
        raise NotImplementedError


class Side(asyncio.BufferedProtocol):
    """One connection of a relayed pair; `relay` is set once it is joined."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.relay: Joint | None = None
        self.index = 0  # which side of its relay this is
        self.lost = False
        self.moved = 0  # plaintext bytes read here and passed to the other side
        self._view = _READ_VIEW
        self._held: list[bytes] = []  # plaintext read before the side was joined
        self._held_eof = False
        self._out: list[bytes] | None = None  # sends gathered by `hold`, written by `flush`

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def pause_writing(self) -> None:
        if self.relay is not None:
            self.relay.peer_of(self).pause_reading()

    def resume_writing(self) -> None:
        if self.relay is not None:
            self.relay.peer_of(self).resume_reading()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.relay is not None:
            self.relay.side_lost(self)

    def deliver(self, chunks: list[bytes], eof: bool) -> None:
        """Plaintext read from this side: to the other side, or held until joined."""
        relay = self.relay
        if relay is None:
            self._held += chunks
            self._held_eof = self._held_eof or eof
            self.pause_reading()
            return
        relay.carry(self, chunks, eof)

    def joined(self) -> None:
        """Now part of a relay: pass on what was held, and read again."""
        held, self._held = self._held, []
        if held or self._held_eof or self.lost:  # a pooled connection taken again: nothing
            self.deliver(held, self._held_eof)
        self.resume_reading()

    def hold(self) -> bool:
        """Gather what is sent from now until `flush` into one write (on TLS one record, not
        one per piece: an HTTP head and its body); False when already holding."""
        if self._out is not None:
            return False
        self._out = []
        return True

    def flush(self) -> None:
        out, self._out = self._out, None
        if out:
            self.send(out[0] if len(out) == 1 else b"".join(out))

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def send_eof(self) -> None:
        raise NotImplementedError

    def close(self, *, abort: bool = False) -> None:
        if self._out is not None:
            self.flush()  # what was sent goes before the end, as it would have unheld
        if self.transport is not None and not self.transport.is_closing():
            if abort:
                self.transport.abort()
            else:
                self.transport.close()


class PlainSide(Side):
    """A plain TCP connection; `on_connect(side)` is called once it is made."""

    def __init__(self, on_connect: Callable[[PlainSide], None] | None = None) -> None:
        super().__init__()
        self._on_connect = on_connect

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._on_connect is not None:
            transport.pause_reading()  # type: ignore[attr-defined]  # until joined
            self._on_connect(self)

    def buffer_updated(self, nbytes: int) -> None:
        self.deliver([bytes(self._view[:nbytes])], False)

    def eof_received(self) -> bool:
        self.deliver([], True)
        return True  # keep the transport open: the other direction may go on

    def send(self, data: bytes) -> None:
        if self._out is not None:
            self._out.append(data)
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def send_eof(self) -> None:
        self.flush()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write_eof()


class TlsSide(Side):
    """TLS over a plain TCP transport, driven by a TlsPipe; `handshake` resolves when done."""

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        on_connect: Callable[[TlsSide], None] | None = None,
        session: ssl.SSLSession | None = None,
    ) -> None:
        super().__init__()
        self.pipe = TlsPipe(context, server_side=server_side, session=session)
        self.server_side = server_side
        self.handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._on_connect = on_connect
        self.silent = True  # nothing received yet (a TCP health check connects and closes)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self.server_side:
            self._write(self.pipe.start())
        if self._on_connect is not None:
            self._on_connect(self)

    def buffer_updated(self, nbytes: int) -> None:
        self.silent = False
        try:
            chunks = self.pipe.feed(self._view[:nbytes])
        except ssl.SSLError as exc:
            self._write(self.pipe.pending())  # the alert tells the peer why
            self._fail(exc)
            return
        self._write(self.pipe.pending())
        if self.pipe.handshaken and not self.handshake.done():
            self.handshake.set_result(None)
        if chunks or self.pipe.eof_received:
            self.deliver(chunks, self.pipe.eof_received)

    def eof_received(self) -> bool:
        if not self.pipe.handshaken:
            self._fail(ClosedEarly() if self.silent else ConnectionResetError(
                "the peer closed the connection during the handshake"))  # fmt: skip
            return False
        if not self.pipe.eof_received:
            self.pipe.end_of_input()
            self.deliver([], True)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(exc or ConnectionResetError("connection lost"))
        super().connection_lost(exc)

    def send(self, data: bytes) -> None:
        if self._out is not None:
            self._out.append(data)
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.pipe.encrypt(data))

    def send_eof(self) -> None:
        self.flush()
        if self.transport is not None and not self.transport.is_closing():
            self._write(self.pipe.close_write())

    def close(self, *, abort: bool = False) -> None:
        if not abort:
            self.send_eof()  # close_notify, so the peer knows the stream was not cut
        super().close(abort=abort)

    def _write(self, data: bytes) -> None:
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _fail(self, exc: BaseException) -> None:
        if not self.handshake.done():
            self.handshake.set_exception(exc)
        if self.pipe.handshaken:
            self.close()
        else:
            super().close()


class ClosedEarly(ConnectionResetError):
    """The peer connected and closed without sending a byte: a port probe, not an attack."""


class Relay(Joint):
    """Two joined sides; `on_close(relay)` is called once, when both are closed.

    `a` is the side the connection came from (the source of its edge), `b` the
    side it goes to; `bytes_each_way()` is (a to b, b to a) so far."""

    def __init__(self, a: Side, b: Side, on_close: Callable[[Relay], None]) -> None:
        self.sides = (a, b)
        self.started = time.monotonic()
        self.halves = Halves()
        self._on_close = on_close
        a.index, b.index = 0, 1
        a.relay = b.relay = self
        if a.lost or b.lost:
            self.lost()
            return
        a.joined()
        b.joined()

    def bytes_each_way(self) -> tuple[int, int]:
        return self.sides[0].moved, self.sides[1].moved

    def peer_of(self, side: Side) -> Side:
        return self.sides[1 - side.index]

    def carry(self, side: Side, chunks: list[bytes], eof: bool) -> None:
        peer = self.sides[1 - side.index]
        for chunk in chunks:
            side.moved += len(chunk)
            peer.send(chunk)
        if eof:
            self.ended(side)

    def side_lost(self, side: Side) -> None:
        self.lost()

    def ended(self, side: Side) -> None:
        step = self.halves.end_from(side.index)
        if step is Step.FORWARD_EOF:
            self.peer_of(side).send_eof()
        elif step is Step.CLOSE_BOTH:
            self.peer_of(side).send_eof()
            self._close(abort=False)

    def lost(self) -> None:
        if self.halves.lost() is Step.CLOSE_BOTH:
            self._close(abort=False)

    def terminate(self) -> None:
        """Cut both connections now (policy change, drain timeout)."""
        if self.halves.lost() is Step.CLOSE_BOTH:
            self._close(abort=True)

    def _close(self, *, abort: bool) -> None:
        for side in self.sides:
            side.close(abort=abort)
        self._on_close(self)
