"""Memory per held blocking query: a gossamer agent vs a bare aiohttp server parking the same way.

Printed, not asserted. Each round starts, one after the other and fresh:

- `ours`: one gossamer agent (uvloop, its real HTTP app) with one `web`
  instance; N clients each send `GET /v1/health/service/web?index=<current>&wait=5m`
  on their own connection and do not read;
- `floor`: a bare aiohttp server in its own process (uvloop, the same
  AppRunner options as the agent, no middleware, one route) whose handler
  parks each request on a future of its own (kept in one set, no timer)
  and would answer a fixed body: what a parked aiohttp request costs by
  itself, the floor under anything the agent does.

For each: VmRSS after a short warm-up (a few answered requests), then with
N held (after the server's socket count stops growing), and the growth per
held query in KiB. Rounds are interleaved (ours, floor, ours, floor, ...),
medians printed, and the ratio ours / floor. The client holds its connections
with bare asyncio protocols, so it costs little itself.

    .venv/bin/python bench/blocking_memory.py [--queries 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.health_query import raise_nofile, sockets_settled  # noqa: E402
from tests.harness.cluster import Cluster, free_port, rss_kib  # noqa: E402

PATH = "/v1/health/service/web"


# -- the floor: a bare aiohttp server --------------------------------------------------


def serve_floor(ip: str, port: int, body: bytes) -> None:
    """Run the bare server until killed (in its own process, under uvloop as the agent)."""
    import uvloop
    from aiohttp import web

    parked: set[asyncio.Future[None]] = set()

    async def handler(request: web.Request) -> web.Response:
        future = asyncio.get_running_loop().create_future()
        parked.add(future)
        try:
            if request.query.get("index"):
                await future
        finally:
            parked.discard(future)
        return web.Response(body=body, content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_get(PATH, handler)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, ip, port).start()
        print("ready", flush=True)
        await asyncio.Event().wait()

    uvloop.run(main())


# -- the client: many connections that send one request and wait ------------------------


class Held(asyncio.Protocol):
    def __init__(self, request: bytes) -> None:
        self.request = request
        self.answered = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.answered = True


async def hold(ip: str, port: int, target: str, count: int, pid: int) -> tuple[int, int]:
    """Open `count` held queries; (held, RSS KiB of `pid` while they are held)."""
    loop = asyncio.get_running_loop()
    request = f"GET {target} HTTP/1.1\r\nHost: {ip}:{port}\r\n\r\n".encode()
    transports: list[asyncio.BaseTransport] = []
    protocols: list[Held] = []
    try:
        for start in range(0, count, 500):
            for _ in range(min(500, count - start)):
                transport, protocol = await loop.create_connection(lambda: Held(request), ip, port)
                transports.append(transport)
                protocols.append(protocol)
            await asyncio.sleep(0.05)
        await sockets_settled(pid)
        return sum(not p.answered for p in protocols), rss_kib(pid)
    finally:
        for transport in transports:
            transport.close()


def get(url: str) -> tuple[bytes, dict[str, str]]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read(), dict(resp.headers)


def warm(url: str, times: int = 20) -> bytes:
    body = b""
    for _ in range(times):
        body = get(url)[0]
    return body


# -- one measurement each ---------------------------------------------------------------


Row = tuple[int, int, int]  # (RSS before KiB, RSS held KiB, held)


def measure_ours(count: int, front: bool = True) -> tuple[Row, bytes]:
    """The agent with its light HTTP front (the default) or with aiohttp alone."""
    with tempfile.TemporaryDirectory(prefix="gossamer-blocking-") as tmp:
        cluster = Cluster(Path(tmp))
        agent = cluster.new_agent("node1")
        if not front:
            agent.env = {**os.environ, "GOSSAMER_HTTP_FRONT": "off"}
        agent.start()
        try:
            assert agent.proc is not None
            pid = agent.proc.pid
            register = {"ID": "web-0", "Name": "web", "Port": 8000, "Check": {"TTL": "10m"}}
            agent.put("/v1/agent/service/register", register)
            body = warm(agent.http + PATH)
            index = get(agent.http + PATH)[1]["X-Consul-Index"]
            before = rss_kib(pid)
            target = f"{PATH}?index={index}&wait=5m"
            held, rss = asyncio.run(hold(agent.ip, agent.http_port, target, count, pid))
            return (before, rss, held), body
        finally:
            agent.stop()


def measure_floor(count: int, body: bytes) -> Row:
    ip = "127.0.0.1"
    port = free_port(ip)
    argv = [
        sys.executable,
        __file__,
        "--floor-server",
        ip,
        str(port),
        "--body-size",
        str(len(body)),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # "ready"
        warm(f"http://{ip}:{port}{PATH}")
        before = rss_kib(proc.pid)
        held, rss = asyncio.run(hold(ip, port, f"{PATH}?index=5&wait=5m", count, proc.pid))
        return before, rss, held
    finally:
        proc.kill()
        proc.wait()


def per_query(row: Row) -> float:
    before, rss, held = row
    return (rss - before) / max(held, 1)


def bench(count: int, rounds: int) -> None:
    ours: list[Row] = []
    aiohttp_only: list[Row] = []
    floor: list[Row] = []
    for r in range(rounds):
        row, body = measure_ours(count)
        ours.append(row)
        aiohttp_only.append(measure_ours(count, front=False)[0])
        floor.append(measure_floor(count, body))
        print(
            f"  round {r + 1}: ours {per_query(ours[-1]):.2f} KiB/query ({ours[-1][2]} held), "
            f"aiohttp only {per_query(aiohttp_only[-1]):.2f} ({aiohttp_only[-1][2]}), "
            f"floor {per_query(floor[-1]):.2f} ({floor[-1][2]})",
            flush=True,
        )
    print()
    print(f"RSS with {count} blocking queries held (medians of {rounds} interleaved rounds)")
    print(f"{'server':14} {'held':>6} {'RSS idle MiB':>12} {'RSS held MiB':>12} {'KiB/query':>10}")
    med: Callable[[list[float]], float] = statistics.median
    for name, rows in (("ours", ours), ("aiohttp only", aiohttp_only), ("floor", floor)):
        print(
            f"{name:14} {med([r[2] for r in rows]):6.0f} {med([r[0] / 1024 for r in rows]):12.1f} "
            f"{med([r[1] / 1024 for r in rows]):12.1f} {med([per_query(r) for r in rows]):10.2f}"
        )
    ratio = med([per_query(r) for r in ours]) / med([per_query(r) for r in floor])
    print(f"ours / floor per query: {ratio:.2f}x")
    before = med([per_query(r) for r in aiohttp_only]) / med([per_query(r) for r in ours])
    print(f"aiohttp only / ours per query: {before:.2f}x")
    print("ours: the agent's light HTTP front (agent/http/front.py) parks the query;")
    print("aiohttp only: the same agent with GOSSAMER_HTTP_FRONT=off (as before the front);")
    print("floor: bare aiohttp (uvloop, no middleware) parking each request on a future")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--floor-server", nargs=2, metavar=("IP", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--body-size", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_server:
        serve_floor(args.floor_server[0], int(args.floor_server[1]), b" " * args.body_size)
        return
    limit = raise_nofile()
    if args.queries + 200 > limit:
        print(f"note: fd limit {limit} is below {args.queries} queries + slack")
    bench(args.queries, args.rounds)


if __name__ == "__main__":
    main()
