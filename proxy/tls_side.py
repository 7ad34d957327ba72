"""A side that is a TCP connection carrying TLS, driven here through `tls_pipe.TlsPipe`.

asyncio's TLS transport cannot half-close, so this side runs the TLS state
machine over memory BIOs itself and writes the records to a plain transport.
Its input ends cleanly only with the peer's close_notify; a TCP end without
one (truncation: a peer that crashed, or a FIN or reset forged on the path)
is a lost connection, passed on as a loss (relay.py), never as an end.
"""

from __future__ import annotations

import asyncio
import fcntl
import ssl
import struct
from collections.abc import Callable
from typing import Final

from gossamer.gossip.host_port import host_port
from gossamer.proxy.authorize import ClosedEarly
from gossamer.proxy.side import Side, reset_at_close
from gossamer.proxy.tls_pipe import TlsPipe

_NOT_SENT: Final = 0x894B  # SIOCOUTQNSD (Linux): bytes a socket holds that are not yet sent


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
        # Nothing received yet (a TCP health check connects and closes), or, on the server
        # side, nothing since its flight answered a ClientHello (a client that reads the
        # certificates and leaves, as `gossamer check` does): a probe if the peer leaves now.
        self.silent = True
        self.peer_checked: tuple[object, str, float] | None = None  # mux.py `checked_peer`

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self.server_side:
            self._write(self.pipe.start())
        if self._on_connect is not None:
            self._on_connect(self)

    def buffer_updated(self, nbytes: int) -> None:
        self.silent = False
        was_handshaken = self.pipe.handshaken
        try:
            chunks = self.pipe.feed(self._view[:nbytes])
        except ssl.SSLError as exc:
            self._write(self.pipe.pending())  # the alert tells the peer why
            self._fail(exc)
            return
        if was_handshaken or not self.pipe.handshaken:
            flight = self.pipe.pending()
            self._write(flight)
            if flight and self.server_side and not self.pipe.handshaken:
                self.silent = True  # (the client's turn: leaving now, it attempted nothing)
        elif self.server_side and not chunks:
            # The client's Finished came alone: a client with Nagle's algorithm on (most but
            # ours) holds its first bytes until Finished is acknowledged, and with nothing to
            # send the kernel delays that ACK by 40 ms. The ticket goes now, and acknowledges.
            self._write(self.pipe.pending())
        # else: the handshake's last flight (a client's Finished, a server's ticket) waits in
        # the pipe for the first data (`send`), the join (a client) or the close: one write
        # and one read fewer for each new connection on both proxies (ours sends its first
        # bytes with its Finished)
        if self.pipe.handshaken and not self.handshake.done():
            self.handshake.set_result(None)
        if self.pipe.eof_received:  # close_notify: the pipe drops what follows, so no more
            self.pause_reading()  # is read (the peer's TCP window closes instead)
            self.deliver(chunks, True)
        elif chunks:
            self.deliver(chunks, False)

    def eof_received(self) -> bool:
        if not self.pipe.handshaken:
            self._fail(ClosedEarly() if self.silent else ConnectionResetError(
                "the peer closed the connection during the handshake"))  # fmt: skip
            return False
        if not self.pipe.eof_received:  # a TCP end with no close_notify: the stream was cut
            self.pipe.end_of_input()  # (a peer that crashed, a FIN forged on the path), and a
            return False  # truncation is a loss, not an end: closed, connection_lost says so
        return True

    def resume_reading(self) -> None:
        if not self.pipe.eof_received:  # the peer's close_notify came: nothing more is read
            super().resume_reading()

    def joined(self) -> None:
        super().joined()
        if not self.server_side:  # a Finished no data took along goes now
            self._write(self.pipe.pending())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshake.done():  # (a TCP check that resets, SO_LINGER 0, is a probe too)
            lost = exc or ConnectionResetError("connection lost")
            self.handshake.set_exception(ClosedEarly() if self.silent else lost)
            # read here: whoever waited for it may have given up (a handshake timeout, which
            # cut the connection), and asyncio logged each unread failure at ERROR
            self.handshake.exception()
        super().connection_lost(exc)

    def send(self, data: bytes) -> None:
        if self._out is not None:
            self._out.append(data)
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.pipe.encrypt(data))

    def send_all(self, chunks: list[bytes]) -> None:
        if self._out is not None:
            self._out += chunks
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.pipe.encrypt_all(chunks))

    def send_eof(self) -> None:
        self.flush()
        if self.transport is not None and not self.transport.is_closing():
            self._write(self.pipe.close_write())

    def close(self, *, abort: bool = False) -> None:
        if not abort:
            self.send_eof()  # close_notify, so the peer knows the stream was not cut
        super().close(abort=abort)

    def cut(self) -> None:
        """Closed with no close_notify, once what it holds is written: the peer (a sidecar of
        ours: `eof_received`) takes the bare TCP end for the loss it passes on."""
        Side.close(self)

    def shut(self) -> None:
        """The proxy's own end (a policy change, a revocation, a cut call or tunnel, a
        drain's timeout): the peer is refused, so it gets nothing more and is not waited
        for. What it was not yet sent is dropped, and the connection aborted at once: with
        close_notify first if nothing was dropped (the peer passes on an end, as a refused
        client sees), else with a reset, a loss passed on as one (a truncation taken for a
        clean end, had close_notify followed). A graceful close would wait for the write
        buffer to go: a peer that read nothing would keep the socket for as long as it
        liked, and read the refused connection's data after the cut. All this goes once
        the loop turn is over, as a stream's END does (mux.py
        writes once a turn) and an abort's close did: a sweep that cuts many connections
        finishes, and logs what it cut, before any peer hears of one."""
        try:
            asyncio.get_running_loop().call_soon(self._shut)
        except RuntimeError:  # no loop runs (the process is stopping): now, then
            self._shut()

    def _shut(self) -> None:
        dropped, self._out = bool(self._out), None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if dropped or transport.get_write_buffer_size() or _unsent(transport):
            reset_at_close(transport)  # what the kernel holds is dropped too, and so said
        else:
            self._write(self.pipe.close_write())  # nothing ahead of it: it goes at once
            if transport.get_write_buffer_size():  # (it did not: the kernel was full)
                reset_at_close(transport)
        transport.abort()

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


def peer_of(side: TlsSide) -> str:
    """The peer's address as host:port (an IPv6 one as [host]:port), for logs and refusal
    counts."""
    peer = side.transport.get_extra_info("peername") if side.transport else None
    return host_port(peer[0], peer[1]) if isinstance(peer, tuple) else str(peer)


def _unsent(transport: asyncio.Transport) -> int:
    """What the kernel holds for the peer and has not sent (its window is shut: it reads
    nothing); 0 where that cannot be asked."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), _NOT_SENT, bytes(4)))[0])
    except OSError:
        return 0
