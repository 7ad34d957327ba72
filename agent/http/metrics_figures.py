"""What /v1/agent/metrics answers: figures kept by the HTTP edge, shaped as Consul's JSON.

Consul's in-memory sink answers `{Timestamp, Gauges, Points, Counters,
Samples}`; gauges carry `Value`, counters and samples a summary (`Count`,
`Sum`, `Min`, `Max`, `Mean`, `Stddev`), each with `Name` and `Labels`.
Rules kept here: no clock and no I/O (the caller passes durations and the
timestamp), summaries are cumulative since the agent started (Consul's
cover its last 10 s interval: a documented difference), and the number
of distinct label sets is bounded by the routes, so memory is too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HTTP_SAMPLE = "consul.api.http"  # Consul's name for request timings, in ms
HTTP_RESPONSES = "gossamer.http.responses"


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


class HttpFigures:
    """Request timings by (method, route) and responses by status code, since start."""

    def __init__(self) -> None:
        self._timings: dict[Labels, Summary] = {}
        self._responses: dict[Labels, Summary] = {}

    def record(self, method: str, route: str, status: int, millis: float) -> None:
        """One answered request; `route` is the matched route, never the raw path."""
        timing = (("method", method), ("path", route))
        self._timings.setdefault(timing, Summary()).add(millis)
        self._responses.setdefault((("code", str(status)),), Summary()).add(1.0)

    def samples(self) -> list[dict[str, Any]]:
        return [s.as_json(HTTP_SAMPLE, dict(k)) for k, s in sorted(self._timings.items())]

    def counters(self) -> list[dict[str, Any]]:
        return [s.as_json(HTTP_RESPONSES, dict(k)) for k, s in sorted(self._responses.items())]


def route_label(canonical: str) -> str:
    """Consul's `path` label: the route with `/` as `_` and parameters left out."""
    literal = "/".join(part for part in canonical.split("/") if not part.startswith("{"))
    return literal.strip("/").replace("/", "_") + ("_" if "{" in canonical else "")


def gauge(name: str, value: float, **labels: str) -> dict[str, Any]:
    return {"Name": name, "Value": value, "Labels": labels}


def metrics_json(
    timestamp: str, gauges: list[dict[str, Any]], figures: HttpFigures
) -> dict[str, Any]:
    """The whole answer of GET /v1/agent/metrics (no Points: nothing here emits them)."""
    return {
        "Timestamp": timestamp,
        "Gauges": sorted(gauges, key=lambda g: (g["Name"], sorted(g["Labels"].items()))),
        "Points": [],
        "Counters": figures.counters(),
        "Samples": figures.samples(),
    }
