"""Leaf renewal and root rotation on the pooled HTTP/1 path, under steady keep-alive load.

One real agent whose leaves live 10 s (renewed about every 5 s), `db` (protocol `http`) and
`web2` with `db` as an HTTP upstream, each with a real sidecar process: web2's sidecar sends
every request over a pooled mux connection to db's sidecar. The app answers each request
with the `X-Forwarded-Client-Cert` db's sidecar added, whose `Hash` names the certificate
the pooled connection was made with, so the answers show when the pool moves to a new leaf.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from aiohttp import web

from tests.harness.cluster import AgentProc, Cluster, free_port, put_exact
from tests.harness.grpc_poll import unless_unavailable
from tests.harness.poll import eventually
from tests.proxy_support import (
    ProxyProc,
    healthy_sidecars,
    sidecar,
    stop_mesh,
    wait_listening,
    web_body,
)
from tests.test_l7_live_walk import Loader, _request


class XfccApp:
    """Answers every request with the XFCC header it got (empty when none)."""

    def __init__(self) -> None:
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None

    async def _answer(self, request: web.Request) -> web.Response:
        await request.read()
        if request.path.startswith("/slow"):  # (a request still in flight at a signal)
            await asyncio.sleep(0.3)
        xfcc = request.headers.get("X-Forwarded-Client-Cert", "")
        return web.Response(body=f"{xfcc};app={self.port}".encode())

    def start(self) -> XfccApp:
        ready = threading.Event()

        def run() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._answer)
            self._runner = web.AppRunner(app)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        assert ready.wait(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            asyncio.run_coroutine_threadsafe(runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)


@dataclass
class Rotating:
    agent: AgentProc
    pooled: tuple[str, int]
    db_proxy: ProxyProc
    web2_proxy: ProxyProc
    tmp: Path
    db2_proxy: ProxyProc
    db2_inbound: tuple[str, int]
    db2_app: int
    rpc: str  # web2's grpc upstream listener


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rotating]:
    tmp = tmp_path_factory.mktemp("l7-rotation")
    c = Cluster(tmp)
    app, app2 = XfccApp().start(), XfccApp().start()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("echo.Echo", {
        "Unary": grpc.unary_unary_rpc_method_handler(lambda r, _: b"unary:" + r),
        "Stream": grpc.stream_stream_rpc_method_handler(
            lambda rs, _: (b"stream:" + r for r in rs)),
    })])  # fmt: skip
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    proxies: list[ProxyProc] = []
    try:
        config = tmp / "agent.yaml"
        config.write_text("test_leaf_cert_ttl: 10s\n")
        agent = c.new_agent("lr1", "--config-file", str(config)).start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        db_in, pooled = free_port(agent.ip), free_port("127.0.0.1")
        agent.put("/v1/agent/service/register", {
            "Name": "db", "ID": "db", "Port": app.port, "Address": "127.0.0.1",
            "Connect": {"SidecarService": {"Port": db_in, "Address": agent.ip, "Proxy": {
                "Config": {"protocol": "http"}}}},
        })  # fmt: skip
        rpc_in, rpc_up = free_port(agent.ip), free_port("127.0.0.1")
        agent.put("/v1/agent/service/register", {
            "Name": "rpc", "ID": "rpc", "Port": grpc_port, "Address": "127.0.0.1",
            "Connect": {"SidecarService": {"Port": rpc_in, "Address": agent.ip, "Proxy": {
                "Config": {"protocol": "grpc"}}}},
        })  # fmt: skip
        put_exact(agent, "web2", "rpc", {"Action": "allow"})
        proxies.append(rpc_proxy := sidecar(agent, tmp, "rpc"))
        wait_listening(agent.ip, rpc_in, rpc_proxy)
        web2 = web_body(agent, free_port(agent.ip), [
            {"DestinationName": "db", "LocalBindPort": pooled, "Config": {"protocol": "http"}},
            {"DestinationName": "rpc", "LocalBindPort": rpc_up, "Config": {"protocol": "grpc"}},
        ])  # fmt: skip
        agent.put("/v1/agent/service/register", web2 | {"Name": "web2", "ID": "web2"})
        put_exact(agent, "web2", "db", {"Action": "allow"})
        proxies += [
            db_proxy := sidecar(agent, tmp, "db"),
            web2_proxy := sidecar(agent, tmp, "web2"),
        ]
        wait_listening(agent.ip, db_in, db_proxy)
        wait_listening("127.0.0.1", pooled, web2_proxy)
        db2_in = free_port(agent.ip)
        agent.put("/v1/agent/service/register", {
            "Name": "db", "ID": "db2", "Port": app2.port, "Address": "127.0.0.1",
            "Connect": {"SidecarService": {"Port": db2_in, "Address": agent.ip, "Proxy": {
                "Config": {"protocol": "http"}}}},
        })  # fmt: skip
        proxies.append(db2_proxy := sidecar(agent, tmp, "db2"))
        wait_listening(agent.ip, db2_in, db2_proxy)
        eventually(lambda: healthy_sidecars(agent, "db") == 2, 30, what="both db sidecars passing")
        eventually(lambda: _once(("127.0.0.1", pooled)) == 200, 30, what="a first request through")
        yield Rotating(agent, ("127.0.0.1", pooled), db_proxy, web2_proxy, tmp, db2_proxy,
                       (agent.ip, db2_in), app2.port, f"127.0.0.1:{rpc_up}")  # fmt: skip
    finally:
        leftovers = stop_mesh(c, proxies, [app, app2])
        server.stop(0)
    assert not leftovers, f"processes left behind: {leftovers}"


def _once(address: tuple[str, int]) -> int:
    with socket.create_connection(address, timeout=5) as s:
        return _request(s, "/warm")[0]


def _hashes(loader: Loader, after: float = 0.0) -> list[bytes]:
    """The client-certificate hashes of the answers after `after`, in order, runs merged."""
    out: list[bytes] = []
    for t, body in list(loader.bodies):
        if t <= after:
            continue
        h = next((p for p in body.split(b";") if p.startswith(b"Hash=")), b"")
        if not out or out[-1] != h:
            out.append(h)
    return out


def test_leaf_renewals_and_a_root_rotation_under_load_lose_no_request(mesh: Rotating) -> None:
    with Loader(mesh.pooled, path="/r").running() as load:
        eventually(lambda: load.seen(200, 0) == set(range(4)), 20, what="all answered")
        start = time.monotonic()
        first = _hashes(load)[-1]
        # a renewal of web2's leaf (10 s TTL): the pooled connections move to the new one
        eventually(
            lambda: _hashes(load, start)[-1:] not in ([], [first]), 20, what="a renewed leaf in use"
        )
        renewed_at = next(t for t, b in load.bodies if t > start and first not in b)
        old_after = [t - renewed_at for t, b in load.bodies if t > renewed_at and first in b]
        before_root = mesh.agent.get("/v1/connect/ca/roots")["ActiveRootID"]
        mesh.agent.put("/v1/connect/ca/configuration", {"Provider": "consul", "ForceRotate": True})
        rotated = time.monotonic()
        eventually(lambda: len(_hashes(load, rotated)) >= 2, 30, what="a leaf of the new root")
        settled = time.monotonic()
        eventually(lambda: len(load.seen(200, settled + 1)) == 4, 10, what="load going on")
    assert mesh.agent.get("/v1/connect/ca/roots")["ActiveRootID"] != before_root
    assert not load.errors and not load.reconnects, (load.errors[:5], load.reconnects[:5])
    assert {s for _, _, s in load.answers} == {200}
    assert not old_after or max(old_after) < 1.0, f"old leaf used {max(old_after):.2f}s later"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_draining_server_sidecar_costs_its_clients_nothing(mesh: Rotating, method: str) -> None:
    """db2's sidecar gets SIGTERM under load from web2's pool: requests in flight finish,
    new ones go to db, no client sees an error (a POST too: one never sent to a draining
    peer is safe to send elsewhere), and db2's sidecar exits 0. Then it is started again."""
    with Loader(mesh.pooled, path="/slow", method=method).running() as load:
        eventually(lambda: load.seen(200, 0) == set(range(4)), 20, what="all answered")
        mark = f"app={mesh.db2_app}".encode()
        eventually(lambda: sum(mark in b for _, b in load.bodies[-40:]) > 5, 20, what="db2 busy")
        mesh.db2_proxy.signal(signal.SIGTERM)
        assert mesh.db2_proxy.proc is not None and mesh.db2_proxy.proc.wait(20) == 0
        gone = time.monotonic()
        eventually(lambda: len(load.seen(200, gone + 0.5)) == 4, 10, what="load going on")
    assert not load.errors and not load.reconnects, (load.errors[:5], load.reconnects[:5])
    assert {s for _, _, s in load.answers} == {200}, [a for a in load.answers if a[2] != 200][:5]
    mesh.db2_proxy.start()
    wait_listening(*mesh.db2_inbound, mesh.db2_proxy)
    eventually(lambda: healthy_sidecars(mesh.agent, "db") == 2, 30, what="db2 back")


