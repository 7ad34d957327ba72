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

from collections.abc import Iterator
from concurrent import futures
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.harness.cluster import Cluster, free_port, put_exact
from tests.harness.poll import eventually
from tests.proxy_support import (
    ProxyProc,
    healthy_sidecars,
    set_intention,
    sidecar,
    wait_listening,
    web_body,
)


def _unary(request: bytes, context: Any) -> bytes:
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
        for name, protocol in protocols.items():
            inbound = free_port(agent.ip)
            agent.put("/v1/agent/service/register", {
                "Name": name, "ID": name, "Port": app_ports[name], "Address": agent.ip,
                "Connect": {"SidecarService": {"Port": inbound, "Address": agent.ip,
                                               "Proxy": {"Config": {"protocol": protocol}}}},
            })  # fmt: skip
            set_intention(agent, "web", name, "allow")
            up_ports[name] = free_port("127.0.0.1")
            upstreams.append({"DestinationName": name, "LocalBindPort": up_ports[name]})
            proxies.append(proxy := sidecar(agent, tmp, name))
            wait_listening(agent.ip, inbound, proxy)
        agent.put("/v1/agent/service/register", web_body(agent, free_port(agent.ip), upstreams))
        proxies.append(web_proxy := sidecar(agent, tmp, "web"))
        for name, port in up_ports.items():
            wait_listening("127.0.0.1", port, web_proxy)
            eventually(lambda n=name: healthy_sidecars(agent, n) == 1, 30,
                       what=f"{name}'s sidecar passing")  # fmt: skip
        yield {"rpc": f"127.0.0.1:{up_ports['rpc']}", "rpcs": f"127.0.0.1:{up_ports['rpcs']}",
               "app_cert": app_cert, "agent": agent}  # fmt: skip
    finally:
        for proxy in proxies:
            proxy.stop()
        server.stop(0)
        leftovers = c.close()
    assert not leftovers, f"processes left behind: {leftovers}"


def _h2_over_tls(upstream: dict[str, object]) -> grpc.Channel:
    """A channel to `rpcs` through the mesh speaking the app's own TLS (grpcio insists on
    ALPN `h2`), checking the app's certificate by its name, not by the mesh's address."""
    credentials = grpc.ssl_channel_credentials(root_certificates=upstream["app_cert"])  # type: ignore[arg-type]
    return grpc.secure_channel(str(upstream["rpcs"]), credentials,
                               options=[("grpc.ssl_target_name_override", APP_NAME)])  # fmt: skip


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
            put_exact(agent, "web", "rpc", {"Permissions": [
                {"Action": "allow", "HTTP": {"PathExact": "/echo.Echo/Stream"}}]})  # fmt: skip
            eventually(lambda: not denied(lambda: list(stream(iter([b"a"]), timeout=5))), 20,
                       what="the change applied to the next call")  # fmt: skip
            assert list(stream(iter([b"b"]), timeout=5)) == [b"stream:b"]
            assert denied(lambda: unary(b"x", timeout=5, metadata=team))
        # h2 inside the app's own TLS cannot be read: an L7 intention refuses the connection
        put_exact(agent, "web", "rpcs", {"Permissions": [
            {"Action": "allow", "HTTP": {"PathPrefix": "/"}}]})  # fmt: skip
        with _h2_over_tls(upstream) as channel:
            unary = channel.unary_unary("/echo.Echo/Unary")
            with pytest.raises(grpc.RpcError) as refused:
                unary(b"x", timeout=5)
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        set_intention(agent, "web", "rpc", "allow")
        set_intention(agent, "web", "rpcs", "allow")
