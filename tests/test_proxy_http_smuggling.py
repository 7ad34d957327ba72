"""Faults an adversarial walk through the HTTP/1.1 path found, against the raw app.

The mesh and clients are test_proxy_http_raw.py's (`switching`: the raw app
behind an `http` sidecar, `sw-l4` an L4 upstream of it, `sw-http` an HTTP
one over pooled mTLS connections, each allowed paths under /public only).
Each test is one way a request or an answer could be read one way by one
hop and another way by the next.
"""

from __future__ import annotations

import socket

import httptools
import pytest

from gossamer.proxy import http_codec as codec
from gossamer.proxy.http_request import body_framing
from gossamer.proxy.http_target import BadTarget, normal_path, normalize
from tests.proxy_support import read_until
from tests.raw_app import RawApp
from tests.test_proxy_http import mesh
from tests.test_proxy_http_codec import flat
from tests.test_proxy_http_raw import _whole, switching

__all__ = ["mesh", "switching"]  # the fixtures, imported for pytest

Clients = tuple[RawApp, dict[str, tuple[str, int]]]


@pytest.mark.parametrize(
    ("connection", "kept"),
    [
        (b"close", [b"Host", b"Content-Length", b"X-A"]),
        (b"Content-Length", [b"Host", b"Content-Length", b"X-A"]),
        (b"keep-alive, transfer-encoding, X-A", [b"Host", b"Content-Length"]),
        (b"HOST, content-length", [b"Host", b"Content-Length", b"X-A"]),
    ],
)
def test_connection_never_takes_the_framing_or_host_with_it(
    connection: bytes, kept: list[bytes]
) -> None:
    """The body goes on framed as it was parsed: its Content-Length (or Transfer-Encoding)
    must go with it, whatever the Connection field names."""
    head = flat((b"Host", b"s"), (b"Connection", connection), (b"Content-Length", b"3"),
                (b"X-A", b"1"))  # fmt: skip
    assert [name for name, _ in codec.pairs(codec.end_to_end(head))] == kept


