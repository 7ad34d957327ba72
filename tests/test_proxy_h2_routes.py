"""A service-router's routes applied to each balanced gRPC call (h2_split_routed.py,
h2_routes.py), and a `431` the balancing side answers counted on the outbound edge.

One agent and one `connect proxy --node` serving every sidecar on it: `a` and
`b` are each a grpcio server behind a sidecar (`service-defaults` Protocol
grpc, which a router needs), `web` has a grpc upstream of `a`, balanced per
call (the default), and a metrics listener. Each server's `Who` answers its
name, `Meta` its call's metadata and its name (JSON), `Slow` its name after SLOW_S. The
431 test runs in process (tests/test_proxy_grpc.py's grpc_mesh).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, StreamEnded
from hpack import Encoder

from gossamer.catalog.config_entries import read_entry
from gossamer.catalog.config_router import routes_of
from gossamer.proxy.h2_frames import header_frames, literal_block
from gossamer.proxy.router_plan import plan_of
from tests.harness.cluster import AgentProc, Cluster, free_port, http_json
from tests.harness.poll import eventually, eventually_async
from tests.proxy_support import (
    ProxyProc,
    healthy_sidecars,
    series,
    set_intention,
    stop_mesh,
    wait_listening,
    web_body,
)
from tests.test_proxy_grpc import BALANCED, MODES, _answer, _by_class, grpc_mesh
from tests.test_proxy_h2_adversarial import CALL, START, _answered_431, _Raw

SLOW_S = 3.0


class Server:
    """A grpcio server named `name`: Who, Meta and Slow (raw bytes, no protobuf)."""

    def __init__(self, name: str) -> None:
        def meta(request: bytes, ctx: grpc.ServicerContext) -> bytes:
            ctx.send_initial_metadata([("x-gone", "1"), ("x-stays", "1")])
            return json.dumps({**dict(ctx.invocation_metadata()), "server": name}).encode()

        def slow(request: bytes, ctx: grpc.ServicerContext) -> bytes:
            time.sleep(SLOW_S)
            return name.encode()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("t.T", {
            "Who": grpc.unary_unary_rpc_method_handler(lambda req, ctx: name.encode()),
            "Meta": grpc.unary_unary_rpc_method_handler(meta),
            "Slow": grpc.unary_unary_rpc_method_handler(slow),
        })])  # fmt: skip
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(0)


def _register(agent: AgentProc, name: str, server: Server) -> int:
    inbound = free_port(agent.ip)
    agent.put("/v1/agent/service/register", {
        "Name": name, "ID": name, "Port": server.port, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": inbound, "Address": agent.ip,
                                       "Proxy": {"Config": {"protocol": "grpc"}}}},
    })  # fmt: skip
    return inbound


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp: Path = tmp_path_factory.mktemp("h2-routes")
    c = Cluster(tmp)
    servers = {name: Server(name) for name in ("a", "b")}
    proxies: list[ProxyProc] = []
    try:
        agent = c.new_agent("hr1").start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        for name in servers:
            agent.put("/v1/config", {"Kind": "service-defaults", "Name": name, "Protocol": "grpc"})
            set_intention(agent, "web", name, "allow")
        ins = [_register(agent, name, server) for name, server in servers.items()]
        port = free_port("127.0.0.1")
        web = web_body(agent, free_port(agent.ip), [
            {"DestinationName": "a", "LocalBindPort": port, "Config": {"protocol": "grpc"}},
        ])  # fmt: skip
        stats = f"127.0.0.1:{free_port('127.0.0.1')}"
        web["Connect"]["SidecarService"]["Proxy"]["Config"] = {  # type: ignore[index]
            "gossamer_metrics_bind_addr": stats
        }
        agent.put("/v1/agent/service/register", web)
        argv = ["--node", "--drain-timeout", "1", "--http-addr", agent.http]
        proxies.append(proxy := ProxyProc(argv, tmp / "proxy.log").start())
        for inbound in ins:
            wait_listening(agent.ip, inbound, proxy)
        wait_listening("127.0.0.1", port, proxy)
        for name in servers:
            eventually(lambda n=name: healthy_sidecars(agent, n) == 1, 30, what=f"{name} passing")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:  # (UNAVAILABLE until the
            # sidecar's watch hears of the instances the agent already reports passing)
            eventually(lambda: _tried(channel, "/t.T/Who") == "a", 20, what="a first call")
        yield {"agent": agent, "target": f"127.0.0.1:{port}", "stats": stats,
               "log": tmp / "proxy.log"}  # fmt: skip
    finally:
        leftovers = stop_mesh(c, proxies, servers.values())
    assert not leftovers, f"processes left behind: {leftovers}"


@pytest.fixture(autouse=True)
def clean(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each mesh test ends with no router, calls to a going to a again."""
    yield
    if "mesh" not in request.fixturenames:
        return
    mesh = request.getfixturevalue("mesh")
    agent = mesh["agent"]
    http_json(f"{agent.http}/v1/config/service-router/a", "DELETE", token=agent.token,
              cafile=agent.cafile)  # fmt: skip
    with grpc.insecure_channel(mesh["target"]) as channel:
        eventually(lambda: _tried(channel, "/t.T/Who") == "a", 20, what="no router in force")


