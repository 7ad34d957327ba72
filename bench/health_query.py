"""`GET /v1/health/service/web?passing` throughput and latency on one agent, and agent memory.

Printed, not asserted. One agent on a loopback address gets 50 instances of
`web` (ids web-0..web-49, each with a TTL check set passing); then:

- a closed-loop aiohttp load generator (C connections, each sending the next
  request when the last answer is read) runs for D seconds: requests/s and
  p50/p99 latency. The load generator runs on the same machine (and in Python),
  so it competes with the agent for the CPU;
- if `wrk` is installed, `wrk` for the same URL and connection count (its
  threads also share the machine);
- VmRSS of the agent process (not its serf child) idle, after the load, and
  with N blocking queries (`?index=<current>&wait=5m`) held open;
- VmRSS of a second, fresh agent idle and after 5,000 services arrive in its
  catalog (100 external nodes x 50 instances, registered through
  `PUT /v1/catalog/register`; the agent RPC port takes only mutual-TLS peers,
  so records can no longer be pushed to it from here).

    .venv/bin/python bench/health_query.py [--instances 50] [--concurrency 32]
        [--duration 10] [--blocking 10000] [--catalog-services 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness.cluster import AgentProc, Cluster, rss_kib  # noqa: E402


def open_files_limit(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return f"{soft}/{hard}"
    return "?"


def sockets_of(pid: int) -> int:
    """Open sockets of `pid` (accepted connections, listeners, serf RPC)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if fd.readlink().name.startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


async def sockets_settled(pid: int) -> None:
    """Wait until `pid`'s socket count has held still for 2 s, then 1 s more: the queries
    a load opened are all accepted and parked, so RSS read now counts them."""
    last, stable_since = -1, time.monotonic()
    while time.monotonic() - stable_since < 2.0:
        now = sockets_of(pid)
        if now != last:
            last, stable_since = now, time.monotonic()
        await asyncio.sleep(0.25)
    await asyncio.sleep(1.0)


