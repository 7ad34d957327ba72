"""`gossamer stat` and `gossamer top`: golden metrics per edge, as `linkerd viz stat` / `top`.

Both read `GET /v1/agent/metrics/proxies` (the agent gathers its local
sidecars' `/stats`), never Prometheus. `stat` prints one table: since each
proxy started, or over `--window SECONDS` (two gatherings that far apart).
`stat --routes` splits each HTTP edge by route (proxy/stat_routes.py).
`top` redraws the table every `--interval` with the figures of the last
interval, until `q` (stdin a terminal: quit_key.py), Ctrl-C or SIGTERM (or
`--iterations N`); piped, it prints the frames one after the other instead
of redrawing one. A reading that fails after the first (the agent
restarting, an error answer) is said in that frame and `top` goes on; the
next reading covers the time since the last good one. Proxies whose figures
could not be read (or have another shape) are listed under the table with
why, as are proxies left out of a window because the first reading missed
them (stat_rows.notes); with `--json` (which prints the rows) those lines go
to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from typing import Any
from urllib.parse import urlencode

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from gossamer.agent.cli.client import AgentClient, AgentUnreachable, ApiError, UsageError
from gossamer.agent.cli.quit_key import quit_key
from gossamer.proxy.stat_routes import HEADERS as ROUTE_HEADERS
from gossamer.proxy.stat_routes import RouteRow, route_cells, route_rows
from gossamer.proxy.stat_rows import EdgeRow, edges_of, notes, rows
from gossamer.proxy.stat_table import HEADERS, cells, stacked

PATH = "/v1/agent/metrics/proxies"


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("stat", help="golden metrics per edge of this agent's sidecar proxies")
    s.add_argument("--service", help="only the sidecars of this service")
    s.add_argument("--window", type=_seconds, default=0.0, metavar="SECONDS",
                   help="figures over this many seconds from now (default: since each proxy "
                   "started)")  # fmt: skip
    s.add_argument("--json", action="store_true", help="print the rows as JSON")
    s.add_argument("--routes", action="store_true",
                   help="a row per route of each HTTP edge (as linkerd viz routes): the L7 "
                   "permission that decided, or the service-router route taken")  # fmt: skip
    s.set_defaults(run=run_stat)
    t = sub.add_parser("top", help="the stat table, refreshed live")
    t.add_argument("--service", help="only the sidecars of this service")
    t.add_argument("--interval", type=_seconds, default=2.0, metavar="SECONDS",
                   help="seconds between refreshes (default 2)")  # fmt: skip
    t.add_argument("--iterations", type=_count, default=0, metavar="N",
                   help="stop after N refreshes (default: until Ctrl-C)")  # fmt: skip
    t.set_defaults(run=run_top)


MAX_SECONDS = 86400.0  # a day: longer is a typo, and sleep() overflows on "inf"


def _seconds(text: str) -> float:
    """A number of seconds argparse turns away (exit 2) unless finite and 0 to a day: float()
    takes "nan" and "inf", and `--window nan` read as no window, `inf` as a traceback."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or not 0 <= value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"seconds from 0 to {MAX_SECONDS:g}, got {text!r}")
    return value


