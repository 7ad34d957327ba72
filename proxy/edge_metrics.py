"""Golden metrics per edge, counted on the data path into plain lists and ints. Pure.

An edge is (direction, source service, destination service): inbound edges
are peers calling this proxy's service, outbound edges this service calling
an upstream. Rules kept here:
- counting is a list index or an int increment, nothing allocated per
  event once an edge exists (a `Histogram.observe` is a `bisect` and an
  increment, ~0.2 µs; prometheus-client's costs ~1.4 µs);
- nothing is rendered or summed until someone reads (`prom_text.py` on a
  scrape, `stats_json` for `gossamer stat`);
- the number of edges is bounded (`MAX_EDGES`), and routes per edge
  (`MAX_ROUTES`, further ones counted under `OTHER_ROUTE`), so memory is too;
- bytes of connections still open are read from them on scrape (`Live`),
  so a long-lived connection's bytes show while it is open.

HTTP requests come in through `Edge.answered(status, seconds, route)`, once
each (status 0: it got no response at all). A status's class is `class_index`'s
`CLASSES` entry, here and in the proxy's `http.responses.<class>` counters, so
a request that got no answer is `none` in both (Linkerd has no status for it,
Envoy no class).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

# Upper bounds in seconds: 0.5 ms to 10 s covers a loopback hop to a slow backend.
LATENCY_BOUNDS = (  # (not Final: mypyc leaves a Final tuple used as a default unset)
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# Connection lifetimes run longer: 1 ms to an hour.
DURATION_BOUNDS = (0.001, 0.01, 0.1, 1.0, 10.0, 60.0, 300.0, 1800.0, 3600.0)
MAX_EDGES: Final = 1024  # edges past this are counted under OTHER (a scanner cannot grow memory)
MAX_ROUTES: Final = 64
OTHER: Final = "other"
OTHER_ROUTE: Final = "other"
INBOUND: Final = "inbound"
OUTBOUND: Final = "outbound"
NO_RESPONSE: Final = "none"  # the status class of a request that got no response (or a bad status)
# Route.responses[i] counts class CLASSES[i]: a status's class is status // 100 when 1-5.
CLASSES: Final = (NO_RESPONSE, "1xx", "2xx", "3xx", "4xx", "5xx")


def class_index(status: int) -> int:
    """Where `status` counts in `CLASSES`: its hundreds when 1xx-5xx, else 0 (`none`)."""
    return status // 100 if 100 <= status < 600 else 0


class Histogram:
    """Counts per bucket (the last one is +Inf) and the sum, for Prometheus and quantiles."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BOUNDS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[int]:
        """Counts at or below each bound, then the count of all (Prometheus's `le` series)."""
        out, running = [], 0
        for n in self.counts:
            running += n
            out.append(running)
        return out


def quantile(q: float, bounds: Iterable[float], counts: list[int]) -> float | None:
    """The q-quantile of a bucketed distribution, interpolated within its bucket.

    The same estimate as Prometheus's `histogram_quantile`; None with no
    observations; a quantile in the +Inf bucket is the highest finite bound."""
    edges = list(bounds)
    n = sum(counts)
    if n == 0:
        return None
    rank = q * n
    seen = 0
    for i, c in enumerate(counts):
        if seen + c >= rank and c:
            if i == len(edges):
                return edges[-1] if edges else None
            low = edges[i - 1] if i else 0.0
            return low + (edges[i] - low) * (rank - seen) / c
        seen += c
    return edges[-1] if edges else None


class Live(Protocol):
    """An open connection whose bytes so far can be read (relay.Relay)."""

    def bytes_each_way(self) -> tuple[int, int]: ...


@dataclass
class Route:
    """One route's HTTP figures on one edge."""

    requests: int = 0
    responses: list[int] = field(default_factory=lambda: [0] * len(CLASSES))
    latency: Histogram = field(default_factory=Histogram)

    def by_class(self) -> dict[str, int]:
        """Responses by status class, the classes seen only."""
        return {c: n for c, n in zip(CLASSES, self.responses, strict=True) if n}


