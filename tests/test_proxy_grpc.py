"""gRPC through the mesh: a real grpcio server and client.

`rpc` is registered with `Proxy.Config.protocol: grpc` and speaks h2c; `rpcs`
with `protocol: http2` and speaks h2 over its own TLS (ALPN `h2`, a
certificate of its own, not the mesh's), which the mesh carries inside its
mTLS untouched. `rpc`'s sidecar reads each call's headers (h2_gate.py) and
decides it with the intention's L7 permissions; `rpcs`'s can only decide the
connection, so an L7 intention refuses it. The client calls through web's
upstream listeners; unary and bidirectional streaming calls must arrive
intact. Raw-bytes methods (no protobuf): the proxy's job is the transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import queue
import signal
import socket
import struct
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent import futures
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    StreamEnded,
    StreamReset,
)

from gossamer.intentions.decide import IntentionSet
from gossamer.intentions.model import Intention
from gossamer.proxy import tally
from gossamer.proxy.config import ProxyConfig, Upstream
from gossamer.proxy.edge_metrics import Edge
from gossamer.proxy.h2_frames import (
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    PROTOCOL_ERROR,
    frame,
    literal_block,
)
from gossamer.proxy.http_limits import Limits
from gossamer.proxy.inbound import Inbound
from gossamer.proxy.outbound import UpstreamListener
from gossamer.proxy.policy import Policy
from gossamer.proxy.protocol import CLIENT_IDLE_S, REQUEST_IDLE_S, REQUEST_TIMEOUT_S
from tests.h2_mute_app import MuteApp
from tests.harness.cluster import Cluster, free_port, put_exact
from tests.harness.poll import eventually, eventually_async
from tests.proxy_pki import Pki
from tests.proxy_support import (
    ProxyProc,
    healthy_sidecars,
    set_intention,
    sidecar,
    wait_listening,
    web_body,
)


def _unary(request: bytes, context: Any) -> bytes:
    if request == b"fail":
        context.abort(grpc.StatusCode.UNAVAILABLE, "asked to fail")
    if request == b"xfcc":  # who the sidecar says called
        seen = [v for k, v in context.invocation_metadata() if k == "x-forwarded-client-cert"]
        return "|".join(seen).encode()
    return b"unary:" + request


def _stream(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
    for request in requests:
        yield b"stream:" + request


APP_NAME = "rpcs.app.internal"  # the name in the TLS app's own certificate


def _app_certificate() -> tuple[bytes, bytes]:
    """A self-signed P-256 certificate and key for the TLS app (PEM): the app's, not the mesh's."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, APP_NAME)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(APP_NAME)]), critical=False)
            .sign(key, hashes.SHA256()))  # fmt: skip
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """web's upstream listeners: `rpc` (h2c) and `rpcs` (h2 over the app's TLS), and the
    TLS app's certificate."""
    tmp = tmp_path_factory.mktemp("proxy-grpc")
    c = Cluster(tmp)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("echo.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary),
        "Stream": grpc.stream_stream_rpc_method_handler(_stream),
    })])  # fmt: skip
    app_cert, app_key = _app_certificate()
    app_ports = {
        "rpc": server.add_insecure_port("127.0.0.1:0"),
        "rpcs": server.add_secure_port(
            "127.0.0.1:0", grpc.ssl_server_credentials([(app_key, app_cert)])
        ),
    }
    server.start()
    proxies: list[ProxyProc] = []
    try:
        agent = c.new_agent("pg1").start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        protocols = {"rpc": "grpc", "rpcs": "http2"}
        up_ports, upstreams = {}, []
        stats = f"127.0.0.1:{free_port('127.0.0.1')}"  # rpc's sidecar's metrics listener
        web_stats = f"127.0.0.1:{free_port('127.0.0.1')}"  # and web's
        for name, protocol in protocols.items():
            inbound = free_port(agent.ip)
            config = {"protocol": protocol}
            if name == "rpc":
                config["gossamer_metrics_bind_addr"] = stats
            agent.put("/v1/agent/service/register", {
                "Name": name, "ID": name, "Port": app_ports[name], "Address": agent.ip,
                "Connect": {"SidecarService": {"Port": inbound, "Address": agent.ip,
                                               "Proxy": {"Config": config}}},
            })  # fmt: skip
            set_intention(agent, "web", name, "allow")
            up_ports[name] = free_port("127.0.0.1")
            upstreams.append({"DestinationName": name, "LocalBindPort": up_ports[name],
                              "Config": {"protocol": protocol}})  # fmt: skip
            proxies.append(proxy := sidecar(agent, tmp, name))
            wait_listening(agent.ip, inbound, proxy)
        web = web_body(agent, free_port(agent.ip), upstreams)
        web_config = {"gossamer_metrics_bind_addr": web_stats}
        web["Connect"]["SidecarService"]["Proxy"]["Config"] = web_config  # type: ignore[index]
        agent.put("/v1/agent/service/register", web)
        proxies.append(web_proxy := sidecar(agent, tmp, "web"))
        for name, port in up_ports.items():
            wait_listening("127.0.0.1", port, web_proxy)
            eventually(lambda n=name: healthy_sidecars(agent, n) == 1, 30,
                       what=f"{name}'s sidecar passing")  # fmt: skip
            eventually(lambda p=port: _holds(p), 20, what=f"web's sidecar to know {name}'s")
        yield {"rpc": f"127.0.0.1:{up_ports['rpc']}", "rpcs": f"127.0.0.1:{up_ports['rpcs']}",
               "app_cert": app_cert, "agent": agent, "stats": stats, "web_stats": web_stats,
               "tmp": tmp,
               "rpc_port": app_ports["rpc"], "rpc_proxy": proxies[0]}  # fmt: skip
    finally:
        for proxy in proxies:
            proxy.stop()
        server.stop(0)
        leftovers = c.close()
    assert not leftovers, f"processes left behind: {leftovers}"


