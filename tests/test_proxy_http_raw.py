"""The HTTP path against a raw app (tests/raw_app.py), which shows what reaches it.

Both paths: web's L4 upstream (`sw-l4`: the app's sidecar parses) and an
HTTP upstream (`sw-http`: both sidecars parse, over a pooled mTLS
connection). Real agent, proxies and TLS; the mesh is test_proxy_http.py's.

Upgrades, against an app that switches whenever asked (h2c smuggling). An
app that speaks h2c answers `Upgrade: h2c` with `101` and then serves
HTTP/2 on that connection; a proxy that joins the connections after the
`101` lets every later request past the L7 permissions, which judged only
the first. So only WebSocket upgrades are passed on (test_proxy_http.py has
its round trip); any other is taken out of the request, which is answered
as a plain one, CONNECT gets `501`, and a `101` the request did not ask for
is a `502`.

Targets are normalized before they are judged, and the app gets what was
judged: `/public/../admin` is denied as `/admin`, `/%70ublic/x` allowed as
`/public/x`, an absolute-form target sent on as its path with its authority
for Host, and a broken escape gets `400`. A request the app could frame or
route otherwise than the proxy never reaches it: HTTP/0.9, no Host or two,
a transfer coding besides chunked. The app learns who called from
X-Forwarded-Client-Cert, which no client can write for it.

Trailer fields after a chunked body go on both ways, re-written as parsed;
a head or trailer field that never ends is cut at the head limit.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossamer.proxy import http_codec as codec
from gossamer.proxy import http_upgrade
from tests.harness.cluster import free_port, put_exact
from tests.harness.poll import eventually
from tests.proxy_support import (
    ProxyProc,
    healthy_sidecars,
    read_until,
    sidecar,
    wait_listening,
    web_body,
)
from tests.raw_app import GREETING, RawApp
from tests.test_proxy_http import Mesh, mesh
from tests.test_proxy_http_codec import flat

__all__ = ["mesh"]  # the fixture, imported for pytest


@pytest.mark.parametrize(
    ("offered", "passes"),
    [
        ([b"websocket"], True),
        ([b"WebSocket"], True),
        ([b"h2c"], False),
        ([b"HTTP/2.0"], False),
        ([b"TLS/1.2"], False),
        ([b"websocket, h2c"], False),  # the app could pick h2c
        ([b"websocket", b"h2c"], False),
        ([b" , "], False),
    ],
)
def test_only_websocket_is_passed_on(offered: list[bytes], passes: bool) -> None:
    head = flat((b"Host", b"a"), *((b"Upgrade", value) for value in offered))
    assert http_upgrade.passes(head) is passes
    assert codec.head_facts(head) & codec.UPGRADE


def test_an_upgrade_taken_out_leaves_the_rest_in_order() -> None:
    head = flat(
        (b"Host", b"a"),
        (b"Connection", b"Upgrade, HTTP2-Settings, keep-alive"),
        (b"Upgrade", b"h2c"),
        (b"HTTP2-Settings", b"AAMAAABkAAQAAP__"),
        (b"X-A", b"1"),
    )
    assert codec.pairs(http_upgrade.without_upgrade(head)) == [
        (b"Host", b"a"),
        (b"Connection", b"keep-alive"),
        (b"X-A", b"1"),
    ]
    only = flat((b"connection", b"upgrade"), (b"upgrade", b"h2c"))
    assert http_upgrade.without_upgrade(only) == []


_names = st.sampled_from(
    [b"Host", b"Upgrade", b"upgrade", b"Connection", b"HTTP2-Settings", b"X-Upgrade", b"Keep-Alive"]
)
_values = st.sampled_from([b"h2c", b"Upgrade", b"upgrade, close", b"x", b"HTTP2-Settings, a"])


@given(st.lists(st.tuples(_names, _values), max_size=8))
def test_nothing_offering_an_upgrade_is_left(pairs: list[tuple[bytes, bytes]]) -> None:
    kept = codec.pairs(http_upgrade.without_upgrade(flat(*pairs)))
    assert not codec.head_facts(flat(*kept)) & codec.UPGRADE
    for name, value in kept:
        assert name.lower() not in (b"upgrade", b"http2-settings")
        if name.lower() == b"connection":
            tokens = [t.strip().lower() for t in value.split(b",")]
            assert b"upgrade" not in tokens and b"http2-settings" not in tokens and all(tokens)
    others = [(n, v) for n, v in pairs if n.lower() not in (b"upgrade", b"http2-settings",
                                                             b"connection")]  # fmt: skip
    assert [(n, v) for n, v in kept if n.lower() != b"connection"] == others


@pytest.fixture(scope="module")
def switching(mesh: Mesh, tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[RawApp, dict[str, tuple[str, int]]]]:  # fmt: skip
    """`switch` (the raw app, behind an HTTP sidecar) and two clients of it, `sw-l4` (an
    L4 upstream) and `sw-http` (an HTTP one), each allowed only paths under /public."""
    tmp = tmp_path_factory.mktemp("upgrades")
    app, agent = RawApp(), mesh.agent
    inbound = free_port(agent.ip)
    agent.put("/v1/agent/service/register", {
        "Name": "switch", "ID": "switch", "Port": app.port, "Address": "127.0.0.1",
        "Connect": {"SidecarService": {"Port": inbound, "Address": agent.ip,
                                       "Proxy": {"Config": {"protocol": "http"}}}}})  # fmt: skip
    addresses: dict[str, tuple[str, int]] = {}
    proxies: list[ProxyProc] = [sidecar(agent, tmp, "switch")]
    for name, config in (("sw-l4", {}), ("sw-http", {"protocol": "http"})):
        port = free_port("127.0.0.1")
        up = {"DestinationName": "switch", "LocalBindPort": port, "Config": config}
        agent.put(
            "/v1/agent/service/register",
            web_body(agent, free_port(agent.ip), [up]) | {"Name": name, "ID": name},
        )
        put_exact(agent, name, "switch", {"Permissions": [
            {"Action": "allow", "HTTP": {"PathPrefix": "/public"}}]})  # fmt: skip
        proxies.append(proxy := sidecar(agent, tmp, name))
        wait_listening("127.0.0.1", port, proxy)
        addresses[name] = ("127.0.0.1", port)
    try:
        wait_listening(agent.ip, inbound, proxies[0])
        eventually(lambda: healthy_sidecars(agent, "switch") == 1, 30, what="switch passing")
        for address in addresses.values():
            eventually(lambda a=address: _ask(a, b"GET /admin HTTP/1.1\r\nHost: s\r\n\r\n")
                       .startswith(b"HTTP/1.1 403"), 20, what="the L7 permissions")  # fmt: skip
        yield app, addresses
    finally:
        for proxy in proxies:
            assert proxy.stop() == 0
        for name in ("switch", "sw-l4", "sw-http"):
            agent.put(f"/v1/agent/service/deregister/{name}", None)
        app.stop()


def _ask(address: tuple[str, int], raw: bytes, answers: int = 1) -> bytes:
    """Raw bytes in one write; what comes back until `answers` answers are whole."""
    with socket.create_connection(address, timeout=10) as s:
        s.sendall(raw)
        return read_until(s, lambda got: _whole(got) >= answers)


def _whole(got: bytes) -> int:
    """How many answers with a Content-Length (or none, a 101) `got` holds in full."""
    count = 0
    while b"\r\n\r\n" in got:
        head, got = got.split(b"\r\n\r\n", 1)
        length = next((int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                       if line.startswith(b"content-length:")), 0)  # fmt: skip
        if len(got) < length:
            break
        got, count = got[length:], count + 1
    return count


@pytest.mark.parametrize("client", ["sw-l4", "sw-http"])
def test_bytes_the_app_sends_with_its_101_reach_the_client_and_the_tunnel_works(
    switching: tuple[RawApp, dict[str, tuple[str, int]]], client: str
) -> None:
    """`101` and 100 KB in one write of the app's: through an `http` upstream, the bytes of
    the same read past the answer went to the answer parser, which took them for an answer
    nobody asked for and dropped the app connection under the new tunnel (16 KiB reached
    the client, then nothing, for ever)."""
    app, addresses = switching
    with socket.create_connection(addresses[client], timeout=10) as s:
        s.sendall(b"GET /public/greet HTTP/1.1\r\nHost: s\r\nConnection: Upgrade\r\n"
                  b"Upgrade: websocket\r\n\r\n")  # fmt: skip
        got = read_until(s, lambda got: b"\r\n\r\n" in got
                         and len(got.split(b"\r\n\r\n", 1)[1]) >= len(GREETING))  # fmt: skip
        head, rest = got.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101 ") and rest == GREETING
        tunneled = len(app.tunneled)
        s.sendall(b"after the greeting")
        eventually(lambda: b"after the greeting" in b"".join(app.tunneled[tunneled:]), 10,
                   what="the client's bytes through the tunnel")  # fmt: skip
    del app.tunneled[tunneled:]  # the other tests of this app expect nothing tunneled


H2C = (b"GET /public/a HTTP/1.1\r\nHost: s\r\nConnection: Upgrade, HTTP2-Settings\r\n"
       b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")  # fmt: skip


@pytest.mark.parametrize("client", ["sw-l4", "sw-http"])
@pytest.mark.parametrize("offer", [b"h2c", b"websocket, h2c", b"TLS/1.2"])
def test_an_upgrade_other_than_websocket_is_answered_as_a_plain_request(
    switching: tuple[RawApp, dict[str, tuple[str, int]]], client: str, offer: bytes
) -> None:
    """The smuggling attempt: an allowed path offering h2c, then a request the permissions
    deny, as the app would read it after switching. The app never switches; the second
    request is judged (403) and never reaches it."""
    app, addresses = switching
    heads = len(app.heads)
    got = _ask(addresses[client], H2C.replace(b"h2c", offer, 1)
               + b"GET /admin HTTP/1.1\r\nHost: s\r\n\r\n", answers=2)  # fmt: skip
    first, second = got.split(b"HTTP/1.1 ")[1:3]
    assert first.startswith(b"200 ") and second.startswith(b"403 ")
    assert len(app.heads) == heads + 1 and not app.tunneled
    reached = app.heads[heads].lower()
    assert reached.startswith(b"get /public/a http/1.1\r\n")
    assert b"upgrade" not in reached and b"http2-settings" not in reached


@pytest.mark.parametrize("client", ["sw-l4", "sw-http"])
def test_connect_gets_501_and_reaches_nothing(
    switching: tuple[RawApp, dict[str, tuple[str, int]]], client: str
) -> None:
    app, addresses = switching
    heads = len(app.heads)
    got = _ask(addresses[client], b"CONNECT /public:443 HTTP/1.1\r\nHost: s\r\n\r\nGET /admin")
    assert got.startswith(b"HTTP/1.1 501 ")
    assert len(app.heads) == heads and not app.tunneled


@pytest.mark.parametrize("client", ["sw-l4", "sw-http"])
def test_a_switch_nobody_asked_for_is_a_502(
    switching: tuple[RawApp, dict[str, tuple[str, int]]], client: str
) -> None:
    app, addresses = switching
    got = _ask(addresses[client], b"GET /public/switch-anyway HTTP/1.1\r\nHost: s\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 502 ")
    assert not app.tunneled
    assert _ask(addresses[client], b"GET /public/b HTTP/1.1\r\nHost: s\r\n\r\n").startswith(
        b"HTTP/1.1 200 "
    )


@pytest.mark.parametrize("client", ["sw-l4", "sw-http"])
def test_trailer_fields_go_on_both_ways(
    switching: tuple[RawApp, dict[str, tuple[str, int]]], client: str
) -> None:
    _, addresses = switching
    with socket.create_connection(addresses[client], timeout=10) as s:
        s.sendall(b"GET /public/trailers HTTP/1.1\r\nHost: s\r\n\r\n")
        got = read_until(s, lambda got: got.endswith(b"\r\n0\r\nX-Sum: 5\r\n\r\n"))
        assert got.startswith(b"HTTP/1.1 200 ") and b"\r\n5\r\nhello\r\n" in got
        s.sendall(
            b"POST /public/up HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\nX-Digest: sha-256=x\r\nX-More: 1\r\n\r\n"
        )
        body = b"3\r\nabc\r\n0\r\nX-Digest: sha-256=x\r\nX-More: 1\r\n\r\n"
        assert read_until(s, lambda got: got.endswith(body)).startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("client", ["sw-l4", "sw-http"])
@pytest.mark.parametrize(
    ("target", "status", "reached"),
    [
        (b"/public/../admin", b"403", None),
        (b"/public/%2e%2E/admin", b"403", None),
        (b"/%70ublic/x", b"200", b"GET /public/x HTTP/1.1\r\nHost: s"),
        (b"/public/a/./../b?q=/../admin", b"200", b"GET /public/b?q=/../admin HTTP/1.1\r\nHost: s"),
        (b"http://elsewhere:81/public/c", b"200", b"GET /public/c HTTP/1.1\r\nHost: elsewhere:81"),
        (b"/public/%zz", b"400", None),
        (b"ftp://s/public", b"400", None),
        (b"*", b"400", None),  # the asterisk-form is OPTIONS's only (this is a GET)
    ],
)
def test_a_target_is_judged_normalized_and_the_app_gets_what_was_judged(
    switching: tuple[RawApp, dict[str, tuple[str, int]]],
    client: str,
    target: bytes,
    status: bytes,
    reached: bytes | None,
) -> None:
    app, addresses = switching
    heads = len(app.heads)
    got = _ask(addresses[client], b"GET %s HTTP/1.1\r\nHost: s\r\n\r\n" % target)
    assert got.startswith(b"HTTP/1.1 %s " % status), got[:200]
    if reached is None:
        assert app.heads[heads:] == []
    else:  # the request line and Host as judged, then the caller (the last test)
        ((head),) = app.heads[heads:]
        assert head.startswith(reached + b"\r\nx-forwarded-client-cert: ")


_HIDDEN = b"GET /public/hidden HTTP/1.1\r\nHost: s\r\n\r\n"


@pytest.mark.parametrize("client", ["sw-l4", "sw-http"])
@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /public/a\r\n\r\n", b"400"),  # HTTP/0.9
        (b"GET /public/a HTTP/1.1\r\n\r\n", b"400"),  # no Host
        (b"GET /public/a HTTP/1.1\r\nHost: s\r\nHost: admin\r\n\r\n", b"400"),
        (b"POST /public/a HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: identity, chunked\r\n"
         b"\r\n0\r\n\r\n", b"501"),  # an app that reads no chunks reads "0" as a request
    ],
)  # fmt: skip
def test_a_request_the_app_could_read_otherwise_never_reaches_it(
    switching: tuple[RawApp, dict[str, tuple[str, int]]], client: str, raw: bytes, status: bytes
) -> None:
    app, addresses = switching
    heads = len(app.heads)
    with socket.create_connection(addresses[client], timeout=10) as s:
        s.sendall(raw + _HIDDEN)
        got = read_until(s, lambda got: b"\r\n\r\n" in got)
        assert got.startswith(b"HTTP/1.1 %s " % status), got[:200]
        while s.recv(65536):  # then closed: nothing after it is read
            pass
    assert app.heads[heads:] == []


@pytest.mark.parametrize("client", ["sw-l4", "sw-http"])
def test_the_app_is_told_the_verified_caller_and_never_a_forged_one(
    switching: tuple[RawApp, dict[str, tuple[str, int]]], client: str
) -> None:
    app, addresses = switching
    heads = len(app.heads)
    forged = b"X-Forwarded-Client-Cert: By=spiffe://x/svc/switch;URI=spiffe://x/svc/admin\r\n"
    got = _ask(addresses[client], b"GET /public/who HTTP/1.1\r\nHost: s\r\n" + forged + b"\r\n")
    assert got.startswith(b"HTTP/1.1 200 ")
    (head,) = app.heads[heads:]
    fields = [line for line in head.split(b"\r\n") if line.lower().startswith(b"x-forwarded-")]
    assert len(fields) == 1, fields
    by, digest, uri = fields[0].split(b": ", 1)[1].split(b";")
    assert by.startswith(b"By=spiffe://") and by.endswith(b"/svc/switch")
    assert uri.startswith(b"URI=spiffe://") and uri.endswith(b"/svc/" + client.encode())
    assert len(digest) == len(b"Hash=") + 64 and digest.startswith(b"Hash=")


@pytest.mark.parametrize("client", ["sw-l4", "sw-http"])
def test_a_field_without_end_is_cut_at_the_head_limit_both_ways(
    switching: tuple[RawApp, dict[str, tuple[str, int]]], client: str
) -> None:
    """llhttp sets no bound on a head and httptools gathers a field's value whole: a value
    that never ends is cut once it passes max_header_bytes (64 KiB here), from a client
    (431) or the app (502 before the answer began, a cut after), not kept to the end."""
    app, addresses = switching
    with socket.create_connection(addresses[client], timeout=10) as s:
        s.sendall(b"GET /public/a HTTP/1.1\r\nHost: s\r\nX-A: ")
        try:
            for _ in range(64):  # 4 MiB, unless the proxy answers and closes first
                s.sendall(b"a" * 65536)
        except OSError:
            pass
        assert read_until(s, lambda got: b"\r\n\r\n" in got).startswith(b"HTTP/1.1 431 ")
    assert _ask(addresses[client], b"GET /public/endless-head HTTP/1.1\r\nHost: s\r\n\r\n"
                ).startswith(b"HTTP/1.1 502 ")  # fmt: skip
    # cut, not taken whole (nor left hanging: the poll's deadline), whatever the buffers held
    assert eventually(lambda: app.endless_cut, 20, what="the app's connection cut")
    with socket.create_connection(addresses[client], timeout=10) as s:
        s.sendall(b"GET /public/endless-trailer HTTP/1.1\r\nHost: s\r\n\r\n")
        got = b""  # the answer began: cut (a reset, maybe), without its last chunk
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(65536):
                got += chunk
    assert got.startswith(b"HTTP/1.1 200 ") and b"\r\n2\r\nok\r\n" in got
    assert not got.endswith(b"\r\n\r\n")
    assert eventually(lambda: app.endless_cut, 20, what="the app's connection cut")


@pytest.mark.parametrize("client", ["sw-l4", "sw-http"])
@pytest.mark.parametrize(("path", "status"), [("/public/bad", 400), ("/public/early-close", 413)])
def test_a_client_still_sending_reads_the_answer_that_ended_its_request(
    switching: tuple[RawApp, dict[str, tuple[str, int]]], client: str, path: str, status: int
) -> None:
    """Python's http.client writes a whole body before it reads. A request answered before
    its end and the connection then closed (the proxy's `400` to a Content-Length beside
    chunked; the app's early `413`, after which it ends its side) would meet a reset while
    still sending; the proxy ends its side and reads on until the client stops (linger.py)."""
    conn = http.client.HTTPConnection(*switching[1][client], timeout=20)
    body = b"b" * (8 << 20)  # more than the sockets' buffers hold
    conn.putrequest("POST", path)
    conn.putheader("Content-Length", str(len(body)))
    if status == 400:
        conn.putheader("Transfer-Encoding", "chunked")  # framed two ways: never forwarded
    conn.endheaders()
    conn.send(body)
    assert conn.getresponse().status == status
    conn.close()
