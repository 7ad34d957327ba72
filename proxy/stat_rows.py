"""The rows of `gossamer stat` and `top`: golden figures per edge from two gatherings. Pure.

Input: `GET /v1/agent/metrics/proxies` answers (a list of proxies, each with
`Stats.Proxies[].Edges[]` as the proxy's `/stats` renders them). One row per
(direction, source, destination) edge, over the interval between `before`
(None: since each proxy started) and `after`:
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


def edges_of(answer: Iterable[Mapping[str, Any]]) -> tuple[dict[Key, dict[str, Any]], float]:
    """Every edge of every proxy that answered, and the longest proxy uptime (seconds)."""
    found: dict[Key, dict[str, Any]] = {}
    uptime = 0.0
    for proxy in answer:
        for stats in (proxy.get("Stats") or {}).get("Proxies", []):
            uptime = max(uptime, float(stats.get("UptimeSeconds", 0.0)))
            for e in stats.get("Edges", []):
                found[(e["Direction"], e["Source"], e["Destination"])] = e
    return found, uptime


def rows(
    after: Mapping[Key, Mapping[str, Any]],
    before: Mapping[Key, Mapping[str, Any]] | None,
    seconds: float,
) -> list[EdgeRow]:
    out = []
    for key, now in sorted(after.items()):
        then = (before or {}).get(key, {})
        out.append(_row(key, now, then, seconds))
    return out


def _row(key: Key, now: Mapping[str, Any], then: Mapping[str, Any], seconds: float) -> EdgeRow:
    def delta(name: str) -> int:
        return int(now.get(name, 0)) - int(then.get(name, 0))

    routes, old_routes = now.get("Routes") or {}, then.get("Routes") or {}
    if routes:
        protocol = "http"
        requests = sum(r["Requests"] for r in routes.values()) - sum(
            r["Requests"] for r in old_routes.values()
        )
        bad = sum(_bad(r) for r in routes.values()) - sum(_bad(r) for r in old_routes.values())
        successes = requests - bad
        bounds, counts = _merged([r["Latency"] for r in routes.values()],
                                 [r["Latency"] for r in old_routes.values()])  # fmt: skip
    else:
        protocol = "tcp"
        successes = delta("Opened")
        requests = successes + delta("Failed")
        bounds, counts = _merged([now["Setup"]], [then["Setup"]] if "Setup" in then else [])
    q = [quantile(p, bounds, counts) for p in (0.5, 0.95, 0.99)]
    return EdgeRow(
        *key, protocol=protocol, requests=requests, successes=successes,
        per_second=requests / seconds if seconds > 0 else 0.0, p50=q[0], p95=q[1], p99=q[2],
        open=int(now.get("Open", 0)), denied=delta("Denied") + delta("Terminated"),
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