def test_grpc_calls_and_a_long_stream_ride_through_renewals_and_a_root_rotation(
    mesh: Rotating,
) -> None:
    """Unary calls in a loop and one bidirectional stream kept open, across a leaf renewal and
    a root rotation: no call fails and the stream is never cut (its mux keeps its leaf)."""
    failures: list[str] = []
    stop = threading.Event()
    counts = {"unary": 0, "stream": 0}

    def unary_loop(channel: grpc.Channel) -> None:
        call = channel.unary_unary("/echo.Echo/Unary")
        while not stop.is_set():
            try:
                assert call(b"u", timeout=5) == b"unary:u"
                counts["unary"] += 1
            except Exception as e:  # (every failure is recorded)
                failures.append(f"unary: {e!r}")
            time.sleep(0.01)

    def ticks() -> Iterator[bytes]:
        while not stop.is_set():
            yield b"t"
            time.sleep(0.05)

    def stream_loop(channel: grpc.Channel) -> None:
        try:
            for answer in channel.stream_stream("/echo.Echo/Stream")(ticks(), timeout=120):
                assert answer == b"stream:t"
                counts["stream"] += 1
        except Exception as e:
            failures.append(f"stream: {e!r}")

    with grpc.insecure_channel(mesh.rpc) as channel:
        first = channel.unary_unary("/echo.Echo/Unary")
        eventually(lambda: unless_unavailable(lambda: first(b"w", timeout=5)), 20,
                   what="a first call")  # fmt: skip
        threads = [threading.Thread(target=f, args=(channel,), daemon=True)
                   for f in (unary_loop, unary_loop, stream_loop)]  # fmt: skip
        for t in threads:
            t.start()
        try:
            renewals = mesh.web2_proxy.log().count("identity for web2")
            eventually(lambda: mesh.web2_proxy.log().count("identity for web2") > renewals, 20,
                       what="a renewed leaf")  # fmt: skip
            mesh.agent.put("/v1/connect/ca/configuration",
                           {"Provider": "consul", "ForceRotate": True})  # fmt: skip
            now = mesh.web2_proxy.log().count("identity for web2")
            eventually(lambda: mesh.web2_proxy.log().count("identity for web2") > now, 30,
                       what="the new root taken")  # fmt: skip
            seen = dict(counts)
            eventually(lambda: all(counts[k] > seen[k] + 5 for k in counts), 10,
                       what="calls going on")  # fmt: skip
        finally:
            stop.set()
            for t in threads:
                t.join(10)
    assert not failures, failures[:5]


