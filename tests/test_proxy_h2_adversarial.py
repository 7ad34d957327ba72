"""The h2c path as an attacker or a careless client or app would use it.

web's upstream listener (`protocol: grpc`) -> db's sidecar -> an h2c app,
in the test's loop (tests/test_proxy_grpc.py `grpc_mesh`), the calls
between the sidecars on a mux stream or on a TLS connection of their own.
The client writes raw frames (h2_frames) on a socket and reads the frames
that come back; the app is python-hyper's `h2`. Each test asks what an
Envoy user would expect: the right GOAWAY or answer, the other connections
served, the proxy's memory bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, RequestReceived, ResponseReceived, StreamEnded
from hpack import Encoder

from gossamer.intentions.decide import IntentionSet
from gossamer.intentions.model import Decision, HTTPMatch, Intention, Permission
from gossamer.proxy.h2_balanced import Balanced
from gossamer.proxy.h2_calls import RAPID_CALLS, CallBook
from gossamer.proxy.h2_follow import H2Follower
from gossamer.proxy.h2_frames import (
    CANCEL,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    GOAWAY,
    HEAD,
    HEADERS,
    NO_ERROR,
    PREFACE,
    PROTOCOL_ERROR,
    SETTINGS,
    WINDOW_UPDATE,
    frame,
    header_frames,
    literal_block,
    parse_head,
    rst_stream,
    size_update,
    window_update,
)
from gossamer.proxy.h2_gate import H2Gate
from gossamer.proxy.h2_relay import CUT_WAIT_S, H2Relay
from tests.harness.poll import eventually_async
from tests.test_proxy_grpc import MODES, _answer, _grpc_message, _Mesh, grpc_mesh

CALL = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", b"/t.T/Fine"),
        (b":authority", b"db"), (b"content-type", b"application/grpc"),
        (b"te", b"trailers")]  # fmt: skip
WATCH = [(b":path", b"/t.T/Watch") if name == b":path" else (name, value) for name, value in CALL]
START = PREFACE + frame(SETTINGS, 0, 0)
TOO_LARGE = literal_block([(b":status", b"431"), (b"content-length", b"0")])  # the gate's answer
Frames = list[tuple[int, int, int, bytes]]  # kind, flags, stream, payload


class _App:
    """An h2c app (python-hyper's h2) answering as tests/test_proxy_grpc.py's does, and
    /t.T/HalfClose whole, then ending its side (FIN) while it reads on. `delay`: its
    preface waits this long (a slow app, or a client quicker than it); `stays`: its side
    stays open after the client's end, until the test is over. Hostile bytes end its
    connection (h2 raises), as they would an app's."""

    def __init__(self, *, delay: float = 0.0, stays: bool = False) -> None:
        self.delay, self.stays = delay, stays
        self.requests = 0
        self.paths: list[str] = []  # of the requests it got
        self.conns: list[asyncio.StreamWriter] = []
        self.over = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.conns.append(writer)
        await asyncio.sleep(self.delay)
        conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        paths: dict[int, str] = {}
        ended = eof_sent = False
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, RequestReceived):
                        self.requests += 1
                        paths[event.stream_id] = dict(event.headers)[":path"]
                        self.paths.append(paths[event.stream_id])
                    elif isinstance(event, DataReceived):
                        conn.acknowledge_received_data(event.flow_controlled_length,
                                                       event.stream_id)  # fmt: skip
                    elif isinstance(event, StreamEnded):
                        path = paths.pop(event.stream_id, "")
                        _answer(conn, event.stream_id, path.replace("HalfClose", "Fine"))
                        ended = ended or path == "/t.T/HalfClose"
                if not eof_sent:
                    writer.write(conn.data_to_send())
                if ended and not eof_sent:
                    writer.write_eof()
                    eof_sent = True
            if self.stays:
                await self.over.wait()
        writer.close()


@contextlib.asynccontextmanager
async def _meshed(mode: str, app: _App) -> AsyncIterator[_Mesh]:
    try:
        async with grpc_mesh(mode, serve=app.serve) as mesh:
            yield mesh
    finally:
        app.over.set()
        for writer in app.conns:
            writer.transport.abort()


