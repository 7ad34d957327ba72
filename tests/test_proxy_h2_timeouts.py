"""The timeouts of HTTP/2 and gRPC calls (h2_deadlines.py, h2_timer.py), on either side.

web's upstream listener (`protocol: grpc`) -> db's sidecar -> an h2c app, in
the test's loop, the calls between the sidecars on a mux stream or on a TLS
connection of their own. A call is timed where a limit is set: at db for its
local app (`local_request_timeout_ms`, `local_idle_timeout_ms`,
`idle_timeout_ms`), at web for its upstream (`request_timeout_ms`,
`request_idle_timeout_ms`, `idle_timeout_ms`). Clients are real: grpcio
for gRPC, python-hyper's `h2` on a socket for plain HTTP/2 and for watching
the connection end.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import time
from typing import Any

import grpc
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ConnectionTerminated, ResponseReceived, StreamEnded

from gossamer.proxy import h2_app
from gossamer.proxy.h2_balanced import Balanced
from gossamer.proxy.h2_frames import DATA, SETTINGS, frame
from gossamer.proxy.h2_relay import H2Relay
from gossamer.proxy.http_limits import Limits
from tests.harness.poll import eventually_async
from tests.test_proxy_grpc import BALANCED, MODES, _by_class, _Mesh, grpc_mesh

OFF = Limits(0.0, 0.0, 0.0)
MESSAGE = "upstream request timeout"  # the proxy's grpc-message (a client's own deadline differs)


def _mesh(mode: str, *, db: Limits = OFF, web: Limits = OFF, protocol: str = "grpc",
          hung: bool = False) -> contextlib.AbstractAsyncContextManager[_Mesh]:  # fmt: skip
    """web -> db -> an `_App` (`hung`: `_hung`), with only the limits a test sets."""
    return grpc_mesh(mode, db=db, web=web, protocol=protocol, serve=_hung if hung else None)


async def _hung(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An app that takes the connection, sends its SETTINGS (a gRPC client sends no call
    before them), and then nothing more: no answer, no ACK of anything."""
    writer.write(frame(SETTINGS, 0, 0, b""))
    with contextlib.suppress(OSError):
        while await reader.read(65536):
            pass
    writer.close()


def _limits(where: str, limits: Limits) -> dict[str, Limits]:
    return {where: limits}


TIMEOUTS = ("request_timeout", "idle_timeout", "client_idle")


def _events(mesh: _Mesh, where: str) -> dict[str, int]:
    """The timeout events counted where the limit is set (none counted on the other side)."""
    inbound, outbound = mesh.db.tally.snapshot(), mesh.web.tally.snapshot()
    if where == "web":
        inbound, outbound = outbound, inbound
    prefix, other = ("http.", "outbound.http.") if where == "db" else ("outbound.http.", "http.")
    assert not [name for name in TIMEOUTS if f"{other}{name}" in outbound]
    return {name: inbound[f"{prefix}{name}"] for name in TIMEOUTS if f"{prefix}{name}" in inbound}


async def _counted(mesh: _Mesh, db: dict[str, int], web: dict[str, int]) -> None:
    def check() -> bool:
        assert (_by_class(mesh.db.metrics.inbound("web")),
                _by_class(mesh.web.metrics.outbound("db"))) == (db, web)  # fmt: skip
        return True

    await eventually_async(check, 5)


def _unary(target: str, path: str, timeout: float) -> tuple[grpc.StatusCode, str, float]:
    """A grpcio unary call: its code, details and how long it took."""
    began = time.monotonic()
    with grpc.insecure_channel(target) as channel:
        try:
            channel.unary_unary(path)(b"q", timeout=timeout)
        except grpc.RpcError as error:
            failed: Any = error
            return failed.code(), failed.details(), time.monotonic() - began
    return grpc.StatusCode.OK, "", time.monotonic() - began


