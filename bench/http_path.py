"""The HTTP path's own cost per request, in process, without sockets or TLS.

Printed, not asserted. `bench/proxy_pair.py --http` measures the whole
pair, where the kernel, TLS, wrk and nginx share the two cores and runs
move by 2x; this isolates what the proxy's Python does per request, so a
change to the hot path can be measured on a busy machine. Both roles of an
`HttpSession` (proxy/http1.py) with the real hosts: web's side (an
`UpstreamListener` with `protocol: http`: each request borrows a pooled
connection, peak-EWMA picks the instance, the connection goes back to the
pool) and db's side (`Inbound` with `protocol: http`: each request decided
by the intentions, one keep-alive connection to the app). The connections
are `PlainSide`s over a stand-in transport that only counts writes (each
write is a syscall on a real socket, and a TLS record on an mTLS one).

A third line: web's side with a new client connection per request
(`Connection: close`, as the pair bench's new connections/s), accepted,
served over the pooled connection and closed.

Per role: µs of CPU per request (`process_time`, the best of `--repeats`
batches of `--requests`), and transport writes per request. A wrk-like
request (`GET /small`, a Host header) and an nginx-like answer (eight
headers, a 100-byte body) in one read each.

Collected as the proxy is: start-up frozen, its young-generation threshold
(`--gc-young 700` for CPython's default).

`--cold` adds each role with the caches flushed before every step (a copy
of 8 MiB between the request and the answer, not counted): at one
connection both sidecars and the kernel take turns on one core, so each
wake-up starts cold, and the warm figure undercounts what c1 costs.

The proxy modules run compiled when scripts/build_native.py has built them
(proxy/native.py), as the proxy process runs them; `GOSSAMER_NATIVE=0`
runs them as Python. The first line says which.

    .venv/bin/python bench/http_path.py [--requests 20000] [--repeats 5] [--gc-young N] [--cold]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gossamer.proxy import native  # noqa: E402

native.use()  # the compiled data path when built, as the proxy process runs it

from gossamer.intentions.codec import intention_from_json  # noqa: E402
from gossamer.intentions.decide import IntentionSet  # noqa: E402
from gossamer.proxy import tally  # noqa: E402
from gossamer.proxy.__main__ import GC_YOUNG  # noqa: E402
from gossamer.proxy.config import ProxyConfig, Upstream  # noqa: E402
from gossamer.proxy.http1 import HttpSession  # noqa: E402
from gossamer.proxy.inbound import Inbound, Policy  # noqa: E402
from gossamer.proxy.outbound import UpstreamListener  # noqa: E402
from gossamer.proxy.side import PlainSide  # noqa: E402

REQUEST = b"GET /small HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
ANSWER = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Fri, 04 Dec 2026 14:00:00 GMT\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Length: 100\r\n"
    b"Last-Modified: Fri, 04 Dec 2026 13:00:00 GMT\r\nConnection: keep-alive\r\n"
    b'ETag: "6930a3e0-64"\r\nAccept-Ranges: bytes\r\n\r\n' + b"x" * 100
)


class Transport:
    """Counts writes; never closing, never pausing."""

    def __init__(self) -> None:
        self.writes = 0
        self.last = b""

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.last = data

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0  # nothing held at a close (side.py bounded_close)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def _side() -> tuple[PlainSide, Transport]:
    side, transport = PlainSide(), Transport()
    side.connection_made(transport)  # type: ignore[arg-type]
    return side, transport


def _round_trips(session: HttpSession, client: PlainSide, app: PlainSide, n: int) -> None:
    for _ in range(n):
        session.carry(client, [REQUEST], False)
        session.carry(app, [ANSWER], False)


FLUSH = 8 << 20  # bytes copied between two steps: past this machine's caches


def _cold_round_trips(session: HttpSession, client: PlainSide, app: PlainSide, n: int) -> float:
    """Seconds spent in the steps of `n` round trips with the caches flushed before each (a
    big copy, not counted): how a proxy runs when each wake-up follows another process's
    and the kernel's, as at one connection with both sidecars on one core. Wall time of
    each step (`perf_counter`, no system call: a CPU clock's would disturb the caches)."""
    scratch, source = bytearray(FLUSH), bytes(FLUSH)
    clock, spent = time.perf_counter, 0.0
    for _ in range(n):
        scratch[:] = source
        start = clock()
        session.carry(client, [REQUEST], False)
        spent += clock() - start
        scratch[:] = source
        start = clock()
        session.carry(app, [ANSWER], False)
        spent += clock() - start
    return spent


def _upstream_role() -> tuple[HttpSession, PlainSide, PlainSide, list[Transport]]:
    """web's sidecar: the session borrows a pooled connection for each request."""
    listener = UpstreamListener(Upstream("db", 1, protocol="http"), lambda: None, tally.Tally())
    instance = ("127.0.0.2", 20000)
    listener.set_instances([instance])
    host = listener.http
    assert host is not None
    app, app_t = _side()
    host.release_backend(host._take(app, instance))  # one idle pooled connection
    client, client_t = _side()
    session = HttpSession(host, client, "")
    host.sessions.add(session)
    session.start()
    return session, client, app, [client_t, app_t]


# What db's sidecar tells the app of each caller (proxy/xfcc.py), as long as a real one.
_TD = "0f5c1c2e-7a41-4bde-9c3e-5d2b8f1a6e90.consul/ns/default/dc/dc1/svc"
XFCC = f"By=spiffe://{_TD}/db;Hash={'ab' * 32};URI=spiffe://{_TD}/web".encode()


def _inbound_role() -> tuple[HttpSession, PlainSide, PlainSide, list[Transport]]:
    """db's sidecar: each request decided (an L4 allow intention), one app connection, and
    the caller told to the app (X-Forwarded-Client-Cert)."""
    config = ProxyConfig("db", local_port=1, protocol="http")
    policy = Policy()
    allow = {"SourceName": "web", "DestinationName": "db", "Action": "allow"}
    policy.intentions, policy.known = IntentionSet([intention_from_json(allow)]), True
    inbound = Inbound(config, lambda: None, policy, tally.Tally())
    client, client_t = _side()
    session = HttpSession(inbound, client, "web", XFCC)
    inbound.http_open.add(session)
    app, app_t = _side()
    session._use_app(app)  # as _open_app does once the local app answered the connect
    session.start()
    return session, client, app, [client_t, app_t]


CLOSE_REQUEST = b"GET /small HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nConnection: close\r\n\r\n"


async def _new_connections(requests: int) -> tuple[float, float]:
    """web's sidecar, a new client connection per request (wrk's `Connection: close` run):
    accepted, one request over the pooled connection, closed; (CPU seconds, writes). The
    loop turns every 100 connections, as a proxy's does between them, so what a closed
    session leaves for a later turn (http_joint.unlink) runs inside the measure."""
    session, _, app, transports = _upstream_role()
    listener = session.host.listener  # type: ignore[attr-defined]
    writes = 0
    start = time.process_time()
    for n in range(requests):
        if n % 100 == 0:
            await asyncio.sleep(0)
        client, client_t = _side()
        listener._accepted(client)
        client.relay.carry(client, [CLOSE_REQUEST], False)  # type: ignore[union-attr]
        app.relay.carry(app, [ANSWER], False)  # type: ignore[union-attr]
        writes += client_t.writes
    await asyncio.sleep(0)
    spent = time.process_time() - start
    assert client_t.last.endswith(b"x" * 100) and client.relay.closed  # type: ignore[union-attr]
    return spent, writes + transports[1].writes


async def _measure(requests: int, repeats: int, cold: bool) -> None:
    print(f"HTTP session path in process: {requests:,} requests a batch, best of {repeats}; "
          f"Python {sys.version.split()[0]}; compiled modules: {native.MODE}")  # fmt: skip
    print(f"{'role':<28} {'us/request':>10} {'writes/request':>15}")
    for name, make in (("web (pooled upstream)", _upstream_role), ("db (inbound)", _inbound_role)):
        session, client, app, transports = make()
        _round_trips(session, client, app, 1000)  # warm-up, and a check that answers flow
        assert transports[0].last.endswith(b"x" * 100), transports[0].last[:80]
        best = float("inf")
        writes = 0
        for _ in range(repeats):
            before = sum(t.writes for t in transports)
            start = time.process_time()
            _round_trips(session, client, app, requests)
            best = min(best, time.process_time() - start)
            writes = sum(t.writes for t in transports) - before
        print(f"{name:<28} {best / requests * 1e6:>10.2f} {writes / requests:>15.2f}")
        if cold:
            few = max(1, requests // 20)  # each step costs a copy of FLUSH bytes more
            spent = min(_cold_round_trips(session, client, app, few) for _ in range(repeats))
            print(f"{'  the same, cold caches':<28} {spent / few * 1e6:>10.2f}")
    runs = [await _new_connections(requests) for _ in range(repeats)]
    spent, writes = min(runs)
    print(f"{'web, a connection each':<28} {spent / requests * 1e6:>10.2f} "
          f"{writes / requests:>15.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cold", action="store_true",
                        help="also each role with the caches flushed before each step")  # fmt: skip
    parser.add_argument("--gc-young", type=int, default=GC_YOUNG,
                        help=f"young-generation threshold (the proxy's: {GC_YOUNG})")  # fmt: skip
    args = parser.parse_args()
    gc.collect()  # as the proxy starts (proxy/__main__.py)
    gc.freeze()
    gc.set_threshold(args.gc_young, *gc.get_threshold()[1:])
    uvloop.run(_measure(args.requests, args.repeats, args.cold))  # the proxy's loop (timers in C)


if __name__ == "__main__":
    main()
