"""What the HTTP path passes back: answers framed as the client will read them, in order.

Against the raw app of tests/raw_app.py (its `canned` answers are the
test's own bytes), through both paths of test_proxy_http_raw.py: `sw-l4`
(the app's sidecar parses) and `sw-http` (both sidecars parse, over a
pooled mTLS connection). A client reads an answer by its framing, so a
stray byte, or a body framed otherwise than it came, corrupts every answer
after it on that connection.
"""

from __future__ import annotations

import contextlib
import select
import socket
from collections.abc import Iterator

import pytest

from tests.proxy_support import read_until
from tests.raw_app import RawApp
from tests.test_proxy_http import mesh
from tests.test_proxy_http_raw import _whole, switching

__all__ = ["mesh", "switching"]  # the fixtures, imported for pytest

Switching = tuple[RawApp, dict[str, tuple[str, int]]]
CLIENTS = pytest.mark.parametrize("client", ["sw-l4", "sw-http"])


@pytest.fixture
def canned(switching: Switching) -> Iterator[RawApp]:
    app = switching[0]
    yield app
    app.canned.clear()


def _get(path: bytes) -> bytes:
    return b"GET /public/" + path + b" HTTP/1.1\r\nHost: s\r\n\r\n"


@CLIENTS
def test_a_204_or_304_ends_at_its_head_whatever_its_framing_says(
    switching: Switching, canned: RawApp, client: str
) -> None:
    """RFC 9112 §6.3: a 204 or 304 has no body, even one that says it is chunked (a 304 may
    carry the Transfer-Encoding a 200 would have had); a last chunk after it would be read
    as the start of the next answer."""
    chunked = b"Transfer-Encoding: chunked\r\n\r\n"
    canned.canned["304"] = b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n' + chunked
    canned.canned["204"] = b"HTTP/1.1 204 No Content\r\n" + chunked
    with socket.create_connection(switching[1][client], timeout=10) as s:
        s.sendall(_get(b"canned/304") + _get(b"canned/204") + _get(b"after"))
        got = read_until(s, lambda got: _whole(got) >= 3)
    answers = got.split(b"HTTP/1.1 ")[1:]
    assert [a[:3] for a in answers] == [b"304", b"204", b"200"], got
    assert answers[0].endswith(b"chunked\r\n\r\n") and answers[1].endswith(b"chunked\r\n\r\n")


@CLIENTS
def test_a_body_whose_last_coding_is_not_chunked_is_read_to_the_close(
    switching: Switching, canned: RawApp, client: str
) -> None:
    """`Transfer-Encoding: chunked, gzip` on an answer: its body is not chunked (the last
    coding frames it) and ends when the app closes (RFC 9112 §6.3): passed as it came."""
    canned.canned["close-gzip"] = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
                                   b"GZIPDATA")  # fmt: skip
    with socket.create_connection(switching[1][client], timeout=10) as s:
        s.sendall(_get(b"canned/close-gzip"))
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"\r\n\r\nGZIPDATA"), got


@CLIENTS
def test_bytes_after_a_whole_answer_cost_the_app_connection_not_the_client(
    switching: Switching, canned: RawApp, client: str
) -> None:
    """An app that writes a byte past its answer, in the same write: the answer goes to the
    client whole, the app connection is dropped, and the client's connection serves on."""
    canned.canned["stray"] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokX"
    with socket.create_connection(switching[1][client], timeout=10) as s:
        s.sendall(_get(b"canned/stray"))
        got = read_until(s, lambda got: got.endswith(b"\r\n\r\nok"))
        assert got.startswith(b"HTTP/1.1 200 "), got
        s.sendall(_get(b"after"))
        again = read_until(s, lambda got: _whole(got) >= 1)
        assert again.startswith(b"HTTP/1.1 200 "), again


@CLIENTS
@pytest.mark.parametrize("bad", [b"BAD\0REQUEST\r\n\r\n", b"GET /public/x HTTP/1.1\r\nHost"])
def test_a_bad_request_behind_a_good_one_is_answered_after_it(
    switching: Switching, client: str, bad: bytes
) -> None:
    """Pipelined: a good request (at the app already), then a malformed one, or the start of
    one and the client's end. The good one gets the app's answer; the bad one its 400, then
    the connection closes. Answering 400 in place of the first would pass it off as that
    request's answer, though the app acted on it (nginx answers both, in order)."""
    app, addresses = switching
    heads = len(app.heads)
    with socket.create_connection(addresses[client], timeout=10) as s:
        s.sendall(b"POST /public/pay HTTP/1.1\r\nHost: s\r\nContent-Length: 2\r\n\r\nhi" + bad)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    assert got.startswith(b"HTTP/1.1 200 "), got
    assert b"POST /public/pay HTTP/1.1" in got  # the app's own answer to it
    assert got.count(b"HTTP/1.1 400 ") == 1 and got.index(b"HTTP/1.1 400 ") > 0, got
    assert app.heads[heads].startswith(b"POST /public/pay ")


