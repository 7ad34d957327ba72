"""proxy/split_targets.py against an aiohttp app answering as an agent's health API would.

The agent here is a stand-in served on a real socket (the proxy's real
`AgentHttp` and `Watch` talk to it), so the test controls when a target's
first health answer arrives: a split naming a new target must wait for it,
the previous split staying in force meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
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


async def _rig(
    serve_app: ServeApp, health: Callable[[web.Request], Awaitable[web.Response]]
) -> tuple[UpstreamListener, Splitters]:
    """api's listener and the splitters, whose health watches ask the stand-in `health`."""
    app = web.Application()
    app.router.add_get("/v1/health/connect/{name}", health)
    where = await serve_app(app)
    listener = UpstreamListener(Upstream("api", 9191), lambda: None, tally.Tally())
    return listener, Splitters(AgentHttp(where.base))


async def test_a_new_target_applies_once_its_instances_are_known(serve_app: ServeApp) -> None:
    release = asyncio.Event()
    asked: list[str] = []

    async def health(request: web.Request) -> web.Response:
        asked.append(request.match_info["name"])
        if request.query.get("index", "0") != "0":  # a blocking re-ask: hold it
            await asyncio.sleep(30)
        await release.wait()
        return web.json_response(_rows(21001), headers={"X-Consul-Index": "7"})

    listener, splitters = await _rig(serve_app, health)
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


async def test_the_log_says_the_split_in_force_after_one_undone_before_it_applied(
    serve_app: ServeApp, caplog: pytest.LogCaptureFixture
) -> None:
    """A split logged as it came, then deleted before its new target was heard of: the
    listener's split never changed, so nothing was logged, and the last line still named the
    split (a test waiting for the log to say "as itself" waited 20 s in CI)."""

    async def health(request: web.Request) -> web.Response:
        await asyncio.Event().wait()  # (never answered: no target is ever heard of)
        return web.json_response([])

    listener, splitters = await _rig(serve_app, health)
    try:
        with caplog.at_level("INFO", logger="gossamer.proxy"):
            splitters.on_entries(CANARY, [listener])
            splitters.on_entries([], [listener])
        said = [r.getMessage() for r in caplog.records if "upstream api split" in r.getMessage()]
        assert said == ["proxy: upstream api split: api 90%, api-canary 10%",
                        "proxy: upstream api split: none"], said  # fmt: skip
        assert listener.split == ()
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

    listener, splitters = await _rig(serve_app, health)
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


def _entry(name: str, *splits: tuple[float, str]) -> dict[str, Any]:
    return {"Kind": "service-splitter", "Name": name,
            "Splits": [{"Weight": w, "Service": s} for w, s in splits]}  # fmt: skip


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        pytest.param(  # a target with a splitter of its own: followed, weights multiplied
            [_entry("api", (50, "api"), (50, "v2")), _entry("v2", (50, "v2"), (50, "beta"))],
            {
                "api": (Split(5000, "api"), Split(2500, "v2"), Split(2500, "beta")),
                "v2": (Split(5000, "v2"), Split(5000, "beta")),
            },
            id="nested",
        ),
        pytest.param(  # two levels, all of it moved on
            [_entry("a", (100, "b")), _entry("b", (100, "c")), _entry("c", (100, "d"))],
            {"a": (Split(10000, "d"),), "b": (Split(10000, "d"),), "c": (Split(10000, "d"),)},
            id="chain",
        ),
        pytest.param(  # a service reached two ways: its shares added
            [
                _entry("a", (50, "b"), (50, "c")),
                _entry("b", (50, "d"), (50, "e")),
                _entry("c", (50, "d"), (50, "f")),
            ],
            {
                "a": (Split(5000, "d"), Split(2500, "e"), Split(2500, "f")),
                "b": (Split(5000, "d"), Split(5000, "e")),
                "c": (Split(5000, "d"), Split(5000, "f")),
            },
            id="diamond",
        ),
        pytest.param(  # products in hundredths rounded so that they sum to 100 %
            [
                _entry("a", (33.33, "b"), (33.33, "c"), (33.34, "a")),
                _entry("b", (33.33, "x"), (66.67, "y")),
                _entry("c", (50, "x"), (50, "c")),
            ],
            {
                "a": (Split(2777, "x"), Split(2222, "y"), Split(1667, "c"), Split(3334, "a")),
                "b": (Split(3333, "x"), Split(6667, "y")),
                "c": (Split(5000, "x"), Split(5000, "c")),
            },
            id="rounded",
        ),
        pytest.param(  # a loop: each service on it (or leading into it) unsplit
            [
                _entry("api", (100, "canary")),
                _entry("canary", (100, "api")),
                _entry("web", (100, "api")),
                _entry("db", (100, "db2")),
            ],
            {"db": (Split(10000, "db2"),)},
            id="loop",
        ),
        pytest.param(  # nothing to follow: as written, a zero weight kept
            [_entry("api", (100, "api"), (0, "api-canary"))],
            {"api": (Split(10000, "api"), Split(0, "api-canary"))},
            id="flat",
        ),
    ],
)
def test_splitters_are_followed_as_consuls_chain_does(
    entries: list[Any], expected: dict[str, tuple[Split, ...]]
) -> None:
    assert splits_by_service(entries) == expected