def _calls_by_class(upstream: dict[str, object], side: str = "rpc") -> dict[str, int]:
    """The calls rpc's sidecar counted on its inbound edges, or web's on its outbound edge to
    rpc, by status class (GET /stats)."""
    stats_at, direction = (upstream["stats"], "inbound") if side == "rpc" else (
        upstream["web_stats"], "outbound")  # fmt: skip
    with urllib.request.urlopen(f"http://{stats_at}/stats", timeout=5) as answer:
        stats = json.load(answer)
    counted: dict[str, int] = {}
    for edge in stats["Proxies"][0]["Edges"]:
        if edge["Direction"] == direction and edge["Destination"] == "rpc":
            for route in edge["Routes"].values():
                for kind, n in route["Responses"].items():
                    counted[kind] = counted.get(kind, 0) + n
    return counted


def _terminated(upstream: dict[str, object]) -> int:
    """What rpc's sidecar cut by a policy change on its inbound edge from web (GET /stats).
    (Not the denials API: its rows merge by rule, so a later deny of the same rule takes the
    row's reason.)"""
    with urllib.request.urlopen(f"http://{upstream['stats']}/stats", timeout=5) as answer:
        stats = json.load(answer)
    return sum(edge["Terminated"] for edge in stats["Proxies"][0]["Edges"]
               if (edge["Direction"], edge["Source"], edge["Destination"])
               == ("inbound", "web", "rpc"))  # fmt: skip


def _h2_over_tls(upstream: dict[str, object]) -> grpc.Channel:
    """A channel to `rpcs` through the mesh speaking the app's own TLS (grpcio insists on
    ALPN `h2`), checking the app's certificate by its name, not by the mesh's address."""
    credentials = grpc.ssl_channel_credentials(root_certificates=upstream["app_cert"])  # type: ignore[arg-type]
    return grpc.secure_channel(str(upstream["rpcs"]), credentials,
                               options=[("grpc.ssl_target_name_override", APP_NAME)])  # fmt: skip


def _reached(call: Any, message: bytes) -> bytes | None:
    """As `_allowed`, and None while the path is not up yet: a sidecar just started is heard
    of by its callers' watches in their own time (a burst of 200 ms), and until then a
    caller's connection is closed at once (UNAVAILABLE, `Socket closed`: a CI run's first
    call met it)."""
    try:
        return _allowed(call, message)
    except grpc.RpcError as error:
        if error.code() is grpc.StatusCode.UNAVAILABLE:
            return None
        raise


def _allowed(call: Any, message: bytes) -> bytes | None:
    """`call(message)`'s answer; None while it is denied: a test before may have left an L7
    rule that its `finally` replaced, and the sidecar takes the change a moment later (a CI
    run's first call was denied so, and the denial raised out of the poll)."""
    try:
        return bytes(call(message, timeout=5))
    except grpc.RpcError as error:
        if error.code() is grpc.StatusCode.PERMISSION_DENIED:
            return None
        raise


@pytest.mark.parametrize("app", ["rpc", "rpcs"], ids=["h2c", "h2-over-the-app's-TLS"])
def test_grpc_unary_and_streaming_calls_pass_through_the_mesh(
    upstream: dict[str, object], app: str
) -> None:
    opened = grpc.insecure_channel(str(upstream["rpc"])) if app == "rpc" else _h2_over_tls(upstream)
    with opened as channel:
        unary = channel.unary_unary("/echo.Echo/Unary")
        stream = channel.stream_stream("/echo.Echo/Stream")

        def call() -> bytes:
            answer: bytes = unary(b"ping", timeout=5)
            return answer

        assert eventually(call, 20, what="a first unary call through the mesh") == b"unary:ping"
        big = bytes(range(256)) * 4096  # 1 MiB: several HTTP/2 frames and window updates
        assert unary(big, timeout=10) == b"unary:" + big
        answers = list(stream(iter([b"a", b"b", b"c"]), timeout=10))
        assert answers == [b"stream:a", b"stream:b", b"stream:c"]


def test_the_app_learns_the_caller_from_x_forwarded_client_cert(
    upstream: dict[str, object],
) -> None:
    """rpc's sidecar adds the caller's SPIFFE ID, its own and the caller's leaf's hash to
    each call, as on HTTP/1, and drops whatever the client put there."""
    agent: Any = upstream["agent"]
    trust = agent.get("/v1/connect/ca/roots")["TrustDomain"]
    with grpc.insecure_channel(str(upstream["rpc"])) as channel:
        unary = channel.unary_unary("/echo.Echo/Unary")
        forged = (("x-forwarded-client-cert", "By=x;URI=spiffe://evil/svc/admin"),)
        for metadata in ((), forged):
            seen = eventually(lambda m=metadata: unary(b"xfcc", timeout=5, metadata=m), 20,
                              what="a call through the mesh").decode()  # fmt: skip
            by, digest, uri = seen.split(";")
            assert by == f"By=spiffe://{trust}/ns/default/dc/dc1/svc/rpc", seen
            assert uri == f"URI=spiffe://{trust}/ns/default/dc/dc1/svc/web", seen
            assert digest.startswith("Hash=") and len(digest) == len("Hash=") + 64, seen


