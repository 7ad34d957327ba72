"""Each call of one gRPC channel balanced over the instances (proxy/h2_balanced.py).

Three instances of `rpc`, each a grpcio server of its own behind a sidecar of
its own; web's sidecar has an upstream to it balanced per call (the default,
no key), old's one opted out (`gossamer_balance_calls: false`: the connection
to one instance, followed).
Each server answers with its name, so the test sees where each call went.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from h2.events import ConnectionTerminated

from gossamer.proxy.h2_frames import CANCEL, rst_stream
from gossamer.proxy.http_limits import Limits
from tests.harness.cli import cli_env
from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.grpc_poll import unless_unavailable
from tests.harness.poll import eventually, eventually_async
from tests.proxy_support import (
    ProxyProc,
    healthy_sidecars,
    set_intention,
    sidecar,
    wait_listening,
    web_body,
)
from tests.test_proxy_grpc import _by_class, _watching, grpc_mesh
from tests.test_proxy_h2_timeouts import _unary

NAMES = ("rpc1", "rpc2", "rpc3")


class Server:
    """A grpcio server of one instance: Who answers its name, Echo its request."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("t.T", {
            "Who": grpc.unary_unary_rpc_method_handler(lambda req, ctx: name.encode()),
            "Echo": grpc.stream_stream_rpc_method_handler(
                lambda reqs, ctx: (r for r in reqs)),
        })])  # fmt: skip
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(0)


def _register(agent: AgentProc, tmp: Path, name: str, server: Server) -> ProxyProc:
    inbound = free_port(agent.ip)
    agent.put("/v1/agent/service/register", {
        "Name": "rpc", "ID": name, "Port": server.port, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": inbound, "Address": agent.ip,
                                       "Proxy": {"Config": {"protocol": "grpc"}}}},
    })  # fmt: skip
    proxy = sidecar(agent, tmp, name)
    wait_listening(agent.ip, inbound, proxy)
    return proxy


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("h2-balanced")
    c = Cluster(tmp)
    servers = {name: Server(name) for name in NAMES}
    proxies: list[ProxyProc] = []
    try:
        agent = c.new_agent("hb1").start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        set_intention(agent, "web", "rpc", "allow")
        for name, server in servers.items():
            proxies.append(_register(agent, tmp, name, server))
        balanced, followed = free_port("127.0.0.1"), free_port("127.0.0.1")
        agent.put("/v1/agent/service/register", web_body(agent, free_port(agent.ip), [
            {"DestinationName": "rpc", "LocalBindPort": balanced,
             "Config": {"protocol": "grpc"}},
        ]))  # fmt: skip
        old = web_body(agent, free_port(agent.ip), [
            {"DestinationName": "rpc", "LocalBindPort": followed,
             "Config": {"protocol": "grpc", "gossamer_balance_calls": False}},
        ])  # fmt: skip
        old.update(Name="old", ID="old")
        agent.put("/v1/agent/service/register", old)
        set_intention(agent, "old", "rpc", "allow")
        proxies.append(web := sidecar(agent, tmp, "web"))
        proxies.append(old_proxy := sidecar(agent, tmp, "old"))
        wait_listening("127.0.0.1", balanced, web)
        wait_listening("127.0.0.1", followed, old_proxy)
        eventually(lambda: healthy_sidecars(agent, "rpc") == 3, 30, what="rpc's sidecars passing")
        yield {"agent": agent, "tmp": tmp, "balanced": f"127.0.0.1:{balanced}",
               "followed": f"127.0.0.1:{followed}"}  # fmt: skip
    finally:
        for proxy in proxies:
            proxy.stop()
        for server in servers.values():
            server.stop()
        leftovers = c.close()
    assert not leftovers, f"processes left behind: {leftovers}"


def _who(channel: grpc.Channel) -> str:
    answer: bytes = channel.unary_unary("/t.T/Who")(b"", timeout=5)
    return answer.decode()


def _up(channel: grpc.Channel) -> str:
    """Who answered a call; "" while web's sidecar has not heard of an instance yet."""
    return unless_unavailable(lambda: _who(channel)) or ""


