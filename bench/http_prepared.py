"""Prepared HTTP answers: the 50-instance health query encoded per read, prepared, and a ceiling.

Printed, not asserted. One agent on loopback gets 50 passing instances of
`web`; `wrk` (one thread, C connections, D seconds) then runs, in the same
run and on the same machine:

- `encoded each time`: `/v1/health/service/web?passing&u=<n>` with a new
  `u` per request, so no prepared answer fits and every read builds and
  encodes the whole answer (what every read cost before prepared answers);
- `prepared, aiohttp only`: `/v1/health/service/web?passing`, answered
  from the bytes encoded at the last catalog change, by an agent started
  with `GOSSAMER_HTTP_FRONT=off` (aiohttp serves every request, as before
  the light front);
- `prepared, light front`: the same from an agent as it runs by default,
  its light HTTP front (agent/http/front.py) answering the hot read;
- `ceiling`: a minimal aiohttp handler (same event loop, uvloop when
  installed, as the agent) returning a fixed body of the same size: the
  most the HTTP stack gives on this machine.

Rounds are interleaved (every server once per round) and medians printed.

`--agent-services` reads `/v1/agent/services` instead (the instances are
local services of the agent): `encoded each time` is then what every read
cost before that answer was prepared (build, encode and content hash), and
the light front hands the connection to aiohttp (it does not serve that
route), so its row measures the hand-off path.

    .venv/bin/python bench/http_prepared.py [--instances 50] [--concurrency 32] [--duration 5]
        [--rounds 3] [--agent-services]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.health_query import register_web, run_wrk  # noqa: E402
from tests.harness.cluster import Cluster  # noqa: E402

CEILING = textwrap.dedent(
    """
    import sys
    from aiohttp import web
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    body = b"x" * int(sys.argv[2])
    async def fixed(request):
        return web.Response(body=body, content_type="application/json")
    app = web.Application()
    app.router.add_get("/fixed", fixed)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
    """
)
UNIQUE = (
    "local n = 0\nrequest = function()\n  n = n + 1\n"
    '  return wrk.format("GET", "{path}&u=" .. n)\nend\n'
)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_up(url: str) -> None:
    deadline = time.monotonic() + 15
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} never answered")


def wrk_unique(base: str, path: str, args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    script = tmp / "unique.lua"
    script.write_text(UNIQUE.replace("{path}&", path + ("&" if "?" in path else "?")))
    argv = ["wrk", "-t1", f"-c{args.concurrency}", f"-d{int(args.duration)}s", "--latency"]
    out = subprocess.run(
        [*argv, "-s", str(script), base], capture_output=True, text=True, timeout=120
    ).stdout
    return parse_wrk(out)


def parse_wrk(out: str) -> dict[str, float]:
    import re

    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
    found = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
    found["p99"] = float(m.group(1)) * units[m.group(2)] if m else float("nan")
    return found


async def prepare(http: str, path: str, instances: int) -> int:
    """Registers the instances; the size of the answer."""
    async with aiohttp.ClientSession() as session:
        await register_web(session, http, instances)
        async with session.get(http + path) as resp:
            return len(await resp.read())


def bench(cluster: Cluster, args: argparse.Namespace, tmp: Path) -> None:
    agent = cluster.new_agent("front").start()  # the light HTTP front, as agents run
    plain = cluster.new_agent("plain")  # aiohttp alone, as before the front
    plain.env = {**os.environ, "GOSSAMER_HTTP_FRONT": "off"}
    plain.start()
    path = "/v1/agent/services" if args.agent_services else "/v1/health/service/web?passing"
    size = asyncio.run(prepare(agent.http, path, args.instances))
    asyncio.run(prepare(plain.http, path, args.instances))
    port = free_port()
    ceiling = subprocess.Popen([sys.executable, "-c", CEILING, str(port), str(size)])

    def wrk(url: str) -> dict[str, float]:
        return run_wrk(url, args.concurrency, args.duration, 1) or {}

    try:
        asyncio.run(wait_up(f"http://127.0.0.1:{port}/fixed"))
        rows: dict[str, list[dict[str, float]]] = {}
        for _ in range(args.rounds):  # interleaved; medians below
            for label, run in (
                ("encoded each time", lambda: wrk_unique(agent.http, path, args, tmp)),
                ("prepared, aiohttp only", lambda: wrk(plain.http + path)),
                ("prepared, light front", lambda: wrk(agent.http + path)),
                ("ceiling (fixed body)", lambda: wrk(f"http://127.0.0.1:{port}/fixed")),
            ):
                rows.setdefault(label, []).append(run())
    finally:
        ceiling.terminate()
        ceiling.wait()
    print(f"GET {path}: {args.instances} instances of web, {size} bytes per answer; wrk -t1 "
          f"-c{args.concurrency} -d{int(args.duration)}s, {len(os.sched_getaffinity(0))} cores "
          "shared by wrk and the server")  # fmt: skip
    print(f"{'server':24} {'req/s':>9} {'p99 ms':>8}   (medians of {args.rounds} rounds)")
    med = statistics.median
    rps = {label: med([f.get("rps", 0.0) for f in found]) for label, found in rows.items()}
    for label, found in rows.items():
        p99 = med([f.get("p99", 0.0) for f in found]) * 1e3
        print(f"{label:24} {rps[label]:9.0f} {p99:8.2f}")
    ceiling_rps = rps["ceiling (fixed body)"]
    for label in ("prepared, aiohttp only", "prepared, light front"):
        print(f"ceiling / {label}: {ceiling_rps / max(rps[label], 1):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--agent-services", action="store_true", help="read /v1/agent/services")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gossamer-bench-") as tmp:
        cluster = Cluster(Path(tmp))
        try:
            bench(cluster, args, Path(tmp))
        finally:
            leftovers = cluster.close()
    if leftovers:
        raise RuntimeError(f"left behind: {leftovers}")


if __name__ == "__main__":
    main()
