"""gRPC through the mesh: a real grpcio server and client, h2c, carried at L4.

`rpc` is registered with `Proxy.Config.protocol: grpc`; its sidecar
decides each connection once and relays HTTP/2 byte for byte (protocol.py
says why HTTP/2 is not parsed). The client calls through web's upstream
listener; unary and bidirectional streaming calls must arrive intact.
Raw-bytes methods (no protobuf): the proxy's job is the transport.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

from tests.harness.cluster import Cluster, free_port
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


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    tmp = tmp_path_factory.mktemp("proxy-grpc")
    c = Cluster(tmp)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("echo.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary),
        "Stream": grpc.stream_stream_rpc_method_handler(_stream),
    })])  # fmt: skip
    app_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    proxies: list[ProxyProc] = []
    try:
        agent = c.new_agent("pg1").start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        up_port, rpc_in, web_in = (free_port("127.0.0.1"), free_port(agent.ip),
                                   free_port(agent.ip))  # fmt: skip
        agent.put("/v1/agent/service/register", {
            "Name": "rpc", "ID": "rpc", "Port": app_port, "Address": agent.ip,
            "Connect": {"SidecarService": {"Port": rpc_in, "Address": agent.ip,
                                           "Proxy": {"Config": {"protocol": "grpc"}}}},
        })  # fmt: skip
        agent.put(
            "/v1/agent/service/register",
            web_body(agent, web_in, [{"DestinationName": "rpc", "LocalBindPort": up_port}]),
        )
        set_intention(agent, "web", "rpc", "allow")
        proxies += [
            rpc_proxy := sidecar(agent, tmp, "rpc"),
            web_proxy := sidecar(agent, tmp, "web"),
        ]
        wait_listening(agent.ip, rpc_in, rpc_proxy)
        wait_listening("127.0.0.1", up_port, web_proxy)
        eventually(lambda: healthy_sidecars(agent, "rpc") == 1, 30, what="rpc's sidecar passing")
        yield ("127.0.0.1", up_port)
    finally:
        for proxy in proxies:
            proxy.stop()
        server.stop(0)
        leftovers = c.close()
    assert not leftovers, f"processes left behind: {leftovers}"


def test_grpc_unary_and_streaming_calls_pass_through_the_mesh(upstream: tuple[str, int]) -> None:
    with grpc.insecure_channel(f"{upstream[0]}:{upstream[1]}") as channel:
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