def test_l7_permissions_decide_each_grpc_call_on_one_connection(
    upstream: dict[str, object],
) -> None:
    agent: Any = upstream["agent"]
    put_exact(agent, "web", "rpc", {"Permissions": [
        {"Action": "deny", "HTTP": {"PathExact": "/echo.Echo/Stream"}},
        {"Action": "allow", "HTTP": {"PathPrefix": "/echo.Echo/",
                                     "Header": [{"Name": "x-team", "Exact": "payments"}]}},
    ]})  # fmt: skip
    team = (("x-team", "payments"),)
    try:
        with grpc.insecure_channel(str(upstream["rpc"])) as channel:
            unary = channel.unary_unary("/echo.Echo/Unary")
            stream = channel.stream_stream("/echo.Echo/Stream")

            def denied(call: Any) -> bool:
                try:
                    call()
                except grpc.RpcError as error:
                    assert error.code() is grpc.StatusCode.PERMISSION_DENIED, error
                    assert error.details() == "RBAC: access denied"
                    return True
                return False

            eventually(lambda: denied(lambda: unary(b"x", timeout=5)), 20,
                       what="the L7 intention applied to a call without x-team")  # fmt: skip
            for _ in range(3):  # denials and calls interleaved on the same connection
                assert unary(b"ok", timeout=5, metadata=team) == b"unary:ok"
                assert denied(lambda: list(stream(iter([b"a"]), timeout=5, metadata=team)))
                assert denied(lambda: unary(b"no", timeout=5, metadata=(("x-team", "ads"),)))
            big = bytes(range(256)) * 4096
            assert unary(big, timeout=10, metadata=team) == b"unary:" + big
            calls = {side: _calls_by_class(upstream, side) for side in ("rpc", "web")}
            with pytest.raises(grpc.RpcError) as failed:
                unary(b"fail", timeout=5, metadata=team)
            assert failed.value.code() is grpc.StatusCode.UNAVAILABLE
            # the golden metrics count each call, a gRPC failure by the status it maps to, on
            # rpc's inbound edge and on web's outbound edge alike
            for side, before in calls.items():
                eventually(lambda side=side, before=before: _calls_by_class(upstream, side).get(
                    "5xx", 0) == before.get("5xx", 0) + 1, 10,
                    what=f"the failed call counted as 5xx by {side}'s sidecar")  # fmt: skip
                assert before.get("2xx", 0) >= 4 and before.get("4xx", 0) >= 6, (side, before)
            put_exact(agent, "web", "rpc", {"Permissions": [
                {"Action": "allow", "HTTP": {"PathExact": "/echo.Echo/Stream"}}]})  # fmt: skip
            eventually(lambda: not denied(lambda: list(stream(iter([b"a"]), timeout=5))), 20,
                       what="the change applied to the next call")  # fmt: skip
            assert list(stream(iter([b"b"]), timeout=5)) == [b"stream:b"]
            assert denied(lambda: unary(b"x", timeout=5, metadata=team))
        # h2 inside the app's own TLS cannot be read: an L7 intention refuses the connection
        put_exact(agent, "web", "rpcs", {"Permissions": [
            {"Action": "allow", "HTTP": {"PathPrefix": "/"}}]})  # fmt: skip
        eventually(
            lambda: _tls_call_refused(upstream),
            20,
            what="the TLS connection refused once the L7 intention reached the proxy",
        )
    finally:
        set_intention(agent, "web", "rpc", "allow")
        set_intention(agent, "web", "rpcs", "allow")


