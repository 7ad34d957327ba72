"""Well-behaved HTTP/1 traffic through both HTTP sidecars keeps its app connections.

web's HTTP upstream listener -> pooled mTLS -> db's HTTP inbound -> an
app (tests/http_pair.py, both sidecars in this process). The app is a
tiny keep-alive server that behaves as nginx does: an HTTP/1.0 request
keeps the connection only when it says `Connection: keep-alive` (and the
answer says so back), a HEAD answer is its head alone. It counts the
connections it accepted, so a test can tell a connection reused from one
opened per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.http_pair import http_pair

# An answer whose bytes must reach the client as they are: an interim 103, then a head whose
# fields repeat, interleave and vary in case, with the app's own Date and Server.
EXACT = (
    b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
    b"HTTP/1.1 200 Fine Thanks\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nServer: app/1\r\n"
    b"Set-Cookie: a=1\r\nX-Mixed-Case: Yes\r\nSet-Cookie: b=2; Path=/\r\nVary: Accept\r\n"
    b"vary: Accept-Encoding\r\nset-cookie: c=3\r\nContent-Encoding: gzip\r\n"
    b"Transfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
    b"4\r\n\x1f\x8b\x08\x00\r\n0\r\nX-Sum: 42\r\n\r\n"
)


class App:
    """The keep-alive app (module docstring); `connections`: how many it accepted."""

    def __init__(self) -> None:
        self.connections = 0
        self.heads: list[bytes] = []  # each request's head, lower-cased
        self.go = asyncio.Event()  # `/drip` sends its second event once this is set

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).lower()
                self.heads.append(head)
                line = head.split(b"\r\n", 1)[0]
                http10 = line.endswith(b"http/1.0")
                keep = (
                    b"connection: keep-alive" in head
                    if http10
                    else b"connection: close" not in head
                )
                if b" /drip " in line:  # server-sent events: the second waits for the test
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n9\r\ndata: 1\n\n\r\n"
                    )
                    await writer.drain()
                    await self.go.wait()
                    writer.write(b"9\r\ndata: 2\n\n\r\n0\r\n\r\n")
                    await writer.drain()
                    continue
                if b" /exact " in line:
                    writer.write(EXACT)
                    await writer.drain()
                    continue
                framing = (
                    b"transfer-encoding: chunked" if b" /chunked " in line else b"content-length: 2"
                )
                answer = b"HTTP/1.1 200 OK\r\n%s\r\n" % framing
                if line.startswith(b"head /bare "):  # no length (Go's net/http, a HEAD
                    answer = b"HTTP/1.1 200 OK\r\nX-A: 1\r\n"  # its handler wrote no body to)
                if http10:
                    answer += b"Connection: keep-alive\r\n" if keep else b"Connection: close\r\n"
                answer += b"\r\n"
                if not line.startswith(b"head ") or b" /rude " in line:  # (a body to HEAD)
                    answer += b"2\r\nok\r\n0\r\n\r\n" if b"chunked" in framing else b"ok"
                writer.write(answer)
                await writer.drain()
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


@pytest.fixture(params=["http", "tcp"])
async def mesh(request: pytest.FixtureRequest) -> AsyncIterator[tuple[App, int]]:
    """(the app, web's upstream port): web's upstream parses HTTP too, or passes bytes."""
    app = App()
    async with http_pair(app.serve, web_protocol=request.param) as (web, _):
        yield app, web.upstream.bind_port


async def _answer(reader: asyncio.StreamReader, head_only: bool = False) -> bytes:
    """One answer: its head, and its body of 2 bytes (chunked or not) unless `head_only`."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    if head_only:
        return head
    if b"chunked" in head.lower():
        return head + await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 5)
    return head + await asyncio.wait_for(reader.readexactly(2), 5)


async def test_an_http10_keep_alive_client_keeps_one_app_connection(
    mesh: tuple[App, int],
) -> None:
    """An HTTP/1.0 client that says `Connection: keep-alive` (curl --http1.0, ab -k): its
    requests share one app connection, and each answer says keep-alive back, which an
    HTTP/1.0 client needs to keep its connection. web's sidecar took the keep-alive away
    with the other hop-by-hop fields on its hop to db's: db's then closed that hop after each
    answer and sent the request to the app as one that closes, so the app closed too and
    every request cost a new app connection."""
    app, port = mesh
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for i in range(3):
            writer.write(b"GET /%d HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" % i)
            answer = await _answer(reader)
            assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"ok"), answer
            assert b"connection: keep-alive" in answer.lower(), answer
    finally:
        writer.close()
    assert app.connections == 1


