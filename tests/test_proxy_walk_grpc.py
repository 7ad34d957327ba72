"""A walk of legitimate gRPC traffic through two sidecars: a real grpcio client calls web's
`grpc` upstream listener, which carries the call to db's `grpc` inbound and on to a real
grpcio server. Every call must arrive, and its answer come back, as the app sent it:
messages, metadata, trailers, status codes and details, deadlines, cancels, compression.
Both sidecars run in this process (no cluster); the calls between them go on the sidecars'
mux or on a TLS connection of their own."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent import futures
from typing import Any, TypeVar

import grpc
import pytest

from gossamer.intentions.decide import IntentionSet
from gossamer.intentions.model import HeaderMatch, HTTPMatch, Intention, Permission
from gossamer.proxy import tally
from gossamer.proxy.config import ProxyConfig, Upstream
from gossamer.proxy.inbound import Inbound
from gossamer.proxy.outbound import UpstreamListener
from gossamer.proxy.policy import Policy
from gossamer.proxy.protocol import CLIENT_IDLE_S, REQUEST_IDLE_S, REQUEST_TIMEOUT_S
from tests.harness.cluster import free_port
from tests.harness.poll import eventually
from tests.proxy_pki import Pki

T = TypeVar("T")
MiB = 1 << 20
MAX = 4 * MiB  # grpcio's default largest message either way


class _Echo:
    """The app: echo.E's methods, and what it saw (metadata, deadlines, cancels)."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}
        self.cancelled = threading.Event()
        self.aborted_after = threading.Event()

    def unary(self, request: bytes, context: Any) -> bytes:
        if request == b"meta":  # echo the metadata back, as initial metadata and trailers
            got = tuple((k, v) for k, v in context.invocation_metadata()
                        if not k.startswith((":", "grpc-", "x-forwarded")) and k not in (
                            "user-agent", "te", "content-type"))  # fmt: skip
            context.send_initial_metadata(got)
            context.set_trailing_metadata(got)
            return b"meta"
        if request == b"remaining":
            return repr(context.time_remaining()).encode()
        if request.startswith(b"status:"):  # trailers-only: a status, details, no message
            details_bin = b"\x08\x05\x12\x04nope\xff\x00"  # any bytes: the proxy's not to read
            context.set_trailing_metadata((("grpc-status-details-bin", details_bin),
                                           ("x-why-bin", b"\x00\xff\xfe")))  # fmt: skip
            context.abort(grpc.StatusCode(_code(int(request[7:]))), "détails: ünïcode % 100")
        if request == b"sleep":
            self.seen["sleep"] = context.time_remaining()
            if not _wait_cancel(context, 10):
                return b"slept"
            self.cancelled.set()
            return b""
        return request

    def watch(self, request: bytes, context: Any) -> Iterator[bytes]:
        """`n:size[:ms]`: n messages of `size` bytes, `ms` apart."""
        n, size, *apart = (int(x) for x in request.split(b":"))
        for i in range(n):
            if apart and i:
                threading.Event().wait(apart[0] / 1000)
            yield i.to_bytes(4, "big") * (size // 4)

    def slow(self, request: bytes, context: Any) -> Iterator[bytes]:
        """A message every `request` ms until cancelled; then noted."""
        every = int(request) / 1000
        i = 0
        try:
            while not _wait_cancel(context, every):
                yield i.to_bytes(4, "big")
                i += 1
        finally:  # (also when grpcio drops the generator at a yield: its send found the end)
            if not context.is_active():
                self.cancelled.set()

    def abort(self, request: bytes, context: Any) -> Iterator[bytes]:
        for i in range(int(request)):
            yield i.to_bytes(4, "big")
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "enough")

    def upload(self, requests: Iterator[bytes], context: Any) -> bytes:
        total, count = 0, 0
        for request in requests:
            total += sum(request)
            count += 1
        return f"{count}:{total}".encode()

    def chat(self, requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        for request in requests:
            yield b"re:" + request

    def handlers(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler("echo.E", {
            "Unary": grpc.unary_unary_rpc_method_handler(self.unary),
            "Watch": grpc.unary_stream_rpc_method_handler(self.watch),
            "Slow": grpc.unary_stream_rpc_method_handler(self.slow),
            "Abort": grpc.unary_stream_rpc_method_handler(self.abort),
            "Upload": grpc.stream_unary_rpc_method_handler(self.upload),
            "Chat": grpc.stream_stream_rpc_method_handler(self.chat),
        })  # fmt: skip


def _code(n: int) -> tuple[int, str]:
    return next(c.value for c in grpc.StatusCode if c.value[0] == n)


def _wait_cancel(context: Any, seconds: float) -> bool:
    """Waits `seconds` for the call to be cancelled; whether it was. A call that ended
    already takes no callback (grpcio's `add_callback` is False): it was, while the
    handler was away (a CI run's cancel landed during a yield, and was never noted)."""
    done = threading.Event()
    if not context.add_callback(done.set):
        return True
    return done.wait(seconds) and not context.is_active()


OPTIONS = [("grpc.max_receive_message_length", MAX + 64),
           ("grpc.max_send_message_length", MAX + 64)]  # fmt: skip


@pytest.fixture(scope="module")
def app() -> Iterator[tuple[_Echo, int]]:
    echo = _Echo()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64), options=OPTIONS,
                         maximum_concurrent_rpcs=None)  # fmt: skip
    server.add_generic_rpc_handlers([echo.handlers()])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield echo, port
    server.stop(0)