def test_a_streaming_call_the_intentions_no_longer_allow_is_cut_and_others_go_on(
    upstream: dict[str, object],
) -> None:
    """A policy change decides each call in flight again: a bidirectional stream that is
    now denied ends with PERMISSION_DENIED (the gate resets it at the app and answers the
    client), while a stream still allowed, on the same connection, goes on."""
    agent: Any = upstream["agent"]
    sent: dict[str, queue.Queue[bytes | None]] = {"cut": queue.Queue(), "kept": queue.Queue()}

    def messages(name: str) -> Iterator[bytes]:
        while (message := sent[name].get(timeout=30)) is not None:
            yield message

    try:
        with grpc.insecure_channel(str(upstream["rpc"])) as channel:
            stream = channel.stream_stream("/echo.Echo/Stream")
            unary = channel.unary_unary("/echo.Echo/Unary")
            assert eventually(lambda: _allowed(unary, b"up"), 20, what="a call") == b"unary:up"
            terminated = _terminated(upstream)
            calls = {name: stream(messages(name), timeout=60, metadata=(("x-call", name),))
                     for name in sent}  # fmt: skip
            for name, call in calls.items():
                sent[name].put(b"first")
                assert next(call) == b"stream:first"
            put_exact(agent, "web", "rpc", {"Permissions": [
                {"Action": "allow", "HTTP": {"PathPrefix": "/echo.Echo/", "Header": [
                    {"Name": "x-call", "Exact": "kept"}]}},
                {"Action": "allow", "HTTP": {"PathExact": "/echo.Echo/Unary"}}]})  # fmt: skip

            def refused() -> bool:
                try:
                    list(stream(iter([b"probe"]), timeout=5, metadata=(("x-call", "new"),)))
                except grpc.RpcError as error:
                    return error.code() is grpc.StatusCode.PERMISSION_DENIED
                return False

            eventually(refused, 20, what="the change at rpc's sidecar")
            cut = calls["cut"]
            with pytest.raises(grpc.RpcError) as ended:
                next(cut)  # (it would otherwise wait for a message that never comes)
            assert ended.value.code() is grpc.StatusCode.PERMISSION_DENIED, ended.value
            assert cut.details() == "RBAC: access denied"  # type: ignore[attr-defined]
            # (a probe call in flight as the change came is cut too: at least one more)
            eventually(lambda: _terminated(upstream) > terminated, 10,
                       what="the cut counted on rpc's inbound edge")  # fmt: skip
            rpc_proxy: Any = upstream["rpc_proxy"]
            assert "call terminated due to policy change: web -> rpc" in rpc_proxy.log()
            sent["kept"].put(b"after")
            assert next(calls["kept"]) == b"stream:after"
            assert unary(b"still", timeout=5) == b"unary:still"
            sent["kept"].put(None)
            assert list(calls["kept"]) == []
    finally:
        for q in sent.values():
            q.put(None)
        set_intention(agent, "web", "rpc", "allow")


def _tls_call_refused(upstream: dict[str, object]) -> bool:
    """A call of h2 inside the app's own TLS fails UNAVAILABLE (its connection refused)."""
    with _h2_over_tls(upstream) as channel:
        try:
            channel.unary_unary("/echo.Echo/Unary")(b"x", timeout=5)
        except grpc.RpcError as refused:
            assert refused.code() is grpc.StatusCode.UNAVAILABLE, refused
            return True
    return False


def test_sigterm_sends_goaway_and_a_call_in_flight_finishes(upstream: dict[str, object]) -> None:
    """The sidecar of `rpcd` drains: its gate sends GOAWAY on the client's connection (grpcio
    would open its next calls elsewhere) and the streaming call in flight goes on, both ways,
    to its end; the client then lets go and the proxy exits 0 before its drain timeout.
    The client is python-hyper's h2 over a socket up to GOAWAY (after which h2 will send
    nothing more), then raw frames: the call's last message, and its answer read as bytes."""
    with _own_sidecar(upstream, "rpcd", upstream["rpc_port"], "grpc",  # type: ignore[arg-type]
                      "--drain-timeout", "30") as (rpcd, up):  # fmt: skip
        with grpc.insecure_channel(f"127.0.0.1:{up}") as channel:  # the path is up
            unary = channel.unary_unary("/echo.Echo/Unary")
            eventually(lambda: _reached(unary, b"up") == b"unary:up", 20, what="a first call")
        with socket.create_connection(("127.0.0.1", up), timeout=10) as sock:
            client = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
            client.initiate_connection()
            call = [(":method", "POST"), (":scheme", "http"), (":path", "/echo.Echo/Stream"),
                    (":authority", "rpcd"), ("content-type", "application/grpc"),
                    ("te", "trailers")]  # fmt: skip
            client.send_headers(1, call)
            client.send_data(1, _grpc_message(b"before"))
            sock.sendall(client.data_to_send())
            _until(
                sock, client, lambda e: isinstance(e, DataReceived) and b"stream:before" in e.data
            )
            rpcd.signal(signal.SIGTERM)
            away = _until(sock, client, lambda e: isinstance(e, ConnectionTerminated))
            assert (away.error_code, away.last_stream_id) == (0, 1)
            sock.sendall(frame(DATA, END_STREAM, 1, _grpc_message(b"during")))
            seen = b""
            while b"stream:during" not in seen:  # the answer comes through the draining gate
                chunk = sock.recv(65536)
                assert chunk, f"the connection ended first; got {seen!r}"
                seen += chunk
        assert rpcd.proc is not None
        assert rpcd.proc.wait(20) == 0  # the client let go: no wait for the 30 s timeout


def test_a_body_longer_than_its_content_length_never_reaches_the_app(
    upstream: dict[str, object],
) -> None:
    """RFC 9113 §8.1.1: such a request is malformed. rpc's sidecar resets it both ways
    (PROTOCOL_ERROR) and the connection serves the next call. The client is python-hyper's
    h2 over a socket to web's upstream listener, which sends what it is told."""
    call = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/echo.Echo/Unary"),
        (":authority", "rpc"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]
    host, port = str(upstream["rpc"]).rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        client = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        client.initiate_connection()
        message = _grpc_message(b"too long")
        client.send_headers(1, [*call, ("content-length", str(len(message) - 1))])
        client.send_data(1, message, end_stream=True)
        sock.sendall(client.data_to_send())
        reset = _until(sock, client, lambda e: isinstance(e, StreamReset) and e.stream_id == 1)
        assert reset.error_code == PROTOCOL_ERROR
        client.send_headers(3, call)
        client.send_data(3, _grpc_message(b"fine"), end_stream=True)
        sock.sendall(client.data_to_send())
        _until(sock, client, lambda e: isinstance(e, DataReceived) and b"unary:fine" in e.data)


