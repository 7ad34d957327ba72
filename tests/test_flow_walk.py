"""Flow control walked with a real agent, real sidecars (web's -> db's -> the app), real
apps and real clients, in three manners: a sidecar a service, each on two workers, and
one `--node` proxy for all. A reader that stops, on every data path (L4, HTTP/1 on the
pooled streams, a WebSocket after its 101, gRPC over h2c), holds no proxy to more than a
few MiB over what it used before, holds up no other client on the same shared sidecar
connection, and gets every byte, in order, once it reads again; a slow reader cut by a
timeout is told it was cut. The apps and clients: tests/test_flow_walk_support.py."""

from __future__ import annotations

import hashlib
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.proxy_support import ProxyProc, set_intention, stop_mesh, wait_listening
from tests.test_flow_walk_support import (
    GRPC_OPTIONS,
    PIECE,
    GrpcApp,
    HttpBig,
    MiB,
    RawApp,
    digest_of,
    hash_exactly,
    http_head,
    message,
    piece,
    read_exactly,
    rss_kib,
    timed_echo,
    timed_get,
    unread_socket,
    wait_passing,
    ws_frame,
    ws_stream_digest,
    ws_upgrade,
)

BIG = 64 * MiB  # what a reader leaves unread: far past any proxy's bound
BOUND_KIB = 12 * 1024  # what one stalled transfer may add to a proxy's RSS, at most
SLOW_KIB = 640  # what one of many slow readers may add, all proxies together (~380 seen)
SHORT_TIMEOUT_MS = 1500  # `dbt`'s request timeout


@dataclass
class Mesh:
    agent: AgentProc
    proxies: dict[str, ProxyProc]
    http: HttpBig
    pooled: tuple[str, int]  # web's pooled HTTP upstream to db
    timed: tuple[str, int]  # web's pooled HTTP upstream to dbt (a short request timeout)
    raw_up: tuple[str, int]  # web's L4 upstream to raw
    raw: RawApp
    rpc_up: str  # web's grpc upstream to rpc
    rpc: GrpcApp

    def pids(self) -> dict[str, int]:
        """Every proxy process (each worker), by name."""
        out = {}
        for name, proxy in self.proxies.items():
            assert proxy.proc is not None
            out[name] = proxy.proc.pid
            for n, child in enumerate(_children(proxy.proc.pid)):
                out[f"{name}.{n}"] = child
        return out

    def rss(self) -> dict[str, int]:
        return {name: rss_kib(pid) for name, pid in self.pids().items()}


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _service(agent: AgentProc, name: str, port: int, inbound: int, config: dict[str, object]
             ) -> None:  # fmt: skip
    agent.put("/v1/agent/service/register", {
        "Name": name, "ID": name, "Port": port, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": inbound, "Address": agent.ip,
                                       "Proxy": {"Config": config}}}})  # fmt: skip