@CLIENTS
def test_a_flood_of_denied_requests_waits_for_its_reader_and_cuts_no_one_else(
    switching: Switching, client: str
) -> None:
    """A client pipelines denied requests and reads none of the answers. Its 403s are
    written by the app's sidecar itself: it must stop reading that client while they wait,
    or its buffers grow without bound and, on a stream of the connection its peer sidecar
    shares, overrun the stream's credit, which cuts every other client on it (here, one
    with a keep-alive connection from before)."""
    addresses = switching[1]
    request = b"GET /admin HTTP/1.1\r\nHost: s\r\n\r\n"
    with (
        socket.create_connection(addresses[client], timeout=10) as other,
        socket.create_connection(addresses[client], timeout=10) as flood,
    ):
        other.sendall(_get(b"one"))
        assert read_until(other, lambda got: _whole(got) >= 1).startswith(b"HTTP/1.1 200 ")
        flood.setblocking(False)
        batch, sent = request * 2000, 0
        while sent < 200 * len(batch):  # until nothing more is taken for a second
            if not select.select([], [flood], [], 1.0)[1]:
                break
            with contextlib.suppress(BlockingIOError):
                sent += flood.send(batch)
        assert sent < 200 * len(batch), "all taken: nothing held the flood back"
        other.sendall(_get(b"two"))
        got = read_until(other, lambda got: _whole(got) >= 1)
        assert got.startswith(b"HTTP/1.1 200 "), got
        flood.setblocking(True)
        flood.settimeout(30)
        answers, got = sent // len(request), b""
        while got.count(b"RBAC: access denied") < answers:
            chunk = flood.recv(1 << 20)
            assert chunk, f"cut after {got.count(b'HTTP/1.1 403 ')} of {answers} answers"
            got += chunk
        assert got.count(b"HTTP/1.1 403 ") == answers


@CLIENTS
@pytest.mark.parametrize(
    "answer",
    [
        # a 1xx ends at its head (RFC 9110 §15.2): one that says a body follows is garbage,
        # not a body to pass on, which a client would read as the next answer
        b"104 Odd\r\nContent-Length: 5\r\n\r\nHTTP/HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"099 Odd\r\nContent-Length: 0\r\n\r\n",  # outside 100-599: no client knows it
        b"600 Odd\r\nContent-Length: 0\r\n\r\n",
        b"1000 Odd\r\nContent-Length: 0\r\n\r\n",
    ],
)
def test_an_answer_no_client_can_read_is_a_502(
    switching: Switching, canned: RawApp, client: str, answer: bytes
) -> None:
    canned.canned["close-odd"] = b"HTTP/1.1 " + answer
    with socket.create_connection(switching[1][client], timeout=10) as s:
        s.sendall(_get(b"canned/close-odd"))
        got = read_until(s, lambda got: b"\r\n\r\n" in got)
    assert got.startswith(b"HTTP/1.1 502 "), got


@CLIENTS
def test_an_apps_close_is_not_said_to_a_client_whose_connection_stays(
    switching: Switching, canned: RawApp, client: str
) -> None:
    """`Connection` and the fields it names are the hop's (RFC 9110 §7.6.1): an app that
    closes its connection after an answer ends that hop only; the client's connection goes
    on, so it is not told `close` (nor given the hop's own fields)."""
    hop = b"Connection: close, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n"
    canned.canned["close-hop"] = b"HTTP/1.1 200 OK\r\n" + hop + b"Content-Length: 2\r\n\r\nok"
    with socket.create_connection(switching[1][client], timeout=10) as s:
        s.sendall(_get(b"canned/close-hop"))
        got = read_until(s, lambda got: _whole(got) >= 1)
        head = got.split(b"\r\n\r\n", 1)[0].lower()
        assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"\r\n\r\nok"), got
        assert b"\r\nconnection:" not in head and b"x-hop" not in head, head
        assert b"keep-alive" not in head, head
        s.sendall(_get(b"after"))  # and it is served on
        assert read_until(s, lambda got: _whole(got) >= 1).startswith(b"HTTP/1.1 200 ")


@CLIENTS
def test_a_callers_name_in_request_trailers_never_reaches_the_app(
    switching: Switching, client: str
) -> None:
    """No client can name a caller to the app: a forged X-Forwarded-Client-Cert is dropped
    from the head (test_proxy_http_raw.py), and from the trailer fields after a chunked body
    too (the raw app answers with the body as it came, trailer fields and all)."""
    with socket.create_connection(switching[1][client], timeout=10) as s:
        forged = b"X-Forwarded-Client-Cert: By=forged\r\n"
        s.sendall(b"POST /public/up HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"3\r\nabc\r\n0\r\n" + forged + b"X-Sum: 3\r\n\r\n")  # fmt: skip
        got = read_until(s, lambda got: got.endswith(b"\r\n\r\n") and _whole(got) >= 1)
    assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"0\r\nX-Sum: 3\r\n\r\n"), got
    assert b"forged" not in got.lower(), got
