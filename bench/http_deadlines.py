"""What the HTTP path's timeouts cost a request: our one re-armed timer against a timer each.

Printed, not asserted. In-process, on the event loop the proxy uses (uvloop
when installed): ns per request for
- `Deadlines.sent()` in the steady state (http_deadlines.py: a clock read, a
  byte-count read and a comparison; the session's timer is already due
  sooner, so it is not touched), plus `stop()` once per 100 requests (a
  keep-alive client connection closing);
- the plain way, a timer per request: `loop.call_at` when a request is
  sent, `cancel()` when its answer ends;
- nothing (the loop overhead of the measurement itself).
Medians of `--rounds` interleaved rounds of `--requests` each.

    .venv/bin/python bench/http_deadlines.py [--rounds 7] [--requests 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gossamer.proxy.http_deadlines import Deadlines  # noqa: E402
from gossamer.proxy.http_limits import Limits  # noqa: E402


class _Session:
    """What `Deadlines` reads of an `HttpSession`."""

    def __init__(self) -> None:
        self.closed, self.tunnel, self.queue = False, None, deque[object]()
        self.moved = 0
        self.loop = asyncio.get_running_loop()

    def moved_total(self) -> int:
        return self.moved


def _ours(n: int) -> float:
    limits = Limits(15.0, 300.0, 3600.0)
    start = time.perf_counter_ns()
    for _ in range(n // 100):
        session = _Session()
        deadlines = Deadlines(session, limits)  # type: ignore[arg-type]
        for _ in range(100):
            session.moved += 200
            deadlines.sent(complete=True)
        deadlines.stop()
    return (time.perf_counter_ns() - start) / n


def _timer_each(n: int) -> float:
    loop = asyncio.get_running_loop()
    start = time.perf_counter_ns()
    for _ in range(n):
        handle = loop.call_at(loop.time() + 15.0, lambda: None)
        handle.cancel()
    return (time.perf_counter_ns() - start) / n


def _nothing(n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        pass
    return (time.perf_counter_ns() - start) / n


async def _run(rounds: int, n: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"ours": [], "timer each": [], "nothing": []}
    for _ in range(rounds):
        out["ours"].append(_ours(n))
        out["timer each"].append(_timer_each(n))
        out["nothing"].append(_nothing(n))
        await asyncio.sleep(0)  # let cancelled handles be dropped between rounds
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=200_000)
    args = parser.parse_args()
    try:
        import uvloop

        runner = uvloop.run
        name = "uvloop"
    except ImportError:
        runner, name = asyncio.run, "asyncio"
    figures = runner(_run(args.rounds, args.requests))
    print(f"ns per request, median of {args.rounds} rounds of {args.requests:,} ({name}, "
          f"Python {sys.version.split()[0]})")  # fmt: skip
    base = statistics.median(figures["nothing"])
    for label, values in figures.items():
        med = statistics.median(values)
        print(f"  {label:<11} {med:7.0f}  (less the empty loop: {med - base:5.0f})")
    ours, each = (statistics.median(figures[k]) - base for k in ("ours", "timer each"))
    print(f"  a timer per request costs {each / ours:.1f}x ours")


if __name__ == "__main__":
    main()