@pytest.fixture(scope="module", params=["sidecars", "workers", "node"])
def mesh(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
         ) -> Iterator[Mesh]:  # fmt: skip
    tmp: Path = tmp_path_factory.mktemp("flow")
    c = Cluster(tmp)
    http, raw, rpc = HttpBig().start(), RawApp().start(), GrpcApp().start()
    named: dict[str, ProxyProc] = {}
    try:
        agent = c.new_agent("fw1").start()
        ip = agent.ip
        pooled, timed, raw_up, rpc_up = (free_port("127.0.0.1") for _ in range(4))
        _service(agent, "db", http.port, free_port(ip), {"protocol": "http"})
        _service(agent, "dbt", http.port, free_port(ip),
                 {"protocol": "http", "local_request_timeout_ms": SHORT_TIMEOUT_MS})  # fmt: skip
        _service(agent, "raw", raw.port, free_port(ip), {})
        _service(agent, "rpc", rpc.port, free_port(ip), {"protocol": "grpc"})
        http_up = {"protocol": "http"}
        agent.put("/v1/agent/service/register", {
            "Name": "web", "ID": "web", "Port": 1, "Address": ip,
            "Connect": {"SidecarService": {"Port": free_port(ip), "Address": ip, "Proxy": {
                "Upstreams": [
                    {"DestinationName": "db", "LocalBindPort": pooled, "Config": http_up},
                    {"DestinationName": "dbt", "LocalBindPort": timed, "Config": http_up},
                    {"DestinationName": "raw", "LocalBindPort": raw_up},
                    {"DestinationName": "rpc", "LocalBindPort": rpc_up,
                     "Config": {"protocol": "grpc"}}]}}}})  # fmt: skip
        for name in ("db", "dbt", "raw", "rpc"):
            set_intention(agent, "web", name, "allow")
        if request.param == "node":
            argv = ["--node", "--http-addr", agent.http]
            named["node"] = ProxyProc(argv, tmp / "proxy-node.log").start()
        else:
            more = ["--workers", "2"] if request.param == "workers" else []
            for name in ("db", "dbt", "raw", "rpc", "web"):
                argv = ["--sidecar-for", name, "--http-addr", agent.http, *more]
                named[name] = ProxyProc(argv, tmp / f"proxy-{name}.log").start()
        web = named.get("web") or named["node"]
        for port in (pooled, timed, raw_up, rpc_up):
            wait_listening("127.0.0.1", port, web)
        wait_passing(agent, "db", "dbt", "raw", "rpc")
        mesh = Mesh(agent, named, http, ("127.0.0.1", pooled), ("127.0.0.1", timed),
                    ("127.0.0.1", raw_up), raw, f"127.0.0.1:{rpc_up}", rpc)  # fmt: skip
        eventually(lambda: timed_get(mesh.pooled) < 5, 20, what="db through web's sidecar")
        eventually(lambda: timed_get(mesh.timed) < 5, 20, what="dbt through web's sidecar")
        eventually(lambda: timed_echo(mesh.raw_up) < 5, 20, what="raw through web's sidecar")
        yield mesh
    finally:
        leftovers = stop_mesh(c, named.values(), [http, raw, rpc])
    assert not leftovers, leftovers


def _others_unhurt(many: Callable[[], list[float]]) -> None:
    """Other clients' exchanges (their seconds each, from `many`) as quick as ever: a few
    ms each, none held up behind the stalled one."""
    took = many()
    assert max(took) < 2.0 and statistics.median(took) < 0.2, took


def _bounded(mesh: Mesh, before: dict[str, int], kib: int = BOUND_KIB) -> None:
    grown = {name: rss_kib(pid) - before[name] for name, pid in mesh.pids().items()}
    assert max(grown.values()) < kib, grown


def _pooled_gets(mesh: Mesh) -> list[float]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: timed_get(mesh.pooled), range(48)))


def test_a_download_nobody_reads_holds_up_no_request_on_the_pool(mesh: Mesh) -> None:
    """A client stops reading a long answer: its pooled stream shares the sidecars'
    connection with every other client's requests, which go on as fast as ever; no
    proxy holds more than its bound of the answer, which arrives whole once read."""
    before = mesh.rss()
    with unread_socket(mesh.pooled) as s:
        s.sendall(b"GET /big/%d HTTP/1.1\r\nHost: db\r\n\r\n" % BIG)
        assert b" 200 " in http_head(s)
        _others_unhurt(lambda: _pooled_gets(mesh))
        _bounded(mesh, before)
        assert hash_exactly(s, BIG) == digest_of(BIG)