def _spread(channel: grpc.Channel, names: set[str], calls: int = 60) -> collections.Counter[str]:
    """`calls` calls once every one of `names` has answered one (the sidecar has them all)."""
    seen: set[str] = set()
    eventually(lambda: seen.add(_up(channel)) or names <= seen, 30,
               what=f"calls reaching each of {sorted(names)}")  # fmt: skip
    return collections.Counter(_who(channel) for _ in range(calls))


def test_one_channels_calls_spread_over_every_instance(mesh: dict[str, Any]) -> None:
    """60 unary calls of one channel (one connection) go to all three instances, each a
    fair share (20 expected; p2c over idle instances draws at random)."""
    with grpc.insecure_channel(mesh["balanced"]) as channel:
        counts = _spread(channel, set(NAMES))
    assert sum(counts.values()) == 60
    assert set(counts) == set(NAMES), counts
    assert min(counts.values()) >= 8, counts


def test_opted_out_a_channel_stays_on_one_instance(mesh: dict[str, Any]) -> None:
    """`gossamer_balance_calls: false`: the channel's connection goes to one instance, and every
    call of it with it (the follow-only relay, h2_followed.py)."""
    with grpc.insecure_channel(mesh["followed"]) as channel:
        eventually(lambda: _up(channel), 30, what="a first call")
        counts = collections.Counter(_who(channel) for _ in range(30))
    assert len(counts) == 1, counts


def test_a_bidi_stream_of_several_mib_each_way_arrives_intact(mesh: dict[str, Any]) -> None:
    chunks = [bytes([i % 251]) * 65536 + i.to_bytes(4, "big") for i in range(64)]  # ~4 MiB
    with grpc.insecure_channel(mesh["balanced"]) as channel:
        eventually(lambda: _up(channel), 30, what="a first call")
        echo = channel.stream_stream("/t.T/Echo")
        answers = list(echo(iter(chunks), timeout=30))
        assert answers == chunks
        # two at once, on the same connection (each to an instance of its own, or not)
        first, second = echo(iter(chunks), timeout=30), echo(iter(chunks[::-1]), timeout=30)
        assert list(first) == chunks
        assert list(second) == chunks[::-1]


CALLS = 12  # (fewer than each instance's server runs at once: none waits for a thread)


def test_many_large_calls_at_once_keep_to_the_sidecar_links_credit(mesh: dict[str, Any]) -> None:
    """12 bidi calls of 2 MiB each way at once on one channel: the instances' HTTP/2 windows
    let web's sidecar send more than a sidecar-to-sidecar stream's credit, which the far
    sidecar took as a broken peer and closed the whole shared connection, failing every call
    on it (UNAVAILABLE/INTERNAL). Each call now arrives whole. Then, with the answers read
    call after call, web's sidecar stopped reading an instance while what it sent there waited
    for the mux's credit: the instance, writing answers nobody read, read no more requests,
    and its calls ended DEADLINE_EXCEEDED (half the runs, in Python)."""
    chunks = [bytes([i]) * (1 << 20) for i in range(2)]
    with grpc.insecure_channel(mesh["balanced"]) as channel:
        eventually(lambda: _up(channel), 30, what="a first call")
        echo = channel.stream_stream("/t.T/Echo")
        calls = [echo(iter(chunks), timeout=30) for _ in range(CALLS)]
        assert [list(call) == chunks for call in calls] == [True] * CALLS


def test_a_denied_call_is_denied_each_time(mesh: dict[str, Any]) -> None:
    """The far sidecars decide each call: a deny intention gives PERMISSION_DENIED per call,
    wherever it went, and the channel works again once allowed."""
    agent = mesh["agent"]
    with grpc.insecure_channel(mesh["balanced"]) as channel:
        eventually(lambda: _up(channel), 30, what="a first call")
        set_intention(agent, "web", "rpc", "deny")
        try:

            def denied() -> bool:
                try:
                    _who(channel)
                except grpc.RpcError as error:
                    assert error.code() is grpc.StatusCode.PERMISSION_DENIED, error
                    return True
                return False

            eventually(denied, 20, what="the deny applied")
            for _ in range(9):  # each call, whichever instance it goes to
                assert denied()
            with grpc.insecure_channel(mesh["balanced"]) as fresh:  # (new connections: refused)
                for _ in range(3):
                    with pytest.raises(grpc.RpcError) as error:
                        _who(fresh)
                    assert error.value.code() is grpc.StatusCode.PERMISSION_DENIED, error.value
        finally:
            set_intention(agent, "web", "rpc", "allow")
        eventually(lambda: not denied(), 20, what="calls allowed again")


