"""proxy/split_targets.py against an aiohttp app answering as an agent's health API would.

The agent here is a stand-in served on a real socket (the proxy's real
`AgentHttp` and `Watch` talk to it), so the test controls when a target's
first health answer arrives: a split naming a new target must wait for it,
the previous split staying in force meanwhile.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from gossamer.catalog.config_entries import Split
from gossamer.proxy import tally
from gossamer.proxy.agent_http import AgentHttp
from gossamer.proxy.config import Upstream
from gossamer.proxy.outbound import UpstreamListener
from gossamer.proxy.split_targets import Splitters, splits_by_service
from tests.harness.http_app import ServeApp
from tests.harness.poll import eventually_async

SPLITS = [{"Weight": 90, "Service": "api"}, {"Weight": 10, "Service": "api-canary"}]
CANARY: list[Any] = [{"Kind": "service-splitter", "Name": "api", "Splits": SPLITS}]


def _rows(port: int) -> list[dict[str, Any]]:
    return [{"Node": {"Address": "10.0.0.9"}, "Service": {"Address": "10.0.0.9", "Port": port}}]


async def test_a_new_target_applies_once_its_instances_are_known(serve_app: ServeApp) -> None:
    release = asyncio.Event()
    asked: list[str] = []

    async def health(request: web.Request) -> web.Response:
        asked.append(request.match_info["name"])
        if request.query.get("index", "0") != "0":  # a blocking re-ask: hold it
            await asyncio.sleep(30)
        await release.wait()
        return web.json_response(_rows(21001), headers={"X-Consul-Index": "7"})

    app = web.Application()
    app.router.add_get("/v1/health/connect/{name}", health)
    where = await serve_app(app)
    listener = UpstreamListener(Upstream("api", 9191), lambda: None, tally.Tally())
    splitters = Splitters(AgentHttp(where.base))
    try:
        splitters.on_entries(CANARY, [listener])
        await eventually_async(lambda: asked == ["api-canary"])  # its watch asked
        assert listener.split == ()  # not yet: api-canary's instances are unknown
        release.set()
        await eventually_async(lambda: listener.split != ())
        assert listener.split == (Split(9000, "api"), Split(1000, "api-canary"))
        assert listener.instances_for("api-canary") == [("10.0.0.9", 21001)]
        splitters.on_entries([], [listener])  # the entry deleted: unsplit, watch stopped
        assert listener.split == () and listener.targets == {}
        assert listener.pick_target() == "api"
    finally:
        splitters.stop()


def test_an_unreadable_entry_leaves_its_service_unsplit() -> None:
    bad = [{"Kind": "service-splitter", "Name": "db", "Splits": [{"Weight": 50}]}]
    assert splits_by_service([*CANARY, *bad, "junk", None]) == {
        "api": (Split(9000, "api"), Split(1000, "api-canary"))
    }
    assert splits_by_service({"not": "a list"}) == {}


async def test_the_old_split_keeps_its_targets_until_the_new_one_applies(
    serve_app: ServeApp,
) -> None:
    """canary -> canary2: until canary2's first answer, the old split stays in force and so
    do canary's instances; a request drawn to canary then still has somewhere to go."""
    release = asyncio.Event()

    async def health(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if request.query.get("index", "0") != "0":  # a blocking re-ask: hold it
            await asyncio.sleep(30)
        if name == "api-canary2":
            await release.wait()
        return web.json_response(_rows(21002 if name == "api-canary2" else 21001),
                                 headers={"X-Consul-Index": "7"})  # fmt: skip

    app = web.Application()
    app.router.add_get("/v1/health/connect/{name}", health)
    where = await serve_app(app)
    listener = UpstreamListener(Upstream("api", 9191), lambda: None, tally.Tally())
    splitters = Splitters(AgentHttp(where.base))
    second = [{**CANARY[0], "Splits": [SPLITS[0], {"Weight": 10, "Service": "api-canary2"}]}]
    try:
        splitters.on_entries(CANARY, [listener])
        await eventually_async(lambda: listener.split != ())
        splitters.on_entries(second, [listener])
        await asyncio.sleep(0)  # (nothing to wait for: the point is what has not changed)
        assert listener.split == (Split(9000, "api"), Split(1000, "api-canary"))
        assert listener.instances_for("api-canary") == [("10.0.0.9", 21001)]
        release.set()
        await eventually_async(lambda: listener.split[1:] == (Split(1000, "api-canary2"),))
        assert listener.instances_for("api-canary2") == [("10.0.0.9", 21002)]
        assert set(listener.targets) == {"api-canary2"}  # canary let go once it applied
    finally:
        splitters.stop()
