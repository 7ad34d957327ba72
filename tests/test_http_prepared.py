"""Prepared HTTP answers equal freshly encoded ones after every kind of change (Hypothesis).

Through the real app of tests/test_http_errors.py on a real socket: a
random sequence of registrations, check changes, maintenance, external
nodes, gossip health flips and deregistrations; after each, every hot
query is read (from the prepared answers when they are still good), the
prepared answers are thrown away and the query is read again, freshly
encoded: body and X-Consul-Index must match. The bounds of the store are
checked directly.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossamer.agent.http.blocking import PREPARED_KEY
from gossamer.agent.http.catalog_access import CATALOG_KEY
from gossamer.agent.http.prepared import PreparedAnswers, query_key
from tests.harness.served_agent import Served

NAMES = ["web", "db"]
QUERIES = [
    "/v1/health/service/web", "/v1/health/service/web?passing", "/v1/health/service/db?tag=v2",
    "/v1/catalog/service/web", "/v1/catalog/service/db?tag=v2", "/v1/catalog/services",
    "/v1/catalog/services?node-meta=rack:r1", "/v1/health/connect/web",
    "/v1/health/service/web?filter=Service.Port%20%3D%3D%2080",
]  # fmt: skip

register = st.builds(
    lambda name, n, tags, port, sidecar: (
        "PUT",
        "/v1/agent/service/register",
        {"Name": name, "ID": f"{name}-{n}", "Port": port, "Tags": tags,
         "Check": {"CheckID": f"c-{name}-{n}", "TTL": "60s"},
         **({"Connect": {"SidecarService": {}}} if sidecar else {})},
    ),
    st.sampled_from(NAMES), st.integers(0, 2), st.lists(st.sampled_from(["v1", "v2"]), max_size=2),
    st.integers(1, 300), st.booleans(),
)  # fmt: skip
ttl = st.builds(
    lambda verb, name, n: ("PUT", f"/v1/agent/check/{verb}/c-{name}-{n}", None),
    st.sampled_from(["pass", "warn", "fail"]), st.sampled_from(NAMES), st.integers(0, 2),
)  # fmt: skip
deregister = st.builds(
    lambda name, n: ("PUT", f"/v1/agent/service/deregister/{name}-{n}", None),
    st.sampled_from(NAMES), st.integers(0, 2),
)  # fmt: skip
maintenance = st.builds(
    lambda on: ("PUT", f"/v1/agent/maintenance?enable={'true' if on else 'false'}", None),
    st.booleans(),
)
external = st.builds(
    lambda rack, port: (
        "PUT",
        "/v1/catalog/register",
        {"Node": "ext9", "Address": "10.9.9.9", "NodeMeta": {"rack": rack},
         "Service": {"Service": "db", "Port": port, "Tags": ["v2"]}},
    ),
    st.sampled_from(["r1", "r2"]), st.integers(1, 300),
)  # fmt: skip
gossip = st.tuples(st.just("FLIP"), st.just("n2"), st.booleans())
changes = st.lists(
    st.one_of(register, ttl, deregister, maintenance, external, gossip), min_size=1, max_size=8
)


async def _read(on: Served, path: str) -> tuple[int, str, str]:
    async with on.client.get(path) as r:
        return r.status, await r.text(), r.headers.get("X-Consul-Index", "")


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=changes)
async def test_prepared_answers_equal_fresh_ones_after_every_change(
    served: Served,
    steps: list[tuple[object, ...]],
) -> None:
    app = served.client.server.app
    answers, catalog = app[PREPARED_KEY], app[CATALOG_KEY]
    for path in QUERIES:  # prepared before any change, so a stale one would show
        await _read(served, path)
    for step in steps:
        if step[0] == "FLIP":
            catalog.set_failed(str(step[1]), bool(step[2]))
        else:
            method, path, body = step
            await served.client.request(str(method), str(path), json=body)
        for path in QUERIES:
            prepared, fresh, again = await _three_reads(served, path)
            assert prepared == fresh, path
            assert again == fresh, path  # served from the prepared answer
    assert answers.hits >= len(QUERIES) * len(steps)


async def _three_reads(
    served: Served,
    path: str,
) -> tuple[tuple[int, str, str], ...]:
    """As it stands, freshly encoded, and prepared again, with no change in between.

    The agent changes things on its own too (a sidecar's check runs), so a
    round that saw a change is read again.
    """
    app = served.client.server.app
    answers, catalog = app[PREPARED_KEY], app[CATALOG_KEY]
    for _ in range(50):
        before = catalog.indexes.current
        prepared = await _read(served, path)
        answers.clear()
        reads = (prepared, await _read(served, path), await _read(served, path))
        if catalog.indexes.current == before:
            return reads
    raise AssertionError(f"the catalog never stood still for {path}")


def test_the_store_is_bounded_by_entries_and_bytes() -> None:
    answers = PreparedAnswers(max_entries=3, max_bytes=100)
    keys = [query_key(f"/q{i}", [("index", "7"), ("tag", "a")]) for i in range(5)]
    for i, key in enumerate(keys):
        answers.put(key, 1, b"x" * 10)
        assert answers.get(key, 1) == b"x" * 10 and answers.get(key, 2) is None
        assert len(answers) == min(i + 1, 3)
    answers.put(keys[0], 2, b"y" * 90)  # bytes: the older entries make room
    assert answers.held_bytes <= 100 and answers.get(keys[0], 2) == b"y" * 90
    answers.put(keys[1], 2, b"z" * 101)  # larger than the whole budget: not kept
    assert answers.get(keys[1], 2) is None and answers.held_bytes <= 100
    assert query_key("/q", [("wait", "5s"), ("tag", "b"), ("tag", "a")]) == (
        "/q", (("tag", "a"), ("tag", "b")),
    )  # fmt: skip
