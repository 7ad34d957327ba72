"""How long a sidecar's event loop stalls while it applies an intention change. In process.

Printed, not asserted (tests/test_proxy_policy_steps.py holds the behaviour). A
`ProxyRuntime` for `db` (no listeners: the agent's answers handed in as its
intentions watch hands them) gets `--intentions` intentions (two in three L7,
three regexes each, as bench/proxy_churn.py writes them, plus `web => db` and
`* => db`), as the agent's match answer body. Then `--changes` answers that
each flip one row (`s1 => db` allow <-> deny), as a CI pipeline's edits come,
and two in which every row is new (written again: a new ModifyIndex).
Meanwhile a heartbeat task asks to run every 1 ms and decides `s1 -> db` with
the policy in force each time it runs. Per change:

- longest stall: the heartbeat's worst lateness while the change is applied
  (every connection and request of the sidecar waits that long), and the most
  CPU the process spent between two beats (the same, less the time another
  process had the core: on a busy host the first is the second and then some);
- first decision: from the answer handed in to the first decision made with
  the new policy (how soon a change applies);
- CPU: the process's CPU time for the change.

The process is set up as `gossamer connect proxy` sets its own (`gc.freeze()`
of what start-up made, the young generation at `GC_YOUNG`, uvloop).

    .venv/bin/python bench/policy_apply.py [--intentions 5000] [--changes 6]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gossamer.intentions.codec import intention_to_json  # noqa: E402
from gossamer.intentions.decide import IntentionSet, decide, match  # noqa: E402
from gossamer.intentions.model import (  # noqa: E402
    HttpRequest,
    Intention,
)
from gossamer.proxy.__main__ import GC_YOUNG  # noqa: E402
from gossamer.proxy.agent_http import AgentHttp  # noqa: E402
from gossamer.proxy.config import ProxyConfig  # noqa: E402
from gossamer.proxy.runtime import ProxyRuntime  # noqa: E402
from tests.harness.intention_sets import intention  # noqa: E402

BEAT_S = 0.001
REQUEST = HttpRequest("GET", "/api/v1/x")


def answer(n: int, changed: bool, written: int = 0) -> bytes:
    """db's match answer as the agent sends it: every row, in evaluation order. `written`:
    every row written again that many times (a new ModifyIndex, the same rule)."""
    ixns = [Intention("web", "db", "allow"), Intention("*", "db", "deny")]
    ixns += [intention(i, changed and i == 1, written) for i in range(n)]
    rows = [intention_to_json(i) for i in match(IntentionSet(ixns), "destination", "db")]
    return json.dumps({"db": rows}).encode()


class Heartbeat:
    """A task that asks to run every BEAT_S and decides with the policy each time."""

    def __init__(self, runtime: ProxyRuntime) -> None:
        self.runtime = runtime
        self.latest = 0.0  # the worst lateness since `reset`
        self.latest_cpu = 0.0  # the most CPU the process spent between two beats, less BEAT_S
        self.allowed: bool | None = None
        self.changed_at = 0.0  # when a decision first differed from the one at `reset`
        self.changed = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    def reset(self) -> None:
        self.latest, self.latest_cpu, self.changed_at = 0.0, 0.0, 0.0
        self.changed.clear()
        self.allowed = self._decide()

    def _decide(self) -> bool:
        policy = self.runtime.policy
        return decide(policy.intentions, "s1", "db", request=REQUEST,
                      default_allow=policy.default_allow).allowed  # fmt: skip

    async def _run(self) -> None:
        while True:
            due, cpu = time.perf_counter() + BEAT_S, time.thread_time()
            await asyncio.sleep(BEAT_S)
            now = time.perf_counter()
            self.latest = max(self.latest, now - due)
            self.latest_cpu = max(self.latest_cpu, time.thread_time() - cpu - BEAT_S)
            if not self.changed_at and self.allowed is not None and self._decide() != self.allowed:
                self.changed_at = now
                self.changed.set()

    def stop(self) -> None:
        self._task.cancel()

    def stall(self) -> str:
        return f"longest stall {ms(self.latest)} ({ms(max(self.latest_cpu, 0))} of CPU)"


async def run(n: int, changes: int) -> None:
    runtime = ProxyRuntime(ProxyConfig(service="db"), AgentHttp("http://127.0.0.1:1"))
    bodies = [answer(n, False), answer(n, True)]
    print(f"policy_apply: {n} intentions, an answer of {len(bodies[0]) / 1e6:.1f} MB")
    beat = Heartbeat(runtime)
    started, cpu = time.perf_counter(), time.process_time()
    await runtime._on_intentions(bodies[0])
    print(f"  first answer (every row compiled): {ms(time.perf_counter() - started)} "
          f"({ms(time.process_time() - cpu)} CPU), {beat.stall()}")  # fmt: skip
    await asyncio.sleep(0.2)
    for k in range(changes):
        await asyncio.sleep(0.05)
        beat.reset()
        started, cpu = time.perf_counter(), time.process_time()
        await runtime._on_intentions(bodies[(k + 1) % 2])
        await asyncio.wait_for(beat.changed.wait(), 1)
        first = beat.changed_at - started if beat.changed_at else float("nan")
        print(f"  change {k + 1}: {beat.stall()}, first decision "
              f"{ms(first)} after the answer, {ms(time.process_time() - cpu)} CPU")  # fmt: skip
    for k in range(2):  # every row written again (a pipeline that rewrites them all)
        body = answer(n, k % 2 == 0, written=k + 1)
        await asyncio.sleep(0.05)
        beat.reset()
        started, cpu = time.perf_counter(), time.process_time()
        await runtime._on_intentions(body)
        print(f"  every row new {k + 1}: {beat.stall()}, applied in "
              f"{ms(time.perf_counter() - started)}, "
              f"{ms(time.process_time() - cpu)} CPU")  # fmt: skip
    beat.stop()


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--intentions", type=int, default=5000)
    parser.add_argument("--changes", type=int, default=6)
    args = parser.parse_args()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(run(args.intentions, args.changes))
        return
    uvloop.run(run(args.intentions, args.changes))


if __name__ == "__main__":
    main()
