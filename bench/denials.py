"""What counting and merging denials costs. Printed, not asserted.

1. The proxy's data path: `DenialTable.add` of a denial whose row exists
   (the usual case: one noisy client), and of a new row into a full batch
   (1000 rows: the stalest is dropped).
2. The agent: merging one full report (1000 rows, as JSON) into a full
   table (4096 rows): decode, merge, trim.
3. End to end in one process: the agent's real endpoint on a socket, a
   report PUT by the proxy's own reporter, and a blocking GET that was
   parked on the old index answering it: wall time, median and p99.

    .venv/bin/python bench/denials.py [--rounds 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
from aiohttp import web

from gossamer.agent.http.app import error_middleware
from gossamer.agent.http.catalog_access import CATALOG_KEY
from gossamer.agent.http.denial_routes import PATH, add_denial_routes
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.store import CatalogStore
from gossamer.intentions.denials import (
    MAX_REPORT,
    Denial,
    DenialTable,
    denial_to_json,
    denials_from_json,
)
from gossamer.proxy.agent_http import AgentHttp
from gossamer.proxy.denial_report import DenialReporter, batch_table
from tests.harness.http_app import serving


def denial(n: int, now: int) -> Denial:
    return Denial(f"svc-{n}", "db", "", 0, "default policy (deny)", "default deny", 1, now, now)


def per_call_ns(fn: Callable[[int], None], count: int) -> float:
    start = time.perf_counter_ns()
    for i in range(count):
        fn(i)
    return (time.perf_counter_ns() - start) / count


def data_path() -> None:
    now = time.time_ns() // 1_000_000
    table = batch_table()
    hit = per_call_ns(lambda i: table.add(denial(0, now + i)), 100_000)
    full = batch_table()
    full.add_all(denial(n, now) for n in range(MAX_REPORT))
    miss = per_call_ns(lambda i: full.add(denial(MAX_REPORT + i, now + 1 + i)), 2_000)
    print(f"proxy add, existing row:         {hit / 1000:8.2f} us")
    print(f"proxy add, new row, full batch:  {miss / 1000:8.2f} us")


def agent_merge() -> None:
    now = time.time_ns() // 1_000_000
    table = DenialTable()
    table.add_all(denial(n, now) for n in range(table.max_rows))
    report = [denial_to_json(denial(10_000 + n, now + 1)) for n in range(MAX_REPORT)]
    start = time.perf_counter()
    table.add_all(denials_from_json(report))
    print(f"agent merge of a {MAX_REPORT}-row report into a full table: "
          f"{(time.perf_counter() - start) * 1000:.1f} ms")  # fmt: skip


async def end_to_end(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = CatalogStore.open(Path(tmp) / "c.db")
        app = web.Application(middlewares=[error_middleware])
        app[CATALOG_KEY] = LiveCatalog("dc1", db, wall_ms=lambda: 1_000)
        add_denial_routes(app)
        async with serving(app) as where, aiohttp.ClientSession() as http:
            reporter = DenialReporter(AgentHttp(where.base), batch_table())
            times = []
            for i in range(rounds):
                async with http.get(where.base + PATH) as r:
                    index = r.headers["X-Consul-Index"]
                url = f"{where.base}{PATH}?index={index}&wait=10s"
                parked = asyncio.create_task(http.get(url))
                await asyncio.sleep(0.005)  # bench only: let the GET park before the report
                start = time.perf_counter()
                reporter.table.add(denial(i, time.time_ns() // 1_000_000))
                await reporter.flush()
                (await parked).release()
                times.append((time.perf_counter() - start) * 1000)
        db.close()
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(f"report -> parked GET answered ({rounds} rounds): median "
          f"{statistics.median(times):.2f} ms, p99 {p99:.2f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    data_path()
    agent_merge()
    asyncio.run(end_to_end(args.rounds))


if __name__ == "__main__":
    main()