@dataclasses.dataclass
class Mesh:
    web: UpstreamListener
    db: Inbound
    policy: Policy

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.web.upstream.bind_port}"


@contextlib.asynccontextmanager
async def walk_mesh(mode: str, app_port: int, *, request_s: float = REQUEST_TIMEOUT_S,
                    client_idle_s: float = CLIENT_IDLE_S) -> AsyncIterator[Mesh]:  # fmt: skip
    """web's `grpc` upstream listener -> db's `grpc` sidecar -> the grpcio app on
    `app_port`; the sidecars' calls on their mux ("mux") or a TLS connection ("tls")."""
    pki = Pki()
    db_identity, web_identity = pki.identity("db"), pki.identity("web")
    if mode == "tls":
        db_identity = dataclasses.replace(db_identity, server_tunnel=db_identity.server)
    policy = Policy()
    policy.intentions, policy.known = IntentionSet([Intention("web", "db", action="allow")]), True
    config = ProxyConfig(service="db", bind_address="127.0.0.1", bind_port=free_port("127.0.0.1"),
                         local_port=app_port, protocol="grpc", request_timeout_s=request_s,
                         request_idle_s=REQUEST_IDLE_S, client_idle_s=client_idle_s)  # fmt: skip
    inbound = Inbound(config, lambda: db_identity, policy, tally.Tally())
    await inbound.start()
    upstream = Upstream("db", free_port("127.0.0.1"), connect_timeout_s=5.0, protocol="grpc",
                        request_timeout_s=request_s, request_idle_s=REQUEST_IDLE_S,
                        client_idle_s=client_idle_s)  # fmt: skip
    listener = UpstreamListener(upstream, lambda: web_identity, tally.Tally())
    listener.set_instances([("127.0.0.1", config.bind_port)])
    await listener.start()
    try:
        yield Mesh(listener, inbound, policy)
    finally:
        for side in (listener, inbound):
            side.stop_listening()
            side.terminate_all()


@pytest.fixture(params=["mux", "tls"])
async def mesh(request: pytest.FixtureRequest, app: tuple[_Echo, int]) -> AsyncIterator[Mesh]:
    async with walk_mesh(request.param, app[1]) as made:
        yield made


