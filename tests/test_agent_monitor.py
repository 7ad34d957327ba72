"""`/v1/agent/monitor`: the log streamed to a real client; bad levels, slow and gone readers.

Through the real app of tests/test_http_errors.py on a real socket, and the
tap's buffer rules directly (they are what keeps a slow reader bounded).
"""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp

from gossamer.agent.http.log_tap import LogTap, Subscriber
from gossamer.agent.http.monitor_routes import LOG_TAP_KEY
from tests.harness.poll import eventually_async
from tests.harness.served_agent import Served

FAILING_READ = "/v1/catalog/nodes?dc=dc9"  # answered 500, which the agent logs as a warning


async def _read_until(
    resp: aiohttp.ClientResponse,
    needle: str,
    served: Served,
) -> str:
    seen = ""
    for _ in range(50):
        await served.call("GET", FAILING_READ)
        try:
            chunk = await asyncio.wait_for(resp.content.readany(), 0.5)
        except TimeoutError:
            continue
        seen += chunk.decode()
        if needle in seen:
            return seen
    raise AssertionError(f"never saw {needle!r} in {seen!r}")


async def test_monitor_streams_the_agents_log_lines(served: Served) -> None:
    async with served.client.get("/v1/agent/monitor?loglevel=warn") as resp:
        assert resp.status == 200
        text = await _read_until(resp, "No path to datacenter", served)
    line = next(x for x in text.splitlines() if "No path" in x)
    assert "[WARNING] gossamer.http: GET /v1/catalog/nodes answered 500" in line


async def test_monitor_logjson_sends_one_object_per_line(served: Served) -> None:
    async with served.client.get("/v1/agent/monitor?loglevel=info&logjson") as resp:
        text = await _read_until(resp, "No path to datacenter", served)
    entry = json.loads(next(x for x in text.splitlines() if "No path" in x))
    assert set(entry) == {"@level", "@message", "@module", "@timestamp"}
    assert (entry["@level"], entry["@module"]) == ("warning", "gossamer.http")


async def test_an_unknown_level_is_a_400_naming_the_valid_ones(served: Served) -> None:
    status, text = await served.call("GET", "/v1/agent/monitor?loglevel=loud")
    assert status == 400
    assert text == "Unknown log level: 'loud' (one of trace, debug, info, warn, error)\n"
    status, text = await served.call("GET", "/v1/agent/monitor?logjson=maybe")
    assert status == 400 and "logjson" in text


async def test_a_client_that_goes_is_unsubscribed(served: Served) -> None:
    tap = served.client.server.app[LOG_TAP_KEY]
    async with aiohttp.ClientSession() as session:
        url = served.client.make_url("/v1/agent/monitor")
        resp = await session.get(url)
        assert resp.status == 200
        await eventually_async(lambda: tap.watchers == 1, timeout=5)
        resp.close()
    await eventually_async(lambda: tap.watchers == 0, timeout=5)


async def test_a_slow_reader_keeps_a_bounded_buffer_and_is_told_what_it_lost() -> None:
    tap = LogTap(limit=3)
    logger = logging.getLogger("gossamer.test-monitor")
    logger.addHandler(tap)
    try:
        with tap.subscribed(logging.INFO, as_json=False) as sub:
            for n in range(10):
                logger.warning("line %d", n)
            assert isinstance(sub, Subscriber) and len(sub.lines) == 3 and sub.dropped == 7
            taken = sub.take()
    finally:
        logger.removeHandler(tap)
    assert taken[0] == "monitor: 7 log lines dropped: the client read too slowly\n"
    assert [x.rsplit(": ", 1)[1] for x in taken[1:]] == ["line 0\n", "line 1\n", "line 2\n"]
    assert tap.dropped_total == 7 and sub.take() == []
