"""Parked blocking queries over HTTP (agent/http/blocking.py + catalog/waiters.py).

Through the real app of tests/test_http_errors.py on a real socket: many
requests parked on a few distinct queries share one answer object per
query, and one change answers every one of them with its own query's body
and a fresh index.
"""

from __future__ import annotations

import asyncio
import json

from gossamer.agent.http import blocking
from gossamer.agent.http.catalog_access import CATALOG_KEY
from tests.harness.poll import eventually_async
from tests.harness.served_agent import Served

PLAIN, PEER, PASSING = 30, 5, 5


async def _get(on: Served, path: str) -> tuple[int, object, int]:
    async with on.client.get(path) as r:
        return r.status, json.loads(await r.text()), int(r.headers["X-Consul-Index"])


async def test_parked_queries_share_answers_and_one_change_answers_them_all(
    served: Served,
) -> None:
    catalog = served.client.app[CATALOG_KEY]
    base = "/v1/health/service/api"
    _, before, index = await _get(served, base)
    parked = f"{base}?index={index}&wait=30s"
    queries = [parked] * PLAIN + [f"{parked}&peer=other"] * PEER + [f"{parked}&passing"] * PASSING
    tasks = [asyncio.create_task(_get(served, q)) for q in queries]
    await eventually_async(lambda: catalog.watchers == len(queries))
    assert len(blocking._shared) == 3  # one answer object per distinct query, not per request

    body = {"Name": "api", "ID": "api-2", "Port": 82}
    async with served.client.put("/v1/agent/service/register", json=body) as r:
        assert r.status == 200
    answers = await asyncio.wait_for(asyncio.gather(*tasks), 10)

    assert catalog.watchers == 0
    assert all(status == 200 and new_index > index for status, _, new_index in answers)
    plain = [rows for _, rows, _ in answers[:PLAIN]]
    assert isinstance(before, list) and len(before) == 1
    assert all(rows == plain[0] for rows in plain) and len(plain[0]) == 2  # type: ignore[arg-type]
    assert all(rows == [] for _, rows, _ in answers[PLAIN : PLAIN + PEER])  # no peering here
    passing = {json.dumps(rows) for _, rows, _ in answers[PLAIN + PEER :]}
    assert len(passing) == 1
