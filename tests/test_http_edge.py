"""The one HTTP middleware (agent/http/app.py): errors to statuses and each request timed once.

Served on a real socket, called with aiohttp. One middleware does both jobs
because every middleware frame stays alive while a blocking query is parked.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from gossamer.agent.http.app import error_middleware
from gossamer.agent.http.errors import BadRequest
from gossamer.agent.http.metrics_figures import HttpFigures
from gossamer.agent.http.metrics_routes import FIGURES_KEY
from tests.conftest import ServeApp


async def fine(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def bad(request: web.Request) -> web.Response:
    raise BadRequest("name: must not be empty")


async def gone(request: web.Request) -> web.Response:
    raise web.HTTPNotFound()


async def broken(request: web.Request) -> web.Response:
    raise RuntimeError("a bug")


async def test_each_request_is_answered_and_timed_once_with_its_final_status(
    serve_app: ServeApp,
) -> None:
    app = web.Application(middlewares=[error_middleware])
    app[FIGURES_KEY] = figures = HttpFigures()
    for path, handler in (("/fine", fine), ("/bad/{x}", bad), ("/gone", gone), ("/broken", broken)):
        app.router.add_get(path, handler)
    where = await serve_app(app)
    answers = {}
    async with aiohttp.ClientSession() as session:
        for path in ("/fine", "/bad/1", "/gone", "/broken", "/nowhere"):
            async with session.get(where.base + path) as resp:
                answers[path] = (resp.status, (await resp.text()).strip())
    assert answers == {
        "/fine": (200, "ok"),
        "/bad/1": (400, "name: must not be empty"),
        "/gone": (404, "404: Not Found"),
        "/broken": (500, "internal error; see the agent log"),
        "/nowhere": (404, "404: Not Found"),
    }
    timed = {(s["Labels"]["path"], s["Count"]) for s in figures.samples()}
    assert timed == {("fine", 1), ("bad_", 1), ("gone", 1), ("broken", 1)}  # unrouted: not timed
    codes = {c["Labels"]["code"]: c["Count"] for c in figures.counters()}
    assert codes == {"200": 1, "400": 1, "404": 1, "500": 1}