def test_a_client_that_breaks_http2_while_sending_reads_its_goaway(
    upstream: dict[str, object],
) -> None:
    """rpc's sidecar answers broken HTTP/2 with GOAWAY and ends the connection. A client
    still writing (here, one that writes all it has before it reads) would meet a reset
    instead had the sidecar closed with its bytes unread; it reads on and drops them
    (linger.py), so the client gets the GOAWAY and its code."""
    host, port = str(upstream["rpc"]).rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        client = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        client.initiate_connection()
        block = literal_block([(b":method", b"POST"), (b":scheme", b"http"),
                               (b":path", b"/echo.Echo/Unary")])  # fmt: skip
        broken = frame(HEADERS, END_HEADERS, 2, block)  # a client may not open an even stream
        sock.sendall(client.data_to_send() + broken + bytes(8 << 20))  # past any buffer
        sock.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
    frames, at = [], 0
    while at + 9 <= len(got):
        length = int.from_bytes(got[at : at + 3], "big")
        frames.append((got[at + 3], got[at + 9 : at + 9 + length]))
        at += 9 + length
    goaways = [payload for kind, payload in frames if kind == GOAWAY]
    assert len(goaways) == 1, frames
    assert goaways[0][4:8] == PROTOCOL_ERROR.to_bytes(4, "big"), goaways[0]


def test_a_cut_call_whose_app_does_not_answer_ends_its_connection(
    upstream: dict[str, object],
) -> None:
    """The gate waits for the app's answer to the PING behind a cut before it ends the call
    for the client (h2_cut.py); an app that never answers (nor heeds the reset, and keeps
    streaming) loses the whole connection within CUT_WAIT_S, so a denied call cannot run
    on. The client is python-hyper's h2 over a socket to web's upstream listener."""
    agent: Any = upstream["agent"]
    app = MuteApp()
    try:
        with (
            _own_sidecar(upstream, "mute", app.port, "http2") as (_, up),
            socket.create_connection(("127.0.0.1", up), timeout=10) as sock,
        ):
            client = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
            client.initiate_connection()
            client.send_headers(1, [(":method", "GET"), (":scheme", "http"),
                                    (":path", "/cut/watch"), (":authority", "mute")],
                                end_stream=True)  # fmt: skip
            sock.sendall(client.data_to_send())
            _until(sock, client, lambda e: isinstance(e, DataReceived) and b"tick" in e.data)
            put_exact(agent, "web", "mute", {"Permissions": [
                {"Action": "deny", "HTTP": {"PathPrefix": "/cut"}},
                {"Action": "allow", "HTTP": {"PathPrefix": "/"}}]})  # fmt: skip
            eventually(lambda: app.pings > 0, 10, what="the cut's PING at the app")
            cut = time.monotonic()
            sock.settimeout(5)
            with contextlib.suppress(ConnectionResetError):
                while time.monotonic() - cut < 5 and sock.recv(65536):  # ticks, until cut
                    pass
            assert time.monotonic() - cut < 3, "the connection outlived the unanswered cut"
    finally:
        app.stop()


@contextlib.contextmanager
def _own_sidecar(upstream: dict[str, object], name: str, app_port: int, protocol: str,
                 *flags: str) -> Iterator[tuple[ProxyProc, int]]:  # fmt: skip
    """`name` (its app on `app_port`) registered with a sidecar of its own (`flags` added)
    and an ad-hoc web proxy with it as an upstream, up and passing: (the sidecar, the
    upstream's port). Both stopped and `name` deregistered after."""
    agent: Any = upstream["agent"]
    tmp: Any = upstream["tmp"]
    inbound, up = free_port(agent.ip), free_port("127.0.0.1")
    agent.put("/v1/agent/service/register", {
        "Name": name, "ID": name, "Port": app_port, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": inbound, "Address": agent.ip,
                                       "Proxy": {"Config": {"protocol": protocol}}}},
    })  # fmt: skip
    set_intention(agent, "web", name, "allow")
    own = ProxyProc(["--sidecar-for", name, *flags, "--http-addr", agent.http],
                    tmp / f"proxy-{name}.log").start()  # fmt: skip
    web = ProxyProc(["--service", "web", "--upstream", f"{name}:{up}", "--http-addr",
                     agent.http], tmp / f"proxy-web-{name}.log").start()  # fmt: skip
    try:
        wait_listening(agent.ip, inbound, own)
        wait_listening("127.0.0.1", up, web)
        eventually(lambda: healthy_sidecars(agent, name) == 1, 30, what=f"{name}'s sidecar")
        # (passing at the agent is not yet known to web's sidecar, whose watch answers a
        # moment later: a call then found no instance and its connection ended, in CI)
        eventually(lambda: _holds(up), 20, what=f"web's sidecar to know {name}'s instance")
        yield own, up
    finally:
        web.stop()
        own.stop()
        agent.put(f"/v1/agent/service/deregister/{name}", {})


