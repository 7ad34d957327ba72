"""`/v1/agent/metrics` (Consul's JSON form) and the timing of every request (`record_request`).

The figures are the agent's own: request timings and response codes seen
here, the catalog this agent holds, its registrations, its serf pool (serf's
own stats and its members by status), the process (threads, resident
memory), the leaves this agent holds and their time to expiry, and what
the other parts add (`FIGURE_SOURCES_KEY`: anti-entropy rounds, DNS answers
by rcode). `?format=prometheus` answers the same figures in Prometheus's
text format (metrics_prom.py); any other `format` is a 400 naming it.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gossamer.agent.http.agent_figures import FIGURE_SOURCES_KEY, MEMBER_STATUSES, leaf_figures
from gossamer.agent.http.api import agent_of
from gossamer.agent.http.catalog_access import catalog_of
from gossamer.agent.http.connect_ca_routes import IDENTITY_KEY
from gossamer.agent.http.errors import BadRequest, failing_as
from gossamer.agent.http.metrics_figures import (
    Figures,
    HttpFigures,
    counter,
    gauge,
    metrics_json,
    route_label,
)
from gossamer.agent.http.metrics_prom import prometheus_text
from gossamer.agent.http.monitor_routes import LOG_TAP_KEY
from gossamer.agent.http.proxy_stats_routes import add_proxy_stats_routes
from gossamer.agent.http.render import json_response
from gossamer.catalog import merge
from gossamer.proxy.prom_text import CONTENT_TYPE

FIGURES_KEY: web.AppKey[HttpFigures] = web.AppKey("http_figures", HttpFigures)


def record_request(request: web.Request, status: int, started: float) -> None:
    """Record one routed request (begun at `perf_counter()` `started`) with the status it was
    finally answered; called by the one middleware in app.py."""
    resource = request.match_info.route.resource
    if resource is not None:
        record_route(request.app, request.method, resource.canonical, status, started)


def record_route(
    app: web.Application, method: str, route: str, status: int, started: float
) -> None:
    """Record one request to `route` (its canonical pattern): `record_request` and the light
    front (front.py) both call it."""
    figures = app.get(FIGURES_KEY)  # absent in apps built without metrics (tests)
    if figures is not None:
        millis = (time.perf_counter() - started) * 1000.0
        figures.record(method, route_label(route), status, millis, time.monotonic())


def _resident_bytes() -> int:
    """Resident set size from /proc (0 where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _catalog_gauges(request: web.Request) -> list[dict[str, Any]]:
    catalog = catalog_of(request)
    records = merge.nodes(catalog.state, catalog.datacenter)
    instances = [s for r in records for s in r.services]
    return [
        gauge("consul.state.nodes", len(records)),
        gauge("consul.state.services", len({s.name for s in instances})),
        gauge("consul.state.service_instances", len(instances)),
        gauge("gossamer.http.blocking_queries", catalog.watchers),
    ]


async def agent_metrics(request: web.Request) -> web.Response:
    wanted = request.query.get("format")
    if wanted not in (None, "prometheus"):
        raise BadRequest(f"format: only 'prometheus' or none (JSON), got {wanted!r}")
    agent = agent_of(request)
    with failing_as("reading serf's stats and members"):
        serf = (await agent.serf.stats()).get("serf", {})
        statuses = Counter(m.status for m in await agent.serf.members())
    local = agent.local_node
    figures = Figures(gauges=[
        *_catalog_gauges(request),
        gauge("consul.runtime.num_goroutines", threading.active_count()),
        gauge("consul.runtime.sys_bytes", _resident_bytes()),
        gauge("gossamer.agent.services", len(local.services())),
        gauge("gossamer.agent.checks", len(local.checks())),
        *(gauge("gossamer.serf.members", _count(serf.get(k)), status=k) for k in _SERF),
        *(gauge("gossamer.members", statuses[k], status=k) for k in MEMBER_STATUSES),
    ])  # fmt: skip
    # a running total: a counter (a gauge reads to Prometheus as a level, not for `rate()`)
    figures.counters.append(counter("gossamer.monitor.dropped_lines",
                                    request.app[LOG_TAP_KEY].dropped_total))  # fmt: skip
    identity = request.app.get(IDENTITY_KEY)
    if identity is not None:
        figures.extend(leaf_figures(identity))
    for source in request.app.get(FIGURE_SOURCES_KEY, []):
        figures.extend(source())
    now = datetime.now(UTC).replace(microsecond=0)
    stamp = now.strftime("%Y-%m-%d %H:%M:%S +0000 UTC")  # Go's time.Time form, as Consul
    http = request.app[FIGURES_KEY]
    now_s = time.monotonic()
    body = metrics_json(stamp, figures, http, now_s - http.started_s)
    if wanted == "prometheus":
        # the text format's version in its Content-Type, as Prometheus's own clients say it
        return web.Response(body=prometheus_text(body, http.quantiles(now_s)).encode(),
                            headers={"Content-Type": CONTENT_TYPE})  # fmt: skip
    return json_response(body)


_SERF = ("members", "failed", "left")


def _count(text: str | None) -> int:
    """Serf's figures are decimal strings; anything else counts as 0."""
    return int(text) if text and text.isdigit() else 0


def add_metrics_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/agent/metrics", agent_metrics)
    add_proxy_stats_routes(router)