def test_an_upload_the_app_does_not_read_holds_up_no_request_on_the_pool(mesh: Mesh) -> None:
    mesh.http.hold.clear()
    before = mesh.rss()
    with socket.create_connection(mesh.pooled, timeout=60) as s:
        s.sendall(b"POST /held HTTP/1.1\r\nHost: db\r\nContent-Length: %d\r\n\r\n" % BIG)
        pushed = threading.Thread(target=_push, args=(s, BIG), daemon=True)
        pushed.start()
        _others_unhurt(lambda: _pooled_gets(mesh))
        _bounded(mesh, before)
        mesh.http.hold.set()
        pushed.join(60)
        answer = http_head(s)
        assert b" 200 " in answer
        assert s.recv(200).decode().split() == [str(BIG), digest_of(BIG)]


def _push(s: socket.socket, size: int) -> None:
    for i, at in enumerate(range(0, size, PIECE)):
        s.sendall(piece(i)[: size - at])


def test_an_l4_download_nobody_reads_holds_up_no_other_connection(mesh: Mesh) -> None:
    before = mesh.rss()
    with unread_socket(mesh.raw_up) as s:
        s.sendall(b"flood %d" % BIG)
        _others_unhurt(lambda: [timed_echo(mesh.raw_up) for _ in range(48)])
        _bounded(mesh, before)
        assert hash_exactly(s, BIG) == digest_of(BIG)


def test_an_l4_upload_the_app_does_not_read_holds_up_no_other_connection(mesh: Mesh) -> None:
    mesh.raw.hold.clear()
    before = mesh.rss()
    with socket.create_connection(mesh.raw_up, timeout=60) as s:
        s.sendall(b"sink")
        pushed = threading.Thread(target=_push, args=(s, BIG), daemon=True)
        pushed.start()
        _others_unhurt(lambda: [timed_echo(mesh.raw_up) for _ in range(48)])
        _bounded(mesh, before)
        mesh.raw.hold.set()
        pushed.join(60)
        s.shutdown(socket.SHUT_WR)
        assert s.recv(200).decode().split() == [str(BIG), digest_of(BIG)]


def test_a_websocket_nobody_reads_holds_up_no_other(mesh: Mesh) -> None:
    """After its 101 a WebSocket is a byte relay on its pooled stream: the app writes
    without end to a client that reads nothing; another WebSocket and plain requests on
    the same upstream go on."""
    before = mesh.rss()
    with unread_socket(mesh.pooled) as s:
        ws_upgrade(s)
        s.sendall(ws_frame(1, b"big %d" % BIG))
        _others_unhurt(lambda: _pooled_gets(mesh))
        with socket.create_connection(mesh.pooled, timeout=10) as other:
            ws_upgrade(other)
            other.sendall(ws_frame(1, b"hi"))
            assert other.recv(100) == b"\x81\x07echo:hi"
        _bounded(mesh, before)
        size, digest = ws_stream_digest(BIG)
        assert hash_exactly(s, size) == digest


def test_a_websocket_whose_app_stops_reading_holds_up_no_other(mesh: Mesh) -> None:
    """The other way: the app reads nothing more while its client sends 64 MiB; once it
    reads on, each message arrives whole."""
    count, size = BIG // MiB, MiB
    mesh.http.hold.clear()
    before = mesh.rss()
    with socket.create_connection(mesh.pooled, timeout=60) as s:
        ws_upgrade(s)
        s.sendall(ws_frame(1, b"hold"))
        frames = (ws_frame(2, piece(i) * 16) for i in range(count))  # 1 MiB each
        pushed = threading.Thread(target=lambda: [s.sendall(f) for f in frames], daemon=True)
        pushed.start()
        _others_unhurt(lambda: _pooled_gets(mesh))
        _bounded(mesh, before)
        mesh.http.hold.set()
        pushed.join(60)
        answer = f"got {size} {hashlib.sha256(piece(0) * 16).hexdigest()}".encode()
        said = [read_exactly(s, 2 + len(answer))[2:] for _ in range(count)]
        assert said == [
            f"got {size} {hashlib.sha256(piece(i) * 16).hexdigest()}".encode() for i in range(count)
        ]


