"""The rows of `gossamer stat` and `top`: golden figures per edge from two gatherings. Pure.

Input: `GET /v1/agent/metrics/proxies` answers (a list of proxies, each with
`Stats.Proxies[].Edges[]` as the proxy's `/stats` renders them). One row per
(direction, source, destination) edge, the figures of every proxy that has
it summed (two sidecars of one service on an agent), over the interval
between `before` and `after`, or with no `before` since each proxy started
(each over its own uptime); a proxy that restarted in between counts from
its start, never negatively:
- an edge that carried HTTP (its L7 path reported responses) counts
  requests; success is every response but 5xx and no response; latency is
  the response latency;
- a TCP edge counts connections: established ones succeed, those that could
  not be established (no instance, every attempt failed, app down) fail;
  latency is the time to establish (handshake, decision, connect);
- denials are authorization denials plus connections cut by policy change.
Percentiles are interpolated within histogram buckets, as Prometheus's
`histogram_quantile` does, so they are estimates at the buckets' resolution.

A proxy missing from `before` (the agent's read of it timed out once, a GC
pause) counts from its start if it started within the window; otherwise
its counts since it started are not the window's, so it is left out of
this interval and named (`notes`). A proxy whose figures do not have the
shape of `/stats` (`check_stats`, stats_shape.py: another program on its
metrics port, another version) is named and left out too, never an
exception that would cost every other proxy's rows. The table's cells are
stat_table.py's: these rows are also what `--json` prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gossamer.proxy.edge_metrics import quantile
from gossamer.proxy.stats_shape import Malformed, check_stats, what

Key = tuple[str, str, str]


@dataclass(frozen=True)
class EdgeRow:
    direction: str
    source: str
    destination: str
    protocol: str  # "http" or "tcp"
    requests: int  # in the interval
    successes: int
    per_second: float
    p50: float | None  # seconds
    p95: float | None
    p99: float | None
    open: int
    denied: int

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.requests if self.requests else None


Who = tuple[str, str]  # (proxy ID, service): two sidecars of one service each have their own


@dataclass(frozen=True)
class Gathering:
    """One reading of the agent's answer, checked: only well-shaped figures get in."""

    edges: dict[tuple[Who, Key], Mapping[str, Any]]  # (proxy, edge) -> its figures
    uptimes: dict[Who, float]  # every proxy read (with edges or not) -> its uptime in seconds
    unread: list[str]  # "proxy ID: why" for each proxy whose figures could not be read


def edges_of(answer: Iterable[object]) -> Gathering:
    """Every edge of every proxy that answered. A proxy the agent could not read (`Error`), or
    whose figures have another shape (a foreign listener on its metrics port, another
    version), is named in `unread` and left out: one proxy never costs the others' rows."""
    edges: dict[tuple[Who, Key], Mapping[str, Any]] = {}
    uptimes: dict[Who, float] = {}
    unread: list[str] = []
    for entry in answer:
        if not isinstance(entry, Mapping):
            unread.append(f"?: not a proxy's entry: {what(entry)}")
            continue
        proxy_id = str(entry.get("ProxyID", "?"))
        if entry.get("Error"):
            unread.append(f"{proxy_id}: {entry['Error']}")
            continue
        try:
            check_stats(entry.get("Stats"))
        except Malformed as exc:
            unread.append(f"{proxy_id}: figures of another shape: {exc}")
            continue
        for stats in entry["Stats"]["Proxies"]:
            who = (proxy_id, stats["Service"])
            uptimes[who] = float(stats["UptimeSeconds"])
            for e in stats["Edges"]:
                edges[(who, (e["Direction"], e["Source"], e["Destination"]))] = e
    return Gathering(edges, uptimes, unread)


def rows(after: Gathering, before: Gathering | None, seconds: float) -> list[EdgeRow]:
    """One row per edge, its proxies' figures summed: over `seconds` from `before`, or with
    no `before` since each proxy started (each proxy's own uptime its time). A proxy that
    restarted in between (its uptime or a counter went back) counts from its start; one
    missing from `before` too when it started within the window, else it is left out
    (`notes` names it): its counts since it started are not this window's."""
    parts: dict[Key, list[_Part]] = {}
    for (who, key), now in sorted(after.edges.items()):
        uptime = after.uptimes[who]
        if before is None:
            part, span = _part(now, {}), uptime
        elif who not in before.uptimes:
            if _missed(who, after, before, seconds):
                continue
            part, span = _part(now, {}), seconds
        else:
            then = before.edges.get((who, key), {})
            part, span = _part(now, then), seconds
            if then and (uptime < before.uptimes[who] or part.went_back):
                part = _part(now, {})
        part.per_second = part.requests / span if span else 0.0
        parts.setdefault(key, []).append(part)
    return [_row(key, found) for key, found in sorted(parts.items())]


