"""`GET /v1/agent/metrics/proxies`: the edge figures of this agent's sidecar proxies, gathered.

Every connect-proxy registered here whose `Proxy.Config` names a metrics
listener (`gossamer_metrics_bind_addr`, else `envoy_prometheus_bind_addr`;
parsed by the proxy's own config code) is asked for `GET /stats` at once,
each with a short timeout; the answer lists them in proxy-ID order, each
with its `Stats` or the `Error` that kept them out, so one proxy down never
hides the others. What a listener answers is checked for the shape of
`/stats` (`stats_shape.check_stats`) before it is passed on: anything else
(another program on the port, another version) is that proxy's `Error`,
named under `gossamer stat`'s table, never figures that its readers would
trip over. `gossamer stat` / `top` read this (not Prometheus), and so can
the terminal UI. A listener bound on a wildcard address is reached on
loopback. `?service=NAME` keeps only the sidecars of that service.

Only addresses of this host are dialed: a sidecar's metrics listener is
bound here, and a registration naming another host's address (anyone
with `service:write` can write one) would otherwise have the agent GET
`/stats` there for every reader of this route, and tell them whether a
port answers: a probe of the network from the agent's place in it.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import aiohttp
from aiohttp import web

from gossamer.agent.http.api import agent_of
from gossamer.agent.http.render import json_response
from gossamer.catalog.model import Service
from gossamer.proxy.config_error import ConfigError
from gossamer.proxy.config_metrics import metrics_addr_of
from gossamer.proxy.stats_shape import Malformed, check_stats

TIMEOUT_S = 2.0
LOOPBACK = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "::": "[::1]"}


def _metrics_of(service: Service) -> tuple[str, str]:
    """(address to dial, problem): one of them is ""."""
    config = service.proxy.get("Config") or {}
    try:
        addr = metrics_addr_of(config if isinstance(config, dict) else {})
    except ConfigError as exc:
        return "", str(exc)
    if not addr:
        return "", "no metrics address (Proxy.Config.gossamer_metrics_bind_addr)"
    host, _, port = addr.rpartition(":")
    host = LOOPBACK.get(host, host)
    if not on_this_host(host.strip("[]")):
        return "", f"{addr} is not an address of this host: not asked"
    return f"{host}:{port}", ""


def on_this_host(ip: str) -> bool:
    """Whether `ip` (a literal, as the proxy binds) is one of this host's addresses: the
    kernel lets a socket bind only those."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((ip, 0))
    except OSError:
        return False
    return True


async def _fetch(session: aiohttp.ClientSession, addr: str) -> dict[str, Any]:
    try:
        async with session.get(f"http://{addr}/stats") as resp:
            if resp.status != 200:
                return {"Error": f"{addr} answered HTTP {resp.status}"}
            stats = await resp.json(content_type=None)
    except TimeoutError:  # (its text is empty)
        return {"Error": f"{addr}: no answer within {TIMEOUT_S:g} s"}
    except aiohttp.ClientConnectorError as exc:  # its text: "... ssl:default [Connect call..."
        why = os.strerror(exc.errno) if exc.errno else str(exc.os_error)
        return {"Error": f"{addr}: {why} (is the proxy running?)"}
    except (aiohttp.ClientError, ValueError) as exc:
        return {"Error": f"{addr}: {str(exc) or type(exc).__name__}"}
    try:
        check_stats(stats)
    except Malformed as exc:
        return {"Error": f"{addr} answered figures of another shape: {exc}"}
    return {"Stats": stats}


async def proxy_stats(request: web.Request) -> web.Response:
    wanted = request.query.get("service")
    rows: list[dict[str, Any]] = []
    dial: list[tuple[int, str]] = []
    for proxy_id, svc in agent_of(request).local_node.services().items():
        if svc.kind != "connect-proxy":
            continue
        service = str(svc.proxy.get("DestinationServiceName", ""))
        if wanted is not None and service != wanted:
            continue
        addr, problem = _metrics_of(svc)
        rows.append({"ProxyID": proxy_id, "Service": service, "Address": addr})
        if problem:
            rows[-1]["Error"] = problem
        else:
            dial.append((len(rows) - 1, addr))
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        answers = await asyncio.gather(*(_fetch(session, addr) for _, addr in dial))
    for (index, _), got in zip(dial, answers, strict=True):
        rows[index].update(got)
    return json_response(rows)


def add_proxy_stats_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/agent/metrics/proxies", proxy_stats)
