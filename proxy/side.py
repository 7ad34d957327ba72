"""One connection of a relayed pair, as a protocol callback, and what it is joined to.

Protocol callbacks, not streams (measured ~1.5x faster on uvloop, see
../shared/reference/measured-anchors.md). Each side is a `BufferedProtocol`;
a chunk read on one side is passed to its `Joint` at once (relay.py writes it
to the other side). Flow control: when a side's transport says its write
buffer is full (`pause_writing`), the *other* side stops reading until it
drains (`resume_writing`), so a slow reader never makes the proxy buffer
without bound. Before it is joined, a side buffers what it read and stops
reading.

`PlainSide` is a TCP connection (the local app, or a local client of an
upstream listener); tls_side.py has the TLS one.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from typing import Final, Protocol, cast

READ_SIZE: Final = 64 * 1024
# One read buffer for every side: uvloop fills it and calls buffer_updated at once, which
# copies the bytes out (to the peer's transport, or into the TLS pipe) before any other read,
# so sharing it is safe on the loop's one thread and saves 64 KiB per connection.
_READ_VIEW: Final = memoryview(bytearray(READ_SIZE))
# Pieces of one write that are together less than this are joined (a head and a short body:
# one buffer is cheaper for uvloop than a vector); more go as they are in one writev.
JOIN_BELOW: Final = 16 * 1024
_RESET: Final = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close(2) sends a reset, not a FIN
# A closed connection still holding bytes for its peer waits for the peer to take them; one
# that takes none for this long is reset (nginx's send_timeout, 60 s between two writes that
# go anywhere): a peer that never reads otherwise kept the socket for as long as it liked.
CLOSE_STALL_S: Final = 60.0


class Kept(Protocol):
    """What a joint keeps with a connection across its uses (http_reply.Reply, the answer
    parser of a pooled app connection), let go when the connection is over."""

    def release(self) -> None: ...


class Joint:
    """What a side is joined to: a byte relay (`Relay`), or an HTTP session (http1.py)."""

    def peer_of(self, side: Side) -> Side:
        raise NotImplementedError

    def carry(self, side: Side, chunks: list[bytes], eof: bool) -> None:
        """Plaintext read from `side` (and whether it has ended)."""
        raise NotImplementedError

    def side_lost(self, side: Side) -> None:
        raise NotImplementedError

    def paused(self, side: Side) -> None:
        """`side`'s writing is full: what feeds it stops being read."""
        self.peer_of(side).pause_reading()

    def resumed(self, side: Side) -> None:
        self.peer_of(side).resume_reading()


