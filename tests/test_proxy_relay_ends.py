"""How the L4 relay passes on what happens at either end: stalls, ends, losses.

A real upstream listener (web) and a real inbound port (db) in the test's
loop, over sockets, each case both over a mux (ALPN `gossamer-tunnel/2`)
and over a TLS connection per client; or one of them faked (real
certificates, frames or TLS by hand) to do what a sidecar of ours never
does. Found by a review: each test here failed before its fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from gossamer.intentions.decide import IntentionSet
from gossamer.intentions.model import Intention
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
from gossamer.proxy.side import READ_SIZE
from gossamer.proxy.tls_pipe import TlsPipe
from gossamer.proxy.tls_side import TlsSide
from tests.harness.cluster import free_port
from tests.harness.poll import eventually_async
from tests.proxy_pki import Pki


@dataclass
class Pair:
    web: UpstreamListener
    db: Inbound
    port: int  # web's upstream listener
    pki: Pki
    apps: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]]  # db's app's accepts

    def muxes(self) -> list[Mux]:
        return [mux for muxes in self.web.tunnels.muxes.values() for mux in muxes]


@pytest.fixture(params=["mux", "tls"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    """web -> db -> an app whose connections the test takes from `apps`; "tls": db agrees to
    no frames, so web makes a TLS connection per client."""
    apps: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        apps.put_nowait((reader, writer))

    app = await asyncio.start_server(accepted, "127.0.0.1", 0)
    pki = Pki()
    db_identity = pki.identity("db")
    if request.param == "tls":
        db_identity = dataclasses.replace(db_identity, server_tunnel=db_identity.server)
    web_identity = pki.identity("web")
    policy = Policy()
    policy.intentions, policy.known = IntentionSet([Intention("web", "db", action="allow")]), True
    config = ProxyConfig(service="db", bind_address="127.0.0.1", bind_port=free_port("127.0.0.1"),
                         local_port=app.sockets[0].getsockname()[1])  # fmt: skip
    db = Inbound(config, lambda: db_identity, policy, tally.Tally())
    await db.start()
    port = free_port("127.0.0.1")
    web = UpstreamListener(Upstream("db", port, connect_timeout_s=5.0), lambda: web_identity,
                           tally.Tally())  # fmt: skip
    web.set_instances([("127.0.0.1", config.bind_port)])
    await web.start()
    try:
        yield Pair(web, db, port, pki, apps)
    finally:
        for side in (web, db):
            side.stop_listening()
            side.terminate_all()
        app.close()


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


class _Raw:
    """A client of db's port with web's certificate, its TLS driven here (a TlsPipe over a
    plain socket), so it can send what no TLS library would; what it receives is read as
    the kernel has it (an asyncio stream would raise a reset before the bytes that came
    ahead of it)."""

    def __init__(self, sock: socket.socket, pipe: TlsPipe) -> None:
        self.sock, self.pipe = sock, pipe
        self.loop = asyncio.get_running_loop()

    @classmethod
    async def connect(cls, pair: Pair, context: ssl.SSLContext) -> _Raw:
        sock = socket.socket()
        sock.setblocking(False)
        raw = cls(sock, TlsPipe(context, server_side=False))
        await raw.loop.sock_connect(sock, ("127.0.0.1", pair.db.config.bind_port))
        await raw.send(raw.pipe.start())
        while not raw.pipe.handshaken:
            raw.pipe.feed(await raw.loop.sock_recv(sock, 65536))
        await raw.send(raw.pipe.pending())  # the client's Finished
        return raw

    async def send(self, data: bytes) -> None:
        await self.loop.sock_sendall(self.sock, data)

    async def recv(self) -> bytes:
        return await asyncio.wait_for(self.loop.sock_recv(self.sock, 65536), 5)


@pytest.mark.parametrize("pair", ["tls"], indirect=True)
async def test_what_a_client_sends_after_its_close_notify_is_dropped_and_not_read(
    pair: Pair,
) -> None:
    """A client that sends on after its close_notify: its bytes were kept in the TLS pipe,
    never decrypted, and the connection never paused (100 MiB held in a review's run). They
    are dropped, and the connection is read no more; its half-close stays a half-close."""
    client = await _Raw.connect(pair, pair.pki.identity("web").client)
    try:
        await client.send(client.pipe.encrypt(b"request"))
        app_reader, app_writer = await asyncio.wait_for(pair.apps.get(), 5)
        assert await app_reader.readexactly(7) == b"request"
        late = (b"\x17\x03\x03\x40\x00" + bytes(0x4000)) * 16  # 256 KiB shaped as records
        await client.send(client.pipe.close_write() + late)
        assert await asyncio.wait_for(app_reader.read(), 5) == b""  # the end, passed on
        ((relay, _),) = pair.db.open.items()
        side = relay.sides[0]
        assert isinstance(side, TlsSide) and side.transport is not None
        transport = side.transport
        await eventually_async(lambda: side.pipe._incoming.pending or not transport.is_reading())
        assert side.pipe._incoming.pending == 0 and not transport.is_reading()
        app_writer.write(b"answer")  # the other direction flows on
        got: list[bytes] = []
        while not got:  # (the server's session ticket may come first)
            got = client.pipe.feed(await client.recv())
        assert got == [b"answer"]
        app_writer.close()
    finally:
        client.sock.close()


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
    context = pair.pki.identity("web").client_tunnel
    reader, writer = await asyncio.open_connection("127.0.0.1", pair.db.config.bind_port,
                                                   ssl=context)  # fmt: skip
    try:
        writer.write(control(OPEN, 1))
        app1, _ = await asyncio.wait_for(pair.apps.get(), 5)
        writer.write(control(OPEN, 2))
        app2, _ = await asyncio.wait_for(pair.apps.get(), 5)
        writer.write(control(END, 1))
        assert await asyncio.wait_for(app1.read(), 5) == b""  # the end, passed on
        writer.write(late)
        with contextlib.suppress(ConnectionResetError):
            while await asyncio.wait_for(reader.read(65536), 5):  # ACKs, then the close
                pass
        assert f"stream 1: {'data after its end' if late[0] == DATA else 'a second end'}" in (
            caplog.text
        )
        with contextlib.suppress(ConnectionResetError):  # (the other stream is lost with it)
            assert await asyncio.wait_for(app2.read(), 5) == b""
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(app1.read(), 5) == b""  # never b"after"
        await eventually_async(lambda: not pair.db.open and not pair.db.tunnels.muxes, 5)
    finally:
        writer.close()