# Where the call runs out, who counts what: the side that times it out answers 504
# (DEADLINE_EXCEEDED, 5xx); when that is web, db saw its client reset the call: before any
# answer, no status ("none"); a gRPC answer under way, CANCELLED (499).
UNANSWERED = {"db": ({"5xx": 1}, {"5xx": 1}), "web": ({"none": 1}, {"5xx": 1})}
UNDER_WAY = {"db": ({"5xx": 1}, {"5xx": 1}), "web": ({"4xx": 1}, {"5xx": 1})}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("where", ["db", "web"])
async def test_a_call_not_answered_in_time_ends_with_deadline_exceeded(
    mode: str, where: str
) -> None:
    """A unary gRPC call the app never answers: past the request timeout the sidecar that
    times it (db for its app, web for its upstream) resets it at the app's side and answers
    DEADLINE_EXCEEDED, well before the client's own 20 s deadline. Counted 504 there, and
    as the timeout event."""
    async with _mesh(mode, **_limits(where, Limits(0.5, 0.0, 0.0))) as mesh:
        code, details, took = await asyncio.to_thread(_unary, mesh.target, "/t.T/Silent", 20)
        assert (code, details) == (grpc.StatusCode.DEADLINE_EXCEEDED, MESSAGE)
        assert 0.4 < took < 5, took
        await _counted(mesh, *UNANSWERED[where])
        assert _events(mesh, where) == {"request_timeout": 1}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("where", ["db", "web"])
async def test_a_call_answered_in_time_is_untouched(mode: str, where: str) -> None:
    """Limits that are not reached change nothing: the call's answer and its count."""
    async with _mesh(mode, **_limits(where, Limits(5.0, 5.0, 5.0))) as mesh:
        code, _, _ = await asyncio.to_thread(_unary, mesh.target, "/t.T/Fine", 10)
        assert code is grpc.StatusCode.OK
        await _counted(mesh, {"2xx": 1}, {"2xx": 1})
        assert _events(mesh, where) == {}


@pytest.mark.parametrize("mode", ["mux", f"mux{BALANCED}"])
async def test_with_the_limits_off_the_client_deadline_is_the_only_one(mode: str) -> None:
    """`0` turns the limits off: a call the app never answers waits for its client's own
    deadline (grpcio's "Deadline Exceeded", not the proxy's message)."""
    async with _mesh(mode) as mesh:
        code, details, took = await asyncio.to_thread(_unary, mesh.target, "/t.T/Silent", 1.0)
        assert code is grpc.StatusCode.DEADLINE_EXCEEDED
        assert details != MESSAGE and took >= 0.9


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("where", ["db", "web"])
async def test_a_stream_silent_past_the_idle_limit_is_ended(mode: str, where: str) -> None:
    """A server stream whose app sent its head and one message, then nothing: past the idle
    limit (no request timeout set) it ends with trailers DEADLINE_EXCEEDED after the message
    the client already read."""

    def watch(target: str) -> tuple[bytes, grpc.StatusCode, str]:
        with grpc.insecure_channel(target) as channel:
            answers = channel.unary_stream("/t.T/Watch")(b"q", timeout=20)
            first = next(answers)
            try:
                next(answers)
            except grpc.RpcError as error:
                failed: Any = error
                return first, failed.code(), failed.details()
            return first, grpc.StatusCode.OK, ""

    async with _mesh(mode, **_limits(where, Limits(0.0, 0.6, 0.0))) as mesh:
        got = await asyncio.to_thread(watch, mesh.target)
        assert got == (b"first", grpc.StatusCode.DEADLINE_EXCEEDED, MESSAGE)
        await _counted(mesh, *UNDER_WAY[where])
        assert _events(mesh, where) == {"idle_timeout": 1}


class _H2Client:
    """python-hyper's h2 on a socket to web's upstream listener."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.conn = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.events: list[Any] = []
        self.ended = False

    @classmethod
    async def to(cls, mesh: _Mesh) -> _H2Client:
        sock = socket.socket()
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(
            sock, ("127.0.0.1", mesh.web.upstream.bind_port)
        )
        client = cls(sock)
        await client.flush()
        return client

    async def flush(self) -> None:
        await asyncio.get_running_loop().sock_sendall(self.sock, self.conn.data_to_send())

    async def get(self, path: str) -> int:
        stream = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream, [(":method", "GET"), (":scheme", "http"),
                                        (":path", path), (":authority", "db")],
                               end_stream=True)  # fmt: skip
        await self.flush()
        return stream

    async def until(self, kind: type, within: float) -> Any:
        """The first event of `kind` (read on until it comes), or None when the connection
        ended first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            for event in self.events:
                if isinstance(event, kind):
                    return event
            if self.ended:
                return None
            data = await asyncio.wait_for(loop.sock_recv(self.sock, 65536),
                                          max(0.01, deadline - loop.time()))  # fmt: skip
            if not data:
                self.ended = True
                continue
            self.events += self.conn.receive_data(data)
            with contextlib.suppress(OSError):
                await self.flush()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("where", ["db", "web"])
