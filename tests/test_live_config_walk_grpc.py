"""A gRPC upstream's registration changed live under a long-lived channel.

Real agent, real sidecars, two real grpcio servers (`rpc` and `rpc2`, both `grpc` by their
service-defaults). web's upstream on one port is changed from `rpc` to `rpc2`: a channel
opened before the change must reach `rpc2` soon after it, and lose no call. It did not:
the replaced listener's connections went on (open connections finish), and a gRPC
channel never finishes its connection, so it called `rpc` for good.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.grpc_poll import unless_unavailable
from tests.harness.poll import eventually
from tests.proxy_support import (
    ProxyProc,
    healthy_sidecars,
    set_intention,
    sidecar,
    stop_mesh,
    wait_listening,
    web_body,
)


def _server(tag: bytes) -> tuple[grpc.Server, int]:
    def unary(request: bytes, context: Any) -> bytes:
        return tag + b":" + request

    def stream(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        for request in requests:
            yield tag + b":" + request

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("echo.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Stream": grpc.stream_stream_rpc_method_handler(stream),
    })])  # fmt: skip
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[tuple[AgentProc, int, int]]:
    """(agent, web's inbound port, web's upstream port), web calling `rpc` there."""
    c = Cluster(tmp_path)
    servers: list[grpc.Server] = []
    proxies: list[ProxyProc] = []
    try:
        agent = c.new_agent("lg1").start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        for name in ("rpc", "rpc2"):
            agent.put("/v1/config", {"Kind": "service-defaults", "Name": name,
                                     "Protocol": "grpc"})  # fmt: skip
            server, app_port = _server(name.encode())
            servers.append(server)
            inbound = free_port(agent.ip)
            agent.put("/v1/agent/service/register", {
                "Name": name, "ID": name, "Port": app_port, "Address": agent.ip,
                "Connect": {"SidecarService": {"Port": inbound, "Address": agent.ip}},
            })  # fmt: skip
            proxies.append(proxy := sidecar(agent, tmp_path, name))
            wait_listening(agent.ip, inbound, proxy)
        set_intention(agent, "web", "*", "allow")
        web_in, port = free_port(agent.ip), free_port("127.0.0.1")
        up = [{"DestinationName": "rpc", "LocalBindPort": port}]
        agent.put("/v1/agent/service/register", web_body(agent, web_in, up))
        proxies.append(web := sidecar(agent, tmp_path, "web"))
        wait_listening("127.0.0.1", port, web)
        for name in ("rpc", "rpc2"):
            eventually(lambda n=name: healthy_sidecars(agent, n) == 1, 30, what=f"{name} passing")
        yield agent, web_in, port
    finally:
        leftovers = stop_mesh(c, proxies)
        for server in servers:
            server.stop(0)
    assert not leftovers, f"processes left behind: {leftovers}"


def test_a_channel_follows_its_upstream_to_a_new_destination_losing_no_call(
    mesh: tuple[AgentProc, int, int],
) -> None:
    agent, web_in, port = mesh
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    unary = channel.unary_unary("/echo.Echo/Unary")
    eventually(lambda: unless_unavailable(lambda: unary(b"a", timeout=5)) == b"rpc:a", 20,
               what="web -> rpc")  # fmt: skip
    changed = threading.Event()

    def asks() -> Iterator[bytes]:  # a stream open across the change finishes where it began
        yield b"1"
        changed.wait(10)
        yield b"2"

    answers = channel.stream_stream("/echo.Echo/Stream")(asks(), timeout=20)
    assert next(answers) == b"rpc:1"
    up = [{"DestinationName": "rpc2", "LocalBindPort": port}]
    agent.put("/v1/agent/service/register", web_body(agent, web_in, up))
    got: list[bytes] = []

    def moved() -> bool:
        got.append(unary(b"b", timeout=5))  # (an error fails the test: no call may be lost)
        return got[-1] == b"rpc2:b"

    eventually(moved, 15, what="the kept channel's calls reaching rpc2")
    assert set(got) <= {b"rpc:b", b"rpc2:b"}, got
    changed.set()
    assert list(answers) == [b"rpc:2"]
    channel.close()
