"""`gossamer stat --routes`: each HTTP edge's figures split by route, as `linkerd viz routes`. Pure.

An HTTP edge's requests are counted by their metrics `route` label
(edge_metrics.py): inbound, the L7 intention permission that decided;
outbound, the service-router route the request took (`route 1 -> api/v2`);
no label is `[default]`, Linkerd's name for what no route took. An edge's
routes are listed `[default]` first, then by name, a router's in its order
(`route 2` before `route 10`), and `other` (past the label bound) last. Each route
gets the success rate, rate and latencies stat_rows.py gives an edge, over
the same window and with the same care for proxies that restarted (the
edge's figures are cut into one per route and read by `rows` itself).
Connections and denials belong to the edge, not to a route: they are left
to the edge table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from gossamer.proxy.edge_metrics import OTHER_ROUTE
from gossamer.proxy.stat_rows import Gathering, Key, Who, rows
from gossamer.proxy.stat_table import figures

DEFAULT: Final = "[default]"
_SEP: Final = "\0"  # in neither a service name nor a route label as the proxy writes them
_ROUTER_ROUTE = re.compile(r"route (\d+) -> ")  # router_plan.route_label's


@dataclass(frozen=True)
class RouteRow:
    direction: str
    source: str
    destination: str
    route: str
    requests: int
    successes: int
    per_second: float
    p50: float | None  # seconds
    p95: float | None
    p99: float | None

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.requests if self.requests else None


def route_rows(after: Gathering, before: Gathering | None, seconds: float) -> list[RouteRow]:
    """One row per route of each HTTP edge, as `stat_rows.rows` reads an edge."""
    found = rows(_by_route(after), None if before is None else _by_route(before), seconds)
    out = []
    for r in found:
        destination, _, route = r.destination.partition(_SEP)
        out.append(RouteRow(r.direction, r.source, destination, route or DEFAULT, r.requests,
                            r.successes, r.per_second, r.p50, r.p95, r.p99))  # fmt: skip
    out.sort(key=lambda r: (r.direction, r.source, r.destination, _place(r.route)))
    return out


def _place(route: str) -> tuple[int, int, str]:
    """Where a route's row goes among its edge's: see the module's docstring."""
    if route == DEFAULT:
        return (0, 0, "")
    if route == OTHER_ROUTE:  # the routes past the label bound
        return (2, 0, "")
    if found := _ROUTER_ROUTE.match(route):
        return (1, int(found[1]), route)
    return (1, -1, route)


def _by_route(g: Gathering) -> Gathering:
    """Each HTTP edge as one edge per route (its destination carrying the route), so `rows`
    sums, subtracts and checks each route as it does an edge."""
    edges: dict[tuple[Who, Key], Mapping[str, Any]] = {
        (who, (d, source, f"{destination}{_SEP}{name}")): {**edge, "Routes": {name: one}}
        for (who, (d, source, destination)), edge in g.edges.items()
        for name, one in edge["Routes"].items()
    }
    return Gathering(edges, g.uptimes, g.unread)


HEADERS: Final = ["DIRECTION", "SOURCE", "DESTINATION", "ROUTE", "SUCCESS", "RPS", "P50", "P95",
                  "P99"]  # fmt: skip


def route_cells(row: RouteRow) -> list[str]:
    """The table cells of a route row (stat_table.py's figures for an edge)."""
    return [row.direction, row.source, row.destination, row.route,
            *figures(row.success_rate, row.per_second, (row.p50, row.p95, row.p99))]  # fmt: skip
