"""Prepared `/v1/agent/services` answers equal freshly built ones after every local change.

Through the real app of tests/harness/served_agent.py on a real socket: a
random sequence of API registrations (with sidecars), deregistrations (a
sidecar alone too), config-file reloads (ConfigRegistrations, the agent's
own reload path, which publishes once at the end) and service-defaults
entries written and deleted. After each step every query is read as it
stands (prepared if still good), again after the prepared answers are
thrown away (freshly built), and once more (prepared again): body and
`X-Consul-ContentHash` must match, and `?hash=` of an older answer must
be answered at once.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossamer.agent.http.blocking import PREPARED_KEY
from gossamer.agent.local.config_registrations import ConfigRegistrations
from gossamer.agent.local.stored import FromConfig
from tests.harness.served_agent import Served

NAMES = ["web", "db"]
QUERIES = [
    "/v1/agent/services",
    "/v1/agent/services?filter=Service%20%3D%3D%20web",
    "/v1/agent/services?filter=Kind%20%3D%3D%20%22connect-proxy%22",
]

register = st.builds(
    lambda name, n, port, sidecar: (
        "API",
        {"Name": name, "ID": f"{name}-{n}", "Port": port,
         **({"Connect": {"SidecarService": {}}} if sidecar else {})},
    ),
    st.sampled_from(NAMES), st.integers(0, 2), st.integers(1, 300), st.booleans(),
)  # fmt: skip
deregister = st.builds(
    lambda name, n, sidecar: ("GONE", f"{name}-{n}" + ("-sidecar-proxy" if sidecar else "")),
    st.sampled_from(NAMES), st.integers(0, 2), st.booleans(),
)  # fmt: skip
reload = st.builds(
    lambda picked: ("RELOAD", [{"Name": n, "ID": f"cfg-{n}", "Port": 90} for n in picked]),
    st.lists(st.sampled_from(NAMES), unique=True),
)
defaults = st.builds(
    lambda name, protocol: ("DEFAULTS", name, protocol),
    st.sampled_from(NAMES), st.sampled_from(["http", "grpc", None]),
)  # fmt: skip
changes = st.lists(st.one_of(register, deregister, reload, defaults), min_size=1, max_size=8)


async def _read(on: Served, path: str) -> tuple[int, str, str]:
    async with on.client.get(path) as r:
        return r.status, await r.text(), r.headers.get("X-Consul-ContentHash", "")


async def _apply(on: Served, config: ConfigRegistrations, step: tuple[Any, ...]) -> None:
    kind = step[0]
    if kind == "API":
        await on.client.put("/v1/agent/service/register", json=step[1])
    elif kind == "GONE":
        await on.client.put(f"/v1/agent/service/deregister/{step[1]}")
    elif kind == "RELOAD":
        assert config.apply(step[1], []) == []
    elif step[2] is None:
        await on.client.delete(f"/v1/config/service-defaults/{step[1]}")
    else:
        entry = {"Kind": "service-defaults", "Name": step[1], "Protocol": step[2]}
        async with on.client.put("/v1/config", json=entry) as r:
            assert r.status == 200, await r.text()


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=changes)
async def test_prepared_agent_services_equal_fresh_ones_after_every_change(
    served: Served, steps: list[tuple[Any, ...]]
) -> None:
    answers = served.client.server.app[PREPARED_KEY]
    config = ConfigRegistrations(served.local, FromConfig())
    before = {path: await _read(served, path) for path in QUERIES}  # prepared before any change
    for step in steps:
        await _apply(served, config, step)
        for path in QUERIES:
            prepared = await _read(served, path)
            answers.clear()
            fresh = await _read(served, path)
            assert prepared == fresh, (path, step)
            assert await _read(served, path) == fresh, path  # prepared again
            assert fresh[0] == 200 and len(fresh[2]) == 16
            if fresh[2] != before[path][2]:  # an older hash is answered at once
                sep = "&" if "?" in path else "?"
                stale = f"{path}{sep}hash={before[path][2]}&wait=30s"
                assert await _read(served, stale) == fresh, path
            before[path] = fresh
    config.apply([], [])  # the next example starts without config-file services


async def test_a_read_with_nothing_changed_encodes_nothing(served: Served) -> None:
    answers = served.client.server.app[PREPARED_KEY]
    first = await _read(served, "/v1/agent/services")
    encodes = answers.encodes
    for _ in range(5):
        assert await _read(served, "/v1/agent/services?wait=1s") == first  # wait is not a key
    assert answers.encodes == encodes
    await served.client.put("/v1/agent/service/register", json={"Name": "x", "Port": 1})
    assert "x" in (await _read(served, "/v1/agent/services"))[1]
    assert answers.encodes == encodes + 1


async def test_a_service_defaults_entry_reaches_a_prepared_sidecar(served: Served) -> None:
    config = ConfigRegistrations(served.local, FromConfig())
    await _apply(
        served, config, ("API", {"Name": "web", "Port": 8, "Connect": {"SidecarService": {}}})
    )
    path = "/v1/agent/services?filter=Kind%20%3D%3D%20%22connect-proxy%22"
    assert "protocol" not in (await _read(served, path))[1]
    await _apply(served, config, ("DEFAULTS", "web", "grpc"))
    assert '"protocol":"grpc"' in (await _read(served, path))[1]
    await _apply(served, config, ("DEFAULTS", "web", None))
    assert "protocol" not in (await _read(served, path))[1]
