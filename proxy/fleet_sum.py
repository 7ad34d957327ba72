"""One proxy's figures summed over its worker processes (`--workers N`). Pure.

Each worker counts its own connections (edge_metrics.py, tally.py); worker 0
serves the metrics port, so on a scrape it asks the others for a `snapshot`
of each proxy they serve (the `/stats` JSON of its edges plus its counters)
and serves `summed`: fresh `EdgeMetrics` and `Tally` values holding the sum,
which `metrics_families.families` and `stats_json` render as they render a
single worker's. Summed per proxy (`Service`), per edge, per route: every
count, histogram bucket and sum, and the open connections (a revived edge
holds one placeholder per connection open in any worker, whose bytes are
already in the edge's totals).

A sum must never go back, or Prometheus reads a counter reset and counts
the whole total again: `Remembered` stands a worker's last figures in for a
scrape it misses, and keeps what workers that ended had counted (their open
connections gone), folded into one snapshot per proxy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gossamer.proxy.edge_metrics import (
    CLASSES,
    DURATION_BOUNDS,
    LATENCY_BOUNDS,
    Edge,
    EdgeMetrics,
    Histogram,
    Route,
    stats_json,
)
from gossamer.proxy.metrics_families import Proxy
from gossamer.proxy.tally import Tally

Snapshot = dict[str, Any]  # {"Stats": stats_json(...), "Counts": {name: n}}


def snapshot(proxy: Proxy) -> Snapshot:
    """What a worker hands worker 0 for one proxy: its edges and its counters, as JSON."""
    metrics, counts = proxy
    return {"Stats": stats_json(metrics, 0.0), "Counts": dict(counts.counts)}


def summed(own: Sequence[Proxy], others: Iterable[Sequence[Snapshot]]) -> list[Proxy]:
    """Worker 0's proxies with every other worker's figures added, in worker 0's order.

    A proxy another worker serves but worker 0 does not (yet) is left out: the
    port serves what worker 0 serves."""
    by_service: dict[str, list[Snapshot]] = {m.service: [snapshot((m, t))] for m, t in own}
    for answer in others:
        for snap in answer:
            service = snap.get("Stats", {}).get("Service")
            if service in by_service:
                by_service[service].append(snap)
    return [revive(m.service, m.enabled, by_service[m.service]) for m, _ in own]


def revive(service: str, enabled: bool, snaps: Sequence[Snapshot]) -> Proxy:
    """The `EdgeMetrics` and `Tally` that hold the sum of `snaps` (of one proxy)."""
    metrics = EdgeMetrics(service, enabled)
    counts: Counter[str] = Counter()
    for snap in snaps:
        counts.update(snap.get("Counts", {}))
        for row in snap.get("Stats", {}).get("Edges", []):
            key = (row["Direction"], row["Source"], row["Destination"])
            edge = metrics.edges.get(key)
            if edge is None:
                edge = metrics.edges[key] = Edge(duration=Histogram(DURATION_BOUNDS))
            _add_edge(edge, row)
    return metrics, Tally(counts=counts)


class _OpenElsewhere:
    """A connection open in some worker: counted by the open-connections gauge; its bytes
    so far are in the revived edge's `sent`/`received` already."""

    __slots__ = ()

    def bytes_each_way(self) -> tuple[int, int]:
        return 0, 0


def _add_edge(edge: Edge, row: Mapping[str, Any]) -> None:
    edge.opened += int(row["Opened"])
    edge.closed += int(row["Closed"])
    edge.failed += int(row["Failed"])
    edge.allowed += int(row["Allowed"])
    edge.denied += int(row["Denied"])
    edge.terminated += int(row["Terminated"])
    edge.sent += int(row["BytesSent"])  # open connections' bytes so far included
    edge.received += int(row["BytesReceived"])
    edge.live.update(_OpenElsewhere() for _ in range(int(row["Open"])))
    _add_histogram(edge.setup, row["Setup"])
    _add_histogram(edge.duration, row["Duration"])
    for name, r in row.get("Routes", {}).items():
        route = edge.routes.get(name)
        if route is None:
            route = edge.routes[name] = Route(latency=Histogram(LATENCY_BOUNDS))
        route.requests += int(r["Requests"])
        for cls, n in r["Responses"].items():
            route.responses[CLASSES.index(cls)] += int(n)
        _add_histogram(route.latency, r["Latency"])


def _add_histogram(h: Histogram, row: Mapping[str, Any]) -> None:
    if tuple(row["Bounds"]) != h.bounds:
        raise ValueError(f"histogram bounds {row['Bounds']} are not {list(h.bounds)}")
    for i, n in enumerate(row["Counts"]):
        h.counts[i] += int(n)
    h.total += float(row["Sum"])


class Remembered:
    """Worker 0's memory of the others' figures, per metrics address (module docstring)."""

    def __init__(self) -> None:
        self._last: dict[tuple[int, str], list[Snapshot]] = {}  # (worker, address) -> figures
        self._gone: dict[str, list[Snapshot]] = {}  # address -> what ended workers counted

    def answered(self, worker: int, addr: str, answer: list[Snapshot] | None) -> list[Snapshot]:
        """`worker`'s figures for this scrape: its answer, or None (it did not answer in
        time) for the last it gave."""
        if answer is None:
            return self._last.get((worker, addr), [])
        self._last[(worker, addr)] = answer
        return answer

    def ended(self, worker: int) -> None:
        """`worker` exited: its last figures stay in the sums, with no connection open."""
        for key in [k for k in self._last if k[0] == worker]:
            addr = key[1]
            self._gone[addr] = _folded([*self._gone.get(addr, []), *self._last.pop(key)])

    def gone(self, addr: str) -> list[Snapshot]:
        return self._gone.get(addr, [])


def _folded(snaps: Sequence[Snapshot]) -> list[Snapshot]:
    """One snapshot per proxy holding the sum of `snaps`, none of its connections open: the
    worker's exit closed them, so they count as closed (open minus closed stays the gauge;
    their durations are unknown, left out of the histogram)."""
    by_service: dict[str, list[Snapshot]] = {}
    for snap in snaps:
        by_service.setdefault(snap.get("Stats", {}).get("Service", ""), []).append(snap)
    out = []
    for service, same in by_service.items():
        metrics, counts = revive(service, True, same)
        for edge in metrics.edges.values():
            edge.closed += len(edge.live)
            edge.live.clear()
        out.append(snapshot((metrics, counts)))
    return out