def _holds(port: int) -> bool:
    """Whether a connection to the upstream listener on `port` is held (it waits for the
    client to speak), not closed at once as one with no instance to go to is."""
    with socket.create_connection(("127.0.0.1", port), timeout=0.3) as sock:
        try:
            return sock.recv(1) != b""
        except TimeoutError:
            return True


def _grpc_message(body: bytes) -> bytes:
    return b"\0" + len(body).to_bytes(4, "big") + body


def _until(sock: socket.socket, client: H2Connection, wanted: Callable[[Any], bool]) -> Any:
    """Read from `sock` into `client` until an event `wanted` likes comes; that event."""
    while True:
        data = sock.recv(65536)
        assert data, "the connection ended"
        for event in client.receive_data(data):
            if isinstance(event, DataReceived):
                client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if wanted(event):
                return event
        if out := client.data_to_send():
            sock.sendall(out)


# The golden metrics of gRPC calls cut short or answered without a status: web's upstream
# listener and db's sidecar in this process (no cluster), an app played here, real sockets.

_GRPC_HEAD = [(":status", "200"), ("content-type", "application/grpc")]
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: a close sends a reset, not a FIN


class _App:
    """An h2c app (python-hyper's h2 on asyncio) that answers each call once its request
    ended: /t.T/Watch, a server stream, with its head and a first message, and then nothing
    more (the stream stays open); /t.T/Bare with a head and a message that ends the stream,
    no trailers at all; /t.T/Untold the same, then trailers without a `grpc-status`;
    /t.T/Fine whole, `grpc-status` 0; /plain a plain HTTP/2 answer, `200`; a path that ends
    in /Silent, none. `conns`: the writers of its connections, for a test to end them."""

    def __init__(self) -> None:
        self.conns: list[asyncio.StreamWriter] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.conns.append(writer)
        conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        paths: dict[int, str] = {}
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, RequestReceived):
                        paths[event.stream_id] = dict(event.headers)[":path"]
                    elif isinstance(event, DataReceived):
                        conn.acknowledge_received_data(event.flow_controlled_length,
                                                       event.stream_id)  # fmt: skip
                    elif isinstance(event, StreamEnded):
                        _answer(conn, event.stream_id, paths.pop(event.stream_id, ""))
                writer.write(conn.data_to_send())
        writer.close()


def _answer(conn: H2Connection, stream: int, path: str) -> None:
    if path.endswith("/Silent"):  # (no answer at all: tests/test_proxy_h2_timeouts.py)
        return
    if path == "/plain":
        conn.send_headers(stream, [(":status", "200"), ("content-type", "text/plain")])
        conn.send_data(stream, b"ok", end_stream=True)
        return
    conn.send_headers(stream, _GRPC_HEAD)
    conn.send_data(stream, _grpc_message(b"first"), end_stream=path == "/t.T/Bare")
    if path == "/t.T/Untold":
        conn.send_headers(stream, [("grpc-message", "no status")], end_stream=True)
    elif path == "/t.T/Fine":
        conn.send_headers(stream, [("grpc-status", "0")], end_stream=True)


@dataclasses.dataclass
class _Mesh:
    app: _App
    web: UpstreamListener
    db: Inbound
    balanced: bool = False  # web's listener balances each call (h2_balanced.py)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.web.upstream.bind_port}"

    def counted(self) -> tuple[dict[str, int], dict[str, int]]:
        """The calls counted by status class: on db's inbound edge from web, on web's
        outbound edge to db."""
        return _by_class(self.db.metrics.inbound("web")), _by_class(self.web.metrics.outbound("db"))

    async def counted_as(self, kind: str) -> None:
        """Waits until each edge counted one call, of class `kind`."""

        def check() -> bool:
            assert self.counted() == ({kind: 1}, {kind: 1})
            return True

        await eventually_async(check, 5)


def _by_class(edge: Edge) -> dict[str, int]:
    counted: dict[str, int] = {}
    for route in edge.routes.values():
        for kind, n in route.by_class().items():
            counted[kind] = counted.get(kind, 0) + n
    return counted