def test_a_grpc_stream_nobody_reads_holds_up_no_call_on_its_connection(mesh: Mesh) -> None:
    """A server-streaming call whose consumer stops after its first message: the unary
    calls on the same channel (one h2c connection, one stream between the sidecars) go on;
    the stream's messages arrive whole and in order once it reads on."""
    n, size = BIG // (2 * MiB), 2 * MiB
    before = mesh.rss()
    with grpc.insecure_channel(mesh.rpc_up, options=GRPC_OPTIONS) as channel:
        watch = channel.unary_stream("/flow.F/Watch")(b"%d:%d" % (n, size), timeout=60)
        assert next(watch) == message(0, size)
        unary = channel.unary_unary("/flow.F/Unary")

        def calls() -> list[float]:
            took = []
            for i in range(48):
                start = time.monotonic()
                assert unary(b"x%d" % i, timeout=10) == b"x%d" % i
                took.append(time.monotonic() - start)
            return took

        _others_unhurt(calls)
        _bounded(mesh, before)
        assert [m == message(i, size) for i, m in enumerate(watch, 1)] == [True] * (n - 1)


def test_a_grpc_upload_the_app_does_not_read_holds_up_no_call(mesh: Mesh) -> None:
    n, size = BIG // (2 * MiB), 2 * MiB
    mesh.rpc.hold.clear()
    before = mesh.rss()
    with grpc.insecure_channel(mesh.rpc_up, options=GRPC_OPTIONS) as channel:
        upload = channel.stream_unary("/flow.F/Upload")
        answer = upload.future((message(i, size) for i in range(n)), timeout=60)
        unary = channel.unary_unary("/flow.F/Unary")

        def calls() -> list[float]:
            took = []
            for i in range(48):
                start = time.monotonic()
                assert unary(b"y%d" % i, timeout=10) == b"y%d" % i
                took.append(time.monotonic() - start)
            return took

        _others_unhurt(calls)
        _bounded(mesh, before)
        mesh.rpc.hold.set()
        assert answer.result().decode() == f"{n} {GrpcApp.digest(n, size)}"


def test_many_slow_readers_cost_little_each_and_hold_up_no_one(mesh: Mesh) -> None:
    """200 clients of the pooled upstream each read a byte a second of a 4 MiB answer:
    each costs the proxies a bounded few hundred KiB (a stream's credit and a socket
    buffer's worth), the other clients are served as fast as ever, and the answers
    arrive whole once read."""
    count, size = 200, 4 * MiB
    before = mesh.rss()
    slow = [unread_socket(mesh.pooled) for _ in range(count)]
    hashes = [hashlib.sha256() for _ in slow]
    stop = threading.Event()
    try:
        for s in slow:
            s.sendall(b"GET /big/%d HTTP/1.1\r\nHost: db\r\n\r\n" % size)
        assert all(b" 200 " in http_head(s) for s in slow)
        got = [0] * count

        def trickle() -> None:
            while not stop.is_set():
                for n, s in enumerate(slow):
                    hashes[n].update(s.recv(1))
                    got[n] += 1
                stop.wait(1)

        reader = threading.Thread(target=trickle, daemon=True)
        reader.start()
        # first the proxies fill what the kernel takes for each (its socket buffers, MiBs
        # a connection: 200 answers mostly written, busy seconds on two cores), then all stall
        eventually(lambda: timed_get(mesh.pooled) < 0.05, 30, what="the slow answers to stall")
        _others_unhurt(lambda: _pooled_gets(mesh))
        grown = sum(mesh.rss().values()) - sum(before.values())
        assert grown < count * SLOW_KIB, f"{grown} KiB for {count} slow readers"
        stop.set()
        reader.join(10)
        for n, s in enumerate(slow[:8]):  # a byte at a time, then the rest: intact
            left = size - got[n]
            while left:
                chunk = s.recv(min(left, 1 << 20))
                assert chunk, f"closed with {left} bytes to come"
                hashes[n].update(chunk)
                left -= len(chunk)
            assert hashes[n].hexdigest() == digest_of(size)
    finally:
        stop.set()
        for s in slow:
            s.close()


