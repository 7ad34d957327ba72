"""What /v1/agent/metrics answers: figures kept by the HTTP edge, shaped as Consul's JSON.

Consul's in-memory sink answers `{Timestamp, Gauges, Points, Counters,
Samples}`; gauges carry `Value`, counters and samples a summary (`Count`,
`Rate`, `Sum`, `Min`, `Max`, `Mean`, `Stddev`), each with `Name` and
`Labels`. Rules kept here: no clock and no I/O (the caller passes
durations, the timestamp and how long the figures have been counted),
summaries are cumulative since the agent started (Consul's cover its last
10 s interval: a documented difference), so `Rate`, Consul's `Sum` per
second of the interval, is `Sum` per second of the agent's life; and the
number of distinct label sets is bounded by the routes, so memory is too.

Request timings also keep their last WINDOW_S seconds (at most WINDOW_MOST
observations a series, the newest), for the 0.5, 0.9 and 0.99 quantiles
that Consul's Prometheus sink serves with each summary (go-metrics: a
10 s MaxAge). Consul estimates them within an error bound; these are the
nearest-rank quantiles of what the window holds, exact while a series
sees fewer than WINDOW_MOST requests in 10 s. An empty window is NaN, as
Prometheus's own clients say it. The JSON form has no quantiles (Consul's
in-memory sink has none either).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final

HTTP_SAMPLE = "consul.api.http"  # Consul's name for request timings, in ms
HTTP_RESPONSES = "gossamer.http.responses"
HTTP_REQUESTS = "gossamer.http.requests"  # by method, route and code
QUANTILES: Final = (0.5, 0.9, 0.99)  # those of Consul's Prometheus summaries
WINDOW_S: Final = 10.0  # how long an observation counts toward the quantiles
WINDOW_MOST: Final = 256  # observations a series keeps for them (the newest)


@dataclass
class Summary:
    """Count, sum, min, max and the sum of squares, enough for Consul's summary fields."""

    count: int = 0
    total: float = 0.0
    low: float = math.inf
    high: float = -math.inf
    squares: float = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.low = min(self.low, value)
        self.high = max(self.high, value)
        self.squares += value * value

    def as_json(self, name: str, labels: Mapping[str, str]) -> dict[str, Any]:
        mean = self.total / self.count if self.count else 0.0
        variance = self.squares / self.count - mean * mean if self.count else 0.0
        return {
            "Name": name,
            "Count": self.count,
            "Rate": 0.0,
            "Sum": self.total,
            "Min": self.low if self.count else 0.0,
            "Max": self.high if self.count else 0.0,
            "Mean": mean,
            "Stddev": math.sqrt(max(variance, 0.0)),
            "Labels": dict(labels),
        }


Labels = tuple[tuple[str, str], ...]
SeriesKey = tuple[str, Labels]  # a sample's name and its labels, sorted by name


class Recent:
    """One series' observations of the last WINDOW_S seconds (the newest WINDOW_MOST)."""

    def __init__(self) -> None:
        self._seen: deque[tuple[float, float]] = deque(maxlen=WINDOW_MOST)  # (when, value)

    def add(self, value: float, now_s: float) -> None:
        self._seen.append((now_s, value))

    def quantiles(self, now_s: float) -> list[float]:
        """The nearest-rank QUANTILES of the window as of `now_s` (NaN each when empty)."""
        seen = self._seen
        while seen and seen[0][0] <= now_s - WINDOW_S:
            seen.popleft()
        if not seen:
            return [math.nan] * len(QUANTILES)
        ordered = sorted(value for _, value in seen)
        return [ordered[max(0, math.ceil(q * len(ordered)) - 1)] for q in QUANTILES]


class HttpFigures:
    """Request timings by (method, route) and responses by status code, since start."""

    def __init__(self, started_s: float = 0.0) -> None:
        self.started_s = started_s  # when counting began (the caller's monotonic clock)
        self._timings: dict[Labels, Summary] = {}
        self._recent: dict[Labels, Recent] = {}
        self._responses: dict[Labels, Summary] = {}
        self._requests: dict[Labels, Summary] = {}

    def record(self, method: str, route: str, status: int, millis: float, now_s: float) -> None:
        """One answered request, at `now_s` (the caller's monotonic clock); `route` is the
        matched route, never the raw path."""
        timing = (("method", method), ("path", route))
        self._timings.setdefault(timing, Summary()).add(millis)
        self._recent.setdefault(timing, Recent()).add(millis, now_s)
        self._responses.setdefault((("code", str(status)),), Summary()).add(1.0)
        self._requests.setdefault((*timing, ("code", str(status))), Summary()).add(1.0)

    def samples(self) -> list[dict[str, Any]]:
        return [s.as_json(HTTP_SAMPLE, dict(k)) for k, s in sorted(self._timings.items())]

    def quantiles(self, now_s: float) -> dict[SeriesKey, list[float]]:
        """Each timing series' QUANTILES over its window, by the sample's name and labels."""
        return {(HTTP_SAMPLE, k): r.quantiles(now_s) for k, r in self._recent.items()}

    def counters(self) -> list[dict[str, Any]]:
        return [
            *(s.as_json(HTTP_RESPONSES, dict(k)) for k, s in sorted(self._responses.items())),
            *(s.as_json(HTTP_REQUESTS, dict(k)) for k, s in sorted(self._requests.items())),
        ]


@cache  # one per route pattern: computed once, not on every request
def route_label(canonical: str) -> str:
    """Consul's `path` label: the route with `/` as `_` and parameters left out."""
    literal = "/".join(part for part in canonical.split("/") if not part.startswith("{"))
    return literal.strip("/").replace("/", "_") + ("_" if "{" in canonical else "")


def gauge(name: str, value: float, **labels: str) -> dict[str, Any]:
    return {"Name": name, "Value": value, "Labels": labels}


def counter(name: str, count: int, total: float | None = None, **labels: str) -> dict[str, Any]:
    """A counter (or, with `total`, a sample) in Consul's summary shape, from a count and sum."""
    s = Summary(count=count, total=float(count) if total is None else total)
    if count:
        s.low = s.high = s.total / count
        s.squares = s.total * s.total / count
    return s.as_json(name, labels)


@dataclass
class Figures:
    """What one part of the agent adds to /v1/agent/metrics, in Consul's JSON shapes."""

    gauges: list[dict[str, Any]] = field(default_factory=list)
    counters: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)

    def extend(self, other: Figures) -> None:
        self.gauges += other.gauges
        self.counters += other.counters
        self.samples += other.samples


def _key(entry: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    return entry["Name"], sorted(entry["Labels"].items())


def metrics_json(
    timestamp: str, figures: Figures, http: HttpFigures, seconds: float
) -> dict[str, Any]:
    """The whole answer of GET /v1/agent/metrics (no Points: nothing here emits them);
    `seconds`: how long the summaries have been counted, their `Rate`'s denominator."""
    return {
        "Timestamp": timestamp,
        "Gauges": sorted(figures.gauges, key=_key),
        "Points": [],
        "Counters": sorted(_rated([*http.counters(), *figures.counters], seconds), key=_key),
        "Samples": sorted(_rated([*http.samples(), *figures.samples], seconds), key=_key),
    }


def _rated(entries: list[dict[str, Any]], seconds: float) -> list[dict[str, Any]]:
    return [{**e, "Rate": e["Sum"] / seconds if seconds > 0 else 0.0} for e in entries]
