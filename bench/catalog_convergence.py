"""Catalog convergence: a registration or deregistration on one agent until every agent shows it.

Printed, not asserted. A 10-agent loopback cluster (real agents, each with
its serf child); 50 changes one after another, each a register (new service
id) or a deregister (of a service registered earlier) on a random agent
through its HTTP API. For each change the clock starts when the PUT returns
and stops when every agent's `/v1/catalog/service/<name>` lists exactly the
instances expected; all agents are polled concurrently (aiohttp, every 5 ms).
The change reaches peers by push (the owner hands the new record to fanout(n)
random peers, each passes it on if it is news to it: catalog/record_news.py),
else by a `cv` serf-tag update (peers pull the record from its owner) or by
anti-entropy (a digest exchange with a random peer every ~2 s). With
--watch, each agent is watched by a blocking query instead of polled, which
keeps the polling's own load (10 agents x 200 GETs/s) off the measure. The
push counters of every agent (/v1/agent/self RecordPushes) give the
messages and bytes per change per agent.

Each change's line names the agent that showed it last and the wall-clock
second of its PUT, so with --logs DIR (every agent's debug log is copied
there) a slow change can be traced through the agents' logs. The last line
counts the records a `cv` pull brought before any push did: a delivery the
push missed (or lost a race to).

With --compare the same changes (same --seed) then run on a second cluster
whose agents do not push (`GOSSAMER_RECORD_PUSH=off`: the Serf tag pull and
anti-entropy alone, as before pushes), and the ratio is printed.

    .venv/bin/python bench/catalog_convergence.py [--agents 10] [--changes 50]
        [--poll 0.005] [--watch] [--seed N] [--logs DIR] [--compare]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness.cluster import AgentProc, Cluster  # noqa: E402

NAMES = [f"conv{i}" for i in range(5)]  # a few service names, so lists hold several instances


async def seen(
    session: aiohttp.ClientSession, agent: AgentProc, name: str, want: set[tuple[str, str]]
) -> bool:
    async with session.get(f"{agent.http}/v1/catalog/service/{name}") as resp:
        if resp.status != 200:
            return False
        rows = await resp.json()
    return {(r["Node"], r["ServiceID"]) for r in rows} == want


async def watch_all(
    session: aiohttp.ClientSession,
    agents: list[AgentProc],
    name: str,
    want: set[tuple[str, str]],
    timeout: float,
) -> list[float]:
    """Blocking queries on every agent (no polling load); the time each first showed `want`."""

    async def one(agent: AgentProc) -> float:
        url, index = f"{agent.http}/v1/catalog/service/{name}", 0
        async with asyncio.timeout(timeout):
            while True:
                async with session.get(url, params={"index": index, "wait": "30s"}) as resp:
                    rows = await resp.json()
                    index = int(resp.headers.get("X-Consul-Index", "0"))
                if {(r["Node"], r["ServiceID"]) for r in rows} == want:
                    return time.monotonic()

    return await asyncio.gather(*(one(a) for a in agents))


async def wait_all(
    agents: list[AgentProc],
    probe: Callable[[AgentProc], Awaitable[bool]],
    what: str,
    poll: float,
    timeout: float,
) -> list[float]:
    """Poll every agent concurrently; the monotonic time each first passed `probe`."""
    deadline = time.monotonic() + timeout

    async def one(agent: AgentProc) -> float:
        while time.monotonic() < deadline:
            try:
                if await probe(agent):
                    return time.monotonic()
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(poll)
        raise TimeoutError(f"{agent.name}: {what} not seen within {timeout}s")

    return await asyncio.gather(*(one(a) for a in agents))


async def run(agents: list[AgentProc], args: argparse.Namespace) -> list[tuple[str, float, float]]:
    """(kind, seconds until all agents show it, seconds until the first other agent does)."""
    rng = random.Random(args.seed)
    registered: dict[str, tuple[AgentProc, str]] = {}  # service id -> (agent, name)
    results: list[tuple[str, float, float]] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        for i in range(args.changes):
            agent = rng.choice(agents)
            mine = [sid for sid, (a, _) in registered.items() if a is agent]
            if mine and rng.random() < 0.5:
                kind = "deregister"
                sid = rng.choice(mine)
                name = registered.pop(sid)[1]
                url = f"{agent.http}/v1/agent/service/deregister/{sid}"
                body = None
            else:
                kind = "register"
                sid, name = f"svc-{i}", rng.choice(NAMES)
                registered[sid] = (agent, name)
                url = f"{agent.http}/v1/agent/service/register"
                body = {"ID": sid, "Name": name, "Port": 10000 + i}
            want = {(a.name, s) for s, (a, n) in registered.items() if n == name}
            put_at = time.strftime("%H:%M:%S")
            async with session.put(url, json=body) as resp:
                resp.raise_for_status()
            start = time.monotonic()
            if args.watch:
                times = await watch_all(session, agents, name, want, args.timeout)
            else:
                times = await wait_all(
                    agents,
                    lambda a, name=name, want=want: seen(session, a, name, want),
                    f"{name} = {sorted(want)}",
                    args.poll,
                    args.timeout,
                )
            others = [t for t, a in zip(times, agents, strict=True) if a is not agent]
            late = max(zip(times, agents, strict=True), key=lambda p: p[0])[1]
            results.append((kind, max(times) - start, min(others) - start))
            print(
                f"  change {i + 1:3}/{args.changes}: {kind:10} on {agent.name:7} "
                f"all agents {results[-1][1] * 1e3:7.0f} ms (last {late.name}, put at {put_at})",
                flush=True,
            )
    return results


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile (p99 of 50 values is the largest)."""
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(q * len(ordered))))
    return ordered[rank - 1]


