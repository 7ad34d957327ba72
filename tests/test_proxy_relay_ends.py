"""How the L4 relay passes on what happens at either end: stalls, ends, losses.

A real upstream listener (web) and a real inbound port (db) in the test's
loop, over sockets, each case both over a mux (ALPN `gossamer-tunnel/2`)
and over a TLS connection per client; or one of them faked (real
certificates, frames or TLS by hand) to do what a sidecar of ours never
does. Clients and the app are plain sockets read as the kernel has it: an
asyncio stream raises a reset before the bytes that came ahead of it.
Found by a review: each test here failed before its fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import socket
import ssl
import struct
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from gossamer.intentions.decide import IntentionSet
from gossamer.intentions.model import Intention
from gossamer.proxy import side as side_module
from gossamer.proxy import tally
from gossamer.proxy.config import ProxyConfig, Upstream
from gossamer.proxy.inbound import Inbound, Policy
from gossamer.proxy.mux import Mux
from gossamer.proxy.mux_frames import (
    ACK,
    DATA,
    END,
    OPEN,
    WINDOW_BYTES,
    Deframer,
    control,
    pack_header,
    window,
)
from gossamer.proxy.outbound import UpstreamListener
from gossamer.proxy.relay import Relay
from gossamer.proxy.side import READ_SIZE, PlainSide
from gossamer.proxy.tls_pipe import TlsPipe
from gossamer.proxy.tls_side import TlsSide
from tests.harness.cluster import free_port
from tests.harness.poll import eventually_async
from tests.proxy_pki import Pki


async def _recv(sock: socket.socket) -> bytes:
    return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 65536), 5)


async def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    got = b""
    while len(got) < n:
        chunk = await _recv(sock)
        assert chunk, f"the end after {got!r}"
        got += chunk
    return got


async def _to_the_end(sock: socket.socket) -> tuple[bytes, str]:
    """What `sock` receives to its end, and how it ended: "eof" (a FIN) or "reset"."""
    got = b""
    while True:
        try:
            chunk = await _recv(sock)
        except ConnectionResetError:
            return got, "reset"
        if not chunk:
            return got, "eof"
        got += chunk


async def _send(sock: socket.socket, data: bytes) -> None:
    await asyncio.get_running_loop().sock_sendall(sock, data)


def _reset(sock: socket.socket) -> None:
    """Close with a reset, not a FIN (SO_LINGER on, 0 s)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _listening() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    return sock


@dataclass
class Pair:
    web: UpstreamListener
    db: Inbound
    port: int  # web's upstream listener
    pki: Pki
    policy: Policy  # db's
    mux: bool  # db agrees to frames; else web makes a TLS connection per client
    app: socket.socket  # db's app listens here
    sockets: list[socket.socket]  # closed when the test ends

    def muxes(self) -> list[Mux]:
        return [mux for muxes in self.web.tunnels.muxes.values() for mux in muxes]

    async def accepted(self, listening: socket.socket | None = None) -> socket.socket:
        """The next connection to db's app (or to `listening`)."""
        loop = asyncio.get_running_loop()
        conn, _ = await asyncio.wait_for(loop.sock_accept(listening or self.app), 5)
        conn.setblocking(False)
        self.sockets.append(conn)
        return conn

    async def client(self, port: int = 0) -> socket.socket:
        """A client of web's upstream listener (or of `port`)."""
        sock = socket.socket()
        sock.setblocking(False)
        self.sockets.append(sock)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port or self.port))
        return sock