def test_a_grpc_deny_reaches_every_channels_next_call_and_an_allow_the_one_after(
    mesh: Rotating,
) -> None:
    """Unary calls in a loop on two channels (two client connections) while web2 => rpc is
    flipped allow -> deny -> allow: within a second each channel's calls are denied, then
    pass again on the same connection; web2 => db, still allowed, is untouched."""
    stop = threading.Event()
    results: list[tuple[int, float, str]] = []

    def loop(i: int, channel: grpc.Channel) -> None:
        call = channel.unary_unary("/echo.Echo/Unary")
        while not stop.is_set():
            try:
                call(b"p", timeout=5)
                results.append((i, time.monotonic(), "OK"))
            except grpc.RpcError as e:
                results.append((i, time.monotonic(), e.code().name))
            time.sleep(0.01)

    def seen(code: str, after: float) -> set[int]:
        return {i for i, t, c in list(results) if c == code and t > after}

    put_exact(mesh.agent, "web2", "rpc", {"Action": "allow"})
    channels = [grpc.insecure_channel(mesh.rpc) for _ in range(2)]
    threads = [threading.Thread(target=loop, args=(i, ch), daemon=True)
               for i, ch in enumerate(channels)]  # fmt: skip
    with Loader(mesh.pooled, n=2, path="/other").running() as other:
        for t in threads:
            t.start()
        try:
            eventually(lambda: seen("OK", 0) == {0, 1}, 20, what="calls passing")
            put_exact(mesh.agent, "web2", "rpc", {"Action": "deny"})
            flipped = time.monotonic()
            eventually(lambda: seen("PERMISSION_DENIED", flipped) == {0, 1}, 5, what="denied")
            assert max(t for _, t, c in results if c == "OK") - flipped < 1.0
            put_exact(mesh.agent, "web2", "rpc", {"Action": "allow"})
            back = time.monotonic()
            eventually(lambda: seen("OK", back) == {0, 1}, 5, what="allowed again")
        finally:
            stop.set()
            for t in threads:
                t.join(10)
            for ch in channels:
                ch.close()
    codes = {c for _, _, c in results}
    assert codes <= {"OK", "PERMISSION_DENIED"}, codes
    assert not other.errors and {s for _, _, s in other.answers} == {200}