def row(label: str, values: list[float]) -> str:
    if not values:
        return f"{label:28} {0:5}"
    med, p99 = statistics.median(values), quantile(values, 0.99)
    return (
        f"{label:28} {len(values):5} {med * 1e3:9.0f} {p99 * 1e3:9.0f} "
        f"{min(values) * 1e3:9.0f} {max(values) * 1e3:9.0f}"
    )


def push_counts(agents: list[AgentProc]) -> dict[str, int]:
    """Every agent's RecordPushes counters (/v1/agent/self), summed."""
    total: dict[str, int] = {}
    for agent in agents:
        for key, value in agent.get("/v1/agent/self")["Gossamer"]["RecordPushes"].items():
            total[key] = total.get(key, 0) + value
    return total


def print_pushes(pushed: dict[str, int], changes: int, agents: int) -> None:
    """What pushing the changes cost, per change and per agent."""
    per = changes * agents
    print(
        f"pushes per change per agent: {pushed['Pushes'] / per:.1f} messages "
        f"({pushed['Bytes'] / per:.0f} bytes of frames, {pushed['Records'] / per:.1f} records), "
        f"{pushed['Waves'] / per:.2f} waves; {pushed['Failures']} failed"
    )
    print(
        f"records a `cv` pull brought before any push: {pushed['Pulled']} "
        f"of {changes * (agents - 1)} deliveries"
    )


@contextlib.contextmanager
def running_cluster(count: int, logs: Path | None = None) -> Iterator[list[AgentProc]]:
    """`count` joined loopback agents in a scratch dir; all stopped (and checked) after.
    With `logs`, each agent's log is copied there once the agents have stopped."""
    with tempfile.TemporaryDirectory(prefix="gossamer-bench-") as tmp:
        cluster = Cluster(Path(tmp))
        try:
            start = time.monotonic()
            agents = cluster.start(count)
            print(f"{count} agents up and all alive in {time.monotonic() - start:.1f}s")
            yield agents
        finally:
            leftovers = cluster.close()
            if logs is not None:
                logs.mkdir(parents=True, exist_ok=True)
                for agent in cluster.agents:
                    shutil.copy(agent.log_path, logs / f"{agent.name}.log")
    if leftovers:
        raise RuntimeError(f"left behind: {leftovers}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--poll", type=float, default=0.005, help="seconds between polls")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per change")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--watch", action="store_true", help="blocking queries instead of polling every agent"
    )
    parser.add_argument(
        "--logs", type=Path, default=None, help="copy every agent's (debug) log to this folder"
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="then the same changes with GOSSAMER_RECORD_PUSH=off (Serf tag and rounds alone)",
    )
    args = parser.parse_args()
    if args.compare and args.seed is None:
        args.seed = random.randrange(1 << 16)  # both clusters get the same changes
    pushed_every = measure(args, push=True)
    if args.compare:
        tag_every = measure(args, push=False)
        ratio = statistics.median(tag_every) / statistics.median(pushed_every)
        p99 = quantile(tag_every, 0.99) / quantile(pushed_every, 0.99)
        print(f"\npushed vs tag-only, same seed: {ratio:.1f}x faster median, {p99:.1f}x p99")


def measure(args: argparse.Namespace, *, push: bool) -> list[float]:
    """One cluster, `args.changes` changes, the table; the all-agents times (seconds)."""
    if not push:
        os.environ["GOSSAMER_RECORD_PUSH"] = "off"  # the agents inherit it
    try:
        logs = args.logs if push or args.logs is None else args.logs / "tag-only"
        with running_cluster(args.agents, logs) as agents:
            before = push_counts(agents)
            results = asyncio.run(run(agents, args))
            after = push_counts(agents)
    finally:
        os.environ.pop("GOSSAMER_RECORD_PUSH", None)
    pushed = {k: after[k] - before[k] for k in after}
    every = [t for _, t, _ in results]
    first = [t for _, _, t in results]
    print()
    mode = "pushed" if push else "GOSSAMER_RECORD_PUSH=off: Serf `cv` tag pull and rounds alone"
    print(f"catalog convergence, {args.agents} agents, {len(results)} changes, ms ({mode})")
    print(f"{'measure':28} {'n':>5} {'median':>9} {'p99':>9} {'min':>9} {'max':>9}")
    print(row("all agents show it", every))
    print(row("  registers", [t for k, t, _ in results if k == "register"]))
    print(row("  deregisters", [t for k, t, _ in results if k == "deregister"]))
    print(row("first other agent shows it", first))
    how = "blocking queries" if args.watch else f"polled every {args.poll * 1e3:.0f} ms"
    print(
        f"(PUT returned → /v1/catalog/service/<name> right on every agent; {how}; "
        "p99 is nearest-rank, so the max for under 100 changes)"
    )
    print_pushes(pushed, len(results), args.agents)
    return every


if __name__ == "__main__":
    main()