async def _in_thread(mesh: Mesh, use: Callable[[grpc.Channel], T],
                     options: list[tuple[str, Any]] | None = None) -> T:  # fmt: skip
    """`use(channel)` on a channel to web's upstream listener, in a thread (the sidecars
    run on this loop)."""

    def run() -> T:
        with grpc.insecure_channel(mesh.target, options=OPTIONS + (options or [])) as channel:
            return use(channel)

    return await asyncio.to_thread(run)


def _racing_goaway(call: Callable[[], T], within_s: float = 5.0) -> T:
    """`call`'s answer, made again while it fails CANCELLED: a call that goes out on the old
    connection just as the app stops fails so, as it does on a direct channel (grpcio's
    server cancels it; 1 in 10 direct, more through two sidecars, whose GOAWAY reaches the
    client later), and the next one takes the new connection."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return call()
        except grpc.RpcError as error:
            if error.code() is not grpc.StatusCode.CANCELLED or time.monotonic() > deadline:
                raise


def _failed(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


async def test_unary_messages_up_to_the_largest_arrive_byte_exact(mesh: Mesh) -> None:
    def use(channel: grpc.Channel) -> None:
        unary = channel.unary_unary("/echo.E/Unary")
        for size in (0, 1, 16383, 16384, 16385, MiB, MAX - 5, MAX):
            body = bytes((i * 7 + size) % 251 for i in range(size % 4096)) * (size // 4096) + (
                bytes(size % 4096))  # fmt: skip
            assert unary(body, timeout=20) == body, size

    await _in_thread(mesh, use)


async def test_server_streaming_ten_thousand_messages(mesh: Mesh) -> None:
    def use(channel: grpc.Channel) -> None:
        got = list(channel.unary_stream("/echo.E/Watch")(b"10000:64", timeout=30))
        assert got == [i.to_bytes(4, "big") * 16 for i in range(10000)]

    await _in_thread(mesh, use)


async def test_client_streaming_and_interleaved_bidi(mesh: Mesh) -> None:
    def use(channel: grpc.Channel) -> None:
        parts = [bytes([i % 256]) * (i * 37 % 70000) for i in range(300)]
        answer = channel.stream_unary("/echo.E/Upload")(iter(parts), timeout=30)
        assert answer == f"{len(parts)}:{sum(map(sum, parts))}".encode()
        outbox: list[bytes] = []
        ready = threading.Semaphore(0)

        def requests() -> Iterator[bytes]:
            for i in range(200):
                yield f"m{i}".encode()
                ready.acquire()  # the next only once this one's answer came back

        answers = channel.stream_stream("/echo.E/Chat")(requests(), timeout=30)
        for answer in answers:
            outbox.append(answer)
            ready.release()
        assert outbox == [f"re:m{i}".encode() for i in range(200)]

    await _in_thread(mesh, use)


async def test_a_thousand_calls_in_flight_on_one_channel(mesh: Mesh) -> None:
    def use(channel: grpc.Channel) -> None:
        unary = channel.unary_unary("/echo.E/Unary")
        calls = [unary.future(b"n%d" % i, timeout=60) for i in range(1000)]
        assert [c.result() for c in calls] == [b"n%d" % i for i in range(1000)]

    await _in_thread(mesh, use)


async def test_metadata_both_ways_binary_and_many_keys(mesh: Mesh) -> None:
    sent = [("x-trace-bin", bytes(range(256))), ("x-name-bin", "naïve ☃ 名前".encode()),
            ("x-empty", ""), ("x-dup", "a"), ("x-dup", "b")]  # fmt: skip
    sent += [(f"x-k{i}", f"v{i}" * 10) for i in range(100)]

    def use(channel: grpc.Channel) -> None:
        answer, call = channel.unary_unary("/echo.E/Unary").with_call(
            b"meta", timeout=10, metadata=sent)  # fmt: skip
        assert answer == b"meta"
        assert list(call.initial_metadata()) == sent
        assert list(call.trailing_metadata()) == sent

    await _in_thread(mesh, use)


@pytest.mark.parametrize("code", [1, 2, 3, 5, 7, 8, 9, 11, 12, 13, 14, 15, 16])
async def test_trailers_only_statuses_pass_as_the_app_set_them(mesh: Mesh, code: int) -> None:
    def use(channel: grpc.Channel) -> None:
        error: Any = _failed(lambda: channel.unary_unary("/echo.E/Unary")(
            b"status:%d" % code, timeout=10))  # fmt: skip
        assert error.code().value[0] == code
        assert error.details() == "détails: ünïcode % 100"
        trailers = dict(error.trailing_metadata())
        assert trailers["grpc-status-details-bin"] == b"\x08\x05\x12\x04nope\xff\x00"
        assert trailers["x-why-bin"] == b"\x00\xff\xfe"

    await _in_thread(mesh, use)


async def test_the_clients_deadline_reaches_the_app(mesh: Mesh) -> None:
    def use(channel: grpc.Channel) -> float:
        return float(channel.unary_unary("/echo.E/Unary")(b"remaining", timeout=7.5))

    remaining = await _in_thread(mesh, use)
    assert 6.0 < remaining <= 7.5, remaining


async def test_a_deadline_that_runs_out_is_deadline_exceeded_and_the_app_sees_it(
    mesh: Mesh, app: tuple[_Echo, int]
) -> None:
    app[0].cancelled.clear()

    def use(channel: grpc.Channel) -> Any:
        return _failed(lambda: channel.unary_unary("/echo.E/Unary")(b"sleep", timeout=0.5))

    error = await _in_thread(mesh, use)
    assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED, error
    assert await asyncio.to_thread(app[0].cancelled.wait, 5), "the app never saw the end"


async def test_a_client_cancel_reaches_the_app(mesh: Mesh, app: tuple[_Echo, int]) -> None:
    app[0].cancelled.clear()

    def use(channel: grpc.Channel) -> None:
        answers = channel.unary_stream("/echo.E/Slow")(b"20", timeout=30)
        for i, _ in enumerate(answers):
            if i == 5:
                answers.cancel()
                break

    await _in_thread(mesh, use)
    assert await asyncio.to_thread(app[0].cancelled.wait, 5), "the app never saw the cancel"


async def test_an_abort_mid_stream_keeps_the_messages_and_the_status(mesh: Mesh) -> None:
    def use(channel: grpc.Channel) -> None:
        got: list[bytes] = []
        answers = channel.unary_stream("/echo.E/Abort")(b"50", timeout=10)
        error: Any = _failed(lambda: got.extend(answers))
        assert got == [i.to_bytes(4, "big") for i in range(50)]
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error.details() == "enough"

    await _in_thread(mesh, use)


async def test_gzip_per_call_and_per_channel(mesh: Mesh) -> None:
    body = b"compressible " * 50000

    def per_call(channel: grpc.Channel) -> None:
        unary = channel.unary_unary("/echo.E/Unary")
        assert unary(body, timeout=10, compression=grpc.Compression.Gzip) == body

    def per_channel(channel: grpc.Channel) -> None:
        assert channel.unary_unary("/echo.E/Unary")(body, timeout=10) == body
        assert list(channel.unary_stream("/echo.E/Watch")(b"100:4096", timeout=10))[-1] == (
            (99).to_bytes(4, "big") * 1024)  # fmt: skip

    await _in_thread(mesh, per_call)
    gzip = [("grpc.default_compression_algorithm", grpc.Compression.Gzip.value)]
    await _in_thread(mesh, per_channel, gzip)


@pytest.mark.parametrize("mode", ["mux", "tls"])
async def test_keepalive_pings_keep_an_idle_channel_usable(mode: str) -> None:
    """A client's keepalive PINGs go through to the app, whose ACKs come back: a channel
    pinging every 200 ms, and giving up on an ACK 1 s late, stays up while idle. (An app
    whose ping policy is grpcio's default answers such a client `GOAWAY` `too_many_pings`
    through the mesh as it would without: the channel reconnects, as it would.)"""
    options = [("grpc.keepalive_time_ms", 200), ("grpc.keepalive_timeout_ms", 1000),
               ("grpc.keepalive_permit_without_calls", 1),
               ("grpc.http2.max_pings_without_data", 0)]  # fmt: skip
    echo = _Echo()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[
        ("grpc.http2.min_ping_interval_without_data_ms", 50),
        ("grpc.keepalive_permit_without_calls", 1)])  # fmt: skip
    server.add_generic_rpc_handlers([echo.handlers()])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    def use(channel: grpc.Channel) -> list[grpc.ChannelConnectivity]:
        states: list[grpc.ChannelConnectivity] = []
        channel.subscribe(states.append, try_to_connect=True)
        unary = channel.unary_unary("/echo.E/Unary")
        assert unary(b"a", timeout=5) == b"a"
        threading.Event().wait(3)  # idle, pinging every 200 ms
        assert unary(b"b", timeout=5) == b"b"
        channel.unsubscribe(states.append)
        return states

    try:
        async with walk_mesh(mode, port) as mesh:
            states = await _in_thread(mesh, use, options)
    finally:
        server.stop(0)
    ready = states.index(grpc.ChannelConnectivity.READY)
    assert states[ready:] == [grpc.ChannelConnectivity.READY], states  # never dropped


async def test_a_channel_idle_past_the_idle_timeout_calls_again(app: tuple[_Echo, int]) -> None:
    async with walk_mesh("mux", app[1], client_idle_s=0.5) as mesh:

        def use(channel: grpc.Channel) -> None:
            states: list[grpc.ChannelConnectivity] = []
            channel.subscribe(states.append, try_to_connect=True)
            unary = channel.unary_unary("/echo.E/Unary")
            for i in range(3):
                assert unary(b"x%d" % i, timeout=5) == b"x%d" % i
                states.clear()  # (the idle close is 0.5 s away)
                eventually(lambda: grpc.ChannelConnectivity.IDLE in states, 5,
                           what="the listener's idle close (GOAWAY)")  # fmt: skip
            channel.unsubscribe(states.append)

        await _in_thread(mesh, use)


async def test_a_stream_longer_than_the_request_timeout_is_cut_deadline_exceeded(
    app: tuple[_Echo, int],
) -> None:
    """The request timeout bounds a stream (as Envoy's route timeout): cut with
    DEADLINE_EXCEEDED; with it at 0 the stream goes on."""
    async with walk_mesh("mux", app[1], request_s=1.0) as mesh:

        def use(channel: grpc.Channel) -> Any:
            answers = channel.unary_stream("/echo.E/Slow")(b"50", timeout=30)
            return _failed(lambda: list(answers))

        error = await _in_thread(mesh, use)
        assert error.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    async with walk_mesh("mux", app[1], request_s=0.0) as mesh:

        def long(channel: grpc.Channel) -> int:
            answers = channel.unary_stream("/echo.E/Slow")(b"50", timeout=30)
            n = 0
            for n, _ in enumerate(answers):
                if n == 60:  # 3 s: three times the other mesh's limit
                    answers.cancel()
                    break
            return n

        assert await _in_thread(mesh, long) == 60


async def test_health_service_through_the_mesh(app: tuple[_Echo, int]) -> None:
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    servicer.set("echo.E", health_pb2.HealthCheckResponse.SERVING)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        async with walk_mesh("mux", port) as mesh:

            def use(channel: grpc.Channel) -> None:
                stub = health_pb2_grpc.HealthStub(channel)
                ask = health_pb2.HealthCheckRequest
                assert stub.Check(ask(service="echo.E"), timeout=5).status == 1
                error: Any = _failed(lambda: stub.Check(ask(service="nope"), timeout=5))
                assert error.code() is grpc.StatusCode.NOT_FOUND
                watch = stub.Watch(ask(service="echo.E"), timeout=10)
                assert next(watch).status == 1
                servicer.set("echo.E", health_pb2.HealthCheckResponse.NOT_SERVING)
                assert next(watch).status == 2
                watch.cancel()

            await _in_thread(mesh, use)
    finally:
        server.stop(0)


async def test_graceful_stop_lets_calls_in_flight_finish_and_new_calls_reach_the_next(
    app: tuple[_Echo, int],
) -> None:
    """A rolling restart: the app stops with a grace (GOAWAY), its successor binds the same
    port. The stream under way gets all its messages; calls made meanwhile on the same
    channel reach the successor."""

    def serve(port: int) -> tuple[grpc.Server, int]:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        server.add_generic_rpc_handlers([_Echo().handlers()])
        bound = server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        return server, bound

    old, port = serve(0)
    servers = [old]
    try:
        async with walk_mesh("mux", port) as mesh:

            def use(channel: grpc.Channel) -> None:
                unary = channel.unary_unary("/echo.E/Unary")
                assert unary(b"a", timeout=5) == b"a"
                stream = channel.unary_stream("/echo.E/Watch")(b"20:4:50", timeout=20)
                first = next(stream)
                stopped = old.stop(5)  # GOAWAY; the stream under way has 5 s
                servers.append(serve(port)[0])
                for i in range(10):
                    assert _racing_goaway(lambda i=i: unary(b"n%d" % i, timeout=5)) == b"n%d" % i
                rest = list(stream)
                assert [first, *rest] == [i.to_bytes(4, "big") for i in range(20)]
                stopped.wait(10)

            await _in_thread(mesh, use)
    finally:
        for server in servers:
            server.stop(0)


async def test_l7_intention_on_method_paths(mesh: Mesh) -> None:
    mesh.policy.intentions = IntentionSet([Intention("web", "db", permissions=(
        Permission("deny", HTTPMatch(path_exact="/echo.E/Abort")),
        Permission("allow", HTTPMatch(path_prefix="/echo.E/")),
    ))])  # fmt: skip

    def use(channel: grpc.Channel) -> None:
        unary = channel.unary_unary("/echo.E/Unary")
        for _ in range(3):
            assert unary(b"ok", timeout=5) == b"ok"
            error: Any = _failed(lambda: list(channel.unary_stream("/echo.E/Abort")(
                b"1", timeout=5)))  # fmt: skip
            assert error.code() is grpc.StatusCode.PERMISSION_DENIED
            error = _failed(lambda: channel.unary_unary("/other.S/M")(b"x", timeout=5))
            assert error.code() is grpc.StatusCode.PERMISSION_DENIED

    await _in_thread(mesh, use)


async def test_l7_header_rule_on_binary_metadata_matches_its_base64(mesh: Mesh) -> None:
    """A rule on a `-bin` field is written on its base64 (what Envoy sees: gRPC's wire
    form). grpcio sends it raw to a grpcio app (true binary, agreed in SETTINGS): the rule
    still matches it by its base64."""
    mesh.policy.intentions = IntentionSet([Intention("web", "db", permissions=(
        Permission("allow", HTTPMatch(path_prefix="/echo.E/", headers=(
            HeaderMatch("x-tenant-bin", exact="AP9hY21l"),))),  # b"\0\xffacme", unpadded
    ))])  # fmt: skip

    def use(channel: grpc.Channel) -> None:
        unary = channel.unary_unary("/echo.E/Unary")
        assert unary(b"ok", timeout=5, metadata=[("x-tenant-bin", b"\0\xffacme")]) == b"ok"
        error: Any = _failed(lambda: unary(b"no", timeout=5,
                                           metadata=[("x-tenant-bin", b"\0\xffads")]))  # fmt: skip
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED

    await _in_thread(mesh, use)
