"""Root rotation: from `PUT /v1/connect/ca/configuration` on one agent until every agent trusts it.

Printed, not asserted. A 10-agent loopback cluster (real agents, each with
its serf child). Each round rotates the root on a random agent (what
`gossamer ca rotate` sends: the current config plus `ForceRotate`), reads
the new active root's id from that agent, and polls every agent's
`/v1/agent/connect/ca/roots` concurrently with blocking queries (each
agent answers as soon as its roots change, so the bench adds no polling
load to the agents it measures) for two moments:
- trusted: the new root is in the agent's trust bundle (`Roots`), so leaves
  and agent certificates signed under it verify there;
- active: the agent's `ActiveRootID` is the new root (it signs under it).
The clock starts when the PUT returns. The new root spreads as an entry of
the replicated CA map, pushed at once to a few peers who pass it on (the
same hand-over as intentions), with anti-entropy behind it.

    .venv/bin/python bench/ca_rotation.py [--agents 10] [--rotations 20]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.catalog_convergence import row, running_cluster  # noqa: E402
from tests.harness.cluster import AgentProc  # noqa: E402

CONFIG = "/v1/connect/ca/configuration"
ROOTS = "/v1/connect/ca/roots"


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as resp:
        resp.raise_for_status()
        return await resp.json()


async def rotate(session: aiohttp.ClientSession, agent: AgentProc) -> tuple[str, float]:
    """Rotate on `agent`; the id of the root it made active, and when the PUT returned."""
    before = (await get_json(session, agent.http + ROOTS))["ActiveRootID"]
    config = (await get_json(session, agent.http + CONFIG))["Config"]
    body = {"Provider": "consul", "Config": config, "ForceRotate": True}
    async with session.put(agent.http + CONFIG, json=body) as resp:
        resp.raise_for_status()
    returned = time.monotonic()
    after = (await get_json(session, agent.http + ROOTS))["ActiveRootID"]
    if after == before:
        raise RuntimeError(f"{agent.name}: the rotation did not change the active root")
    return str(after), returned


async def watch(
    session: aiohttp.ClientSession, agent: AgentProc, rid: str, timeout: float
) -> tuple[float, float]:
    """When `agent` first listed root `rid` in its bundle, and when it made it active."""
    deadline = time.monotonic() + timeout
    trusted: float | None = None
    index = "0"
    while time.monotonic() < deadline:
        url = f"{agent.http}/v1/agent/connect/ca/roots?index={index}&wait=10s"
        async with session.get(url) as resp:
            resp.raise_for_status()
            index = resp.headers.get("X-Consul-Index", "0")
            roots = await resp.json()
        now = time.monotonic()
        if trusted is None and any(r["ID"] == rid for r in roots["Roots"] or []):
            trusted = now
        if roots["ActiveRootID"] == rid:
            return (trusted or now), now
    raise TimeoutError(f"{agent.name}: root {rid} not active within {timeout}s")


async def run(agents: list[AgentProc], args: argparse.Namespace) -> list[tuple[float, float]]:
    """(seconds until every agent trusts the new root, until every agent signs under it)."""
    rng = random.Random(args.seed)
    results: list[tuple[float, float]] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        for i in range(args.rotations):
            agent = rng.choice(agents)
            rid, start = await rotate(session, agent)
            seen = await asyncio.gather(*(watch(session, a, rid, args.timeout) for a in agents))
            results.append((max(t for t, _ in seen) - start, max(s for _, s in seen) - start))
            print(
                f"  rotation {i + 1:3}/{args.rotations} on {agent.name:7}: all trust it "
                f"{results[-1][0] * 1e3:6.0f} ms, all sign under it {results[-1][1] * 1e3:6.0f} ms",
                flush=True,
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--rotations", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per rotation")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    with running_cluster(args.agents) as agents:
        results = asyncio.run(run(agents, args))
    print()
    print(f"root rotation, {args.agents} agents, {len(results)} rotations, ms")
    print(f"{'measure':28} {'n':>5} {'median':>9} {'p99':>9} {'min':>9} {'max':>9}")
    print(row("every agent trusts it", [t for t, _ in results]))
    print(row("every agent signs under it", [s for _, s in results]))
    print(
        "(PUT returned → the new root in every agent's /v1/agent/connect/ca/roots, watched "
        "with blocking queries; p99 is nearest-rank, so the max for under 100 rotations)"
    )


if __name__ == "__main__":
    main()