def _router(mesh: dict[str, Any], *routes: dict[str, Any]) -> None:
    mesh["agent"].put("/v1/config", {"Kind": "service-router", "Name": "a", "Routes": routes})


def _who(channel: grpc.Channel, method: str = "/t.T/Who", **kw: Any) -> str:
    answer: bytes = channel.unary_unary(method)(b"", timeout=5, **kw)
    return answer.decode()


def _tried(channel: grpc.Channel, method: str) -> str:
    """Who answered `method`, or the call's status when it failed (before a router is in
    force: UNIMPLEMENTED)."""
    try:
        return _who(channel, method)
    except grpc.RpcError as exc:
        return str(exc.code())


def test_one_channels_who_calls_go_to_b_and_its_other_calls_to_a(mesh: dict[str, Any]) -> None:
    """A route on the `/t.T/Who` path prefix sends those calls of one channel (one h2
    connection) to b; the same channel's `/t.T/Meta` calls, which no route takes, go to a.
    (The router was logged as not applied: every call went to a.)"""
    _router(mesh, {"Match": {"HTTP": {"PathPrefix": "/t.T/Who"}},
                   "Destination": {"Service": "b"}})  # fmt: skip
    with grpc.insecure_channel(mesh["target"]) as channel:
        eventually(lambda: _who(channel) == "b", 20, what="the route in force")
        for _ in range(5):
            assert _who(channel) == "b"
            assert json.loads(_who(channel, "/t.T/Meta"))["server"] == "a"
        assert {_who(channel) for _ in range(10)} == {"b"}
    log = mesh["log"].read_text()
    assert "balanced HTTP/2 calls only" not in log and "routes: /t.T/Who* -> b" in log


def test_a_prefix_rewrite_changes_the_calls_path(mesh: dict[str, Any]) -> None:
    """`/old.T/` rewritten to `/t.T/`: the server (which has no `old.T`) answers the call."""
    _router(mesh, {"Match": {"HTTP": {"PathPrefix": "/old.T/"}},
                   "Destination": {"Service": "b", "PrefixRewrite": "/t.T/"}})  # fmt: skip
    with grpc.insecure_channel(mesh["target"]) as channel:
        eventually(lambda: _tried(channel, "/old.T/Who") == "b", 20, what="the rewrite in force")
        assert {_who(channel, "/old.T/Who") for _ in range(5)} == {"b"}