def notes(after: Gathering, before: Gathering | None, seconds: float) -> list[str]:
    """The lines under the table: each proxy that could not be read, then each left out of
    this window (`rows`)."""
    missed = sorted({who[0] for who in after.uptimes if _missed(who, after, before, seconds)})
    return [
        *(f"not read: {line}" for line in after.unread),
        *(f"left out: {proxy_id}: not read at the start of the window" for proxy_id in missed),
    ]


def _missed(who: Who, after: Gathering, before: Gathering | None, seconds: float) -> bool:
    """Whether `who` was not read at the start of the window (the agent's read of it timed
    out, say) though it ran then: its counts cannot be split at the window's start."""
    return before is not None and who not in before.uptimes and after.uptimes[who] > seconds


@dataclass
class _Part:
    """One proxy's share of an edge's row."""

    http: bool
    requests: int
    successes: int
    denied: int
    open: int
    latency: tuple[list[float], list[int]]
    went_back: bool  # a counter is lower than before: the proxy (or its worker) restarted
    per_second: float = 0.0


def _part(now: Mapping[str, Any], then: Mapping[str, Any]) -> _Part:
    """`now` minus `then` (an edge's figures, checked by `check_stats`; `then` may be {})."""
    counted: list[int] = []

    def delta(a: int, b: int) -> int:
        counted.append(a - b)
        return a - b

    routes, old_routes = now["Routes"], then.get("Routes", {})
    if routes:
        requests = delta(sum(r["Requests"] for r in routes.values()),
                         sum(r["Requests"] for r in old_routes.values()))  # fmt: skip
        bad = delta(sum(_bad(r) for r in routes.values()),
                    sum(_bad(r) for r in old_routes.values()))  # fmt: skip
        successes = requests - bad
        latency = _merged([r["Latency"] for r in routes.values()],
                          [r["Latency"] for r in old_routes.values()])  # fmt: skip
    else:
        successes = delta(now["Opened"], then.get("Opened", 0))
        requests = successes + delta(now["Failed"], then.get("Failed", 0))
        latency = _merged([now["Setup"]], [then["Setup"]] if then else [])
    denied = sum(delta(now[n], then.get(n, 0)) for n in ("Denied", "Terminated"))
    return _Part(bool(routes), requests, successes, denied, now["Open"], latency,
                 went_back=any(d < 0 for d in counted))  # fmt: skip


def _row(key: Key, parts: list[_Part]) -> EdgeRow:
    requests = sum(p.requests for p in parts)
    bounds = next((p.latency[0] for p in parts if p.latency[0]), [])
    same = [p.latency[1] for p in parts if p.latency[1] and p.latency[0] == bounds]
    counts = [sum(c) for c in zip(*same, strict=True)]  # (other buckets, another version's: out)
    q: list[float | None] = [quantile(x, bounds, counts) for x in (0.5, 0.95, 0.99)]
    return EdgeRow(
        *key, protocol="http" if any(p.http for p in parts) else "tcp", requests=requests,
        successes=sum(p.successes for p in parts), per_second=sum(p.per_second for p in parts),
        p50=q[0], p95=q[1], p99=q[2], open=sum(p.open for p in parts),
        denied=sum(p.denied for p in parts),
    )  # fmt: skip


def _bad(route: Mapping[str, Any]) -> int:
    responses = route["Responses"]
    return int(responses.get("5xx", 0)) + int(responses.get("none", 0))


def _merged(
    now: list[Mapping[str, Any]], then: list[Mapping[str, Any]]
) -> tuple[list[float], list[int]]:
    """One histogram: the sum of `now`'s minus the sum of `then`'s, those with the first's
    bounds only (buckets of another version cannot be added)."""
    if not now:
        return [], []
    bounds = list(now[0]["Bounds"])
    counts = [0] * (len(bounds) + 1)
    for sign, hists in ((1, now), (-1, then)):
        for h in hists:
            if list(h["Bounds"]) == bounds:
                for i, n in enumerate(h["Counts"]):
                    counts[i] += sign * int(n)
    return bounds, [max(c, 0) for c in counts]