def raise_nofile() -> int:
    """Soft fd limit up to the hard one; the agents started later inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def pid_of(agent: AgentProc) -> int:
    assert agent.proc is not None
    return agent.proc.pid


# -- setup ------------------------------------------------------------------------------


async def register_web(session: aiohttp.ClientSession, http: str, count: int) -> None:
    for i in range(count):
        body = {"ID": f"web-{i}", "Name": "web", "Port": 8000 + i, "Check": {"TTL": "10m"}}
        async with session.put(f"{http}/v1/agent/service/register", json=body) as resp:
            resp.raise_for_status()
        async with session.put(f"{http}/v1/agent/check/pass/service:web-{i}") as resp:
            resp.raise_for_status()
    deadline = time.monotonic() + 10
    while True:
        async with session.get(f"{http}/v1/health/service/web?passing") as resp:
            if len(await resp.json()) == count:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} passing instances of web not seen")
        await asyncio.sleep(0.05)


# -- load -------------------------------------------------------------------------------


async def closed_loop(url: str, concurrency: int, duration: float) -> tuple[int, list[float], int]:
    """(answers, latencies in s, errors) of `concurrency` loops running for `duration`."""
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        end = time.monotonic() + duration

        async def loop() -> None:
            nonlocal errors
            while time.monotonic() < end:
                start = time.perf_counter()
                try:
                    async with session.get(url) as resp:
                        await resp.read()
                        ok = resp.status == 200
                except aiohttp.ClientError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors += 1

        await asyncio.gather(*(loop() for _ in range(concurrency)))
    return len(latencies), latencies, errors


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def run_wrk(url: str, concurrency: int, duration: float, threads: int) -> dict[str, float] | None:
    if shutil.which("wrk") is None:
        return None
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{int(duration)}s", "--latency", url],
        capture_output=True,
        text=True,
        timeout=duration + 60,
    ).stdout
    found: dict[str, float] = {}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rps:
        found["rps"] = float(rps.group(1))
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
        if m:
            found[f"p{pct}"] = float(m.group(1)) * _UNITS[m.group(2)]
    errs = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    found["errors"] = float(errs.group(1)) if errs else 0.0
    return found


# -- blocking queries -------------------------------------------------------------------


async def hold_blocking(agent: AgentProc, count: int, batch: int) -> tuple[int, int, int, int]:
    """Open `count` blocking queries.

    Returns (held, failed or answered early, agent's open sockets and RSS KiB while held).
    """
    pid = pid_of(agent)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{agent.http}/v1/health/service/web") as resp,
    ):
        index = resp.headers["X-Consul-Index"]
    url = f"{agent.http}/v1/health/service/web?index={index}&wait=5m"
    connector = aiohttp.TCPConnector(limit=count + 10)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=None)
    session = aiohttp.ClientSession(connector=connector, timeout=timeout)
    failed = 0
    early = 0

    async def one() -> None:
        nonlocal failed, early
        try:
            async with session.get(url) as resp:
                await resp.read()
                early += 1  # an answer before the wait ran out: not held
        except (aiohttp.ClientError, OSError):
            failed += 1

    tasks: list[asyncio.Task[None]] = []
    try:
        for start in range(0, count, batch):
            tasks += [asyncio.create_task(one()) for _ in range(min(batch, count - start))]
            await asyncio.sleep(0.2)
            if failed > count // 10:
                break
        await sockets_settled(pid)
        rss = rss_kib(pid)
        held = sum(1 for t in tasks if not t.done())
        return held, failed + early, sockets_of(pid), rss
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await session.close()


# -- a catalog of many services ---------------------------------------------------------


def external_bodies(services: int, per_node: int) -> list[dict[str, object]]:
    """Consul catalog-register bodies: `services` instances on external nodes, `per_node` each."""
    bodies: list[dict[str, object]] = []
    for k in range(services):
        n, i = divmod(k, per_node)
        sid = f"app{n}-{i}"
        service = {"ID": sid, "Service": f"app{i % 10}", "Port": 20000 + i, "Tags": ["v1"]}
        check = {"CheckID": f"service:{sid}", "Status": "passing", "ServiceID": sid}
        node = {"Node": f"bench-node-{n}", "Address": f"10.{n // 250}.{n % 250}.1"}
        bodies.append({**node, "Service": service, "Check": check})
    return bodies


async def register_external(agent: AgentProc, bodies: list[dict[str, object]]) -> int:
    """Register the bodies through `PUT /v1/catalog/register`, 16 at a time; returns how many."""
    queue = list(reversed(bodies))
    done = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while queue:
            body = queue.pop()
            async with session.put(f"{agent.http}/v1/catalog/register", json=body) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"register refused: {resp.status} {await resp.text()}")
            done += 1

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(worker(session) for _ in range(16)))
    return done


async def count_services(http: str) -> int:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{http}/v1/catalog/services") as resp:
            names = await resp.json()
        total = 0
        for name in names:
            async with session.get(f"{http}/v1/catalog/service/{name}") as resp:
                total += len(await resp.json())
    return total


# -- main -------------------------------------------------------------------------------


def mib(kib: float) -> str:
    return f"{kib / 1024:8.1f}"


async def bench(cluster: Cluster, args: argparse.Namespace) -> None:
    (agent,) = cluster.start(1)
    pid = pid_of(agent)
    url = f"{agent.http}/v1/health/service/web?passing"
    async with aiohttp.ClientSession() as session:
        await register_web(session, agent.http, args.instances)
        async with session.get(url) as resp:
            body_bytes = len(await resp.read())
    await asyncio.sleep(args.settle)
    memory: list[tuple[str, int]] = [
        (f"agent 1, idle, {args.instances} web instances", rss_kib(pid))
    ]

    path = url.split("/", 3)[3]
    print(f"GET /{path} ({args.instances} instances, {body_bytes} bytes per answer)", flush=True)
    answers, lat, errors = await closed_loop(url, args.concurrency, args.duration)
    rows = [
        (
            f"aiohttp closed loop, {args.concurrency} conns",
            answers / args.duration,
            statistics.median(lat),
            quantile(lat, 0.99),
            errors,
        )
    ]
    loaded = rss_kib(pid)
    memory.append(("agent 1, after the load", loaded))
    if args.no_wrk:
        wrk_note = "wrk: skipped (--no-wrk)"
    else:
        wrk = run_wrk(url, args.concurrency, args.duration, args.wrk_threads)
        if wrk is None:
            wrk_note = "wrk: not installed (apt-get install wrk), skipped"
        else:
            wrk_note = ""
            rows.append(
                (
                    f"wrk -t{args.wrk_threads}, {args.concurrency} conns",
                    wrk.get("rps", float("nan")),
                    wrk.get("p50", float("nan")),
                    wrk.get("p99", float("nan")),
                    int(wrk["errors"]),
                )
            )
    print(f"{'load generator':32} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for label, rps, p50, p99, errs in rows:
        print(f"{label:32} {rps:9.0f} {p50 * 1e3:8.2f} {p99 * 1e3:8.2f} {errs:7d}")
    if wrk_note:
        print(wrk_note)
    print(f"(both share the {len(os.sched_getaffinity(0))}-core machine with the agent)")
    print(flush=True)

    blocking_note = ""
    if args.blocking > 0:
        held, failed, sockets, rss = await hold_blocking(agent, args.blocking, args.batch)
        memory.append((f"agent 1, {held} blocking queries held", rss))
        per = (rss - loaded) / held if held else 0.0
        blocking_note = (
            f"blocking queries: asked {args.blocking}, held {held}, failed or answered early "
            f"{failed}; the agent had {sockets} sockets open and fd limit "
            f"{open_files_limit(pid)}; ~{per:.1f} KiB RSS per query over 'after the load'"
        )

    if args.catalog_services > 0:
        fresh = cluster.new_agent("mem").start()
        await asyncio.sleep(args.settle)
        fresh_pid = pid_of(fresh)
        memory.append(("agent 2, idle, fresh", rss_kib(fresh_pid)))
        bodies = external_bodies(args.catalog_services, args.per_node)
        nodes = len({b["Node"] for b in bodies})
        start = time.monotonic()
        applied = await register_external(fresh, bodies)
        took = time.monotonic() - start
        seen = await count_services(fresh.http) - 1  # minus its own `consul`
        await asyncio.sleep(args.settle)
        memory.append((f"agent 2, {seen} services on {nodes} nodes", rss_kib(fresh_pid)))
        print(f"registered {applied} services on {nodes} external nodes in {took:.2f}s")

    print("agent RSS (VmRSS of the agent process, serf child excluded)")
    print(f"{'state':44} {'MiB':>8}")
    for label, value in memory:
        print(f"{label:44} {mib(value)}")
    if blocking_note:
        print(blocking_note)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load run")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--no-wrk", action="store_true")
    parser.add_argument("--blocking", type=int, default=10_000, help="blocking queries to hold")
    parser.add_argument("--batch", type=int, default=500, help="blocking queries opened at once")
    parser.add_argument("--catalog-services", type=int, default=5_000)
    parser.add_argument("--per-node", type=int, default=50, help="services per pushed node")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before RSS samples")
    args = parser.parse_args()
    limit = raise_nofile()
    if args.blocking + 100 > limit:
        print(f"note: fd limit {limit} is below {args.blocking} blocking queries + slack")
    with tempfile.TemporaryDirectory(prefix="gossamer-bench-") as tmp:
        cluster = Cluster(Path(tmp))
        try:
            asyncio.run(bench(cluster, args))
        finally:
            start = time.monotonic()
            leftovers = cluster.close()
            codes = {a.name: a.proc.returncode for a in cluster.agents if a.proc is not None}
            print(f"(agents stopped in {time.monotonic() - start:.1f}s, exit codes {codes})")
    if leftovers:
        raise RuntimeError(f"left behind: {leftovers}")


if __name__ == "__main__":
    main()