# How calls go between the sidecars ("mux": a stream of the pooled mux, "tls": a TLS
# connection of their own), each with web's listener following the client's connection or
# balancing each call over the instances (BALANCED: gossamer_balance_calls)
BALANCED = "-balanced"
MODES = ["mux", "tls", f"mux{BALANCED}", f"tls{BALANCED}"]
# A sidecar's HTTP timeouts when its config says none (protocol.py): Envoy's.
DEFAULT_LIMITS = Limits(REQUEST_TIMEOUT_S, REQUEST_IDLE_S, CLIENT_IDLE_S)
Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def grpc_mesh(mode: str, *, db: Limits = DEFAULT_LIMITS, web: Limits = DEFAULT_LIMITS,
                    protocol: str = "grpc", serve: Serve | None = None, balance: bool = False
                    ) -> AsyncIterator[_Mesh]:  # fmt: skip
    """web's upstream listener -> db's sidecar (`protocol`, `grpc` unless said) -> an `_App`
    (or `serve`), the calls between the sidecars on a mux stream (`mode` "mux") or on a TLS
    connection of their own ("tls"); db's timeouts for its app `db`, web's for its upstream
    `web` (tests/test_proxy_h2_timeouts.py); `balance`: web's listener balances each call
    (`gossamer_balance_calls: true`, h2_balanced.py), else follows the client's connection;
    a `mode` of MODES ending in "-balanced" says the same."""
    balance = balance or mode.endswith(BALANCED)
    mode = mode.removesuffix(BALANCED)
    app = _App()
    server = await asyncio.start_server(serve or app.serve, "127.0.0.1", 0)
    pki = Pki()
    db_identity, web_identity = pki.identity("db"), pki.identity("web")
    if mode == "tls":
        db_identity = dataclasses.replace(db_identity, server_tunnel=db_identity.server)
    policy = Policy()
    policy.intentions, policy.known = IntentionSet([Intention("web", "db", action="allow")]), True
    config = ProxyConfig(service="db", bind_address="127.0.0.1", bind_port=free_port("127.0.0.1"),
                         local_port=server.sockets[0].getsockname()[1], protocol=protocol,
                         request_timeout_s=db.request_s, request_idle_s=db.idle_s,
                         client_idle_s=db.client_idle_s)  # fmt: skip
    inbound = Inbound(config, lambda: db_identity, policy, tally.Tally())
    await inbound.start()
    upstream = Upstream("db", free_port("127.0.0.1"), connect_timeout_s=5.0, protocol=protocol,
                        request_timeout_s=web.request_s, request_idle_s=web.idle_s,
                        client_idle_s=web.client_idle_s, balance_calls=balance)  # fmt: skip
    listener = UpstreamListener(upstream, lambda: web_identity, tally.Tally())
    listener.set_instances([("127.0.0.1", config.bind_port)])
    await listener.start()
    try:
        yield _Mesh(app, listener, inbound, balance)
    finally:
        for side in (listener, inbound):
            side.stop_listening()
            side.terminate_all()
        for writer in app.conns:
            writer.transport.abort()
        server.close()


@pytest.fixture(params=MODES)
async def mesh(request: pytest.FixtureRequest) -> AsyncIterator[_Mesh]:
    """`grpc_mesh` with the default limits, each of MODES."""
    async with grpc_mesh(request.param) as made:
        yield made


async def _watching(mesh: _Mesh) -> tuple[socket.socket, H2Connection]:
    """A client (python-hyper's h2 on a socket) of web's upstream listener with a /t.T/Watch
    call on stream 1 whose head and first message came."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", mesh.web.upstream.bind_port))
    client = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
    client.initiate_connection()
    client.send_headers(1, [(":method", "POST"), (":scheme", "http"), (":path", "/t.T/Watch"),
                            (":authority", "db"), ("content-type", "application/grpc"),
                            ("te", "trailers")])  # fmt: skip
    client.send_data(1, _grpc_message(b"q"), end_stream=True)
    await loop.sock_sendall(sock, client.data_to_send())
    while True:
        data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
        assert data, "the connection ended"
        events = client.receive_data(data)
        if out := client.data_to_send():
            await loop.sock_sendall(sock, out)
        if any(isinstance(e, DataReceived) and b"first" in e.data for e in events):
            return sock, client


async def _until_ended(sock: socket.socket) -> None:
    """Reads `sock` until its connection ends (an end or a reset)."""
    loop = asyncio.get_running_loop()
    with contextlib.suppress(ConnectionResetError):
        while await asyncio.wait_for(loop.sock_recv(sock, 65536), 5):
            pass


async def _until_reset(sock: socket.socket, client: H2Connection, stream: int = 1) -> int:
    """Reads `sock` until `stream` is reset; the reset's error code."""
    loop = asyncio.get_running_loop()
    while True:
        data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
        assert data, "the connection ended"
        for event in client.receive_data(data):
            if isinstance(event, StreamReset) and event.stream_id == stream:
                return int(event.error_code)


@pytest.mark.parametrize(("how", "counted"), [
    ("client closes its connection", "4xx"),
    ("client's connection is reset", "4xx"),
    ("client cancels the call", "4xx"),
    ("app closes its connection", "5xx"),
    ("app's connection is reset", "5xx"),
])  # fmt: skip
async def test_a_grpc_stream_cut_short_counts_against_whoever_cut_it(
    mesh: _Mesh, how: str, counted: str
) -> None:
    """A server-streaming call whose answer began is cut before its `grpc-status`. When the
    client went first (it closed its connection or lost it: its process exited, it closed
    its channel; or it reset the call) it is CANCELLED, `499`, on both edges: no 5xx of the
    app's. When the app did, it is UNAVAILABLE, `503`. (The connection ending under a call
    was a `503` whoever ended it; a reset the calling side's sidecar followed, a `200`.)"""
    sock, client = await _watching(mesh)
    if how == "client closes its connection":
        sock.close()
    elif how == "client's connection is reset":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        sock.close()
    elif how == "client cancels the call":
        client.reset_stream(1, 8)  # CANCEL
        await asyncio.get_running_loop().sock_sendall(sock, client.data_to_send())
    else:
        app_side = mesh.app.conns[-1]
        if how == "app's connection is reset":
            app_side.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                         _RESET)  # fmt: skip
        app_side.close()
        if mesh.balanced:  # (one instance's connection lost is not the client's, as with
            # Envoy: web resets the call alone, the client's connection stays)
            assert await _until_reset(sock, client) == 2  # INTERNAL_ERROR
        else:
            await _until_ended(sock)
        sock.close()  # (as a client does once its connection ended)
    try:
        await mesh.counted_as(counted)
    finally:
        sock.close()


