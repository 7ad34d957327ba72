"""Intention convergence: a write on one agent until every agent's `check` agrees.

Printed, not asserted. A 10-agent loopback cluster (real agents, each with
its serf child; no --dev, so the default policy is deny), then 30 writes one
after another, each on a random agent through `PUT
/v1/connect/intentions/exact`. Writes alternate between flipping one pair
(`conv-web => conv-db`, allow, deny, allow, ...) and creating a new pair
(`conv-src-<i> => conv-db`, allow, which the default would deny). For each
write the clock starts when the PUT returns (the write is then durable on
that agent) and stops, per agent, when its `GET
/v1/connect/intentions/check` gives the new answer; all agents are polled
concurrently (aiohttp, every 5 ms). The write reaches peers by the
replicator's push of news to a few peers, then by their relaying and by
anti-entropy (DESIGN.md §4).

    .venv/bin/python bench/intentions_convergence.py [--agents 10] [--writes 30]
        [--mode mixed|flip|new] [--poll 0.005] [--timeout 30] [--seed N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.catalog_convergence import row, running_cluster, wait_all  # noqa: E402
from tests.harness.cluster import AgentProc  # noqa: E402

PAIR = ("conv-web", "conv-db")


async def allowed(session: aiohttp.ClientSession, agent: AgentProc, src: str, dst: str) -> bool:
    params = {"source": src, "destination": dst}
    async with session.get(f"{agent.http}/v1/connect/intentions/check", params=params) as resp:
        resp.raise_for_status()
        return bool((await resp.json())["Allowed"])


async def _agrees(
    session: aiohttp.ClientSession, agent: AgentProc, pair: tuple[str, str], want: bool
) -> bool:
    return await allowed(session, agent, *pair) == want


def next_write(i: int, mode: str, flips: int) -> tuple[str, tuple[str, str], str]:
    """(kind, pair, action) of write `i`; `flips` is how often PAIR was written before."""
    if mode == "flip" or (mode == "mixed" and i % 2 == 0):
        return "flip", PAIR, "allow" if flips % 2 == 0 else "deny"
    return "new pair", (f"conv-src-{i}", PAIR[1]), "allow"


async def run(agents: list[AgentProc], args: argparse.Namespace) -> list[tuple[str, float, float]]:
    """(kind, seconds until all agents agree, seconds until the first other agent does)."""
    rng = random.Random(args.seed)
    results: list[tuple[str, float, float]] = []
    flips = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        if await allowed(session, agents[0], *PAIR):
            raise RuntimeError("the default policy is allow; this bench needs deny")
        for i in range(args.writes):
            agent = rng.choice(agents)
            kind, pair, action = next_write(i, args.mode, flips)
            flips += kind == "flip"
            url = f"{agent.http}/v1/connect/intentions/exact"
            params = {"source": pair[0], "destination": pair[1]}
            async with session.put(url, params=params, json={"Action": action}) as resp:
                resp.raise_for_status()
            start = time.monotonic()
            want = action == "allow"
            times = await wait_all(
                agents,
                lambda a, pair=pair, want=want: _agrees(session, a, pair, want),
                f"check {pair} = {want}",
                args.poll,
                args.timeout,
            )
            others = [t for t, a in zip(times, agents, strict=True) if a is not agent]
            results.append((kind, max(times) - start, min(others) - start))
            print(
                f"  write {i + 1:3}/{args.writes}: {kind:8} {action:5} on {agent.name:7} "
                f"all agents {results[-1][1] * 1e3:7.0f} ms, first other "
                f"{results[-1][2] * 1e3:5.0f} ms",
                flush=True,
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--writes", type=int, default=30)
    parser.add_argument("--mode", choices=("mixed", "flip", "new"), default="mixed",
                        help="flip one pair, create new pairs, or alternate (default)")  # fmt: skip
    parser.add_argument("--poll", type=float, default=0.005, help="seconds between polls")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per write")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    with running_cluster(args.agents) as agents:
        results = asyncio.run(run(agents, args))
    every = [t for _, t, _ in results]
    first = [t for _, _, t in results]
    print()
    cpus = sorted(os.sched_getaffinity(0))
    print(f"machine: nproc {os.cpu_count()}, affinity {cpus}, Python {sys.version.split()[0]}")
    print(f"intention convergence, {args.agents} agents, {len(results)} writes, ms")
    print(f"{'measure':28} {'n':>5} {'median':>9} {'p99':>9} {'min':>9} {'max':>9}")
    print(row("all agents agree", every))
    for kind in ("flip", "new pair"):
        print(row(f"  {kind}", [t for k, t, _ in results if k == kind]))
    print(row("first other agent agrees", first))
    print(
        f"(PUT /v1/connect/intentions/exact returned → /v1/connect/intentions/check gives the "
        f"new answer; polled every {args.poll * 1e3:.0f} ms; p99 is nearest-rank, so the max "
        f"for under 100 writes)"
    )


if __name__ == "__main__":
    main()