def _execd(pid: int) -> bool:
    """Whether `gossamer connect proxy` (pid) has become the proxy process yet."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return b"gossamer.proxy" in f.read()


def test_sigterm_as_the_proxy_process_starts_is_a_clean_exit(mesh: Rotating) -> None:
    """`gossamer connect proxy` checks its registration, then becomes the proxy process
    (execve); a SIGTERM that comes while that process imports its modules (a rollout that
    changes its mind, systemd stopping a unit it just started) is a drain and exit 0, as
    one a moment later is. It used to end the process by the signal (-15)."""
    mesh.agent.put("/v1/agent/service/register", {
        "Name": "db", "ID": "db3", "Port": mesh.db2_app, "Address": "127.0.0.1",
        "Connect": {"SidecarService": {"Port": free_port(mesh.agent.ip),
                                       "Address": mesh.agent.ip}},
    })  # fmt: skip
    codes = []
    try:
        for _ in range(3):
            proxy = ProxyProc(["--sidecar-for", "db3", "--http-addr", mesh.agent.http],
                              mesh.tmp / "early.log").start()  # fmt: skip
            assert proxy.proc is not None
            eventually(lambda p=proxy.proc.pid: _execd(p), 20, interval=0.001,
                       what="the proxy process")  # fmt: skip
            proxy.signal(signal.SIGTERM)
            codes.append(proxy.proc.wait(20))
    finally:
        mesh.agent.put("/v1/agent/service/deregister/db3")
    assert codes == [0, 0, 0], codes


def test_a_draining_client_sidecar_ends_busy_keep_alive_clients_between_answers(
    mesh: Rotating,
) -> None:
    """Runs last: web2's sidecar gets SIGTERM while four keep-alive clients send requests in
    a loop. Each either gets its answers, the last saying `Connection: close`, or sees the
    connection end between two answers (a FIN where the next answer would start), never a
    reset or an answer cut short; the sidecar exits 0."""
    assert mesh.web2_proxy.proc is not None
    with Loader(mesh.pooled, path="/slow", n=4).running() as load:
        eventually(lambda: load.seen(200, 0) == set(range(4)), 20, what="all answered")
        mesh.web2_proxy.signal(signal.SIGTERM)
        assert mesh.web2_proxy.proc.wait(20) == 0
        load.stop.set()
    cut = [e for e in load.errors if "closed after b''" not in e[2]
           and "Connection refused" not in e[2]]  # fmt: skip
    assert not cut, cut[:5]
    assert {s for _, _, s in load.answers} == {200}