async def test_a_plain_http2_call_that_runs_out_gets_504(mode: str, where: str) -> None:
    """A plain HTTP/2 request (not gRPC, to an `http2` service) the app never answers gets
    `504` with no body. (On a `grpc` upstream, web takes every call for gRPC's: it reads no
    request block.)"""
    async with _mesh(mode, **_limits(where, Limits(0.5, 0.0, 0.0)), protocol="http2") as mesh:
        client = await _H2Client.to(mesh)
        try:
            stream = await client.get("/Silent")
            head = await client.until(ResponseReceived, 5)
            assert head is not None and head.stream_id == stream
            assert dict(head.headers)[":status"] == "504"
            assert await client.until(StreamEnded, 5) is not None
        finally:
            client.sock.close()
        assert _events(mesh, where) == {"request_timeout": 1}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("where", ["db", "web"])
async def test_an_idle_connection_is_told_goaway_and_closed(mode: str, where: str) -> None:
    """A connection with no call open past the idle limit (`idle_timeout_ms`) is told GOAWAY
    and then closed; a call answered on it before is counted as it was.
    Balanced, the limit at db: db's limit is for db's connections, and the idle one is
    web's own to db (told GOAWAY and closed); the client's connection is web's, not db's to
    close: it stays, and its next call goes on a new connection to db."""
    async with _mesh(mode, **_limits(where, Limits(0.0, 0.0, 0.6))) as mesh:
        client = await _H2Client.to(mesh)
        try:
            await client.get("/plain")
            assert await client.until(StreamEnded, 5) is not None
            if mesh.balanced and where == "db":
                await _db_idle_under_balancing(mesh, client)
                return
            began = time.monotonic()
            away = await client.until(ConnectionTerminated, 5)
            assert away is not None and away.error_code == 0
            while not client.ended:
                await client.until(type(None), 5)  # (nothing is: read to the end)
            assert 0.5 < time.monotonic() - began < 3
        finally:
            client.sock.close()
        await _counted(mesh, {"2xx": 1}, {"2xx": 1})
        assert _events(mesh, where) == {"client_idle": 1}


async def _db_idle_under_balancing(mesh: _Mesh, client: _H2Client) -> None:
    """db's idle limit closes web's connection to it, not the client's to web."""
    await eventually_async(lambda: _events(mesh, "db") == {"client_idle": 1}, 5)
    balanced = [r for r in mesh.web.open if isinstance(r, Balanced)]
    await eventually_async(lambda: len(balanced) == 1 and not balanced[0].ups, 5)
    assert not client.ended
    assert not any(isinstance(e, ConnectionTerminated) for e in client.events)
    second = await client.get("/plain")
    loop = asyncio.get_running_loop()
    while not any(isinstance(e, StreamEnded) and e.stream_id == second for e in client.events):
        data = await asyncio.wait_for(loop.sock_recv(client.sock, 65536), 5)
        assert data, "the connection ended"
        client.events += client.conn.receive_data(data)
    await _counted(mesh, {"2xx": 2}, {"2xx": 2})


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("where", ["db", "web"])
async def test_a_call_to_a_hung_app_is_timed_from_its_first_bytes(mode: str, where: str) -> None:
    """The client's first bytes (preface and a whole call) come before the relay is joined,
    and are carried at the join: the call is timed all the same (it was not, found by a
    review: the client waited for its own deadline). The hung app never answers the PING
    behind the reset either, so its connection is cut a second later, the call told its
    end first (it got UNAVAILABLE, the connection's loss, found by a README walkthrough):
    DEADLINE_EXCEEDED long before the client's 20 s, counted 504 where it ran out.
    Balanced, timed at web: web ends the client's connection itself, so its answer waits
    for no PING (nothing of the app's can still be on its way to the client): at 0.5 s."""
    async with _mesh(mode, hung=True, **_limits(where, Limits(0.5, 0.0, 0.0))) as mesh:
        code, details, took = await asyncio.to_thread(_unary, mesh.target, "/t.T/Silent", 20)
        assert (code, details) == (grpc.StatusCode.DEADLINE_EXCEEDED, MESSAGE)
        if mesh.balanced and where == "web":
            assert 0.45 < took < 1.4, took
        else:
            assert 1.4 < took < 5, took
        edge = mesh.db.metrics.inbound("web") if where == "db" else mesh.web.metrics.outbound("db")
        await eventually_async(lambda: _by_class(edge) == {"5xx": 1}, 5)
        assert _events(mesh, where) == {"request_timeout": 1}