def test_header_edits_reach_the_server_and_the_client(mesh: dict[str, Any]) -> None:
    """A route on metadata `x-edit`: RequestHeaders (Set, Add, Remove) are what the server
    sees, ResponseHeaders (Add, Remove) what the client gets as initial metadata. Names are
    lower-cased on the way (HTTP/2 forbids upper case)."""
    _router(mesh, {"Match": {"HTTP": {"Header": [{"Name": "x-edit", "Present": True}]}},
                   "Destination": {"Service": "b",
                                   "RequestHeaders": {"Set": {"X-Routed": "yes"},
                                                      "Add": {"x-more": "1"},
                                                      "Remove": ["x-drop"]},
                                   "ResponseHeaders": {"Add": {"X-Answer": "edited"},
                                                       "Remove": ["x-gone"]}}})  # fmt: skip
    meta = [("x-edit", "1"), ("x-drop", "no"), ("x-keep", "k")]
    with grpc.insecure_channel(mesh["target"]) as channel:
        eventually(lambda: _who(channel, metadata=meta) == "b", 20, what="the route in force")
        call = channel.unary_unary("/t.T/Meta")
        answer, outcome = call.with_call(b"", timeout=5, metadata=meta)
    seen = json.loads(answer)
    assert (seen["server"], seen["x-routed"], seen["x-more"], seen["x-keep"]) == (
        "b",
        "yes",
        "1",
        "k",
    )
    assert "x-drop" not in seen
    answered = dict(outcome.initial_metadata())
    assert answered["x-answer"] == "edited" and answered["x-stays"] == "1"
    assert "x-gone" not in answered


def test_a_route_on_the_host_header_takes_a_call_by_its_authority(mesh: dict[str, Any]) -> None:
    """A route on `Host` (HTTP/1's name) takes gRPC calls by their `:authority`, as the L7
    intentions read it and as Envoy matches it. (The call's pseudo-headers were not among the
    fields the route saw: no route on the authority ever took a call.)"""
    _router(mesh, {"Match": {"HTTP": {"Header": [{"Name": "Host", "Prefix": "127.0.0.1:"}]}},
                   "Destination": {"Service": "b"}})  # fmt: skip
    with grpc.insecure_channel(mesh["target"]) as channel:
        eventually(lambda: _who(channel) == "b", 20, what="the route in force")
        assert json.loads(_who(channel, "/t.T/Meta"))["server"] == "b"


@pytest.mark.parametrize("limit", ["RequestTimeout", "IdleTimeout"])
def test_a_routes_timeout_ends_its_call(mesh: dict[str, Any], limit: str) -> None:
    """A route's RequestTimeout (or IdleTimeout: the call is silent at the server) of 300ms:
    its `/t.T/Slow` call (SLOW_S at the server) ends DEADLINE_EXCEEDED well before the
    server answers; a call no route takes is not cut."""
    _router(mesh, {"Match": {"HTTP": {"PathExact": "/t.T/Slow"}},
                   "Destination": {"Service": "b", limit: "300ms"}},
            {"Match": {"HTTP": {"PathPrefix": "/t.T/Who"}},
             "Destination": {"Service": "b"}})  # fmt: skip
    with grpc.insecure_channel(mesh["target"]) as channel:
        eventually(lambda: _who(channel) == "b", 20, what="the router in force")
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as failed:
            channel.unary_unary("/t.T/Slow")(b"", timeout=10)
        assert failed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < SLOW_S - 1


def test_outbound_metrics_name_the_route_a_call_took(mesh: dict[str, Any]) -> None:
    """Each routed call counts under `route="route 0 -> b"` on web's outbound edge to a; a
    call no route took counts with no route label."""
    _router(mesh, {"Match": {"HTTP": {"PathPrefix": "/t.T/Who"}},
                   "Destination": {"Service": "b"}})  # fmt: skip
    edge = {"direction": "outbound", "source": "web", "destination": "a"}
    label = "route 0 -> b"

    def count(**labels: str) -> float:
        return series(mesh["stats"], "gossamer_proxy_request_total", **edge, **labels)

    with grpc.insecure_channel(mesh["target"]) as channel:
        eventually(lambda: _who(channel) == "b", 20, what="the route in force")
        routed, total = count(route=label), count()
        for _ in range(3):
            assert _who(channel) == "b"
        _who(channel, "/t.T/Meta")
        eventually(lambda: count(route=label) == routed + 3 and count() == total + 4, 10,
                   what="the calls counted")  # fmt: skip
    ok = series(mesh["stats"], "gossamer_proxy_response_total", **edge, route=label,
                status_class="2xx")  # fmt: skip
    assert ok >= 3