@pytest.mark.parametrize("how", ["exits", "closes its channel"])
async def test_a_grpcio_client_that_goes_away_mid_stream_cancelled_its_call(
    mesh: _Mesh, how: str
) -> None:
    """A real grpcio client, in a process of its own, has a server-streaming call under way
    and then exits (killed) or closes its channel: its call counts as CANCELLED (`499`) on
    both edges, not as a 5xx of the app's."""
    script = (
        "import grpc, sys\n"
        "channel = grpc.insecure_channel(sys.argv[1])\n"
        "answers = channel.unary_stream('/t.T/Watch')(b'q', timeout=60)\n"
        "print(next(answers).decode(), flush=True)\n"
        "if sys.argv[2] == 'closes its channel':\n"
        "    channel.close()\n"
        "    print('closed', flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, mesh.target, how, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None
    try:
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"first\n"
        if how == "exits":
            proc.kill()
        else:
            assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"closed\n"
        await mesh.counted_as("4xx")
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


@pytest.mark.parametrize(("path", "code", "counted"), [
    ("/t.T/Bare", None, "5xx"),
    ("/t.T/Untold", None, "5xx"),
    ("/t.T/Fine", grpc.StatusCode.OK, "2xx"),
])  # fmt: skip
async def test_a_grpc_answer_without_a_grpc_status_counts_as_an_error(
    mesh: _Mesh, path: str, code: grpc.StatusCode | None, counted: str
) -> None:
    """The gRPC spec makes a missing `grpc-status` an error: the app's `:status` 200 with a
    stream that ends without one (no trailers at all, or trailers without it) fails at the
    client, so it counts as one (`500`, UNKNOWN/INTERNAL) on both edges, not as a success.
    An answer with its status counts as that status."""

    def call() -> grpc.StatusCode:
        with grpc.insecure_channel(mesh.target) as channel:
            try:
                channel.unary_unary(path)(b"q", timeout=10)
            except grpc.RpcError as error:
                failed: grpc.StatusCode = error.code()  # type: ignore[attr-defined]
                return failed
            return grpc.StatusCode.OK

    got = await asyncio.to_thread(call)
    if code is None:  # what a client makes of it: a failure
        assert got in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL), got
    else:
        assert got is code
    await mesh.counted_as(counted)


async def test_a_plain_http2_answer_needs_no_grpc_status(mesh: _Mesh) -> None:
    """Only gRPC answers (`content-type: application/grpc…`) owe a `grpc-status`: a plain
    HTTP/2 answer, `200` that ends with its body, counts as its `:status`."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", mesh.web.upstream.bind_port))
        client = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        client.initiate_connection()
        client.send_headers(1, [(":method", "GET"), (":scheme", "http"), (":path", "/plain"),
                                (":authority", "db")], end_stream=True)  # fmt: skip
        await loop.sock_sendall(sock, client.data_to_send())
        ended = False
        while not ended:
            data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
            assert data, "the connection ended"
            ended = any(isinstance(e, StreamEnded) for e in client.receive_data(data))
            if out := client.data_to_send():
                await loop.sock_sendall(sock, out)
        await mesh.counted_as("2xx")
    finally:
        sock.close()


class _Stopping:
    """An app whose first connection answers its first request with GOAWAY, last stream 0,
    as an app shutting down refuses the calls it has not begun; its later connections are
    an `_App`'s."""

    def __init__(self) -> None:
        self.app = _App()
        self.conns: list[asyncio.StreamWriter] = self.app.conns
        self.refused = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refused:
            await self.app.serve(reader, writer)
            return
        self.refused += 1
        self.conns.append(writer)
        conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                events = conn.receive_data(data)
                if any(isinstance(e, RequestReceived) for e in events):
                    conn.close_connection(0, last_stream_id=0)
                    writer.write(conn.data_to_send())
                    break
                writer.write(conn.data_to_send())
        writer.close()


def _fine(target: str) -> bytes | grpc.StatusCode:
    """A grpcio unary call to /t.T/Fine: its answer, or its error's code."""
    with grpc.insecure_channel(target) as channel:
        try:
            answer: bytes = channel.unary_unary("/t.T/Fine")(b"q", timeout=5)
        except grpc.RpcError as error:
            failed: Any = error
            code: grpc.StatusCode = failed.code()
            return code
    return answer


@pytest.mark.parametrize("mode", MODES)
async def test_a_call_an_instance_refuses_unprocessed_is_made_again(mode: str) -> None:
    """An instance shutting down says GOAWAY with a call of the client's under way that it
    never began: the call is made again (on a new connection) and answered. Followed, the
    GOAWAY reaches the client and gRPC makes the call again itself; balanced, web's splitter
    makes it again (h2_balanced_replay.py): it answered RST_STREAM REFUSED_STREAM, which
    grpcio does not retry (UNAVAILABLE)."""
    app = _Stopping()
    async with grpc_mesh(mode, serve=app.serve) as mesh:
        try:
            assert await asyncio.to_thread(_fine, mesh.target) == _grpc_message(b"first")[5:]
        finally:
            for writer in app.conns:
                writer.transport.abort()