def test_instances_added_and_lost_mid_channel(mesh: dict[str, Any]) -> None:
    """A channel open while a fourth instance joins: its next calls reach it too. Then that
    instance's app stops: the channel's next calls all go to the others, with no error."""
    agent, tmp = mesh["agent"], mesh["tmp"]
    with grpc.insecure_channel(mesh["balanced"]) as channel:
        _spread(channel, set(NAMES), calls=3)
        extra = Server("rpc4")
        proxy = _register(agent, tmp, "rpc4", extra)
        try:
            counts = _spread(channel, {*NAMES, "rpc4"}, calls=40)
            assert set(counts) == {*NAMES, "rpc4"}, counts
            extra.stop()
            counts = collections.Counter(_who(channel) for _ in range(40))  # no call fails
            assert set(counts) <= set(NAMES), counts
        finally:
            extra.stop()
            agent.put("/v1/agent/service/deregister/rpc4")
            proxy.stop()
            eventually(lambda: healthy_sidecars(agent, "rpc") == 3, 30, what="rpc4 gone")


def test_the_splitter_is_loaded_only_for_an_http2_client() -> None:
    """A proxy with no HTTP/2 upstream client imports none of the splitter's modules."""
    script = (
        "import sys, gossamer.proxy.__main__, gossamer.proxy.outbound\n"
        "print(' '.join(m for m in sys.modules if m.startswith('gossamer.proxy.h2_split')"
        " or m == 'gossamer.proxy.h2_balanced'))"
    )
    found = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           env=cli_env(), timeout=60, check=True).stdout.split()  # fmt: skip
    assert found == []


@pytest.mark.parametrize("mode", ["mux", "tls"])
async def test_a_call_past_the_upstreams_request_timeout_gets_deadline_exceeded(mode: str) -> None:
    """web's request timeout on a balanced connection: a call its hung app never answers is
    answered DEADLINE_EXCEEDED "upstream request timeout", counted 504 on web's edge and as
    web's request timeout."""
    async with grpc_mesh(mode, web=Limits(0.5, 0.0, 0.0), balance=True) as mesh:
        code, details, took = await asyncio.to_thread(_unary, mesh.target, "/t.T/Silent", 20)
        assert (code, details) == (grpc.StatusCode.DEADLINE_EXCEEDED, "upstream request timeout")
        assert 0.4 < took < 5, took
        edge = mesh.web.metrics.outbound("db")
        await eventually_async(lambda: _by_class(edge) == {"5xx": 1}, 5)
        assert mesh.web.tally.snapshot().get("outbound.http.request_timeout") == 1


@pytest.mark.parametrize("mode", ["mux", "tls"])
async def test_a_drain_tells_goaway_and_closes_once_the_call_under_way_ends(mode: str) -> None:
    """The listener retired (a change, SIGTERM) while a balanced connection has a stream under
    way: the client is told GOAWAY (NO_ERROR) at once, its call goes on, and once it ends the
    connection closes and leaves the listener."""
    async with grpc_mesh(mode, balance=True) as mesh:
        sock, client = await _watching(mesh)
        loop = asyncio.get_running_loop()
        try:
            mesh.web.retire()
            away: list[ConnectionTerminated] = []
            while not away:
                data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
                assert data, "the connection ended before its GOAWAY"
                away += [
                    e for e in client.receive_data(data) if isinstance(e, ConnectionTerminated)
                ]
            assert away[0].error_code == 0 and away[0].last_stream_id == 1
            assert mesh.web.open  # (the call under way goes on)
            # the client ends it (h2's state machine sends nothing after a GOAWAY: by hand)
            await loop.sock_sendall(sock, rst_stream(1, CANCEL))
            with contextlib.suppress(ConnectionResetError):
                while await asyncio.wait_for(loop.sock_recv(sock, 65536), 5):
                    pass
            await eventually_async(lambda: not mesh.web.open, 5)
        finally:
            sock.close()