class Side(asyncio.BufferedProtocol):
    """One connection of a relayed pair; `relay` is set once it is joined."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.relay: Joint | None = None
        self.index = 0  # which side of its relay this is
        self.lost = False
        self.full = False  # its writing is paused (its transport's buffer, or a stream's credit)
        self.moved = 0  # plaintext bytes read here and passed to the other side
        self._view = _READ_VIEW
        self._held: list[bytes] = []  # plaintext read before the side was joined
        self._held_eof = False
        self._out: list[bytes] | None = None  # sends gathered by `hold`, written by `flush`
        self.parser: Kept | None = None  # kept with the connection by its joint (http1.py)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def pause_writing(self) -> None:
        self.full = True  # (not joined yet: the relay pauses the peer at the join, relay.py)
        if self.relay is not None:
            self.relay.paused(self)

    def resume_writing(self) -> None:
        self.full = False
        if self.relay is not None:
            self.relay.resumed(self)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def unreached(self) -> bool:
        """The far end said what was sent here never reached its app (a mux stream's RESET
        UNREACHABLE, mux_stream.py): it may go elsewhere, whatever it was. A plain connection
        cannot say so."""
        return False

    def say_unreached(self, *, between: bool = False) -> bool:
        """End this connection saying what came on it never reached the app, where it can say
        so (a mux stream); False, and nothing done, where it cannot. `between`: it is closed
        between requests (RESET BETWEEN), an end to a byte relay, not a loss."""
        return False

    def closed_between(self) -> bool:
        """The far sidecar closed it between HTTP requests (RESET BETWEEN): an end, not a loss
        (a byte relay closes its other side cleanly)."""
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        # A lost side lets go of its relay: relay and sides referred to each other, so a
        # finished pair waited for the cycle collector's rare full pass, holding its two
        # SSLObjects' OpenSSL buffers (tens of KiB each, unseen by the collector), and the
        # proxy's RSS grew with every connection served (bench/README.md, "RSS").
        relay, self.relay = self.relay, None
        if relay is not None:
            relay.side_lost(self)
        self.drop_parser()

    def drop_parser(self) -> None:
        """The connection is over: the parser kept with it (http1.py) lets go of its callbacks
        a loop turn later, when none of them runs. Parser and callbacks point at each other,
        and the cycle collector never freed that cycle once compiled (mypyc): each pooled app
        connection closed left its answer parser, and the last session it served, behind."""
        parser, self.parser = self.parser, None
        if parser is None:
            return
        try:
            asyncio.get_running_loop().call_soon(parser.release)
        except RuntimeError:  # no loop runs (the process is stopping): no callback can either
            parser.release()

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
        self.resume_reading()  # first: a peer that fills up with what was held pauses it again
        if held or self._held_eof or self.lost:  # a pooled connection taken again: nothing
            self.deliver(held, self._held_eof)

    def is_open(self) -> bool:
        """Whether it can still carry bytes (a pool may lend it again)."""
        return not self.lost and self.transport is not None and not self.transport.is_closing()

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
            self.send(out[0]) if len(out) == 1 else self.send_all(out)

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def send_all(self, chunks: list[bytes]) -> None:
        """`send` of the chunks one after the other, as one write (each side says how)."""
        self.send(b"".join(chunks))

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
                bounded_close(self.transport)

    def cut(self) -> None:
        """Close it as lost, its peer's connection having been lost: what was sent to it goes
        first, then the loss, as its kind says it (a TCP reset; tls_side.py: no
        close_notify; mux_stream.py: RESET), never the clean end a close is."""
        self.close()

    def shut(self) -> None:
        """Close it now, the proxy's own decision (a policy change, a drain's end): a local
        app or client is closed at once (what it was not yet sent, dropped); a peer sidecar
        is not waited for either: told the end cleanly when nothing it was due was dropped,
        so the client behind it sees the proxy's close, else with a reset, a loss
        (tls_side.py; a stream: mux_stream.py)."""
        self.close(abort=True)


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

    def send_all(self, chunks: list[bytes]) -> None:
        if self._out is not None:
            self._out += chunks
        elif self.transport is not None and not self.transport.is_closing():
            if sum(map(len, chunks)) < JOIN_BELOW:
                self.transport.write(b"".join(chunks))
            else:
                self.transport.writelines(chunks)  # one writev: a body's pieces, not copied

    def send_eof(self) -> None:
        self.flush()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            try:
                transport.write_eof()
            except OSError:  # reset while no longer read (asyncio's loop raises; uvloop's
                transport.abort()  # reports it): lost, so the pair closes (found by CI)

    def cut(self) -> None:
        """A reset once what it holds is written (the close waits for that): a FIN would
        tell the app or client that the other side ended cleanly."""
        if self._out is not None:
            self.flush()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        reset_at_close(transport)
        transport.close()
        bounded_close(transport)


def bounded_close(transport: asyncio.WriteTransport, left: int = -1) -> None:
    """After `transport.close()`: while it still holds bytes for its peer, look again every
    `CLOSE_STALL_S`, and abort it (the bytes dropped) when the peer took none since the last
    look. Nothing held (most closes): no timer."""
    held = transport.get_write_buffer_size()
    if not held:
        return
    if held == left:
        transport.abort()
        return
    asyncio.get_running_loop().call_later(CLOSE_STALL_S, bounded_close, transport, held)


def reset_at_close(transport: asyncio.BaseTransport) -> None:
    """The transport's close sends a reset, and drops what the kernel holds unsent
    (SO_LINGER 0), where a FIN would say the other side ended cleanly."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # (gone already: the close is all there is to do)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
