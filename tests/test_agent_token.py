"""`PUT /v1/agent/token/<type>` on a real agent with ACLs on, through py-consul's
`agent.token.set`: it needs acl:write, changes what requests without a token and DNS may
read at once, accepts Consul's legacy names, and survives a restart with
`acl.enable_token_persistence`."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import consul
import dns.message
import dns.query
import dns.rcode
import pytest

from gossamer.agent.acl.agent_tokens import effective, persisted, token_type, with_token
from tests.harness.cluster import AgentProc, Cluster
from tests.harness.poll import eventually
from tests.test_acl_http import MANAGEMENT, call, make_token

READER = 'node_prefix "" { policy = "read" }\nservice_prefix "" { policy = "read" }\n'


def test_token_types_legacy_names_and_clearing() -> None:
    assert [token_type(n) for n in ("default", "agent_master", "acl_token", "nope")] == [
        "default", "agent_recovery", "default", None,
    ]  # fmt: skip
    tokens = with_token({}, "default", "s1")
    assert effective("default", tokens, {"default": "from-config"}) == "s1"
    assert effective("default", with_token(tokens, "default", ""), {"default": "c"}) == "c"
    assert persisted({"default": "s", "bogus": "x", "agent": 3}) == {"default": "s"}


@pytest.fixture
def acl_agent(tmp_path: Path) -> Iterator[AgentProc]:
    config = tmp_path / "acl.yaml"
    config.write_text(
        "acl:\n  enabled: true\n  default_policy: deny\n  enable_token_persistence: true\n"
        f"  tokens:\n    initial_management: {MANAGEMENT}\n"
    )
    c = Cluster(tmp_path)
    agent = c.new_agent("tok1", "--config-file", str(config))
    agent.token = MANAGEMENT
    try:
        yield agent.start()
    finally:
        assert not c.close()


def anonymous_nodes(agent: AgentProc) -> list[str]:
    status, text, _ = call(agent, "GET", "/v1/catalog/nodes")
    assert status == 200, text
    return [n["Node"] for n in json.loads(text)]


def dns_rcode(agent: AgentProc) -> int:
    query = dns.message.make_query("consul.service.consul", "A")
    return int(dns.query.udp(query, agent.ip, port=agent.dns_port, timeout=5).rcode())


def test_setting_the_default_token_at_runtime_and_after_a_restart(acl_agent: AgentProc) -> None:
    agent = acl_agent
    admin = consul.Consul(host=agent.ip, port=agent.http_port, token=MANAGEMENT)
    reader = make_token(admin, "reader", READER)
    assert anonymous_nodes(agent) == [] and dns_rcode(agent) == dns.rcode.NXDOMAIN

    as_reader = consul.Consul(host=agent.ip, port=agent.http_port, token=reader)
    with pytest.raises(consul.ACLPermissionDenied):  # acl:write is needed
        as_reader.agent.token.set("default", reader)
    assert admin.agent.token.set("default", reader) is True
    assert anonymous_nodes(agent) == ["tok1"]
    eventually(lambda: dns_rcode(agent) == dns.rcode.NOERROR, 5, what="DNS to use it")

    status, text, _ = call(agent, "PUT", "/v1/agent/token/nope", {"Token": "x"}, token=MANAGEMENT)
    assert (status, text.strip()) == (404, 'Token "nope" is unknown')
    status, text, _ = call(agent, "PUT", "/v1/agent/token/acl_agent_token", {"Token": 5},
                           token=MANAGEMENT)  # fmt: skip
    assert (status, text.strip()) == (400, "Token: must be a string, got int")
    status, _, _ = call(agent, "PUT", "/v1/agent/token/acl_agent_token", {"Token": reader},
                        token=MANAGEMENT)  # fmt: skip
    assert status == 200  # a legacy name, as older clients send it

    kept = agent.data_dir / "acl-tokens.json"
    assert json.loads(kept.read_text()) == {"default": reader, "agent": reader}
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    agent.stop()
    agent.start()
    assert anonymous_nodes(agent) == ["tok1"]  # persisted across the restart

    assert admin.agent.token.set("default", "") is True  # cleared: the config's (none) again
    assert anonymous_nodes(agent) == []
