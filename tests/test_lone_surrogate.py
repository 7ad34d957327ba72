"""A JSON body with a lone UTF-16 surrogate escape (`"\\ud800"`) is refused at the door.

Python's json decodes that escape to a character UTF-8 cannot encode. A
service registered with one in a tag was kept; signing the node's record
then raised, so every later registration answered 500 and the agent no
longer started (it re-signs its record at start). Consul's Go decoder turns
it into U+FFFD; this agent answers 400 naming the field instead.
"""

from __future__ import annotations

import urllib.error

import pytest

from gossamer.catalog.plain_json import lone_surrogate
from tests.harness.cluster import Cluster
from tests.harness.poll import eventually


@pytest.mark.parametrize(
    ("raw", "value", "found"),
    [
        (b'{"a":["x","\\ud800"]}', {"a": ["x", "\ud800"]}, "body.a[1]"),
        (b'{"\\udfff":1}', {"\udfff": 1}, "body.\\udfff"),
        (b'{"a":"\\ud83d\\ude00"}', {"a": "\U0001f600"}, None),  # a pair is one character
        (b'{"a":"\\\\ud800"}', {"a": "\\ud800"}, None),  # an escaped backslash, then text
        (b'{"a":"x"}', {"a": "\ud800"}, None),  # no escape in the text: not scanned
    ],
)
def test_finding_a_lone_surrogate(raw: bytes, value: object, found: str | None) -> None:
    assert lone_surrogate(raw, value) == found


def test_a_registration_with_a_lone_surrogate_is_refused_and_the_agent_stays_well(
    cluster: Cluster,
) -> None:
    agent = cluster.new_agent("a")
    agent.start()
    eventually(agent.enrolled, 20, what="the agent's certificate")
    with pytest.raises(urllib.error.HTTPError) as refused:
        agent.put("/v1/agent/service/register", {"Name": "web", "Port": 80, "Tags": ["\ud800"]})
    assert refused.value.code == 400
    assert "Tags[0]: a lone surrogate" in refused.value.read().decode()
    agent.put("/v1/agent/service/register", {"Name": "ok", "Port": 81})
    assert set(agent.get("/v1/agent/services")) == {"ok"}
    agent.stop()
    agent.start()
    assert set(agent.get("/v1/agent/services")) == {"ok"}
