"""`service-intentions` config entries under ACLs: Consul checks them as intentions
(`intentions = "read" | "write"` on the destination), not as the service (`policy`). A
token that may write the service but not its intentions must not write its intentions
through `/v1/config`. Real agent with ACLs on (tests/test_acl_http.py's)."""

from __future__ import annotations

import json
from typing import Any

import consul
import pytest

from tests.harness.cluster import AgentProc
from tests.test_acl_http import MANAGEMENT, agent, call, make_token

__all__ = ["agent"]  # the fixture, imported for pytest


def _entry(name: str) -> dict[str, Any]:
    return {"Kind": "service-intentions", "Name": name, "Sources": [{"Name": "web", "Permissions": [
        {"Action": "allow", "HTTP": {"PathPrefix": "/api"}}]}]}  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "body", "grant", "lack"),
    [
        ("PUT", "/v1/config", _entry("si-w"),
         'service "si-w" { intentions = "write" }', 'service "si-w" { policy = "write" }'),
        # `Kind` spelled as the entry's reader still takes it (`k_ind`): judged the same way
        ("PUT", "/v1/config", {"k_ind" if k == "Kind" else k: v for k, v in _entry("si-k").items()},
         'service "si-k" { intentions = "write" }', 'service "si-k" { policy = "write" }'),
        ("GET", "/v1/config/service-intentions/si-r", None,
         'service "si-r" { intentions = "read" }', 'service "other" { intentions = "write" }'),
        ("DELETE", "/v1/config/service-intentions/si-d", None,
         'service "si-d" { intentions = "write" }', 'service "si-d" { policy = "write" }'),
    ],
)  # fmt: skip
def test_an_intentions_entry_needs_intentions_permission(
    agent: AgentProc, method: str, path: str, body: Any, grant: str, lack: str
) -> None:
    admin = consul.Consul(host=agent.ip, port=agent.http_port, token=MANAGEMENT)
    for name in ("si-r", "si-d"):
        assert call(agent, "PUT", "/v1/config", _entry(name), token=MANAGEMENT)[0] == 200
    slug = f"si{abs(hash((method, path, json.dumps(body)))) % 10**8}"
    with_it, without = make_token(admin, slug + "y", grant), make_token(admin, slug + "n", lack)
    status, text, _ = call(agent, method, path, body, token=without)
    assert status == 403 and text.startswith("Permission denied: token with AccessorID"), text
    status, text, _ = call(agent, method, path, body, token=with_it)
    assert status == 200, text


def test_an_intentions_entry_list_is_filtered_by_intentions_read(agent: AgentProc) -> None:
    admin = consul.Consul(host=agent.ip, port=agent.http_port, token=MANAGEMENT)
    for name in ("sil-a", "sil-b"):
        assert call(agent, "PUT", "/v1/config", _entry(name), token=MANAGEMENT)[0] == 200
    only_a = make_token(admin, "sil", 'service "sil-a" { intentions = "read" }')
    status, text, headers = call(agent, "GET", "/v1/config/service-intentions", token=only_a)
    assert status == 200 and [e["Name"] for e in json.loads(text)] == ["sil-a"]
    assert headers.get("X-Consul-Results-Filtered-By-ACLs") == "true"
    service_only = make_token(admin, "sil2", 'service "sil-a" { policy = "read" '
                                            'intentions = "deny" }')  # fmt: skip
    status, text, _ = call(agent, "GET", "/v1/config/service-intentions", token=service_only)
    assert status == 200 and json.loads(text) == []
