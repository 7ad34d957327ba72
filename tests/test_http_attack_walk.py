"""The HTTP/1 path as an attacker walks it: raw bytes from a client and from the app.

Through both paths of test_proxy_http_raw.py (`sw-l4`: the app's sidecar
parses; `sw-http`: both sidecars parse, over a pooled mTLS connection) to
the raw app of tests/raw_app.py. A request the proxy could frame otherwise
than the app (an obfuscated Transfer-Encoding, a chunk size with a sign, a
prefix or spaces, bare CR or LF line ends, NUL, a Content-Length with a
sign or listed twice, HTTP/0.9, /1.2 and /2.0 request lines) is refused and
nothing after it on that connection is read; what the app answers out of
framing (a body on HEAD, a garbage status line, conflicting framing, an
answer with no length) costs its own connection and no later request's
answer. A Connection field never names, to the app, the framing the body
goes on with nor the caller's name the sidecar adds.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import pytest

from gossamer.proxy import http_codec as codec
from gossamer.proxy import http_target
from tests.proxy_support import read_until
from tests.raw_app import RawApp
from tests.test_proxy_http import mesh
from tests.test_proxy_http_codec import flat
from tests.test_proxy_http_raw import _whole, switching

__all__ = ["mesh", "switching"]  # the fixtures, imported for pytest

Switching = tuple[RawApp, dict[str, tuple[str, int]]]
CLIENTS = pytest.mark.parametrize("client", ["sw-l4", "sw-http"])
_AFTER = b"GET /public/after HTTP/1.1\r\nHost: s\r\n\r\n"
_POST = b"POST /public/a HTTP/1.1\r\nHost: s\r\n"
_TE = b"Transfer-Encoding: chunked\r\n\r\n"


@pytest.fixture
def canned(switching: Switching) -> Iterator[RawApp]:
    app = switching[0]
    yield app
    app.canned.clear()


def _answers(address: tuple[str, int], raw: bytes, count: int) -> list[bytes]:
    """The status lines of the first `count` answers to `raw`, sent in one write."""
    with socket.create_connection(address, timeout=10) as s:
        s.sendall(raw)
        got = read_until(s, lambda got: _whole(got) >= count)
    return [answer.split(b"\r\n", 1)[0] for answer in got.split(b"HTTP/1.1 ")[1:]][:count]


def _refused_then_closed(address: tuple[str, int], raw: bytes) -> bytes:
    """The status of the one answer to `raw` + a request after it, which must not be read."""
    with socket.create_connection(address, timeout=10) as s:
        s.sendall(raw + _AFTER)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    assert got.count(b"HTTP/1.1 ") == 1, got
    return got[9:12]


@CLIENTS
@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (_POST + b"Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", b"400"),
        (_POST + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", b"400"),
        (_POST + b"Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n", b"400"),
        (_POST + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", b"400"),
        (_POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n", b"400"),
        (_POST + b"Content-Length: 6\r\n" + _TE + b"0\r\n\r\nG", b"400"),
        (_POST + _TE + b"+5\r\nhello\r\n0\r\n\r\n", b"400"),
        (_POST + _TE + b"0x5\r\nhello\r\n0\r\n\r\n", b"400"),
        (_POST + _TE + b" 5\r\nhello\r\n0\r\n\r\n", b"400"),
        (_POST + _TE + b"fffffffffffffffff5\r\nhello\r\n0\r\n\r\n", b"400"),
        (_POST + _TE + b"5;a\nb\r\nhello\r\n0\r\n\r\n", b"400"),
        (_POST + _TE + b"5\nhello\n0\n\n", b"400"),
        (b"GET /public/a HTTP/1.1\nHost: s\n\n", b"400"),
        (b"GET /public/a HTTP/1.1\rHost: s\r\r", b"400"),
        (b"GET /public/a HTTP/1.1\r\nHost: s\r\nX-A: a\x00b\r\n\r\n", b"400"),
        (b"GET /public/a HTTP/1.1\r\nHost: s\r\nX-A: a\rb\r\n\r\n", b"400"),
        (b"GET /public/a HTTP/1.1\r\nHost: s\r\n admin\r\n\r\n", b"400"),  # folded
        (b"GET /public/a HTTP/1.1\r\nHost : admin\r\n\r\n", b"400"),
        (_POST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", b"400"),
        (_POST + b"Content-Length: 5, 5\r\n\r\nhello", b"400"),
        (_POST + b"Content-Length: +5\r\n\r\nhello", b"400"),
        (b"GET /public/a HTTP/1.2\r\nHost: s\r\n\r\n", b"400"),
        (b"GET /public/a HTTP/2.0\r\nHost: s\r\n\r\n", b"400"),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"400"),
        (b"POST /public/a HTTP/1.0\r\nHost: s\r\n" + _TE + b"0\r\n\r\n", b"400"),
    ],
)  # fmt: skip
def test_a_request_framed_two_ways_is_refused_and_nothing_after_it_read(
    switching: Switching, client: str, raw: bytes, status: bytes
) -> None:
    """Stricter than RFC 9112 lets a server be (it may take duplicate equal lengths, or a
    bare LF), as Envoy and HAProxy are: a smuggler's request is one some hop reads another
    way. A body refused part way may leave its head at the app (the head went on before the
    body was read, as Envoy's does); that request is cut there, and nothing after it goes."""
    app, addresses = switching
    assert _refused_then_closed(addresses[client], raw) == status
    assert _answers(addresses[client], _AFTER, 1) == [b"200 OK"]  # the path still flows
    assert not any(b"GET /public/after " in head for head in app.tunneled)


@CLIENTS
@pytest.mark.parametrize(
    "named",
    [
        b"X-Forwarded-Client-Cert",
        b"keep-alive, x_forwarded_client_cert",
        b"Content-Length",
        b"Content-Length, X-Forwarded-Client-Cert",
    ],
)
def test_no_connection_field_names_the_callers_name_or_the_framing_to_the_app(
    switching: Switching, client: str, named: bytes
) -> None:
    """A client's `Connection: X-Forwarded-Client-Cert` reached the app next to the caller's
    name its sidecar added (the L4 path, where Connection goes on to the app): the app, or a
    proxy in front of it, drops a field Connection names, and with it who called (as
    `Connection: Content-Length` drops the framing of the body that goes on)."""
    app, addresses = switching
    heads = len(app.heads)
    raw = _POST + b"Connection: " + named + b"\r\nContent-Length: 5\r\n\r\nhello" + _AFTER
    assert _answers(addresses[client], raw, 2) == [b"200 OK", b"200 OK"]
    first, after = app.heads[heads:]
    assert after.startswith(b"GET /public/after ")
    lines = first.lower().split(b"\r\n")[1:]
    for line in lines:
        if line.startswith(b"connection:"):
            tokens = {t.strip() for t in line.split(b":", 1)[1].split(b",")}
            assert not tokens & codec.NEVER_HOP, line
    assert sum(line.startswith(b"x-forwarded-client-cert: by=spiffe://") for line in lines) == 1
    assert b"content-length: 5" in lines


@pytest.mark.parametrize(
    ("connection", "left"),
    [
        (b"X-Forwarded-Client-Cert", None),
        (b"keep-alive, X_Forwarded_Client_Cert", b"keep-alive"),
        (b"Upgrade, content-length ,HOST", b"Upgrade"),
        (b"keep-alive", b"keep-alive"),
    ],
)
def test_a_connection_field_is_left_naming_only_what_may_go(
    connection: bytes, left: bytes | None
) -> None:
    head = flat((b"Host", b"s"), (b"Connection", connection), (b"X-A", b"1"))
    kept = codec.pairs(codec.connection_unnaming(head, codec.NEVER_HOP))
    assert kept == [(b"Host", b"s"), *([(b"Connection", left)] if left else []), (b"X-A", b"1")]
    if left == connection:
        assert codec.connection_unnaming(head, codec.NEVER_HOP) is head


_GOOD = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@CLIENTS
@pytest.mark.parametrize(
    ("answer", "method"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + _TE + b"0\r\n\r\n", b"GET"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nokk", b"GET"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", b"GET"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+2\r\nok\r\n0\r\n\r\n", b"GET"),
        (b"HTTX/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b"GET"),
        (b"HTTP/1.1 2000 OK\r\nContent-Length: 2\r\n\r\nok", b"GET"),
        (b"garbage\r\n\r\n", b"GET"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + _GOOD, b"HEAD"),
    ],
)  # fmt: skip
def test_an_answer_out_of_framing_costs_only_the_apps_connection(
    switching: Switching, canned: RawApp, client: str, answer: bytes, method: bytes
) -> None:
    """Each is a 502, or a cut once the answer began (a HEAD's answer passes, its body
    never: RFC 9112 §6.3), and the
    request after it, on this client connection or another, gets its own answer."""
    canned.canned["bad"] = answer
    addresses = switching[1]
    first = method + b" /public/canned/bad HTTP/1.1\r\nHost: s\r\n\r\n"
    with socket.create_connection(addresses[client], timeout=10) as s:
        s.sendall(first)
        got = read_until(s, lambda got: b"\r\n\r\n" in got)
        if method == b"HEAD":  # its head, then the next answer: the app's body never
            s.sendall(_AFTER)
            got = got + read_until(s, lambda more: b"GET /public/after " in got + more)
            head, rest = got.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 200 ") and rest.startswith(b"HTTP/1.1 200 "), got
            return
        if got.startswith(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"):
            with contextlib.suppress(ConnectionResetError):  # the answer began: it is cut
                while chunk := s.recv(65536):
                    got += chunk
            assert not got.endswith(b"0\r\n\r\n"), got
        else:
            assert got.startswith(b"HTTP/1.1 502 "), got[:200]
    assert _answers(addresses[client], _AFTER, 1) == [b"200 OK"]


@pytest.mark.parametrize(
    ("host", "valid"),
    [
        (b"s", True),
        (b"", True),
        (b"db.internal:8080", True),
        (b"my_svc", True),
        (b"[::1]:80", True),
        (b"10.0.0.1", True),
        (b"s/admin", False),
        (b"s@admin", False),
        (b"a b", False),
        (b"s:abc", False),
        (b"s\\admin", False),
        (b"s?x", False),
        (b"s#x", False),
        (b"[::1", False),
    ],
)
def test_a_host_is_a_host_and_a_port(host: bytes, valid: bool) -> None:
    assert http_target.valid_host(host) is valid


@CLIENTS
@pytest.mark.parametrize(
    "raw",
    [
        b"GET /public/a HTTP/1.1\r\nHost: s/admin\r\n\r\n",
        b"GET /public/a HTTP/1.1\r\nHost: s@admin\r\n\r\n",
        b"GET /public/a HTTP/1.1\r\nHost: a b\r\n\r\n",
        b"GET /public/a HTTP/1.1\r\nHost: s:abc\r\n\r\n",
        b"GET /public/a HTTP/1.0\r\nHost: s\\admin\r\n\r\n",
        b"GET http://s:abc/public/a HTTP/1.1\r\nHost: s\r\n\r\n",
    ],
)
def test_a_host_that_is_no_host_never_reaches_the_app(
    switching: Switching, client: str, raw: bytes
) -> None:
    """It went on as it came: an app (or a proxy in front of it) that routes by Host splits
    `s/admin` or `s@admin` its own way, after the rules judged the request as for `s`.
    nginx answers 400 ("client sent invalid host header"), as the proxy now does."""
    app, addresses = switching
    heads = len(app.heads)
    assert _refused_then_closed(addresses[client], raw) == b"400"
    assert app.heads[heads:] == []


@CLIENTS
@pytest.mark.parametrize(
    "forged",
    [
        b"x-FORWARDED-client-CERT: By=evil\r\nX-Forwarded-Client-Cert: URI=evil\r\n",
        b"X_Forwarded_Client_Cert: URI=evil\r\nX-Forwarded_Client-Cert: URI=evil\r\n",
        b"X-A: 1\r\nX-Forwarded-Client-Cert:\r\n URI=evil\r\n",  # folded: refused
    ],
)
def test_only_the_sidecars_caller_name_reaches_the_app(
    switching: Switching, client: str, forged: bytes
) -> None:
    """Several copies of a client's own, in any case or spelling, are all dropped (a folded
    one is refused: obs-fold gets 400, RFC 9112 §5.2), and the sidecar's is the only one."""
    app, addresses = switching
    heads = len(app.heads)
    raw = b"GET /public/who HTTP/1.1\r\nHost: s\r\n" + forged + b"\r\n"
    if b"\r\n " in forged:
        assert _refused_then_closed(addresses[client], raw) == b"400"
        assert app.heads[heads:] == []
        return
    assert _answers(addresses[client], raw, 1) == [b"200 OK"]
    (head,) = app.heads[heads:]
    named = [line for line in head.lower().split(b"\r\n")
             if line.replace(b"_", b"-").startswith(b"x-forwarded-client-cert:")]  # fmt: skip
    assert len(named) == 1 and b"evil" not in named[0], named
    assert named[0].endswith(b"/svc/" + client.encode())
