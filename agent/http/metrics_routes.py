"""`/v1/agent/metrics` (Consul's JSON form) and the timing of every request (`record_request`).

The figures are the agent's own: request timings and response codes seen
here, the catalog this agent holds, its registrations, its serf pool (serf's
own stats) and the process (threads, resident memory). Only the JSON form
is served; `?format=prometheus` is a 400 naming the parameter until the
Prometheus form lands.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gossamer.agent.http.api import agent_of
from gossamer.agent.http.catalog_access import catalog_of
from gossamer.agent.http.errors import BadRequest, failing_as
from gossamer.agent.http.metrics_figures import HttpFigures, gauge, metrics_json, route_label
from gossamer.agent.http.monitor_routes import LOG_TAP_KEY
from gossamer.agent.http.render import json_response
from gossamer.catalog import merge

FIGURES_KEY: web.AppKey[HttpFigures] = web.AppKey("http_figures", HttpFigures)


def record_request(request: web.Request, status: int, started: float) -> None:
    """Record one routed request (begun at `perf_counter()` `started`) with the status it was
    finally answered; called by the one middleware in app.py."""
    resource = request.match_info.route.resource
    figures = request.app.get(FIGURES_KEY)  # absent in apps built without metrics (tests)
    if resource is not None and figures is not None:
        millis = (time.perf_counter() - started) * 1000.0
        figures.record(request.method, route_label(resource.canonical), status, millis)


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
    if "format" in request.query:
        raise BadRequest(f"format: only the JSON form is served, got {request.query['format']!r}")
    agent = agent_of(request)
    with failing_as("reading serf's stats"):
        serf = (await agent.serf.stats()).get("serf", {})
    local = agent.local_node
    gauges = [
        *_catalog_gauges(request),
        gauge("consul.runtime.num_goroutines", threading.active_count()),
        gauge("consul.runtime.sys_bytes", _resident_bytes()),
        gauge("gossamer.agent.services", len(local.services())),
        gauge("gossamer.agent.checks", len(local.checks())),
        gauge("gossamer.monitor.dropped_lines", request.app[LOG_TAP_KEY].dropped_total),
        *(gauge("gossamer.serf.members", _count(serf.get(k)), status=k) for k in _SERF),
    ]
    now = datetime.now(UTC).replace(microsecond=0)
    stamp = now.strftime("%Y-%m-%d %H:%M:%S +0000 UTC")  # Go's time.Time form, as Consul
    return json_response(metrics_json(stamp, gauges, request.app[FIGURES_KEY]))


_SERF = ("members", "failed", "left")


def _count(text: str | None) -> int:
    """Serf's figures are decimal strings; anything else counts as 0."""
    return int(text) if text and text.isdigit() else 0


def add_metrics_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/agent/metrics", agent_metrics)
