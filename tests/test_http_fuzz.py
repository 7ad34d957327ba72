"""Fuzzing the HTTP edge: random and mutated bodies, query strings and headers on every route.

The property: whatever arrives, the answer is never the generic 500 a bug
gets (`internal error; see the agent log`) and never carries a traceback;
the agent keeps answering afterwards. 500s the error table gives on
purpose (the stand-in serf refusing, another datacenter) are allowed.
Served by the real app of tests/test_http_errors.py on a real socket.
The stand-in serf here answers reads (no members, no stats) instead of
raising the deliberate bug of that module's; left out are `leave` (it
stops the agent) and the endless monitor stream.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote, urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossamer.agent.http.api import AGENT_KEY
from tests.harness.served_agent import RefusingSerf, Served


class ReadingSerf(RefusingSerf):
    """Refuses every change as the error tests' serf does, but answers reads plainly."""

    async def members(self) -> list[object]:
        return []

    async def stats(self) -> dict[str, dict[str, str]]:
        return {}

    async def get_coordinate(self, node: str) -> None:
        return None


LEFT_OUT = {"/v1/agent/leave", "/v1/agent/monitor"}
BUG = "internal error; see the agent log\n"
PARAMS = ["dc", "tag", "node-meta", "near", "filter", "passing", "wait", "peer", "prune", "wan",
          "source", "destination", "by", "name", "method", "path", "header", "enable", "reason",
          "note", "replace-existing-checks", "format", "loglevel", "logjson", "cached"]  # fmt: skip
GOOD_BODIES = [
    {"Name": "web", "Port": 80, "Check": {"TTL": "10s"}, "Connect": {"SidecarService": {}}},
    {"Node": "ext", "Address": "10.0.0.9", "Service": {"Service": "db", "Port": 5432}},
    {"SourceName": "web", "DestinationName": "db", "Action": "allow"},
    {"Target": "db", "ClientCertURI": "spiffe://x.consul/ns/default/dc/dc1/svc/web"},
    {"Key": "c2hvcnQ="},
    {"Status": "passing", "Output": "ok"},
    {"Provider": "consul", "Config": {"LeafCertTTL": "72h"}},
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid body with one field replaced, removed, or its text cut or spliced."""
    body = dict(draw(st.sampled_from(GOOD_BODIES)))
    key = draw(st.sampled_from(sorted(body)))
    choice = draw(st.integers(0, 3))
    if choice == 0:
        body[key] = draw(json_values)
    elif choice == 1:
        del body[key]
    text = json.dumps(body).encode()
    if choice == 2:
        return text[: draw(st.integers(0, len(text)))]
    if choice == 3:
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(st.binary(max_size=8)) + text[at:]
    return text


bodies = st.one_of(
    st.none(), st.binary(max_size=64), json_values.map(lambda v: json.dumps(v).encode()), mutated()
)
queries = st.lists(st.tuples(st.sampled_from(PARAMS), st.text(max_size=12)), max_size=4).map(
    lambda pairs: urlencode(pairs)
)
headers = st.dictionaries(
    st.sampled_from(["X-Consul-Token", "Content-Type", "X-Consul-Namespace", "Accept"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
    max_size=2,
)


def _routes(app_of: Served) -> list[tuple[str, str]]:
    found = []
    for route in app_of.client.server.app.router.routes():
        canonical = route.resource.canonical if route.resource else ""
        if canonical and canonical not in LEFT_OUT:
            found.append((route.method, canonical))
    return sorted(set(found))


def _fill(canonical: str, value: str) -> str:
    """Each `{param}` (or `{param:regex}`) of a route filled with the same path segment."""
    segment = quote(value, safe="") or "x"
    filled = re.sub(r"\{verb:[^}]*\}", "pass", canonical)
    filled = re.sub(r"\{by:[^}]*\}", "name", filled)
    return re.sub(r"\{[^}]*\}", segment, filled)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), body=bodies, query=queries, extra=headers)
async def test_no_request_gets_the_bug_answer(
    served: Served,
    data: st.DataObject,
    body: bytes | None,
    query: str,
    extra: dict[str, str],
) -> None:
    served.client.server.app[AGENT_KEY].serf = ReadingSerf()  # type: ignore[misc]
    method, canonical = data.draw(st.sampled_from(_routes(served)))
    method = method if method != "*" else data.draw(st.sampled_from(["GET", "PUT", "DELETE"]))
    path = _fill(canonical, data.draw(st.text(max_size=12)))
    url = f"{path}?{query}" if query else path
    async with served.client.request(method, url, data=body, headers=extra) as r:
        text = await r.text()
        status = r.status
    assert text != BUG and "Traceback" not in text, (method, url, body, status, text)
    assert (await served.call("GET", "/v1/agent/services"))[0] == 200
