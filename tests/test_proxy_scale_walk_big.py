"""A watch answer of MBs: the sidecar's event loop keeps serving while it is read.

An agent's answer about a service of thousands of instances is a JSON array
of MBs (20,000 instances: ~14 MB). Decoded in one `json.loads`, it held the
sidecar's loop for ~0.3 s, every connection through the sidecar waiting;
most of that the cyclic GC walking its ~1M objects, all alive at once; the
body was also put together by adding each chunk to what came before (MBs
copied over and over). Now the upstream's watch reads the array element by
element (proxy/json_items.py), keeps only each row's address and port
(health_rows.instance_of), and lets the loop serve every few hundred rows.
A stand-in agent serves the answer on a real socket to the proxy's real
`AgentHttp`, `Watch` and `warm.open_upstream`; a ticker on the same loop
records its longest wait.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web

from gossamer.proxy import tally, warm
from gossamer.proxy.agent_http import AgentHttp
from gossamer.proxy.config import Upstream
from gossamer.proxy.json_items import items
from gossamer.proxy.outbound import UpstreamListener
from tests.harness.cluster import free_port
from tests.harness.http_app import ServeApp
from tests.harness.poll import eventually_async

INSTANCES = 20_000


def _address(i: int) -> str:
    return f"10.{i // 62500}.{i // 250 % 250}.{i % 250 + 1}"


def _row(i: int) -> dict[str, Any]:
    node = f"ext{i}"
    return {
        "Node": {"Node": node, "Address": _address(i),
                 "Datacenter": "dc1", "TaggedAddresses": {}, "Meta": {}},
        "Service": {"Kind": "connect-proxy", "ID": "dbp", "Service": "db-sidecar-proxy",
                    "Tags": [], "Address": "", "Port": 20000, "Meta": {},
                    "Proxy": {"DestinationServiceName": "db", "Upstreams": [], "Config": {}}},
        "Checks": [{"Node": node, "CheckID": "c", "Name": "c", "Status": "passing",
                    "ServiceID": "dbp", "ServiceName": "db-sidecar-proxy", "Output": ""}],
    }  # fmt: skip


async def test_a_big_answer_is_read_while_the_loop_keeps_serving(serve_app: ServeApp) -> None:
    body = json.dumps([_row(i) for i in range(INSTANCES)]).encode()  # (the rows not kept:
    # alive in the test's process, ~1M objects, they would slow its GC as the proxy's own)
    asked = [0]

    async def health(request: web.Request) -> web.Response:
        asked[0] += 1
        if asked[0] > 1:
            await asyncio.sleep(30)  # held: nothing new
        return web.Response(body=body, content_type="application/json",
                            headers={"X-Consul-Index": "7"})  # fmt: skip

    app = web.Application()
    app.router.add_get("/v1/health/connect/db", health)
    where = await serve_app(app)
    upstream = Upstream(name="db", bind_address="127.0.0.1", bind_port=free_port("127.0.0.1"))
    listener = UpstreamListener(upstream, lambda: None, tally.Tally())
    opening = asyncio.ensure_future(warm.open_upstream(AgentHttp(where.base), listener,
                                                       lambda: True))  # fmt: skip
    loop = asyncio.get_running_loop()
    longest = 0.0
    try:
        while not opening.done():  # the ticker: how long the loop makes it wait, at most
            before = loop.time()
            await asyncio.sleep(0.002)
            longest = max(longest, loop.time() - before - 0.002)
        assert listener.instances == sorted((_address(i), 20000) for i in range(INSTANCES))
        assert longest < 0.1, f"the loop was held {longest:.2f} s"
        await eventually_async(lambda: asked[0] == 2)  # then the watch blocks as usual
    finally:
        watch = await opening
        if watch is not None:
            watch.stop()
        listener.stop_listening()


@pytest.mark.parametrize("text", [
    "[]", " [ ] ", "[1]", '[{"a": [1, 2, {"b": null}]}, "x", 2.5, true]',
    '\n[\n  {"a" : 1} ,\n  [ ]\n]\n', '["\\u00e9", "]", ","]',
])  # fmt: skip
def test_items_are_what_json_loads_gives(text: str) -> None:
    assert list(items(text)) == json.loads(text)


@pytest.mark.parametrize("text", [
    "", "{}", "1", "[", "[1", "[1,]", "[1 2]", "[,1]", "[1] x", "[1]]", '["a]',
])  # fmt: skip
def test_what_is_not_a_json_array_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        list(items(text))