async def test_an_http10_request_that_closes_is_answered_so(mesh: tuple[App, int]) -> None:
    """An HTTP/1.0 request without keep-alive: answered without keep-alive, then its
    connection ends; the app is not asked for a keep-alive the client did not ask for (an
    app that streams an answer to HTTP/1.0 ends it by its close; aiohttp, asked to keep
    alive, never ends it)."""
    app, port = mesh
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /x HTTP/1.0\r\n\r\n")
        got = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    assert got.startswith(b"HTTP/1.1 200") and got.endswith(b"\r\n\r\nok"), got
    assert b"keep-alive" not in got.lower()  # (the read ended: the connection did)
    assert app.heads[-1].startswith(b"get /x http/1.0") and b"keep-alive" not in app.heads[-1]


async def test_head_answers_keep_the_app_connection(mesh: tuple[App, int]) -> None:
    """HEAD of a resource with a Content-Length and of a chunked one, then a GET, on one
    client connection: one app connection serves them all. Each HEAD answer cost its app
    connection (the parser could not be told no body follows, so the connection was
    dropped): HEAD health checks opened an app connection each."""
    app, port = mesh
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for path in (b"/length", b"/chunked", b"/length", b"/chunked"):
            writer.write(b"HEAD %s HTTP/1.1\r\nHost: db\r\n\r\n" % path)
            head = await _answer(reader, head_only=True)
            assert head.startswith(b"HTTP/1.1 200"), head
        writer.write(b"GET /chunked HTTP/1.1\r\nHost: db\r\n\r\n")
        assert (await _answer(reader)).endswith(b"\r\n\r\n2\r\nok\r\n0\r\n\r\n")
        writer.write(b"GET /length HTTP/1.1\r\nHost: db\r\n\r\n")
        assert (await _answer(reader)).endswith(b"\r\n\r\nok")
    finally:
        writer.close()
    assert app.connections == 1


async def test_a_body_after_a_head_answer_costs_the_app_connection_only(
    mesh: tuple[App, int],
) -> None:
    """An app that writes a body after its HEAD answer's head, in the same write: the client
    gets the head alone, the bytes after it go with that app connection, and the next
    request is answered whole on a new one (never those bytes taken for its answer)."""
    app, port = mesh
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"HEAD /rude HTTP/1.1\r\nHost: db\r\n\r\n")
        head = await _answer(reader, head_only=True)
        assert head.startswith(b"HTTP/1.1 200"), head
        writer.write(b"GET /length HTTP/1.1\r\nHost: db\r\n\r\n")
        assert (await _answer(reader)).startswith(b"HTTP/1.1 200 OK\r\n")
        writer.write(b"GET /chunked HTTP/1.1\r\nHost: db\r\n\r\n")
        assert (await _answer(reader)).endswith(b"\r\n\r\n2\r\nok\r\n0\r\n\r\n")
    finally:
        writer.close()
    assert app.connections == 2


async def test_an_answer_reaches_the_client_byte_for_byte(mesh: tuple[App, int]) -> None:
    """A 103 before the answer, repeated Set-Cookie and Vary fields in their order and case,
    the app's Date and Server (none added), a Content-Encoding left alone, a chunked body
    with its trailer: the same bytes reach the client, and its connection serves on."""
    _, port = mesh
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(2):
            writer.write(b"GET /exact HTTP/1.1\r\nHost: db\r\n\r\n")
            got = await asyncio.wait_for(reader.readuntil(b"X-Sum: 42\r\n\r\n"), 5)
            assert got == EXACT
    finally:
        writer.close()


async def test_each_server_sent_event_reaches_the_client_as_it_is_sent(
    mesh: tuple[App, int],
) -> None:
    """A chunked event stream: its first event reaches the client while the app still holds
    the second (nothing waits to fill a buffer), then the second and the end."""
    app, port = mesh
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /drip HTTP/1.1\r\nHost: db\r\n\r\n")
        first = await asyncio.wait_for(reader.readuntil(b"data: 1\n\n\r\n"), 5)
        assert first.startswith(b"HTTP/1.1 200 OK\r\n")
        app.go.set()
        rest = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 5)
        assert rest == b"9\r\ndata: 2\n\n\r\n0\r\n\r\n"
    finally:
        writer.close()


async def test_a_head_answer_without_a_length_keeps_the_app_connection(
    mesh: tuple[App, int],
) -> None:
    """An answer to HEAD with neither Content-Length nor chunked (Go's net/http when the
    handler wrote no body) is whole at its head, and keeps its connection as HTTP/1.1 does:
    llhttp, not told the request was HEAD, reads such an answer as one that runs to the
    close, so each cost its app connection."""
    app, port = mesh
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(3):
            writer.write(b"HEAD /bare HTTP/1.1\r\nHost: db\r\n\r\n")
            head = await _answer(reader, head_only=True)
            assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"X-A: 1\r\n\r\n"), head
        writer.write(b"GET /length HTTP/1.1\r\nHost: db\r\n\r\n")
        assert (await _answer(reader)).endswith(b"\r\n\r\nok")
    finally:
        writer.close()
    assert app.connections == 1