@pytest.fixture(params=["mux", "tls"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    """web -> db -> an app the test plays (`Pair.accepted`)."""
    app = _listening()
    pki = Pki()
    db_identity = pki.identity("db")
    mux = request.param == "mux"
    if not mux:
        db_identity = dataclasses.replace(db_identity, server_tunnel=db_identity.server)
    web_identity = pki.identity("web")
    policy = Policy()
    policy.intentions, policy.known = IntentionSet([Intention("web", "db", action="allow")]), True
    config = ProxyConfig(service="db", bind_address="127.0.0.1", bind_port=free_port("127.0.0.1"),
                         local_port=app.getsockname()[1])  # fmt: skip
    db = Inbound(config, lambda: db_identity, policy, tally.Tally())
    await db.start()
    port = free_port("127.0.0.1")
    web = UpstreamListener(Upstream("db", port, connect_timeout_s=5.0), lambda: web_identity,
                           tally.Tally())  # fmt: skip
    web.set_instances([("127.0.0.1", config.bind_port)])
    await web.start()
    sockets = [app]
    try:
        yield Pair(web, db, port, pki, policy, mux, app, sockets)
    finally:
        for side in (web, db):
            side.stop_listening()
            side.terminate_all()
        for sock in sockets:
            sock.close()


class _Tls:
    """TLS driven here (a TlsPipe over a plain socket), as a client of db's port with web's
    certificate or as a db instance with db's, so it can do what no TLS library would."""

    def __init__(self, sock: socket.socket, pipe: TlsPipe) -> None:
        self.sock, self.pipe = sock, pipe
        self.frames = Deframer()
        self._early: list[bytes] = []  # what came with the handshake's last message

    @classmethod
    async def connect(cls, pair: Pair, context: ssl.SSLContext) -> _Tls:
        tls = cls(await pair.client(pair.db.config.bind_port), TlsPipe(context, server_side=False))
        await _send(tls.sock, tls.pipe.start())
        while not tls.pipe.handshaken:
            tls.pipe.feed(await _recv(tls.sock))
        await _send(tls.sock, tls.pipe.pending())  # the client's Finished
        return tls

    @classmethod
    async def accept(cls, pair: Pair, listening: socket.socket, context: ssl.SSLContext) -> _Tls:
        tls = cls(await pair.accepted(listening), TlsPipe(context, server_side=True))
        while not tls.pipe.handshaken:
            tls._early = tls.pipe.feed(await _recv(tls.sock))
            await _send(tls.sock, tls.pipe.pending())
        return tls

    async def send(self, data: bytes) -> None:
        await _send(self.sock, self.pipe.encrypt(data))

    async def received(self) -> bytes:
        """The plaintext of the next read that brings any."""
        got, self._early = self._early, []
        while not got:
            got = self.pipe.feed(await _recv(self.sock))
        return b"".join(got)

    def bare_end(self) -> None:
        """A TCP end with no close_notify before it: what a peer that crashed sends, or a
        FIN forged on the path (truncation)."""
        self.sock.shutdown(socket.SHUT_WR)


def _in_thread(fn: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("pair", ["mux"], indirect=True)
async def test_a_stream_stalled_before_its_join_pauses_its_client_at_the_join(pair: Pair) -> None:
    """web's wire fills while a stream waits for its ACK: the stream stalls with no relay to
    pause. Its client must be paused at the join: it was read without bound (64 MiB held,
    sent far past the stream's credit, for which a real peer closes the wire of every
    stream). The peer here is db faked (its certificate, frames by hand): it gives stream 1
    all the credit it wants, then reads nothing until told, so web's wire fills."""
    fake = socket.socket()
    fake.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills after a few KiB
    fake.bind(("127.0.0.1", 0))
    fake.listen(1)
    wire: list[ssl.SSLSocket] = []
    opened = threading.Event()
    drain = threading.Event()

    def peer() -> None:
        conn, _ = fake.accept()
        tls = pair.pki.identity("db").server_tunnel.wrap_socket(conn, server_side=True)
        wire.append(tls)
        frames, ids = Deframer(), []
        while len(ids) < 2:  # OPEN 1 (answered at once), OPEN 2 (answered by the test)
            for kind, sid, _ in frames.feed(tls.recv(65536)):
                if kind == OPEN:
                    ids.append(sid)
                    if sid == 1:
                        tls.sendall(control(ACK, 1) + window(1, 2**31 - 1))
        opened.set()
        drain.wait(30)
        with contextlib.suppress(OSError):
            while tls.recv(1 << 20):  # what filled the wire, dropped
                pass

    _in_thread(peer)
    pair.web.set_instances([fake.getsockname()[:2]])
    writers: list[asyncio.StreamWriter] = []
    try:
        _, a = await asyncio.open_connection("127.0.0.1", pair.port)  # stream 1
        writers.append(a)
        await eventually_async(lambda: len(pair.web.open) == 1, 5)
        _, b = await asyncio.open_connection("127.0.0.1", pair.port)  # stream 2, not ACKed
        writers.append(b)
        assert await asyncio.to_thread(opened.wait, 5)
        (mux,) = pair.muxes()
        a.write(b"a" * (32 << 20))  # stream 1 has the credit: web's wire fills
        await eventually_async(lambda: mux.wire_full, 10)
        stream = mux.streams[2]
        assert stream.stalled and stream.relay is None
        await asyncio.to_thread(wire[0].sendall, control(ACK, 2))  # joined, the wire full
        await eventually_async(lambda: stream.relay is not None, 5)
        relay = stream.relay
        assert isinstance(relay, Relay)
        client = relay.sides[0].transport
        assert client is not None and not client.is_reading()  # paused by the join
        b.write(b"b" * (8 << 20))
        assert stream._credit == WINDOW_BYTES  # nothing read from it, nothing sent
        drain.set()  # the wire drains: the stream sends its credit, and no more than a read
        await eventually_async(lambda: stream._credit <= 0, 10)
        assert stream._credit > -READ_SIZE and not client.is_reading()
    finally:
        drain.set()
        for writer in writers:
            writer.close()
        for tls in wire:
            tls.close()
        fake.close()


@pytest.mark.parametrize("pair", ["tls"], indirect=True)
async def test_what_a_client_sends_after_its_close_notify_is_dropped_and_not_read(
    pair: Pair,
) -> None:
    """A client that sends on after its close_notify: its bytes were kept in the TLS pipe,
    never decrypted, and the connection never paused (100 MiB held in a review's run). They
    are dropped, and the connection is read no more; its half-close stays a half-close."""
    client = await _Tls.connect(pair, pair.pki.identity("web").client)
    await client.send(b"request")
    app = await pair.accepted()
    assert await _recv_exactly(app, 7) == b"request"
    late = (b"\x17\x03\x03\x40\x00" + bytes(0x4000)) * 16  # 256 KiB shaped as records
    await _send(client.sock, client.pipe.close_write() + late)
    assert await _to_the_end(app) == (b"", "eof")  # the end, passed on
    ((relay, _),) = pair.db.open.items()
    side = relay.sides[0]
    assert isinstance(side, TlsSide) and side.transport is not None
    transport = side.transport
    await eventually_async(lambda: side.pipe._incoming.pending or not transport.is_reading())
    assert side.pipe._incoming.pending == 0 and not transport.is_reading()
    await _send(app, b"answer")  # the other direction flows on
    assert await client.received() == b"answer"


@pytest.mark.parametrize("pair", ["mux"], indirect=True)
@pytest.mark.parametrize("late", [pack_header(DATA, 1, 5) + b"after", control(END, 1)],
                         ids=["data", "end"])  # fmt: skip
async def test_a_frame_on_a_stream_after_its_end_closes_the_wire_as_a_bad_frame(
    pair: Pair, late: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """A client sidecar (web's certificate, frames by hand) that sends DATA, or END again, on
    a stream after its END. DATA was written to the app after its FIN: the write raised out
    of the wire's read (uvloop: "Fatal error on transport"), and the wire went down with no
    word; a second END was ignored. Either is a frame out of turn: the wire is closed,
    logged, as for any bad frame, and nothing reaches the app after its end."""
    client = await _Tls.connect(pair, pair.pki.identity("web").client_tunnel)
    await client.send(control(OPEN, 1))
    app1 = await pair.accepted()
    await client.send(control(OPEN, 2))
    app2 = await pair.accepted()
    await client.send(control(END, 1))
    assert await _to_the_end(app1) == (b"", "eof")  # the end, passed on
    await client.send(late)
    await _to_the_end(client.sock)  # ACKs, then the wire closed
    why = "data after its end" if late[0] == DATA else "a second end"
    assert f"stream 1: {why}" in caplog.text
    assert (await _to_the_end(app2))[0] == b""  # (the other stream lost with it)
    assert (await _to_the_end(app1))[0] == b""  # never b"after"
    await eventually_async(lambda: not pair.db.open and not pair.db.tunnels.muxes, 5)


async def test_an_end_at_either_end_reaches_the_other_as_an_end(pair: Pair) -> None:
    """A clean end stays clean each way, while the other direction flows on."""
    client = await pair.client()
    await _send(client, b"question")
    client.shutdown(socket.SHUT_WR)
    app = await pair.accepted()
    assert await _to_the_end(app) == (b"question", "eof")
    await _send(app, b"answer")
    app.shutdown(socket.SHUT_WR)
    assert await _to_the_end(client) == (b"answer", "eof")


async def _joined(pair: Pair) -> tuple[socket.socket, socket.socket]:
    """A client and the app connection it reached, bytes through both proxies already."""
    client = await pair.client()
    await _send(client, b"hello")
    app = await pair.accepted()
    assert await _recv_exactly(app, 5) == b"hello"
    await eventually_async(lambda: pair.web.open and pair.db.open, 5)
    return client, app


@pytest.mark.parametrize("who", ["app", "client"])
async def test_a_reset_at_either_end_reaches_the_other_as_a_reset(pair: Pair, who: str) -> None:
    """An app (or client) that sends, then resets: the other end gets what was sent, then a
    reset. It got a clean end (FIN, close_notify, END), and took a cut answer (or upload)
    for a whole one."""
    client, app = await _joined(pair)
    sender, receiver = (app, client) if who == "app" else (client, app)
    await _send(sender, b"partial")
    _reset(sender)
    assert await _to_the_end(receiver) == (b"partial", "reset")
    await eventually_async(lambda: not pair.web.open and not pair.db.open, 5)


async def test_an_end_passed_to_a_client_that_reset_after_its_own_end_closes_the_pair(
    pair: Pair,
) -> None:
    """A client ends its side (FIN), then resets (a killed process with bytes unread): the
    reset lands on a connection no longer read, so the proxy first hears of it when the
    app's end is passed on, and the kernel refuses the shutdown (ENOTCONN). That error
    escaped the relay mid-close under asyncio's loop: the pair was never closed nor counted
    (a gRPC call it carried was never recorded; found by CI)."""
    client, app = await _joined(pair)
    client.shutdown(socket.SHUT_WR)
    assert await _to_the_end(app) == (b"", "eof")
    _reset(client)
    app.shutdown(socket.SHUT_WR)
    await eventually_async(lambda: not pair.web.open and not pair.db.open, 5)


async def test_a_policy_cut_is_a_close_at_either_end_not_a_loss(pair: Pair) -> None:
    """The proxy's own close is no loss to pass on: the client of a connection a policy
    change cut sees it closed, as it did before losses were passed on, and as a refused one
    is; the app too."""
    client, app = await _joined(pair)
    pair.policy.intentions = IntentionSet([Intention("web", "db", action="deny")])
    pair.db.recheck()  # what the runtime does when the intentions change
    assert await _to_the_end(client) == (b"", "eof")
    assert await _to_the_end(app) == (b"", "eof")


async def test_a_tls_end_without_close_notify_from_a_client_is_a_loss(pair: Pair) -> None:
    """A client sidecar (web's certificate, TLS by hand) that sends, then ends its TCP
    stream with no close_notify: a truncation, passed on as a loss (the app is reset), not
    as the clean end it was (the app took a cut upload for a whole one)."""
    identity = pair.pki.identity("web")
    client = await _Tls.connect(pair, identity.client_tunnel if pair.mux else identity.client)
    if pair.mux:
        await client.send(control(OPEN, 1))
    app = await pair.accepted()
    await eventually_async(lambda: pair.db.open, 5)  # joined: nothing is held
    await client.send(pack_header(DATA, 1, 7) + b"partial" if pair.mux else b"partial")
    client.bare_end()
    assert await _to_the_end(app) == (b"partial", "reset")
    await eventually_async(lambda: not pair.db.open and not pair.db.tunnels.muxes, 5)


async def test_a_tls_end_without_close_notify_from_an_instance_is_a_loss(pair: Pair) -> None:
    """An instance's sidecar (db's certificate, TLS and frames by hand) that sends part of an
    answer, then ends its TCP stream with no close_notify (no END, no RESET either): the
    client gets the part, then a reset, not the clean end it got."""
    db = pair.pki.identity("db")
    listening = _listening()
    pair.sockets.append(listening)
    pair.web.set_instances([listening.getsockname()[:2]])
    client = await pair.client()
    await _send(client, b"request")
    server = await _Tls.accept(pair, listening, db.server_tunnel if pair.mux else db.server)
    if pair.mux:
        while not any(kind == OPEN for kind, _, _ in server.frames.feed(await server.received())):
            pass
        await server.send(control(ACK, 1))
    await eventually_async(lambda: pair.web.open, 5)  # joined: nothing is held
    await server.send(pack_header(DATA, 1, 7) + b"partial" if pair.mux else b"partial")
    server.bare_end()
    assert await _to_the_end(client) == (b"partial", "reset")
    await eventually_async(lambda: not pair.web.open and not pair.muxes(), 5)


# A connection the proxy cuts itself (a policy change, a drain's timeout) over TLS, its peer
# (a client sidecar, or an instance's, TLS by hand) reading nothing while the other end
# floods it: what it was sent waits in the proxy's transport and kernel. A graceful close
# (close_notify, then a close that waits for the write buffer: 532180a) kept the socket for
# as long as the peer did not read, and the peer then read megabytes of the refused
# connection's data, closed cleanly (found by a review). A peer that read all still gets
# close_notify (as through both proxies: test_a_policy_cut_is_a_close_at_either_end_...).

SMALL_BUFFER = 64 * 1024  # the refused peer's receive buffer: what it may hold unread
FLOOD = b"x" * 65536


def _unsent(sock: socket.socket) -> int:
    """What the kernel holds to send on `sock` and has not sent (SIOCOUTQNSD, Linux)."""
    return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), 0x894B, bytes(4)))[0])


