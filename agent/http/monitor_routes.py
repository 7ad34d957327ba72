"""`GET /v1/agent/monitor?loglevel=&logjson`: the agent's log, streamed as it is written.

Consul's endpoint: plain text lines (JSON objects with `logjson`), kept open
until the client goes. An unknown level is a 400 naming the valid ones. The
stream ends when the client disconnects: the handler looks at the
connection at least every `CHECK_S` even when nothing is logged, so a
gone client's subscription is dropped within that time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

from gossamer.agent.http.log_tap import LogTap, monitor_level
from gossamer.agent.http.render import query_flag

LOG_TAP_KEY: web.AppKey[LogTap] = web.AppKey("log_tap", LogTap)
CHECK_S = 1.0
TAPPED = "gossamer"


async def agent_monitor(request: web.Request) -> web.StreamResponse:
    level = monitor_level(request.query.get("loglevel", "info"))
    as_json = query_flag(request, "logjson")
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    await response.prepare(request)
    with request.app[LOG_TAP_KEY].subscribed(level, as_json) as sub:
        while request.transport is not None and not request.transport.is_closing():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sub.ready.wait(), CHECK_S)
            lines = sub.take()
            if lines:
                try:
                    await response.write("".join(lines).encode())
                except ConnectionError:
                    break
    return response


async def _detach(app: web.Application) -> None:
    logging.getLogger(TAPPED).removeHandler(app[LOG_TAP_KEY])


def add_monitor_routes(app: web.Application) -> None:
    """The route, and the tap on the agent's logger for the app's lifetime."""
    tap = LogTap()
    app[LOG_TAP_KEY] = tap
    logging.getLogger(TAPPED).addHandler(tap)
    app.on_cleanup.append(_detach)
    app.router.add_get("/v1/agent/monitor", agent_monitor)