@pytest.mark.parametrize("path", ["db", "dbt"])
def test_an_answer_ended_by_a_cut_close_is_a_reset_not_an_end(mesh: Mesh, path: str) -> None:
    """An answer with neither a length nor chunks ends when its connection closes, so
    only a clean close may tell the client it is whole. Cut short instead (`db`: the app
    resets its connection, as one that crashed; `dbt`: db's sidecar cuts a slow reader at
    its request timeout), the client must see a reset, as a loss is passed on everywhere
    else. Both sidecars took the cut for the answer's end (a RESET or a reset from the
    app: the answer ended by close), and a proxy's own cut of an answer under way closed
    the client with a FIN: given a clean close after 3 of 64 MiB, it took the part for the
    whole."""
    address, route = (mesh.pooled, b"/reset/%d") if path == "db" else (mesh.timed, b"/close/%d")
    mesh.http.cut.clear()
    with unread_socket(address) as s:
        s.sendall(b"GET " + route % BIG + b" HTTP/1.1\r\nHost: db\r\n\r\n")
        assert b" 200 " in http_head(s)
        if path == "dbt":  # stalled past the timeout, then it reads on
            eventually(mesh.http.cut.is_set, 20, what="dbt's sidecar to cut it at its timeout")
        got, how = 0, "end"
        try:
            while chunk := s.recv(1 << 20):
                got += len(chunk)
        except ConnectionResetError:
            how = "reset"
    assert how == "reset", f"a clean end after {got} of {BIG} bytes"


def test_a_drain_that_cuts_an_answer_ended_by_close_resets_the_client(tmp_path: Path) -> None:
    """web's sidecar, stopped (SIGTERM), waits --drain-timeout for the answers under way,
    then cuts them: a slow reader of an answer that only a close ends is reset, not given
    the clean close that would pass its first MiBs off as the whole answer."""
    c = Cluster(tmp_path)
    http = HttpBig().start()
    named: dict[str, ProxyProc] = {}
    try:
        agent = c.new_agent("fd1").start()
        pooled = free_port("127.0.0.1")
        _service(agent, "db", http.port, free_port(agent.ip), {"protocol": "http"})
        agent.put("/v1/agent/service/register", {
            "Name": "web", "ID": "web", "Port": 1, "Address": agent.ip,
            "Connect": {"SidecarService": {"Port": free_port(agent.ip), "Address": agent.ip,
                "Proxy": {"Upstreams": [{"DestinationName": "db", "LocalBindPort": pooled,
                                         "Config": {"protocol": "http"}}]}}}})  # fmt: skip
        set_intention(agent, "web", "db", "allow")
        for name, more in (("db", []), ("web", ["--drain-timeout", "1"])):
            argv = ["--sidecar-for", name, "--http-addr", agent.http, *more]
            named[name] = ProxyProc(argv, tmp_path / f"proxy-{name}.log").start()
        wait_listening("127.0.0.1", pooled, named["web"])
        wait_passing(agent, "db")
        address = ("127.0.0.1", pooled)
        eventually(lambda: timed_get(address) < 5, 20, what="db through web's sidecar")
        with unread_socket(address) as s:
            s.sendall(b"GET /close/%d HTTP/1.1\r\nHost: db\r\n\r\n" % BIG)
            assert b" 200 " in http_head(s)
            assert named["web"].stop() == 0  # drained: the answer cut at its timeout
            got, how = 0, "end"
            try:
                while chunk := s.recv(1 << 20):
                    got += len(chunk)
            except ConnectionResetError:
                how = "reset"
        assert how == "reset", f"a clean end after {got} of {BIG} bytes"
    finally:
        leftovers = stop_mesh(c, named.values(), [http])
    assert not leftovers, leftovers