def _small_buffer(sock: socket.socket) -> socket.socket:
    """Before connect or listen: the window is agreed in the handshake."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    sock.setblocking(False)
    return sock


async def _client(pair: Pair) -> _Tls:
    """A client sidecar of db's port (web's certificate, no mux) that reads little."""
    sock = _small_buffer(socket.socket())
    pair.sockets.append(sock)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", pair.db.config.bind_port))
    tls = _Tls(sock, TlsPipe(pair.pki.identity("web").client, server_side=False))
    await _send(sock, tls.pipe.start())
    while not tls.pipe.handshaken:
        tls.pipe.feed(await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 65536), 5))
    await _send(sock, tls.pipe.pending())
    return tls


async def _flood(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # (ends when its connection is cut)
        while True:
            await _send(sock, FLOOD)


async def _after_the_cut(tls: _Tls) -> tuple[int, str]:
    """What the refused peer reads to its end (TLS bytes), and how it ends: "close_notify",
    "bare end" or "reset"."""
    loop, got = asyncio.get_running_loop(), 0
    while True:
        try:
            data = await asyncio.wait_for(loop.sock_recv(tls.sock, 1 << 20), 10)
        except ConnectionResetError:
            return got, "reset"
        if not data:
            return got, "close_notify" if tls.pipe.eof_received else "bare end"
        got += len(data)
        with contextlib.suppress(ssl.SSLError):
            tls.pipe.feed(data)


async def _closed_soon(side: TlsSide) -> bool:
    """Whether the proxy closed its socket to the peer (connection_lost) within 5 s."""
    try:
        return bool(await eventually_async(lambda: side.lost, 5))
    except AssertionError:  # (the deadline passed)
        return False


async def _relayed_client(pair: Pair) -> tuple[_Tls, socket.socket, TlsSide]:
    """A client (`_client`) whose first bytes reached db's app: it, the app's end, and the
    client's side of db's relay."""
    tls = await _client(pair)
    await tls.send(b"hello")
    app = await pair.accepted()
    assert await _recv_exactly(app, 5) == b"hello"
    await eventually_async(lambda: pair.db.open, 5)
    ((relay, _),) = pair.db.open.items()
    side = relay.sides[0]
    assert isinstance(side, TlsSide)
    return tls, app, side


async def _cut_is_a_cut(tls: _Tls, side: TlsSide) -> None:
    closed = await _closed_soon(side)
    got, end = await _after_the_cut(tls)
    held = tls.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)  # (as the kernel has it)
    figures = (f"proxy's socket closed within 5 s: {closed}; the refused peer then read {got}"
               f" bytes (its receive buffer holds {held}), ending with {end}")  # fmt: skip
    assert closed, figures
    assert got <= held, figures  # only what it had received before the cut
    assert end == "reset", figures  # data was dropped: no clean end (a truncation)


@pytest.mark.parametrize("pair", ["tls"], indirect=True)
@pytest.mark.parametrize("how", ["policy", "drain"])
async def test_a_cut_client_that_reads_nothing_gets_nothing_more(pair: Pair, how: str) -> None:
    """db cuts a client sidecar that stopped reading a flood from the app (an intention now
    denies it, or db's drain timed out): db's socket is closed at once, and the client gets
    nothing more than it had received, then a reset."""
    tls, app, side = await _relayed_client(pair)
    flood = asyncio.ensure_future(_flood(app))
    await eventually_async(lambda: side.full, 10)  # its transport's buffer is full: so is all
    if how == "policy":
        pair.policy.intentions = IntentionSet([Intention("web", "db", action="deny")])
        pair.db.recheck()  # what the runtime does when the intentions change
    else:
        pair.db.terminate_all()  # what a drain does at its timeout
    flood.cancel()
    assert not pair.db.open
    await _cut_is_a_cut(tls, side)


@pytest.mark.parametrize("pair", ["tls"], indirect=True)
async def test_a_cut_client_gets_none_of_what_the_kernel_holds_for_it(pair: Pair) -> None:
    """The same cut, all the app sent taken by db's kernel (its transport holds nothing),
    the client's window shut: that is dropped as well, not sent after the cut (nor is a
    close_notify that would follow it)."""
    tls, app, side = await _relayed_client(pair)
    ((relay, _),) = pair.db.open.items()
    assert side.transport is not None
    transport = side.transport
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)  # room for all, below
    size = 4 * SMALL_BUFFER
    await _send(app, b"x" * size)

    def all_in_the_kernel_some_not_sent() -> bool:
        return (relay.sides[1].moved == size and not transport.get_write_buffer_size()
                and _unsent(sock) > 0)  # fmt: skip

    await eventually_async(all_in_the_kernel_some_not_sent, 10)
    pair.policy.intentions = IntentionSet([Intention("web", "db", action="deny")])
    pair.db.recheck()
    await _cut_is_a_cut(tls, side)


@pytest.mark.parametrize("pair", ["tls"], indirect=True)
async def test_a_cut_instance_that_reads_nothing_gets_nothing_more(pair: Pair) -> None:
    """web's drain times out on a connection to an instance's sidecar that stopped reading
    its client's upload: web's socket to it is closed at once, and it gets nothing more."""
    listening = _small_buffer(socket.socket())
    listening.bind(("127.0.0.1", 0))
    listening.listen(4)
    pair.sockets.append(listening)
    pair.web.set_instances([listening.getsockname()[:2]])
    client = await pair.client()
    await _send(client, b"hello")
    server = await _Tls.accept(pair, listening, pair.pki.identity("db").server)
    await eventually_async(lambda: pair.web.open, 5)
    (relay,) = pair.web.open
    assert isinstance(relay, Relay)
    side = relay.sides[1]
    assert isinstance(side, TlsSide)
    flood = asyncio.ensure_future(_flood(client))
    await eventually_async(lambda: side.full, 10)
    pair.web.terminate_all()
    flood.cancel()
    assert not pair.web.open
    await _cut_is_a_cut(server, side)


@pytest.mark.parametrize("pair", ["tls"], indirect=True)
@pytest.mark.parametrize("how", ["policy", "drain"])
async def test_a_cut_client_that_read_all_is_told_the_end(pair: Pair, how: str) -> None:
    """A cut client that has read all it was sent: nothing is dropped, so the proxy's close
    stays clean (close_notify), and is not waited for either."""
    tls = await _client(pair)
    await tls.send(b"hello")
    app = await pair.accepted()
    assert await _recv_exactly(app, 5) == b"hello"
    await _send(app, b"answer")
    assert await tls.received() == b"answer"
    ((relay, _),) = pair.db.open.items()
    side = relay.sides[0]
    assert isinstance(side, TlsSide)
    if how == "policy":
        pair.policy.intentions = IntentionSet([Intention("web", "db", action="deny")])
        pair.db.recheck()
    else:
        pair.db.terminate_all()
    assert (await _after_the_cut(tls))[1] == "close_notify"
    await eventually_async(lambda: side.lost, 5)


@pytest.mark.parametrize("how", ["close", "cut"])
async def test_a_closed_connection_whose_peer_reads_nothing_is_not_held_for_ever(
    monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """A connection closed (or cut as lost) with bytes still buffered for a peer that never
    reads used to wait for it without end, socket and buffer held; once the peer takes
    nothing for CLOSE_STALL_S, it is reset. A peer that reads keeps it to the end."""
    monkeypatch.setattr(side_module, "CLOSE_STALL_S", 0.2)
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        loop = asyncio.get_running_loop()
        _, side = await loop.create_connection(PlainSide, *server.getsockname())
        peer, _ = await loop.sock_accept(server)
        with peer:
            side.send(b"x" * (16 << 20))  # far past what the kernels hold
            assert side.transport is not None and side.transport.get_write_buffer_size()
            if how == "close":
                side.close()
            else:
                side.cut()
            await eventually_async(lambda: side.lost, 5)  # reset: the socket is let go
