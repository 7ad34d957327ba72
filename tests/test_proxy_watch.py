"""proxy/watch.py against an aiohttp app answering as an agent's blocking queries would.

The stand-in agent is served on a real socket; the proxy's real `AgentHttp`
and `Watch` talk to it."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from aiohttp import web

from gossamer.proxy import watch as watch_module
from gossamer.proxy.agent_http import AgentHttp
from gossamer.proxy.watch import Watch
from tests.harness.http_app import ServeApp
from tests.harness.poll import eventually_async


async def test_an_answer_its_reader_raised_on_is_asked_for_again(
    serve_app: ServeApp, monkeypatch: Any
) -> None:
    """A reader that fails on an answer (a newer agent's shape) neither ends the watch nor
    loses that answer: it is asked for again from the same index, after a backoff."""
    monkeypatch.setattr(watch_module, "BACKOFF_MIN_S", 0.01)
    asked: list[str] = []

    async def rows(request: web.Request) -> web.Response:
        asked.append(request.query.get("index", ""))
        if request.query.get("index", "0") == "7":  # a blocking re-ask: nothing new
            await asyncio.sleep(30)
        return web.json_response([{"n": 1}], headers={"X-Consul-Index": "7"})

    app = web.Application()
    app.router.add_get("/v1/rows", rows)
    where = await serve_app(app)
    seen: list[Any] = []

    def read(body: Any) -> None:
        seen.append(body)
        if len(seen) == 1:
            raise AttributeError("'list' object has no attribute 'get'")

    watch = Watch(AgentHttp(where.base), "/v1/rows", read)
    watch.start()
    try:
        await eventually_async(lambda: len(seen) == 2)
        assert seen == [[{"n": 1}], [{"n": 1}]]
        await eventually_async(lambda: asked[-1:] == ["7"])  # then it blocks as usual
        assert asked[:2] == ["0", "0"]
    finally:
        watch.stop()


@pytest.mark.parametrize(
    ("status", "quick"),
    [
        (404, True),  # a sidecar deregistered, to be registered again
        (403, True),  # a leaf asked for before its service is registered (a Nomad task)
        (500, False),  # an agent in trouble: backed off up to 10 s
    ],
)
async def test_a_missing_answer_is_asked_again_within_a_second_an_error_backs_off(
    serve_app: ServeApp, status: int, quick: bool
) -> None:
    """An answer that says "not there (yet)" costs the agent nothing to give again: the watch
    asks again within 0.75 s however long it has been missing, so what was missing is served
    soon after it comes; an error answer still backs off exponentially."""
    times: list[float] = []

    async def rows(request: web.Request) -> web.Response:
        times.append(asyncio.get_running_loop().time())
        if len(times) <= 8:
            return web.Response(status=status, text="not registered")
        if request.query.get("index", "0") == "7":  # a blocking re-ask: nothing new
            await asyncio.sleep(30)
        return web.json_response([{"n": 1}], headers={"X-Consul-Index": "7"})

    app = web.Application()
    app.router.add_get("/v1/rows", rows)
    where = await serve_app(app)
    seen: list[Any] = []
    watch = Watch(AgentHttp(where.base), "/v1/rows", seen.append)
    watch.start()
    try:
        if quick:
            await eventually_async(lambda: seen == [[{"n": 1}]], timeout=15)
            gaps = [b - a for a, b in itertools.pairwise(times[:9])]
            assert max(gaps) < 1.0, gaps  # (a backoff doubling from 0.1 s: 1.6 s or more)
        else:
            await eventually_async(lambda: len(times) >= 7, timeout=15)
            gaps = [b - a for a, b in itertools.pairwise(times[:7])]
            assert gaps[-1] >= 1.6, gaps  # 3.2 s, jittered by +-50 %
    finally:
        watch.stop()


async def test_an_error_after_a_long_absence_backs_off_from_the_start(serve_app: ServeApp) -> None:
    """Missing for a long while, then an error answer (an agent back from a restart, not
    ready yet): the backoff for the error starts small, instead of where the doubling had
    got to during the absence (10 s, so 5-15 s of deafness once the agent was back)."""
    times: list[float] = []

    async def rows(request: web.Request) -> web.Response:
        times.append(asyncio.get_running_loop().time())
        if len(times) <= 10:
            return web.Response(status=404 if len(times) <= 9 else 503, text="not yet")
        if request.query.get("index", "0") == "7":  # a blocking re-ask: nothing new
            await asyncio.sleep(30)
        return web.json_response([{"n": 1}], headers={"X-Consul-Index": "7"})

    app = web.Application()
    app.router.add_get("/v1/rows", rows)
    where = await serve_app(app)
    seen: list[Any] = []
    watch = Watch(AgentHttp(where.base), "/v1/rows", seen.append)
    watch.start()
    try:
        await eventually_async(lambda: seen == [[{"n": 1}]], timeout=20)
        assert times[10] - times[9] < 1.0, times[9:11]  # the 503's backoff: 0.5 s +-50 %
    finally:
        watch.stop()