def _count(text: str) -> int:
    """`--iterations -1` showed no frame at all and exited 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (no limit) or more, got {value}")
    return value


def _gather(client: AgentClient, service: str | None) -> list[Any]:
    path = PATH + ("?" + urlencode({"service": service}) if service else "")
    answer = client.get(path)
    return answer if isinstance(answer, list) else []


TOP_READ_TIMEOUT_S = 5.0  # the agent gives each sidecar 2 s (proxy_stats_routes.TIMEOUT_S)
NAMES = ("SOURCE", "DESTINATION")  # the columns that fold when the terminal is narrow
MIN_NAME = 6  # columns each name keeps before the figures fold too


def table(
    found: list[EdgeRow], title: str, below: Sequence[str] = (), width: int | None = None
) -> Table | Group:
    """The rows, with `below` (stat_rows.notes) under them as plain text (`top`'s frame).

    On a terminal `width` columns wide that is narrower than the table, the columns are
    one space apart instead of two, then the service names fold onto more lines while
    every other cell stays whole; when even the figures do not fit, each edge is a block
    of lines instead (`_stacked`). Nothing is cut: rich ellipsizes a cell that may not
    wrap ("465…" could be 465 ms or 4.65 s)."""
    shown = [cells(row) for row in found]
    widest = [max([len(name), *(len(c[i]) for c in shown)]) for i, name in enumerate(HEADERS)]
    gaps = len(HEADERS) - 1
    gap = 2 if width is None or sum(widest) + 2 * gaps <= width else 1
    figures = sum(w for w, name in zip(widest, HEADERS, strict=True) if name not in NAMES)
    if width is not None and figures + gap * gaps + MIN_NAME * len(NAMES) > width:
        return _stacked(found, title, below)
    t = Table(title=title, title_justify="left", box=None, pad_edge=False,
              padding=(0, 1) if gap == 2 else (0, 1, 0, 0))  # fmt: skip
    for name in HEADERS:
        t.add_column(name, justify="left" if name in HEADERS[:4] else "right",
                     no_wrap=name not in NAMES, overflow="fold")  # fmt: skip
    for row in shown:
        t.add_row(*row)
    return Group(t, *(Text(line) for line in below)) if below else t


def _stacked(found: list[EdgeRow], title: str, below: Sequence[str]) -> Group:
    """Narrower than the figures alone: one block per edge (stat_table.stacked), blocks
    apart by an empty line, long names folded by rich rather than cut."""
    blocks = [[Text(line, overflow="fold") for line in stacked(row)] for row in found]
    lines = [Text(title), *(line for block in blocks for line in [Text(""), *block])]
    return Group(*lines, *(Text(line) for line in below))


def run_stat(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    client.timeout = TOP_READ_TIMEOUT_S  # a stuck agent: said in seconds, not the CLI's 30
    first = _gather(client, args.service)
    edges = edges_of(first)
    before, seconds, last = None, 0.0, first
    if args.window > 0:
        started = time.monotonic()
        time.sleep(args.window)
        last = _gather(client, args.service)
        before, seconds = edges, time.monotonic() - started
        edges = edges_of(last)
    below = notes(edges, before, seconds)
    if args.routes:
        title = f"routes of this agent's proxies' HTTP edges, {_span(before, seconds)}"
        found_routes = route_rows(edges, before, seconds)
        return _print_routes(found_routes, below, args.json, console, title)
    found = rows(edges, before, seconds)
    if args.json:
        print(json.dumps([asdict(r) | {"success_rate": r.success_rate} for r in found], indent=2))
        for line in below:
            print(line, file=sys.stderr)
        return 0
    shown = _span(before, seconds)
    console.print(table(found, f"edges of this agent's proxies, {shown}", width=console.width))
    for line in below:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if not found and not last:
        console.print(_nobody(args.service))
    return 0


def _span(before: object, seconds: float) -> str:
    return f"last {seconds:.1f} s" if before is not None else "since the proxies started"


def _print_routes(found: list[RouteRow], below: Sequence[str], as_json: bool, console: Console,
                  title: str) -> int:  # fmt: skip
    """`stat --routes`: the rows as JSON, or a table with `below` under it."""
    if as_json:
        print(json.dumps([asdict(r) | {"success_rate": r.success_rate} for r in found], indent=2))
        for line in below:
            print(line, file=sys.stderr)
        return 0
    t = Table(title=title, title_justify="left", box=None, pad_edge=False)
    for name in ROUTE_HEADERS:
        t.add_column(name, justify="left" if name in ROUTE_HEADERS[:4] else "right",
                     overflow="fold")  # fmt: skip
    for row in found:
        t.add_row(*(Text(cell) for cell in route_cells(row)))  # ("[default]" is no markup)
    console.print(t)
    for line in below:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    return 0


def _nobody(service: str | None) -> str:
    of = f" of {service}" if service else ""
    return f"No sidecar proxy{of} registered on this agent."


def run_top(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    if args.interval <= 0:
        raise UsageError(f"--interval: must be > 0 seconds, got {args.interval}")
    # A stuck agent costs a frame that says so, not 30 s in which `q` goes unread.
    client.timeout = max(TOP_READ_TIMEOUT_S, args.interval)
    previous = edges_of(_gather(client, args.service))  # an agent that is down: one error
    at, done = time.monotonic(), 0
    with quit_key() as (wait, keys), _frames(console) as show, _sigterm_quits():
        quits = "q or Ctrl-C quits" if keys else "Ctrl-C quits"
        try:
            while not args.iterations or done < args.iterations:
                if wait(args.interval):
                    break
                done += 1
                try:
                    gathered = _gather(client, args.service)
                except (AgentUnreachable, ApiError) as exc:  # a restart, a timeout: go on
                    why = f"not read: {exc}; trying again in {args.interval:g} s"
                    show(table([], f"edges of this agent's proxies ({quits})", [why],
                               console.width))  # fmt: skip
                    continue
                edges = edges_of(gathered)
                now = time.monotonic()
                title = f"edges of this agent's proxies, last {now - at:.1f} s ({quits})"
                below = notes(edges, previous, now - at) + ([] if gathered else
                                                            [_nobody(args.service)])  # fmt: skip
                show(table(rows(edges, previous, now - at), title, below, console.width))
                previous, at = edges, now
        except KeyboardInterrupt:
            pass
    return 0


Frame = Table | Group


@contextlib.contextmanager
def _frames(console: Console) -> Iterator[Callable[[Frame], None]]:
    """Where `top` puts each frame: redrawn in place on a terminal; otherwise (piped to a
    file, `tee`, `less`) printed one after the other as it comes. rich's Live, off a
    terminal, prints only the last frame once the loop ends, so `gossamer top | tee log`
    showed nothing while it ran and a `top` ended by a signal printed nothing at all."""
    if console.is_terminal:
        with Live(table([], "waiting for the first interval"), console=console,
                  auto_refresh=False, transient=False) as live:  # fmt: skip
            yield lambda frame: live.update(frame, refresh=True)
        return

    def printed(frame: Frame) -> None:
        console.print(frame)
        console.line()
        console.file.flush()

    yield printed


@contextlib.contextmanager
def _sigterm_quits() -> Iterator[None]:
    """SIGTERM (`timeout 10 gossamer top`, a supervisor) ends `top` as Ctrl-C does: the
    terminal gets its cursor back and the exit code is 0, not a signal's."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)