@pytest.mark.parametrize("mode", MODES)
async def test_a_call_answered_431_counts_on_the_outbound_edge(mode: str) -> None:
    """A call whose metadata decodes past the header list limit is answered `431` by web's
    sidecar; balanced or followed, web's outbound edge counts one 4xx. (Balanced, it was
    answered and counted nowhere.)"""
    async with grpc_mesh(mode) as mesh:
        client = await _Raw.open(mesh)
        metadata = [(f"x-meta-{i}".encode(), f"{i:04}".encode() + b"v" * 996) for i in range(66)]
        fat = literal_block(CALL) + Encoder().encode(metadata, huffman=True)
        await client.send(START + header_frames(1, fat, end_stream=True))
        await client.until("end", 5)
        assert _answered_431(client, 1)
        client.close()

        def counted() -> bool:
            assert _by_class(mesh.web.metrics.outbound("db")) == {"4xx": 1}
            return True

        await eventually_async(counted, 5)


@pytest.mark.parametrize("mode", [m for m in MODES if m.endswith(BALANCED)])
async def test_a_call_with_no_instance_to_go_to_is_counted(mode: str) -> None:
    """With no instance of the upstream, a balanced call is answered UNAVAILABLE "no healthy
    upstream" by web's sidecar: counted as a 503 on web's outbound edge and as a refusal
    (`outbound.refused.no-healthy-instance`), as a followed connection with none is. (It
    was counted nowhere.)"""
    async with grpc_mesh(mode) as mesh:
        mesh.web.set_instances([])

        def call() -> grpc.StatusCode:
            with grpc.insecure_channel(mesh.target) as channel:
                with pytest.raises(grpc.RpcError) as failed:
                    channel.unary_unary("/t.T/Fine")(b"x", timeout=5)
                code: grpc.StatusCode = failed.value.code()
                return code

        assert await asyncio.to_thread(call) == grpc.StatusCode.UNAVAILABLE

        def counted() -> bool:
            assert _by_class(mesh.web.metrics.outbound("db")) == {"5xx": 1}
            assert mesh.web.tally.snapshot()["outbound.refused.no-healthy-instance"] == 1
            return True

        await eventually_async(counted, 5)


class _ResetOnce:
    """An h2c app that resets its first /t.T/Fine call (INTERNAL_ERROR, nothing answered)
    and answers each later one whole (tests/test_proxy_grpc.py's `_answer`)."""

    def __init__(self) -> None:
        self.calls = 0
        self.conns: list[asyncio.StreamWriter] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.conns.append(writer)
        conn = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, DataReceived):
                        conn.acknowledge_received_data(event.flow_controlled_length,
                                                       event.stream_id)  # fmt: skip
                    elif isinstance(event, StreamEnded):
                        self.calls += 1
                        if self.calls == 1:
                            conn.reset_stream(event.stream_id, 2)  # INTERNAL_ERROR
                        else:
                            _answer(conn, event.stream_id, "/t.T/Fine")
                writer.write(conn.data_to_send())
        writer.close()


@pytest.mark.parametrize("mode", [m for m in MODES if m.endswith(BALANCED)])
@pytest.mark.parametrize("retry_on", [["reset"], []])
async def test_retry_on_reset_sends_a_reset_call_again(mode: str, retry_on: list[str]) -> None:
    """The app resets the first call before answering. Under a route with `RetryOn: reset`
    the call is sent again and the grpcio client gets its answer (the app saw two calls);
    without it the client gets the reset (INTERNAL)."""
    app = _ResetOnce()
    async with grpc_mesh(mode, serve=app.serve) as mesh:
        entry = {"Kind": "service-router", "Name": "db", "Routes": [
            {"Match": {"HTTP": {"PathPrefix": "/t.T/"}},
             "Destination": {"RetryOn": retry_on} if retry_on else {}}]}  # fmt: skip
        mesh.web.call_routes = plan_of("db", routes_of(read_entry(entry)), {}, {})

        def call() -> str:
            with grpc.insecure_channel(mesh.target) as channel:
                try:
                    channel.unary_unary("/t.T/Fine")(b"x", timeout=5)
                    return "ok"
                except grpc.RpcError as exc:
                    return str(exc.code())

        got = await asyncio.to_thread(call)
        for writer in app.conns:
            writer.transport.abort()
    if retry_on:
        assert (got, app.calls) == ("ok", 2)
    else:
        assert (got, app.calls) == ("StatusCode.INTERNAL", 1)
