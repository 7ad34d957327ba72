"""The terminal UI's figures, headless (Textual's run_test): printed, never asserted.

1. Live update: two real agents (each with its serf child); the UI follows
   agent 1. 30 writes on agent 2 (`PUT /v1/connect/intentions/exact`, a new
   pair each); per write, the time from the PUT returning (durable on agent
   2) until the pair's row is in agent 1's UI table, polled every 2 ms.
   Median and p99 (the largest of 30, so p99 is the max here).
2. Start-up: from creating the app until its table shows the agent's list
   (agent 1, holding the 30 intentions), median of 5; and the import of the
   UI's modules in a fresh interpreter, measured once.
3. Frame time per keypress with 10,000 intentions and 200 services: the UI
   against fixed answers (tests/harness/tui.py: the same client class, its
   one network method answering from memory, so the figure is the UI's own
   work). Per key: press, then wait until the app is idle and has
   refreshed (Pilot's `press` + `pause`); the wall time includes Pilot's
   own waits for idle and the next screen refresh, so the CPU time of the
   process per key is printed too, and both again with the 6 intentions
   and 5 services of the snapshot tests as the baseline.

    .venv/bin/python bench/tui_latency.py [--writes 30] [--intentions 10000] [--services 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from textual.pilot import Pilot  # noqa: E402

from gossamer.intentions.model import Intention  # noqa: E402
from gossamer.intentions.tui.app import IntentionsApp  # noqa: E402
from gossamer.intentions.tui.main_screen import MainScreen  # noqa: E402
from gossamer.intentions.tui.matrix_screen import MatrixScreen  # noqa: E402
from tests.harness.cluster import AgentProc, Cluster, http_json  # noqa: E402
from tests.harness.tui import (  # noqa: E402
    FixedApi,
    many_intentions,
    sample_intentions,
    service_names,
)

SAMPLE_SERVICES = ["api", "batch", "billing", "db", "web"]

SIZE = (120, 40)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def summary(name: str, samples: list[float]) -> None:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    print(
        f"  {name:<38} median {ms(statistics.median(ordered))}   p99 {ms(p99)}"
        f"   max {ms(ordered[-1])}   (n={len(ordered)})"
    )


async def until(pilot: Pilot[Any], check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("the UI did not get there in time")
        await pilot.pause(0.002)


def shown(app: IntentionsApp) -> set[tuple[str, str]]:
    screen = app.screen
    return {r.key for r in screen.table.shown} if isinstance(screen, MainScreen) else set()


async def live_updates(a: AgentProc, b: AgentProc, writes: int) -> list[float]:
    out = []
    async with IntentionsApp(a.http).run_test(size=SIZE) as pilot:
        app = pilot.app
        assert isinstance(app, IntentionsApp)
        await until(pilot, lambda: app.loaded)
        for i in range(writes):
            pair = (f"bench-src-{i}", "bench-db")
            url = f"{b.http}/v1/connect/intentions/exact?source={pair[0]}&destination={pair[1]}"
            await asyncio.to_thread(http_json, url, "PUT", {"Action": "allow"})
            start = time.monotonic()
            await until(pilot, lambda p=pair: p in shown(app))  # type: ignore[misc]
            out.append(time.monotonic() - start)
    return out


async def startup(a: AgentProc, want: int) -> float:
    start = time.monotonic()
    async with IntentionsApp(a.http).run_test(size=SIZE) as pilot:
        app = pilot.app
        assert isinstance(app, IntentionsApp)
        await until(pilot, lambda: len(shown(app)) >= want)
        return time.monotonic() - start


def import_time() -> float:
    code = (
        "import time; t=time.monotonic(); import gossamer.intentions.tui.app, "
        "gossamer.intentions.tui.main_screen; print(time.monotonic()-t)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout)


Samples = dict[str, tuple[list[float], list[float]]]  # name -> (wall, cpu)


async def timed_keys(pilot: Pilot[Any], keys: list[str]) -> tuple[list[float], list[float]]:
    wall, cpu = [], []
    for key in keys:
        start, start_cpu = time.monotonic(), time.process_time()
        await pilot.press(key)
        await pilot.pause()
        wall.append(time.monotonic() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


async def frames(rows: list[Intention], services: list[str]) -> Samples:
    api = FixedApi(rows, services)
    found: Samples = {}
    async with IntentionsApp(api.base_url, api=api).run_test(size=SIZE) as pilot:
        app = pilot.app
        assert isinstance(app, IntentionsApp)
        await until(
            pilot, lambda: len(shown(app)) == len(rows) and len(app.services) == len(services)
        )
        found["list: cursor down"] = await timed_keys(pilot, ["down"] * 30)
        found["list: page down"] = await timed_keys(pilot, ["pagedown"] * 10)
        found["list: sort by the next column (s)"] = await timed_keys(pilot, ["s"] * 6)
        await pilot.press("slash")
        found["list: one filter character"] = await timed_keys(
            pilot, list("svc-01") + ["backspace"] * 6
        )
        await pilot.press("escape", "escape")
        found["matrix: open"] = await timed_keys(pilot, ["m"])
        assert isinstance(app.screen, MatrixScreen)
        found["matrix: cursor right"] = await timed_keys(pilot, ["right"] * 30)
        found["matrix: cursor down"] = await timed_keys(pilot, ["down"] * 30)
    return found


async def with_cluster(args: argparse.Namespace) -> None:
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="tui-bench-")))
    try:
        a, b = cluster.start(2)
        print(f"Live update: write on {b.name} -> row in the UI following {a.name}")
        summary("write elsewhere -> row shown", await live_updates(a, b, args.writes))
        print("Start-up")
        summary(
            "app created -> first list shown", [await startup(a, args.writes) for _ in range(5)]
        )
        print(f"  {'import of the UI modules':<38} {ms(import_time())}")
    finally:
        cluster.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=30)
    parser.add_argument("--intentions", type=int, default=10_000)
    parser.add_argument("--services", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(with_cluster(args))
    print("Frame time per keypress (press -> idle and refreshed): wall, and CPU of the process")
    big = many_intentions(args.intentions, args.services)
    runs = [
        (f"{len(big)} intentions, {args.services} services", big, service_names(args.services)),
        ("baseline: 6 intentions, 5 services", sample_intentions(), SAMPLE_SERVICES),
    ]
    for title, rows, services in runs:
        print(f"  {title}")
        for name, (wall, cpu) in asyncio.run(frames(rows, services)).items():
            summary(f"{name} (wall)", wall)
            summary(f"{name} (cpu)", cpu)


if __name__ == "__main__":
    main()
