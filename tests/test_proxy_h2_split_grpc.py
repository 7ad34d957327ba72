"""The splitter's core between real gRPC stacks (grpcio, gRPC C-core, at both ends), through
the test-only shell in tests/h2_split_shell.py: one channel's calls spread over three
servers, unary and streaming, large messages both ways, a server gone."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from tests.h2_split_shell import SplitShell


def _server(name: bytes) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("echo.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(lambda r, _: name + b":" + r),
        "Stream": grpc.stream_stream_rpc_method_handler(
            lambda rs, _: (name + b":" + r[::-1] for r in rs)),
    })])  # fmt: skip
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


@pytest.fixture
def mesh() -> Iterator[tuple[SplitShell, dict[str, grpc.Server]]]:
    servers = {key: _server(key.encode()) for key in ("a", "b", "c")}
    shell = SplitShell({key: port for key, (_, port) in servers.items()}).start()
    try:
        yield shell, {key: server for key, (server, _) in servers.items()}
    finally:
        shell.stop()
        for server, _ in servers.values():
            server.stop(0)


def test_one_channel_calls_every_instance(mesh: tuple[SplitShell, dict[str, grpc.Server]]) -> None:
    shell, _ = mesh
    with grpc.insecure_channel(f"127.0.0.1:{shell.port}") as channel:
        unary = channel.unary_unary("/echo.Echo/Unary")
        answers = [unary(b"%d" % i, timeout=5) for i in range(30)]
    assert Counter(a.split(b":")[0] for a in answers) == {b"a": 10, b"b": 10, b"c": 10}
    assert [a.split(b":")[1] for a in answers] == [b"%d" % i for i in range(30)]
    assert sorted(shell.dials) == ["a", "b", "c"]  # one connection each, kept
    assert Counter(key for key, _, _ in shell.done) == {"a": 10, "b": 10, "c": 10}
    assert {status for _, status, _ in shell.done} == {200}


def test_streams_of_large_messages_both_ways(
    mesh: tuple[SplitShell, dict[str, grpc.Server]],
) -> None:
    shell, _ = mesh
    messages = [bytes([i]) * (1 << 20) + b"end" for i in range(6)]
    with grpc.insecure_channel(f"127.0.0.1:{shell.port}") as channel:
        stream = channel.stream_stream("/echo.Echo/Stream")
        calls = [list(stream(iter(messages), timeout=20)) for _ in range(3)]
    for answers in calls:
        assert [a.split(b":", 1)[1] for a in answers] == [m[::-1] for m in messages]
    assert sorted({a.split(b":")[0] for answers in calls for a in answers}) == [b"a", b"b", b"c"]


def test_a_server_gone_leaves_the_others_serving(
    mesh: tuple[SplitShell, dict[str, grpc.Server]],
) -> None:
    shell, servers = mesh
    with grpc.insecure_channel(f"127.0.0.1:{shell.port}") as channel:
        unary = channel.unary_unary("/echo.Echo/Unary")
        assert len({unary(b"x", timeout=5) for _ in range(3)}) == 3
        servers["b"].stop(0).wait(5)
        answers, failures = [], []
        for _ in range(12):
            try:
                answers.append(unary(b"y", timeout=5))
            except grpc.RpcError as exc:
                failures.append(exc.code())
    assert {a.split(b":")[0] for a in answers} == {b"a", b"c"}
    assert set(failures) <= {grpc.StatusCode.UNAVAILABLE}


def test_an_instance_added_mid_channel_gets_calls(
    mesh: tuple[SplitShell, dict[str, grpc.Server]],
) -> None:
    shell, _ = mesh
    added, port = _server(b"d")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{shell.port}") as channel:
            unary = channel.unary_unary("/echo.Echo/Unary")
            before = {unary(b"x", timeout=5).split(b":")[0] for _ in range(6)}
            shell.backends["d"] = port  # scale-up: the catalog now lists a fourth
            after = Counter(unary(b"x", timeout=5).split(b":")[0] for _ in range(8))
    finally:
        added.stop(0)
    assert before == {b"a", b"b", b"c"} and after[b"d"] == 2
