"""ACL figures: how fast a revoked token is refused everywhere, and what a check costs.

Printed, not asserted. Two parts, one run:

1. Revocation: a loopback cluster of `--agents` real agents with
   `acl.enabled`, `default_policy: deny` and one initial management token.
   Each round creates a token on a random agent, waits until every agent
   accepts it (`GET /v1/acl/token/self` 200), deletes it on another random
   agent, and from the moment the DELETE returns polls every agent
   concurrently (aiohttp, every `--poll` s) until each answers 403. Polls
   come from a fresh 127.0.1.x address each round, so the guessing guard
   (which counts the revoked token's refusals) never blocks them. Prints
   n, median, p99 (nearest rank), min, max of "all agents refuse" and of
   "the first other agent refuses".
2. Check cost: the same health query (`GET /v1/health/service/web`, one
   instance) with a management token on an agent with ACLs on, and with no
   token on a standalone agent with ACLs off, in interleaved rounds of
   `--requests` sequential keep-alive requests each; median per-request
   latency of each side and the ratio.

    .venv/bin/python bench/acl.py [--agents 10] [--rounds 20] [--requests 300]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.catalog_convergence import row, wait_all  # noqa: E402
from tests.harness.cluster import AgentProc, Cluster  # noqa: E402

MANAGEMENT = "0b9e4a70-1c5d-4f3e-9a77-6d2f0c1e8b42"


async def status_self(session: aiohttp.ClientSession, agent: AgentProc, secret: str) -> int:
    headers = {"X-Consul-Token": secret}
    async with session.get(f"{agent.http}/v1/acl/token/self", headers=headers) as resp:
        await resp.read()
        return resp.status


async def revocations(agents: list[AgentProc], args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    all_refuse: list[float] = []
    first_refuse: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as admin_session:
        for i in range(args.rounds):
            source = (f"127.0.1.{i % 250 + 1}", 0)
            connector = aiohttp.TCPConnector(limit=0, local_addr=source)
            async with aiohttp.ClientSession(connector=connector) as session:
                await one_round(agents, rng, admin_session, session, args, all_refuse, first_refuse)
    print(f"\nrevocation across {len(agents)} agents, {args.rounds} rounds (ms)")
    print(f"{'':28} {'n':>5} {'median':>9} {'p99':>9} {'min':>9} {'max':>9}")
    print(row("all agents refuse", all_refuse))
    print(row("first other agent refuses", first_refuse))


async def one_round(
    agents: list[AgentProc], rng: random.Random, admin_session: aiohttp.ClientSession,
    session: aiohttp.ClientSession, args: argparse.Namespace, all_refuse: list[float],
    first_refuse: list[float],
) -> None:  # fmt: skip
    admin = {"X-Consul-Token": MANAGEMENT}
    maker, revoker = rng.sample(agents, 2)
    async with admin_session.put(
        f"{maker.http}/v1/acl/token", json={"Description": "bench"}, headers=admin
    ) as resp:
        made = await resp.json()
    secret = made["SecretID"]

    async def accepts(agent: AgentProc, secret: str = secret) -> bool:
        return await status_self(session, agent, secret) == 200

    await wait_all(agents, accepts, "the new token", args.poll, args.timeout)
    url = f"{revoker.http}/v1/acl/token/{made['AccessorID']}"
    async with admin_session.delete(url, headers=admin) as resp:
        resp.raise_for_status()
    start = time.monotonic()

    async def refuses(agent: AgentProc, secret: str = secret) -> bool:
        return await status_self(session, agent, secret) in (403, 429)

    times = await wait_all(agents, refuses, "the revocation", args.poll, args.timeout)
    others = [t - start for a, t in zip(agents, times, strict=True) if a is not revoker]
    all_refuse.append(max(times) - start)
    first_refuse.append(min(others))


async def sequential(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str], n: int
) -> float:
    start = time.perf_counter()
    for _ in range(n):
        async with session.get(url, headers=headers) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"{url}: {resp.status}")
    return (time.perf_counter() - start) / n


async def check_cost(with_acl: AgentProc, without: AgentProc, args: argparse.Namespace) -> None:
    path = "/v1/health/service/web"
    on, off = [], []
    async with aiohttp.ClientSession() as session:
        for _ in range(args.cost_rounds):
            on.append(await sequential(session, with_acl.http + path,
                                       {"X-Consul-Token": MANAGEMENT}, args.requests))  # fmt: skip
            off.append(await sequential(session, without.http + path, {}, args.requests))
    med_on, med_off = statistics.median(on), statistics.median(off)
    print(f"\nhealth query, {args.cost_rounds} interleaved rounds of {args.requests} requests")
    print(f"ACLs on (management token)  {med_on * 1e6:8.0f} us/request")
    print(f"ACLs off                    {med_off * 1e6:8.0f} us/request")
    print(
        f"ratio on/off                {med_on / med_off:8.2f}  (+{(med_on - med_off) * 1e6:.0f} us)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--cost-rounds", type=int, default=5)
    parser.add_argument("--poll", type=float, default=0.005)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gossamer-bench-") as tmp:
        config = Path(tmp) / "acl.yaml"
        config.write_text(
            "acl:\n  enabled: true\n  default_policy: deny\n"
            f"  tokens:\n    initial_management: {MANAGEMENT}\n"
        )
        cluster = Cluster(Path(tmp))
        try:
            agents = cluster.start(
                args.agents, extra=("--config-file", str(config)), token=MANAGEMENT
            )
            plain = cluster.new_agent("plain").start()
            for agent in (agents[0], plain):
                agent.put("/v1/agent/service/register", {"Name": "web", "Port": 80})
            asyncio.run(revocations(agents, args))
            asyncio.run(check_cost(agents[0], plain, args))
        finally:
            leftovers = cluster.close()
    if leftovers:
        raise RuntimeError(f"left behind: {leftovers}")


if __name__ == "__main__":
    main()