@pytest.mark.parametrize("client", ["sw-l4", "sw-http"])
def test_a_length_named_by_connection_still_frames_the_body(
    switching: Clients, client: str
) -> None:
    """`Connection: Content-Length` made the sidecar of an HTTP upstream send the request
    on without its length and with its body, which the app's sidecar then read as a second
    request: smuggled onto the pooled connection, its answer went to the next client that
    borrowed it."""
    app, addresses = switching
    heads = len(app.heads)
    inner = b"GET /public/smuggled HTTP/1.1\r\nHost: s\r\n\r\n"
    raw = (b"POST /public/carrier HTTP/1.1\r\nHost: s\r\nConnection: Content-Length\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(inner), inner))  # fmt: skip
    with socket.create_connection(addresses[client], timeout=10) as s:
        s.sendall(raw)
        got = read_until(s, lambda got: b"\r\n\r\n" in got)
        assert got.startswith(b"HTTP/1.1 200 "), got[:200]
        s.sendall(b"GET /public/after HTTP/1.1\r\nHost: s\r\n\r\n")
        read_until(s, lambda got: b"GET /public/after " in got)
    reached = [head.split(b"\r\n", 1)[0] for head in app.heads[heads:]]
    assert reached == [b"POST /public/carrier HTTP/1.1", b"GET /public/after HTTP/1.1"]
    assert b"\r\ncontent-length: %d" % len(inner) in app.heads[heads].lower()


_FORGED = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
           b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nX-Forged: 1\r\n\r\nforged")  # fmt: skip


@pytest.mark.parametrize("client", ["sw-l4", "sw-http"])
@pytest.mark.parametrize("length", [2, 100_000])  # through the parser, and counted past it
def test_an_answer_nobody_asked_for_in_the_read_of_a_whole_one_reaches_no_client(
    switching: Clients, client: str, length: int
) -> None:
    """An app that writes a second answer with its first, before any second request: its
    body went on to the client after the first answer (a keep-alive client then read it
    as the start of its next answer), and a request pipelined behind the first, sent to
    the app once the first answer ended, was given the unasked one as its own. Such bytes
    cost the app its connection; the client's goes on, and its next request gets its own
    answer from a new app connection."""
    app, addresses = switching
    name = f"forged-{length}"
    app.canned[name] = _FORGED.replace(b"2\r\n\r\nok", b"%d\r\n\r\n%s" % (length, b"o" * length))
    first = b"GET /public/canned/%s HTTP/1.1\r\nHost: s\r\n\r\n" % name.encode()
    second = b"GET /public/second HTTP/1.1\r\nHost: s\r\n\r\n"
    with socket.create_connection(addresses[client], timeout=10) as s:
        s.sendall(first + second)  # pipelined: the second waits in the sidecar for its turn
        got = read_until(s, lambda got: _whole(got) >= 2)
        head, rest = got.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200 ") and rest.startswith(b"o" * length)
        rest = rest[length:]
        assert rest.startswith(b"HTTP/1.1 200 OK\r\n"), rest[:100]
        assert b"forged" not in rest and b"X-Forged" not in rest, rest[:200]
        assert b"GET /public/second HTTP/1.1" in rest  # its own answer: its head as the app read it
        s.sendall(second)  # and the connection goes on
        got = read_until(s, lambda got: _whole(got) >= 1)
        assert got.startswith(b"HTTP/1.1 200 ") and b"GET /public/second HTTP/1.1" in got


@pytest.mark.parametrize("client", ["sw-l4", "sw-http"])
def test_a_denied_head_request_gets_a_403_without_a_body(switching: Clients, client: str) -> None:
    """An answer to HEAD ends at its head (RFC 9110 §9.3.2). The `403` of a denied HEAD
    request came with its body, `RBAC: access denied`, which a keep-alive client read as
    the start of its next answer."""
    _, addresses = switching
    with socket.create_connection(addresses[client], timeout=10) as s:
        s.sendall(
            b"HEAD /admin HTTP/1.1\r\nHost: s\r\n\r\nGET /public/after HTTP/1.1\r\nHost: s\r\n\r\n"
        )
        got = read_until(s, lambda got: b"GET /public/after HTTP/1.1" in got)
    denied, rest = got.split(b"\r\n\r\n", 1)
    assert denied.startswith(b"HTTP/1.1 403 ")
    assert rest.startswith(b"HTTP/1.1 200 "), rest[:100]


def test_the_proxys_own_answer_to_head_has_no_body() -> None:
    whole = codec.local_response(403, codec.DENIED_BODY)
    head = codec.local_response(403, codec.DENIED_BODY, bodiless=True)
    assert whole == head + codec.DENIED_BODY and head.endswith(b"\r\n\r\n")
    assert b"content-length: 19\r\n" in head  # what a GET would have had (RFC 9110 §9.3.2)


@pytest.mark.parametrize(
    "url", [b"/public/..#/admin", b"/admin#x", b"/public/a#", b"/a?q#f", b"http://s/public/..#/a"]
)
def test_a_target_with_a_fragment_is_refused(url: bytes) -> None:
    """A fragment is no part of a request target (RFC 9112 §3.2, RFC 9113 §8.3.1). Judged
    with it, `/public/..#/admin` passed a rule on `/public`, and an app whose URL parser
    drops the fragment served `/public/..`, that is `/`: a path no rule allowed. Refused,
    as Envoy refuses it by default."""
    with pytest.raises(BadTarget):
        normalize(url)
    with pytest.raises(BadTarget):
        normal_path([(b":method", b"GET"), (b":path", url)])


@pytest.mark.parametrize("client", ["sw-l4", "sw-http"])
def test_a_fragment_never_reaches_the_app(switching: Clients, client: str) -> None:
    app, addresses = switching
    heads = len(app.heads)
    with socket.create_connection(addresses[client], timeout=10) as s:
        s.sendall(b"GET /public/..#/admin HTTP/1.1\r\nHost: s\r\n\r\n")
        got = read_until(s, lambda got: b"\r\n\r\n" in got)
    assert got.startswith(b"HTTP/1.1 400 "), got[:100]
    assert app.heads[heads:] == []


@pytest.mark.parametrize("client", ["sw-l4", "sw-http"])
def test_an_http_1_0_request_with_a_transfer_coding_never_reaches_the_app(
    switching: Clients, client: str
) -> None:
    """HTTP/1.0 has no transfer codings: a server MUST take such a message's framing as
    faulty (RFC 9112 §6.1), as nginx does (`400`). It went on chunked, to an app that may
    frame an HTTP/1.0 body by its Content-Length alone and read the chunks as requests."""
    app, addresses = switching
    heads = len(app.heads)
    inner = b"GET /admin HTTP/1.1\r\nHost: s\r\n\r\n"
    with socket.create_connection(addresses[client], timeout=10) as s:
        s.sendall(b"POST /public/a HTTP/1.0\r\nHost: s\r\nConnection: keep-alive\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
                  % (len(inner), inner))  # fmt: skip
        got = read_until(s, lambda got: b"\r\n\r\n" in got)
    assert got.startswith(b"HTTP/1.1 400 "), got[:100]
    assert app.heads[heads:] == []


@pytest.mark.parametrize("client", ["sw-l4", "sw-http"])
@pytest.mark.parametrize("offer", [b"h2c", b"TLS/1.2"])
def test_the_body_of_a_request_whose_upgrade_is_taken_out_stays_its_body(
    switching: Clients, client: str, offer: bytes
) -> None:
    """httptools tells llhttp that a request offering an upgrade has no body, whatever its
    Content-Length. Once the upgrade was taken out, the head went on to the app with its
    length but without its body, and the body was parsed as the next request: an app that
    answers first and then drains the body it was promised took the first bytes of that
    next request as the body and read the rest as a request of its own, never judged (a
    `GET /admin` hidden in a header value was served)."""
    app, addresses = switching
    heads = len(app.heads)
    cut = b"GET /public/zz HTTP/1.1\r\nX-A: zz"
    hidden = cut + b"GET /admin HTTP/1.1\r\nHost: s\r\n\r\n"
    raw = (b"POST /public/early-drain HTTP/1.1\r\nHost: s\r\nConnection: Upgrade\r\n"
           b"Upgrade: %s\r\nContent-Length: %d\r\n\r\n%s" % (offer, len(cut), hidden))  # fmt: skip
    with socket.create_connection(addresses[client], timeout=10) as s:
        s.sendall(raw)
        got = read_until(s, lambda got: _whole(got) >= 2)
    first, second = got.split(b"HTTP/1.1 ")[1:3]
    assert first.startswith(b"200 ") and first.endswith(b"early")
    assert second.startswith(b"403 "), second[:300]  # the rest is a request, judged
    reached = app.heads[heads:]
    assert [head.split(b"\r\n", 1)[0] for head in reached] == [
        b"POST /public/early-drain HTTP/1.1"
    ], reached


def _cgi(name: bytes) -> bytes:
    """A field's name as CGI and WSGI servers key it (`HTTP_X_FORWARDED_CLIENT_CERT`):
    `-` and `_` are one to them."""
    return b"HTTP_" + name.upper().replace(b"-", b"_")


@pytest.mark.parametrize("client", ["sw-l4", "sw-http"])
@pytest.mark.parametrize("name", [b"X_Forwarded_Client_Cert", b"x-forwarded_client-cert"])
def test_no_client_names_a_caller_under_a_name_with_underscores(
    switching: Clients, client: str, name: bytes
) -> None:
    """A CGI or WSGI app (wsgiref, Django, PHP) reads `X_Forwarded_Client_Cert` as
    `X-Forwarded-Client-Cert`, joined with the sidecar's value, forged part first: so a
    client could name another caller after all. Dropped, with the field of that name."""
    app, addresses = switching
    heads = len(app.heads)
    forged = name + b": By=spiffe://x/svc/switch;URI=spiffe://x/svc/admin"
    raw = b"GET /public/who HTTP/1.1\r\nHost: s\r\n%s\r\n\r\n" % forged
    with socket.create_connection(addresses[client], timeout=10) as s:
        s.sendall(raw)
        assert read_until(s, lambda got: _whole(got) >= 1).startswith(b"HTTP/1.1 200 ")
    (head,) = app.heads[heads:]
    keyed = [line for line in head.split(b"\r\n")[1:]
             if _cgi(line.split(b":", 1)[0]) == b"HTTP_X_FORWARDED_CLIENT_CERT"]  # fmt: skip
    assert len(keyed) == 1 and keyed[0].startswith(b"x-forwarded-client-cert: By="), keyed
    assert b"svc/admin" not in head


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("keep_alive", [False, True])
def test_the_head_made_to_frame_a_body_frames_it_as_the_clients_did(
    chunked: bool, keep_alive: bool
) -> None:
    """An HTTP/1.0 request that asked for keep-alive keeps it: the made-up head says it the
    HTTP/1.1 way (it once carried the client's version, and HTTP/1.0 closes by default)."""
    events: list[bytes] = []

    class Seen:
        def on_body(self, body: bytes) -> None:
            events.append(body)

        def on_message_complete(self) -> None:  # asked here, as Requests asks it
            events.append(b"<keep-alive>" if parser.should_keep_alive() else b"<close>")

    parser = httptools.HttpRequestParser(Seen())
    parser.feed_data(body_framing(chunked, 3, keep_alive))
    parser.feed_data(b"3\r\nabc\r\n0\r\n\r\n" if chunked else b"abc")
    assert events == [b"abc", b"<keep-alive>" if keep_alive else b"<close>"]
