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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gossamer.proxy.edge_metrics import quantile

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


Gathering = dict[tuple[str, Key], tuple[Mapping[str, Any], float]]


def edges_of(answer: Iterable[Mapping[str, Any]]) -> Gathering:
    """Every edge of every proxy that answered: (proxy, edge) -> (its figures, that proxy's
    uptime in seconds). Two sidecars of one service each have their own edges."""
    found: Gathering = {}
    for proxy in answer:
        for i, stats in enumerate((proxy.get("Stats") or {}).get("Proxies", [])):
            who = f"{proxy.get('ProxyID', '?')}/{stats.get('Service', i)}"
            uptime = float(stats.get("UptimeSeconds", 0.0))
            for e in stats.get("Edges", []):
                found[(who, (e["Direction"], e["Source"], e["Destination"]))] = (e, uptime)
    return found


def rows(after: Gathering, before: Gathering | None, seconds: float) -> list[EdgeRow]:
    """One row per edge, its proxies' figures summed: over `seconds` from `before`, or with
    no `before` since each proxy started (each proxy's own uptime its time). A proxy that
    restarted in between (its uptime or a counter went back) counts from its start."""
    parts: dict[Key, list[_Part]] = {}
    for (who, key), (now, uptime) in sorted(after.items()):
        then, then_up = (before or {}).get((who, key), ({}, 0.0))
        part = _part(now, then)
        if then and (uptime < then_up or part.went_back):
            part = _part(now, {})
        span = seconds if before is not None else uptime
        part.per_second = part.requests / span if span else 0.0
        parts.setdefault(key, []).append(part)
    return [_row(key, found) for key, found in sorted(parts.items())]


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
    counted: list[int] = []

    def delta(a: int, b: int) -> int:
        counted.append(a - b)
        return a - b

    routes, old_routes = now.get("Routes") or {}, then.get("Routes") or {}
    if routes:
        requests = delta(sum(r["Requests"] for r in routes.values()),
                         sum(r["Requests"] for r in old_routes.values()))  # fmt: skip
        bad = delta(sum(_bad(r) for r in routes.values()),
                    sum(_bad(r) for r in old_routes.values()))  # fmt: skip
        successes = requests - bad
        latency = _merged([r["Latency"] for r in routes.values()],
                          [r["Latency"] for r in old_routes.values()])  # fmt: skip
    else:
        successes = delta(int(now.get("Opened", 0)), int(then.get("Opened", 0)))
        requests = successes + delta(int(now.get("Failed", 0)), int(then.get("Failed", 0)))
        latency = _merged([now["Setup"]], [then["Setup"]] if "Setup" in then else [])
    denied = sum(delta(int(now.get(n, 0)), int(then.get(n, 0))) for n in ("Denied", "Terminated"))
    return _Part(bool(routes), requests, successes, denied, int(now.get("Open", 0)), latency,
                 went_back=any(d < 0 for d in counted))  # fmt: skip


def _row(key: Key, parts: list[_Part]) -> EdgeRow:
    requests = sum(p.requests for p in parts)
    bounds = next((p.latency[0] for p in parts if p.latency[0]), [])
    counts = [sum(c) for c in zip(*(p.latency[1] for p in parts if p.latency[1]), strict=True)]
    q: list[float | None] = [quantile(x, bounds, counts) for x in (0.5, 0.95, 0.99)]
    return EdgeRow(
        *key, protocol="http" if any(p.http for p in parts) else "tcp", requests=requests,
        successes=sum(p.successes for p in parts), per_second=sum(p.per_second for p in parts),
        p50=q[0], p95=q[1], p99=q[2], open=sum(p.open for p in parts),
        denied=sum(p.denied for p in parts),
    )  # fmt: skip


def _bad(route: Mapping[str, Any]) -> int:
    responses = route.get("Responses", {})
    return int(responses.get("5xx", 0)) + int(responses.get("none", 0))


def _merged(
    now: list[Mapping[str, Any]], then: list[Mapping[str, Any]]
) -> tuple[list[float], list[int]]:
    """One histogram: the sum of `now`'s minus the sum of `then`'s (same bounds throughout)."""
    if not now:
        return [], []
    bounds = list(now[0]["Bounds"])
    counts = [0] * (len(bounds) + 1)
    for sign, hists in ((1, now), (-1, then)):
        for h in hists:
            for i, n in enumerate(h["Counts"]):
                counts[i] += sign * int(n)
    return bounds, [max(c, 0) for c in counts]


def cells(row: EdgeRow) -> list[str]:
    """The table cells: success rate, rate, latencies in ms, open, denied."""
    rate = row.success_rate
    return [
        row.direction, row.source, row.destination, row.protocol.upper(),
        "-" if rate is None else f"{rate * 100:.2f}%", f"{row.per_second:.1f}",
        *(_ms(v) for v in (row.p50, row.p95, row.p99)), str(row.open), str(row.denied),
    ]  # fmt: skip


HEADERS = ["DIRECTION", "SOURCE", "DESTINATION", "PROTO", "SUCCESS", "RPS", "P50", "P95", "P99",
           "OPEN", "DENIED"]  # fmt: skip


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1000.0
    return f"{ms:.1f}ms" if ms < 100 else f"{ms:.0f}ms"


def errors_of(answer: Iterable[Mapping[str, Any]]) -> list[str]:
    """One line per proxy whose figures could not be read."""
    return [f"{p.get('ProxyID', '?')}: {p['Error']}" for p in answer if p.get("Error")]