class _Raw:
    """A client writing raw frames to web's upstream listener and reading what comes back."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.frames: Frames = []
        self.ended = False
        self._rest = b""

    @classmethod
    async def open(cls, mesh: _Mesh) -> _Raw:
        sock = socket.socket()
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(
            sock, ("127.0.0.1", mesh.web.upstream.bind_port)
        )
        return cls(sock)

    async def send(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def until(self, wanted: str, seconds: float = 5.0) -> Frames:
        """Reads until what is `wanted` came ("goaway", "data", "end": a stream's end,
        "ended": the connection's end) or `seconds` passed; the frames read so far."""
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + seconds
        while not self._found(wanted) and not self.ended and time.monotonic() < deadline:
            try:
                data = await asyncio.wait_for(loop.sock_recv(self.sock, 65536),
                                              deadline - time.monotonic())  # fmt: skip
            except TimeoutError:
                break
            except ConnectionResetError:
                data = b""
            self.ended = not data
            self._rest += data
            while len(self._rest) >= HEAD:
                length, kind, flags, stream = parse_head(self._rest[:HEAD])
                if len(self._rest) < HEAD + length:
                    break
                self.frames.append((kind, flags, stream, self._rest[HEAD : HEAD + length]))
                self._rest = self._rest[HEAD + length :]
        return self.frames

    def _found(self, wanted: str) -> bool:
        if wanted == "goaway":
            return bool(self.goaways())
        if wanted == "data":
            return any(k == DATA for k, _, _, _ in self.frames)
        if wanted == "end":
            return any(k == HEADERS and f & END_STREAM for k, f, _, _ in self.frames)
        return False

    def goaways(self) -> list[tuple[int, int]]:
        """(last stream, error code) of each GOAWAY read."""
        return [(int.from_bytes(p[:4], "big"), int.from_bytes(p[4:8], "big"))
                for k, _, _, p in self.frames if k == GOAWAY]  # fmt: skip

    def close(self) -> None:
        self.sock.close()


async def _served(mesh: _Mesh) -> None:
    """A new connection's call is answered whole: the proxy serves others on."""
    client = await _Raw.open(mesh)
    try:
        await client.send(START + frame(HEADERS, END_HEADERS, 1, literal_block(CALL))
                          + frame(DATA, END_STREAM, 1, _grpc_message(b"q")))  # fmt: skip
        await client.until("end")
        assert any(k == HEADERS and f & END_STREAM and s == 1 for k, f, s, _ in client.frames)
    finally:
        client.close()


@pytest.mark.parametrize("mode", MODES)
async def test_a_rapid_reset_flood_gets_goaway_and_the_app_few_of_its_calls(mode: str) -> None:
    """CVE-2023-44487: 2,000 calls opened and reset at once, all in one write, quicker than
    the app's preface. The client reads GOAWAY ENHANCE_YOUR_CALM (it read only the end of
    its connection on a TLS link between the sidecars, where the flood reached the gate
    before the app spoke: a GOAWAY then waited for the app's first frame, and was dropped),
    the app saw no more than the limit's worth of calls, and another connection is served."""
    app = _App(delay=0.2)
    async with _meshed(mode, app) as mesh:
        client = await _Raw.open(mesh)
        flood = b"".join(frame(HEADERS, END_HEADERS, s, literal_block(CALL)) + rst_stream(s, CANCEL)
                         for s in range(1, 4000, 2))  # fmt: skip
        await client.send(START + flood)
        await client.until("goaway")
        assert client.frames and client.frames[0][0] == SETTINGS  # (a server's preface first)
        assert [code for _, code in client.goaways()] == [ENHANCE_YOUR_CALM]
        client.close()
        assert app.requests <= RAPID_CALLS
        await _served(mesh)


@pytest.mark.parametrize("mode", MODES)
async def test_a_continuation_flood_gets_goaway_and_never_reaches_the_app(mode: str) -> None:
    """CVE-2024-27316: a header block that never ends, 100,000 empty CONTINUATION frames.
    It is cut at the block limit with GOAWAY ENHANCE_YOUR_CALM, read by the client however
    early it came; the app saw no call."""
    app = _App(delay=0.2)
    async with _meshed(mode, app) as mesh:
        client = await _Raw.open(mesh)
        empty = frame(CONTINUATION, 0, 1, b"")
        await client.send(START + frame(HEADERS, 0, 1, literal_block(CALL)) + empty * 100_000)
        await client.until("goaway")
        assert [code for _, code in client.goaways()] == [ENHANCE_YOUR_CALM]
        client.close()
        assert app.requests == 0
        await _served(mesh)


@pytest.mark.parametrize("mode", MODES)
async def test_an_hpack_bomb_is_refused_431_and_the_connection_goes_on(mode: str) -> None:
    """A 4,000-byte field added to the HPACK table, then a block of 3,000 one-byte
    references to it (12 MB decoded, from 3 KB): past the header list limit, the call is
    answered `431` (the block read to its end without keeping its fields, so the table
    stays in step) and the same connection serves the next call; the app never saw the
    bomb. (It was GOAWAY COMPRESSION_ERROR: every call on the connection lost.)"""
    app = _App(delay=0.2)
    async with _meshed(mode, app) as mesh:
        client = await _Raw.open(mesh)
        added = Encoder().encode([(b"x-big", b"a" * 4000)], huffman=False)  # (indexed)
        bomb = literal_block(CALL) + bytes((0x80 | 62,)) * 3000  # index 62: the newest entry
        both, again = END_HEADERS | END_STREAM, literal_block(CALL) + bytes((0x80 | 62,))
        first = literal_block(CALL) + added
        await client.send(START + frame(HEADERS, both, 1, first) + frame(HEADERS, both, 3, bomb)
                          + frame(HEADERS, both, 5, again))  # fmt: skip
        # ("more": reads on for 0.2 s each time; "end" returned at once once the 431 came,
        # and the loop spun without letting the proxy, in this loop, move)
        while len([f for f in await client.until("more", 0.2) if f[0] == HEADERS]) < 5:
            assert not client.ended and not client.goaways(), client.frames
        assert _answered_431(client, 3)
        assert app.requests == 2
        client.close()


@pytest.mark.parametrize("mode", MODES)
async def test_a_call_with_too_much_metadata_is_refused_alone(mode: str) -> None:
    """A gRPC client's call with 70 KB of metadata, Huffman-coded into a smaller block
    (under the block limit, over the list limit once decoded): that call gets `431`, and
    the connection goes on, a call under way on it and the next one. (The connection
    ended, and every call on it.)"""
    app = _App()
    async with _meshed(mode, app) as mesh:
        client = await _watch(mesh)
        metadata = [(f"x-meta-{i}".encode(), f"{i:04}".encode() + b"v" * 996) for i in range(66)]
        fat = literal_block(CALL) + Encoder().encode(metadata, huffman=True)
        assert len(fat) < 65536 < sum(len(n) + len(v) + 32 for n, v in [*CALL, *metadata])
        # (cut at SETTINGS_MAX_FRAME_SIZE, 16,384, as a gRPC client cuts it: a balancing
        # sidecar reads the frames itself and answers a larger one FRAME_SIZE_ERROR)
        await client.send(header_frames(3, fat, end_stream=True))
        await client.until("goaway", 0.5)
        assert not client.goaways() and not client.ended
        assert _answered_431(client, 3)
        await client.send(frame(HEADERS, END_HEADERS | END_STREAM, 5, literal_block(CALL)))
        while not any(f[0] == HEADERS and f[2] == 5 and f[1] & END_STREAM for f in client.frames):
            assert not client.ended and not client.goaways(), client.frames
            await client.until("more", 0.1)  # (reads on for 0.1 s)
        assert not any(f[0] == HEADERS and f[2] == 1 and f[1] & END_STREAM for f in client.frames)
        client.close()


def _answered_431(client: _Raw, stream: int) -> bool:
    """Whether `stream` was answered `431` in one frame, as the gate answers it (TOO_LARGE).
    A balancing sidecar ends the client's connection itself: the first header block it
    sends on it opens with an HPACK table size update to 0 (h2_split_peer.Peer.opening)."""
    both = END_HEADERS | END_STREAM
    return any((HEADERS, both, stream, block) in client.frames
               for block in (TOO_LARGE, size_update(0) + TOO_LARGE))  # fmt: skip


async def _watch(mesh: _Mesh) -> _Raw:
    """A client with a /t.T/Watch call (a server stream that stays open) under way."""
    client = await _Raw.open(mesh)
    await client.send(START + frame(HEADERS, END_HEADERS, 1, literal_block(WATCH))
                      + frame(DATA, END_STREAM, 1, _grpc_message(b"q")))  # fmt: skip
    await client.until("data")
    assert any(k == DATA and b"first" in p for k, _, _, p in client.frames), client.frames
    return client


def _denied_stream(client: _Raw) -> bool:
    """Whether stream 1 ended with grpc-status 7 (the trailers are literals: readable)."""
    return any(k == HEADERS and f & END_STREAM and s == 1 and b"grpc-status\x017" in p
               for k, f, s, p in client.frames)  # fmt: skip


def _relays(mesh: _Mesh) -> list[H2Relay]:
    return [relay for relay in mesh.db.open if isinstance(relay, H2Relay)]


def _balanced(mesh: _Mesh) -> list[Balanced]:
    """web's balanced client connections (MODES "-balanced")."""
    return [relay for relay in mesh.web.open if isinstance(relay, Balanced)]


@pytest.mark.parametrize("mode", MODES)
async def test_a_policy_change_cuts_calls_on_a_connection_whose_client_ended_its_side(
    mode: str,
) -> None:
    """A client with a stream under way ends its side of the connection (SHUT_WR: it has
    sent all) and reads on; its app keeps answering. A deny then cuts its call at once (the
    reset cannot reach the app, whose side the client's end closed: the connection goes,
    the call told PERMISSION_DENIED), and another connection's call within CUT_WAIT_S.
    The gate's reset raised on the app's ended side, and out of the recheck: neither call
    was cut, and the connections after it in the sweep were never judged.
    Balanced: web ends the client's connection itself and takes its FIN as its end, as
    Envoy and gRPC servers do: the connection closes at once, its call cancelled at db
    (no connection at db is half-closed); the other's call is cut as before."""
    app = _App(stays=True)
    async with _meshed(mode, app) as mesh:
        ended, other = await _watch(mesh), await _watch(mesh)
        ended.sock.shutdown(socket.SHUT_WR)
        if mesh.balanced:
            await ended.until("ended", 2)
            assert ended.ended and not _denied_stream(ended)
        else:
            await eventually_async(lambda: any(r.halves.ended[0] for r in _relays(mesh)), 5)
        # the ended one first in the sweep
        mesh.db.open = dict(sorted(mesh.db.open.items(), key=lambda kv: not kv[0].halves.ended[0]))
        mesh.db.policy.intentions = IntentionSet([Intention("web", "db", permissions=(
            Permission("deny", HTTPMatch(path_prefix="/t.T/")),))])  # fmt: skip
        began = time.monotonic()
        mesh.db.recheck()
        for client in (other,) if mesh.balanced else (ended, other):
            await client.until("end", CUT_WAIT_S)
            assert _denied_stream(client), client.frames
        assert time.monotonic() - began < CUT_WAIT_S
        await ended.until("ended", 2)
        assert ended.ended  # (its connection went: the app could not be told)
        for client in (ended, other):
            client.close()


@pytest.mark.parametrize("mode", MODES)
async def test_a_drain_after_an_app_ended_its_side_tells_the_other_connections(
    mode: str,
) -> None:
    """An app answers a call and ends its side of the connection (FIN), its client still
    connected; the sidecar then drains. The GOAWAY that connection can no longer be sent is
    not sent (it raised, out of the drain, and the other connections were never told), and
    another connection with a call under way reads GOAWAY NO_ERROR.
    Balanced: web ends its connection to db once the app's FIN came (the call's answer was
    whole), so no connection at db is left half-closed; db's GOAWAY then goes to web's
    connection to it, which takes no new call. The client's connection is web's own: its
    call goes on and it is not told (its next call goes where web sends it)."""
    app = _App()
    async with _meshed(mode, app) as mesh:
        half = await _Raw.open(mesh)
        half_call = [(b":path", b"/t.T/HalfClose") if n == b":path" else (n, v) for n, v in CALL]
        await half.send(START + frame(HEADERS, END_HEADERS, 1, literal_block(half_call))
                        + frame(DATA, END_STREAM, 1, _grpc_message(b"q")))  # fmt: skip
        if mesh.balanced:
            await half.until("end")
            await eventually_async(lambda: not any(r.ups for r in _balanced(mesh)), 5)
        else:
            await eventually_async(lambda: any(r.halves.ended[1] for r in _relays(mesh)), 5)
        other = await _watch(mesh)
        mesh.db.open = dict(sorted(mesh.db.open.items(), key=lambda kv: not kv[0].halves.ended[1]))
        mesh.db.stop_listening()
        if mesh.balanced:

            def told() -> bool:  # (half's connection has none left; other's one, after 1)
                return sorted(list(r.split.going_away.values()) for r in _balanced(mesh)) == [
                    [], [1]]  # fmt: skip

            await eventually_async(told, 5)
            await other.until("goaway", 0.5)
            assert not other.goaways() and not other.ended
            assert not any(k == HEADERS and f & END_STREAM for k, f, _, _ in other.frames)
        else:
            await other.until("goaway")
            assert other.goaways() == [(1, NO_ERROR)]
        for client in (half, other):
            client.close()


def _peak(feed: list[bytes], through: Callable[[bytes, float], object]) -> int:
    """The most memory allocated at once while `through` takes each of `feed` in turn."""
    tracemalloc.start()
    try:
        for chunk in feed:
            through(chunk, 0.0)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


BIG = 4 << 20  # a frame's length: 4 MiB (a frame may say up to 16 MiB)


def _pieces(head: bytes, body: bytes) -> list[bytes]:
    whole = head + body
    return [whole[at : at + 65536] for at in range(0, len(whole), 65536)]


def test_a_huge_settings_frame_is_read_as_it_streams_not_held() -> None:
    """A SETTINGS frame of 4 MiB of entries, from the client to the gate and the follower,
    from the app to both: each side read it whole before acting on it, 4 MiB held per
    connection (16 MiB for the largest frame); now the entries are read as they come. The
    HEADER_TABLE_SIZE entry at its end still counts."""
    entries = b"\x00\x09\x00\x00\x00\x00" * (BIG // 6) + b"\x00\x01\x00\x01\x00\x00"
    huge = frame(SETTINGS, 0, 0, entries)
    gate = H2Gate(lambda request: None, 65536)  # type: ignore[arg-type,return-value]
    gate.from_client(START)
    assert _peak(_pieces(b"", huge), lambda c, n: gate.from_client(c, n)) < 1 << 20
    assert gate.app.reader is not None and gate.app.reader.max_allowed == 65536
    assert _peak(_pieces(frame(SETTINGS, 0, 0), huge), gate.from_app) < 1 << 20
    follower = H2Follower(lambda *outcome: None)
    follower.from_client(START, 0.0)
    assert _peak(_pieces(b"", huge), follower.from_client) < 1 << 20
    assert follower.answers.reader is not None and follower.answers.reader.max_allowed == 65536
    assert _peak(_pieces(frame(SETTINGS, 0, 0), huge), follower.from_app) < 1 << 20


def test_a_huge_header_block_or_goaway_from_the_app_is_not_held() -> None:
    """The app's header blocks are read up to h2_app_blocks.MAX_APP_BLOCK, then passed on unread;
    a 4 MiB HEADERS frame was gathered whole first. A 4 MiB GOAWAY (its debug data) on the
    calling side was gathered whole for its first 4 bytes."""
    follower = H2Follower(lambda *outcome: None)
    follower.from_client(START + frame(HEADERS, END_HEADERS | END_STREAM, 1,
                                       literal_block(CALL)), 0.0)  # fmt: skip
    head = frame(SETTINGS, 0, 0) + frame(HEADERS, END_HEADERS, 1, b"\0" * BIG)[:HEAD]
    assert _peak(_pieces(head, b"\0" * BIG), follower.from_app) < 1 << 20
    follower = H2Follower(lambda *outcome: None)
    follower.from_client(START, 0.0)
    away = frame(GOAWAY, 0, 0, (0).to_bytes(8, "big") + b"x" * BIG)
    assert _peak(_pieces(frame(SETTINGS, 0, 0), away), follower.from_app) < 1 << 20
    assert follower.answers.away == 0


@pytest.mark.parametrize("mode", MODES)
async def test_a_request_on_a_stream_below_one_opened_gets_goaway(mode: str) -> None:
    """Streams open in increasing order (RFC 9113 §5.1.1): a request on stream 3 after
    stream 5 is a connection error PROTOCOL_ERROR. The gate dropped it without a word,
    and the client waited on it until its deadline."""
    app = _App()
    async with _meshed(mode, app) as mesh:
        client = await _Raw.open(mesh)
        ended = END_HEADERS | END_STREAM
        await client.send(START + frame(HEADERS, ended, 5, literal_block(CALL))
                          + frame(HEADERS, ended, 3, literal_block(CALL)))  # fmt: skip
        await client.until("goaway")
        assert client.goaways() == [(5, PROTOCOL_ERROR)]
        client.close()


class _Resetting:
    """An app as an unpatched HTTP/2 server is to MadeYouReset (CVE-2025-8671): each request
    starts its work (`requests`), and a WINDOW_UPDATE of 0 on its stream makes the app reset
    the stream (PROTOCOL_ERROR, a stream error: RFC 9113 §6.9) while the work goes on.
    Raw frames, read and written here."""

    def __init__(self) -> None:
        self.requests = 0
        self.conns: list[asyncio.StreamWriter] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.conns.append(writer)
        writer.write(frame(SETTINGS, 0, 0))
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.readexactly(len(PREFACE))
            while True:
                length, kind, _, stream = parse_head(await reader.readexactly(HEAD))
                payload = await reader.readexactly(length)
                if kind == HEADERS:
                    self.requests += 1
                elif kind == WINDOW_UPDATE and stream and payload == bytes(4):
                    writer.write(rst_stream(stream, PROTOCOL_ERROR))
                elif kind == SETTINGS and not length:
                    writer.write(frame(SETTINGS, 1, 0))
        writer.close()


@pytest.mark.parametrize("mode", MODES)
async def test_calls_the_client_makes_the_app_reset_count_as_a_rapid_reset(mode: str) -> None:
    """MadeYouReset (CVE-2025-8671): a client that makes the app reset each call (here a
    WINDOW_UPDATE of 0 on it) gets the app's work started at no cost, as a rapid reset
    does, without one reset of its own. A reset of the app's that blames the client
    (PROTOCOL_ERROR, FLOW_CONTROL_ERROR, STREAM_CLOSED, FRAME_SIZE_ERROR,
    ENHANCE_YOUR_CALM) before any answer counts as the client's: GOAWAY
    ENHANCE_YOUR_CALM, and the app is spared the rest. (All 20,000 reached it.)"""
    app = _Resetting()
    async with grpc_mesh(mode, serve=app.serve) as mesh:
        client = await _Raw.open(mesh)
        sent = 0
        with contextlib.suppress(OSError):  # (the connection went)
            await client.send(START)
            for batch in range(100):
                await client.send(b"".join(
                    frame(HEADERS, END_HEADERS | END_STREAM, s, literal_block(CALL))
                    + window_update(s, 0)
                    for s in range(batch * 400 + 1, batch * 400 + 400, 2)))  # fmt: skip
                sent += 200
                # the app's resets come back between batches, as they would from a real one
                # to a client that keeps sending: the flood is a stream, not one write
                waited = time.monotonic() + 2
                while app.requests < sent and not client.ended and time.monotonic() < waited:
                    await client.until("more", 0.005)
                if client.goaways() or client.ended:
                    break
        await client.until("goaway")
        assert [code for _, code in client.goaways()] == [ENHANCE_YOUR_CALM]
        client.close()
        assert app.requests < 5000, app.requests
        for writer in app.conns:
            writer.transport.abort()


@pytest.mark.parametrize(
    ("code", "answered", "late", "rapid"),
    [
        (PROTOCOL_ERROR, False, False, True),
        (CANCEL, False, False, False),  # (Go's server, done without reading the body)
        (PROTOCOL_ERROR, True, False, False),  # (its answer had begun)
        (PROTOCOL_ERROR, False, True, False),  # (past PREMATURE_S)
    ],
)
def test_only_an_apps_early_resets_that_blame_the_client_count(
    code: int, answered: bool, late: bool, rapid: bool
) -> None:
    """Of the app's resets, only those before its answer began, within PREMATURE_S, whose
    code blames the client count toward the rapid-reset limit."""
    book = CallBook(lambda *outcome: None)
    for stream in range(1, 4 * RAPID_CALLS, 2):
        book.opened(stream, "t.T", 100.0, ended=True)
        if answered:
            book.headers(stream, [(b":status", b"200")], False, 100.0)
        book.reset_by_app(stream, 102.0 if late else 100.01, code)
    assert book.rapid() is rapid


# A path-prefix deny on /admin and how a client may spell its way around it: each is judged
# as the app will read it (http_target.py, as Envoy's normalize_path): the status it gets,
# and the path the app then sees. `//admin` and an escaped slash are kept as sent, as in
# Consul's defaults (no merge_slashes, escaped slashes unchanged): not /admin to the rules.
EVASIONS = {
    "/admin/x": ("403", None),
    "/x/../admin/x": ("403", None),
    "/%2e%2e/admin": ("403", None),
    "/x/%2E%2E/admin": ("403", None),
    "/x/.%2e/admin": ("403", None),
    "/%61dmin/x": ("403", None),
    "/./admin": ("403", None),
    "http://db/admin": ("403", None),
    "/admin%2Fx": ("403", None),
    "/public/x": ("200", "/public/x"),
    "/%70ublic/./x": ("200", "/public/x"),
    "//admin": ("200", "//admin"),
    "/x/..%2fadmin": ("200", "/x/..%2Fadmin"),
    "/public/..#/admin": ("400", None),
}


@pytest.mark.parametrize("mode", MODES)
async def test_a_path_spelled_around_a_deny_rule_is_judged_as_the_app_reads_it(
    mode: str,
) -> None:
    """db denies PathPrefix /admin to web and allows the rest; one h2c connection asks for
    /admin spelled each way (EVASIONS). Each gets the status listed, and the app sees only
    the allowed ones, normalized."""
    app = _App()
    async with _meshed(mode, app) as mesh:
        mesh.db.policy.intentions = IntentionSet([Intention("web", "db", permissions=(
            Permission("deny", HTTPMatch(path_prefix="/admin")),
            Permission("allow", HTTPMatch(path_prefix="/")),))])  # fmt: skip
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", mesh.web.upstream.bind_port))
        client = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8",
                                              validate_outbound_headers=False))  # fmt: skip
        client.initiate_connection()
        streams = {}
        for path in EVASIONS:
            stream = client.get_next_available_stream_id()
            client.send_headers(stream, [(":method", "GET"), (":scheme", "http"),
                                         (":path", path), (":authority", "db")],
                                end_stream=True)  # fmt: skip
            streams[stream] = path
        got: dict[str, str] = {}
        try:
            while len(got) < len(streams):
                if out := client.data_to_send():
                    await loop.sock_sendall(sock, out)
                data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
                assert data, f"the connection ended; answers so far: {got}"
                for event in client.receive_data(data):
                    if isinstance(event, ResponseReceived):
                        got[streams[event.stream_id]] = dict(event.headers)[":status"]
        finally:
            sock.close()
        assert got == {path: status for path, (status, _) in EVASIONS.items()}
        seen = [seen for seen in (want for _, want in EVASIONS.values()) if seen is not None]
        assert sorted(app.paths) == sorted(seen)


def test_trailers_past_the_list_limit_reset_their_stream_only() -> None:
    """Trailers whose fields decode past the limit are malformed, as other trailers the
    gate cannot pass on: the stream is reset at the app (PROTOCOL_ERROR), the connection
    goes on."""
    gate = H2Gate(lambda request: Decision(True, "test"), 65536)
    gate.from_client(START + frame(HEADERS, END_HEADERS, 1, literal_block(CALL)))
    metadata = [(f"x-meta-{i}".encode(), f"{i:04}".encode() + b"v" * 996) for i in range(70)]
    trailers = Encoder().encode(metadata, huffman=True)
    to_app, _ = gate.from_client(frame(HEADERS, END_HEADERS | END_STREAM, 1, trailers))
    assert rst_stream(1, PROTOCOL_ERROR) in b"".join(to_app)
    gate.from_client(frame(HEADERS, END_HEADERS | END_STREAM, 3, literal_block(CALL)))
    assert gate.calls.live(3)