@pytest.mark.parametrize("mode", ["mux", f"mux{BALANCED}"])
@pytest.mark.parametrize("where", ["db", "web"])
async def test_a_call_whose_frame_is_still_coming_is_not_idle(mode: str, where: str) -> None:
    """A client that sends one 12 KiB DATA frame slowly (600 bytes every 0.1 s, 2 s in all,
    four times the idle limit) keeps its call: a frame under way is traffic (it was cut as
    idle, and the connection with it, found by a review)."""
    async with _mesh(mode, protocol="http2", **_limits(where, Limits(0.0, 0.5, 0.0))) as mesh:
        client = await _H2Client.to(mesh)
        loop = asyncio.get_running_loop()
        try:
            stream = client.conn.get_next_available_stream_id()
            head = [(":method", "POST"), (":scheme", "http"), (":path", "/plain"),
                    (":authority", "db")]  # fmt: skip
            client.conn.send_headers(stream, head)
            client.conn.send_data(stream, b"x" * 12288, end_stream=True)
            data = client.conn.data_to_send()
            for at in range(0, len(data), 600):
                await loop.sock_sendall(client.sock, data[at : at + 600])
                await asyncio.sleep(0.1)  # (the client's pace: what is tested)
            head = await client.until(ResponseReceived, 5)
            assert head is not None and dict(head.headers)[":status"] == "200"
        finally:
            client.sock.close()
        assert _events(mesh, where) == {}


@pytest.mark.parametrize("mode", MODES)
async def test_a_timed_connection_is_freed_without_the_cycle_collector(mode: str) -> None:
    """A relay and its calls' timer referred to each other: compiled (mypyc), the collector
    frees no such cycle (test_proxy_http_cycles.py), so every HTTP/2 connection with a limit
    (all of them, by default) and its sides and TLS buffers stayed. The relay lets go of its
    timer when it closes; with the collector off, gate and follower relays go once done."""
    async with _mesh(mode, db=Limits(5.0, 5.0, 5.0), web=Limits(5.0, 5.0, 5.0)) as mesh:
        gc.collect()
        before = {id(o) for o in gc.get_objects() if isinstance(o, H2Relay)}  # other tests'
        gc.disable()
        try:
            for _ in range(3):
                code, _, _ = await asyncio.to_thread(_unary, mesh.target, "/t.T/Fine", 10)
                assert code is grpc.StatusCode.OK
            await eventually_async(lambda: not mesh.web.open and not mesh.db.open, 5)

            def left() -> list[str]:
                return [type(o).__name__ for o in gc.get_objects()
                        if isinstance(o, H2Relay) and id(o) not in before]  # fmt: skip

            await eventually_async(lambda: left() == [], 5)
        finally:
            gc.enable()


async def test_a_client_stuck_in_a_frame_past_the_waiting_bound_loses_the_connection(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """web's follower puts each cut's reset between the client's frames; a client stuck inside
    one holds them back. Past `MAX_WAITING` of them (made small here: one per timer look,
    each call running out on its own) the connection goes, with a warning. It raised out of
    the timer's callback instead (found by a re-read): the loop logged the error and the
    later calls were never cut."""
    monkeypatch.setattr(h2_app, "MAX_WAITING", 3)
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        async with _mesh("mux", protocol="http2", web=Limits(0.5, 0.0, 0.0)) as mesh:
            client = await _H2Client.to(mesh)
            try:
                stuck = client.conn.get_next_available_stream_id()
                head = [(":method", "POST"), (":scheme", "http"), (":path", "/Silent"),
                        (":authority", "db")]  # fmt: skip
                client.conn.send_headers(stuck, head)
                for _ in range(6):
                    await client.get("/Silent")
                    await asyncio.sleep(0.05)  # (the client's pace: each call's own deadline)
                # a DATA frame of 100 bytes on the open stream, of which 10 come
                await loop.sock_sendall(client.sock, frame(DATA, 0, stuck, b"x" * 100)[:19])
                while not client.ended:
                    await client.until(type(None), 5)
            finally:
                client.sock.close()
        assert errors == []
        assert "HTTP/2 connection closed: over 3 answers wait" in caplog.text
    finally:
        loop.set_exception_handler(None)