@dataclass
class Edge:
    """Everything counted for one (direction, source, destination)."""

    opened: int = 0  # connections established
    closed: int = 0
    failed: int = 0  # connections that could not be established (outbound) or were refused
    allowed: int = 0  # authorization decisions (inbound)
    denied: int = 0
    terminated: int = 0  # open connections cut by a policy change
    sent: int = 0  # bytes towards the destination, of closed connections
    received: int = 0  # bytes back towards the source, of closed connections
    setup: Histogram = field(default_factory=Histogram)  # accept/connect to relaying
    duration: Histogram = field(default_factory=lambda: Histogram(DURATION_BOUNDS))
    routes: dict[str, Route] = field(default_factory=dict)
    live: set[Live] = field(default_factory=set)

    def connected(self, conn: Live, setup_s: float) -> None:
        self.opened += 1
        self.setup.observe(setup_s)
        self.live.add(conn)

    def disconnected(self, conn: Live, duration_s: float) -> None:
        if conn not in self.live:
            return
        self.live.discard(conn)
        self.closed += 1
        self.duration.observe(duration_s)
        sent, received = conn.bytes_each_way()
        self.sent += sent
        self.received += received

    def bytes_each_way(self) -> tuple[int, int]:
        sent, received = self.sent, self.received
        for conn in self.live:
            s, r = conn.bytes_each_way()
            sent += s
            received += r
        return sent, received

    def answered(self, status: int, seconds: float, route: str = "") -> None:
        """One HTTP request: a response of `status`'s class (0, or a status that is none:
        no response; the upstream reset, timed out or was unreachable), its latency."""
        r = self.routes.get(route) or self._route(route)
        r.requests += 1
        r.responses[status // 100 if 100 <= status < 600 else 0] += 1
        r.latency.observe(seconds)

    def _route(self, route: str) -> Route:
        found = self.routes.get(route)
        if found is None:
            if len(self.routes) >= MAX_ROUTES:
                route = OTHER_ROUTE
            found = self.routes.setdefault(route, Route())
        return found


class _Uncounted(Edge):
    """The edge of a proxy whose metrics are off: every method does nothing."""

    def connected(self, conn: Live, setup_s: float) -> None:
        pass

    def disconnected(self, conn: Live, duration_s: float) -> None:
        pass

    def answered(self, status: int, seconds: float, route: str = "") -> None:
        pass


_OFF: Final = _Uncounted()
EdgeKey = tuple[str, str, str]  # direction, source, destination


class EdgeMetrics:
    """The edges of one proxy (one sidecar identity)."""

    def __init__(self, service: str, enabled: bool = True, started_s: float = 0.0) -> None:
        self.service = service
        self.enabled = enabled  # off: `edge()` hands out one edge that counts nothing
        self.edges: dict[EdgeKey, Edge] = {}
        # When counting began (Unix seconds; the runtime passes its proxy's start). Uptime is
        # read from here, not from a metrics listener's start: a listener reopened on another
        # address, or retried on a port that was taken, serves counters that ran on, and an
        # uptime starting over would read as a restart to `gossamer stat` (stat_rows.py).
        self.started_s = started_s

    def switch(self, enabled: bool) -> None:
        """`gossamer_metrics` as a registration change sets it: on, counting starts with the
        next connection; off, the figures so far go too, as in a proxy started with it off."""
        self.enabled = enabled
        if not enabled:
            self.edges.clear()

    def edge(self, direction: str, source: str, destination: str) -> Edge:
        if not self.enabled:
            return _OFF
        key = (direction, source, destination)
        found = self.edges.get(key)
        if found is None:
            if len(self.edges) >= MAX_EDGES:
                key = (direction, OTHER, OTHER)
            found = self.edges.setdefault(key, Edge())
        return found

    def inbound(self, source: str) -> Edge:
        return self.edge(INBOUND, source, self.service)

    def outbound(self, destination: str) -> Edge:
        return self.edge(OUTBOUND, self.service, destination)


def stats_json(metrics: EdgeMetrics, uptime_s: float) -> dict[str, Any]:
    """What `GET /stats` answers: every edge's counts and buckets, for `gossamer stat`."""
    edges = []
    for (direction, source, destination), e in sorted(metrics.edges.items()):
        sent, received = e.bytes_each_way()
        edges.append({
            "Direction": direction, "Source": source, "Destination": destination,
            "Opened": e.opened, "Closed": e.closed, "Open": len(e.live), "Failed": e.failed,
            "Allowed": e.allowed, "Denied": e.denied, "Terminated": e.terminated,
            "BytesSent": sent, "BytesReceived": received,
            "Setup": _hist_json(e.setup), "Duration": _hist_json(e.duration),
            "Routes": {name: {"Requests": r.requests,
                              "Responses": r.by_class(),
                              "Latency": _hist_json(r.latency)}
                       for name, r in sorted(e.routes.items())},
        })  # fmt: skip
    return {"Service": metrics.service, "UptimeSeconds": uptime_s, "Edges": edges}


def _hist_json(h: Histogram) -> dict[str, Any]:
    return {"Bounds": list(h.bounds), "Counts": list(h.counts), "Sum": h.total}
