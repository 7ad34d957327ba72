"""ACLs through real HTTP on a real agent: py-consul's acl calls, the permission table, attacks.

One agent with `acl.enabled`, `default_policy: deny` and an initial
management token, shared by the module (its tests write distinct names).
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import consul
import pytest

from tests.harness.cli import gossamer
from tests.harness.cluster import AgentProc, Cluster
from tests.harness.poll import eventually

MANAGEMENT = "8a1f3c2e-0000-4000-8000-00000000beef"


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentProc]:
    root = tmp_path_factory.mktemp("acl")
    config = root / "acl.yaml"
    config.write_text(
        "acl:\n  enabled: true\n  default_policy: deny\n"
        f"  tokens:\n    initial_management: {MANAGEMENT}\n"
    )
    c = Cluster(root)
    solo = c.new_agent("acl1", "--config-file", str(config))
    solo.token = MANAGEMENT
    try:
        yield solo.start()
    finally:
        leftovers = c.close()
    assert not leftovers


def call(
    agent: AgentProc, method: str, path: str, body: Any = None, *, token: str = "",
    headers: dict[str, str] | None = None, source: str = "",
) -> tuple[int, str, dict[str, str]]:  # fmt: skip
    conn = http.client.HTTPConnection(
        agent.ip, agent.http_port, timeout=10, source_address=(source, 0) if source else None
    )
    sent = dict(headers or {})
    if token:
        sent["X-Consul-Token"] = token
    conn.request(method, path, None if body is None else json.dumps(body), sent)
    response = conn.getresponse()
    text = response.read().decode()
    conn.close()
    return response.status, text, dict(response.getheaders())


def agent_of(client: consul.Consul) -> tuple[str, int, str]:
    http = client.http
    return http.host, http.port, client.token or ""  # type: ignore[attr-defined]


def call_json(where: tuple[str, int, str], method: str, path: str, body: Any) -> Any:
    conn = http.client.HTTPConnection(where[0], where[1], timeout=10)
    conn.request(method, path, json.dumps(body), {"X-Consul-Token": where[2]})
    response = conn.getresponse()
    text = response.read().decode()
    conn.close()
    assert response.status == 200, text
    return json.loads(text)


def make_token(admin: consul.Consul, name: str, rules: str) -> str:
    policy = call_json(agent_of(admin), "PUT", "/v1/acl/policy", {"Name": name, "Rules": rules})
    token = admin.acl.token.create(policies_id=[policy["ID"]], description=name)
    return str(token["SecretID"])


def test_py_consul_bootstrap_and_crud(agent: AgentProc) -> None:
    anonymous = consul.Consul(host=agent.ip, port=agent.http_port)
    boot = anonymous.acl.bootstrap()
    admin = consul.Consul(host=agent.ip, port=agent.http_port, token=boot["SecretID"])
    with pytest.raises(consul.ACLPermissionDenied, match=r"no longer allowed \(reset index: 1\)"):
        anonymous.acl.bootstrap()
    (agent.data_dir / "acl-bootstrap-reset").write_text("1\n")  # Consul's reset procedure
    again = anonymous.acl.bootstrap()
    assert again["SecretID"] != boot["SecretID"]
    assert not (agent.data_dir / "acl-bootstrap-reset").exists()  # used up
    with pytest.raises(consul.ACLPermissionDenied, match=r"\(reset index: 2\)"):
        anonymous.acl.bootstrap()
    rules = {"service": {"crud": {"policy": "write"}}}  # py-consul sends rules as JSON
    policy = admin.acl.policy.create(name="crud-web", rules=rules)
    assert admin.acl.policy.read(policy["ID"])["Name"] == "crud-web"
    by_name = json.loads(call(agent, "GET", "/v1/acl/policy/name/crud-web", token=MANAGEMENT)[1])
    assert by_name["ID"] == policy["ID"]
    assert "crud-web" in {p["Name"] for p in admin.acl.policy.list()}
    token = admin.acl.token.create(policies_id=[policy["ID"]], description="crud")
    assert token["Policies"] == [{"ID": policy["ID"], "Name": "crud-web"}]
    user = consul.Consul(host=agent.ip, port=agent.http_port, token=token["SecretID"])
    assert user.acl.token.read_self()["AccessorID"] == token["AccessorID"]
    assert "SecretID" not in admin.acl.token.read(token["AccessorID"])  # only its hash is kept
    clone = admin.acl.token.clone(token["AccessorID"], description="clone")
    assert clone["SecretID"] != token["SecretID"] and clone["Policies"] == token["Policies"]
    listed = {t["AccessorID"] for t in admin.acl.token.list()}
    assert {token["AccessorID"], clone["AccessorID"], boot["AccessorID"]} <= listed
    with pytest.raises(consul.ACLPermissionDenied):  # acl:read is needed to list
        user.acl.token.list()
    assert admin.acl.token.delete(token["AccessorID"])
    with pytest.raises(consul.ACLPermissionDenied, match="ACL not found"):
        user.acl.token.read_self()
    assert admin.acl.policy.update(policy["ID"], "crud-web2")["Name"] == "crud-web2"
    assert admin.acl.policy.delete(policy["ID"])


# (method, path, body, rules that grant it, rules that do not)
TABLE = [
    ("GET", "/v1/catalog/service/web", None,
     'service "web" { policy = "read" }', 'service "db" { policy = "read" }'),
    ("PUT", "/v1/agent/service/register", {"Name": "tbl-web", "Port": 80},
     'service "tbl-web" { policy = "write" }', 'service "tbl-web" { policy = "read" }'),
    ("PUT", "/v1/connect/intentions/exact?source=a&destination=tbl-db", {"Action": "allow"},
     'service "tbl-db" { intentions = "write" }', 'service "tbl-db" { policy = "write" }'),
    ("GET", "/v1/agent/self", None,
     'agent_prefix "" { policy = "read" }', 'node_prefix "" { policy = "write" }'),
    ("PUT", "/v1/agent/reload", None,
     'agent "acl1" { policy = "write" }', 'agent "acl1" { policy = "read" }'),
    ("GET", "/v1/health/node/acl1", None,
     'node "acl1" { policy = "read" }', 'node "other" { policy = "read" }'),
    ("GET", "/v1/connect/ca/configuration", None, 'operator = "read"', 'mesh = "read"'),
    ("GET", "/v1/operator/keyring", None, 'keyring = "read"', 'operator = "write"'),
    ("PUT", "/v1/agent/force-leave/nobody", None, 'operator = "write"', 'operator = "read"'),
    ("GET", "/v1/acl/tokens", None, 'acl = "read"', 'operator = "write"'),
    ("GET", "/v1/agent/connect/ca/leaf/tbl-leaf", None,  # identity tied to ACLs
     'service "tbl-leaf" { policy = "write" }', 'service "tbl-leaf" { policy = "read" }'),
    ("PUT", "/v1/config", {"Kind": "service-defaults", "Name": "tbl-cfg", "Protocol": "http"},
     'service "tbl-cfg" { policy = "write" }', 'service "tbl-cfg" { policy = "read" }'),
    ("GET", "/v1/config/service-defaults/tbl-cfg", None,
     'service "tbl-cfg" { policy = "read" }', 'service "other" { policy = "write" }'),
    ("DELETE", "/v1/config/service-defaults/tbl-gone", None,
     'service "tbl-gone" { policy = "write" }', 'service "tbl-gone" { policy = "read" }'),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "grant", "lack"), TABLE)
def test_each_endpoint_needs_consuls_permission(
    agent: AgentProc, method: str, path: str, body: Any, grant: str, lack: str
) -> None:
    admin = consul.Consul(host=agent.ip, port=agent.http_port, token=MANAGEMENT)
    slug = f"t{abs(hash((method, path))) % 10**8}"
    with_it, without = make_token(admin, slug + "y", grant), make_token(admin, slug + "n", lack)
    status, text, _ = call(agent, method, path, body, token=without)
    assert status == 403 and text.startswith("Permission denied: token with AccessorID"), text
    status, text, _ = call(agent, method, path, body, token=with_it)
    assert not text.startswith(("Permission denied", "ACL not found")), text


def test_reads_are_filtered_and_say_so(agent: AgentProc) -> None:
    admin = consul.Consul(host=agent.ip, port=agent.http_port, token=MANAGEMENT)
    admin.agent.service.register("flt-a")
    admin.agent.service.register("flt-b")
    only_a = make_token(admin, "flt", 'service "flt-a" { policy = "read" }')
    status, text, headers = call(agent, "GET", "/v1/catalog/services", token=only_a)
    assert status == 200 and set(json.loads(text)) == {"flt-a"}
    assert headers.get("X-Consul-Results-Filtered-By-ACLs") == "true"
    _, text, headers = call(agent, "GET", "/v1/catalog/services", token=MANAGEMENT)
    assert {"flt-a", "flt-b"} <= set(json.loads(text))
    assert "X-Consul-Results-Filtered-By-ACLs" not in headers
    status, text, _ = call(agent, "GET", "/v1/agent/members", token=only_a)
    assert status == 200 and json.loads(text) == []


def test_config_entry_lists_are_filtered_by_service_read(agent: AgentProc) -> None:
    admin = consul.Consul(host=agent.ip, port=agent.http_port, token=MANAGEMENT)
    for name in ("cfg-a", "cfg-b"):
        assert admin.config.set("service-defaults", name, {"Protocol": "http"})
    only_a = make_token(admin, "cfg", 'service "cfg-a" { policy = "read" }')
    status, text, headers = call(agent, "GET", "/v1/config/service-defaults", token=only_a)
    assert status == 200 and [e["Name"] for e in json.loads(text)] == ["cfg-a"]
    assert headers.get("X-Consul-Results-Filtered-By-ACLs") == "true"


def test_token_from_bearer_and_query_and_anonymous_denied(agent: AgentProc) -> None:
    status, text, _ = call(agent, "GET", "/v1/agent/self")
    assert status == 403
    assert "'00000000-0000-0000-0000-000000000002' lacks permission 'agent:read'" in text
    bearer = {"Authorization": f"Bearer {MANAGEMENT}"}
    assert call(agent, "GET", "/v1/agent/self", headers=bearer)[0] == 200
    assert call(agent, "GET", f"/v1/agent/self?token={MANAGEMENT}")[0] == 200


def test_malformed_rules_list_every_problem_with_position(agent: AgentProc) -> None:
    rules = 'service "web" {\n  policy = "wirte"\n}\nnode_prefx "" { policy = "read" }\n'
    status, text, _ = call(
        agent, "PUT", "/v1/acl/policy", {"Name": "bad", "Rules": rules}, token=MANAGEMENT
    )
    assert status == 400
    assert text.splitlines() == [
        'Rules: line 2, column 12: "wirte" is not a policy; use "read", "write" or "deny"',
        text.splitlines()[1],
    ]
    assert text.splitlines()[1].startswith(
        "Rules: line 4, column 1: unknown rule type 'node_prefx'"
    )


def test_expired_and_unknown_tokens_are_refused(agent: AgentProc) -> None:
    past = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    status, text, _ = call(
        agent, "PUT", "/v1/acl/token",
        {"Description": "old", "ExpirationTime": past, "Policies": [{"Name": "global-management"}]},
        token=MANAGEMENT,
    )  # fmt: skip
    assert status == 200, text
    expired = json.loads(text)["SecretID"]
    assert call(agent, "GET", "/v1/agent/self", token=expired)[:2] == (403, "ACL not found\n")


def test_guessing_tokens_is_rate_limited(agent: AgentProc) -> None:
    guesser = "127.0.0.77"  # its own client address, so other tests keep theirs
    statuses = [
        call(agent, "GET", "/v1/agent/self", token=f"guess-{i}", source=guesser)[0]
        for i in range(30)
    ]
    assert statuses[0] == 403 and statuses[-1] == 429
    assert call(agent, "GET", "/v1/agent/self", token=MANAGEMENT)[0] == 200
    eventually(lambda: "possible token guessing" in Path(agent.log_path).read_text(), 5,
               what="the guessing to be logged")  # fmt: skip


def test_cli_acl_commands_and_token_sources(agent: AgentProc, tmp_path: Path) -> None:
    addr = ["--http-addr", f"{agent.ip}:{agent.http_port}"]
    rules = 'service "cli" { policy = "read" }'
    made = gossamer(
        "acl", "policy", "create", "--name", "cli-p", "--rules", rules, *addr, "--token", MANAGEMENT
    )
    assert made.returncode == 0, made.stderr
    created = gossamer(
        "acl", "token", "create", "--policy-name", "cli-p", "--description", "from cli", *addr,
        env={"CONSUL_HTTP_TOKEN": MANAGEMENT},
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    fields = dict(line.split(":", 1) for line in created.stdout.splitlines() if ": " in line)
    secret_file = tmp_path / "token"
    secret_file.write_text(fields["SecretID"].strip() + "\n")
    me = gossamer("acl", "token", "read", "--self", *addr,
                  env={"GOSSAMER_HTTP_TOKEN_FILE": str(secret_file)})  # fmt: skip
    assert me.returncode == 0 and "from cli" in me.stdout and "cli-p" in me.stdout, me.stderr
    refused = gossamer("acl", "token", "list", *addr, "--token-file", str(secret_file))
    assert refused.returncode == 1 and "lacks permission 'acl:read'" in refused.stderr
    bad = tmp_path / "bad.hcl"
    bad.write_text('service "x" {\n  policy = "raed"\n}\n')
    rejected = gossamer("acl", "policy", "create", "--name", "bad", "--rules", f"@{bad}", *addr)
    assert rejected.returncode == 2
    assert f'{bad}: line 2, column 12: "raed" is not a policy' in rejected.stderr
    accessor = fields["AccessorID"].strip()
    deleted = gossamer("acl", "token", "delete", "--id", accessor, *addr, "--token", MANAGEMENT)
    assert deleted.returncode == 0, deleted.stderr
    gone = gossamer("acl", "token", "read", "--self", *addr, "--token-file", str(secret_file))
    assert gone.returncode == 1 and "ACL not found" in gone.stderr


def test_dns_answers_only_what_the_default_token_may_read(agent: AgentProc) -> None:
    import dns.message
    import dns.query
    import dns.rcode

    admin = consul.Consul(host=agent.ip, port=agent.http_port, token=MANAGEMENT)
    admin.agent.service.register("dns-web", port=80)
    _, nodes = admin.catalog.service("dns-web")
    assert nodes  # registered and readable with a token
    query = dns.message.make_query("dns-web.service.consul", "A")
    reply = dns.query.udp(query, agent.ip, port=agent.dns_port, timeout=5)
    assert reply.rcode() == dns.rcode.NXDOMAIN  # no default token, default deny


def test_a_named_service_read_drops_nodes_the_token_may_not_read(agent: AgentProc) -> None:
    admin = consul.Consul(host=agent.ip, port=agent.http_port, token=MANAGEMENT)
    admin.agent.service.register("nf-web", port=80)
    service_only = make_token(admin, "nf1", 'service "nf-web" { policy = "read" }')
    with_node = make_token(
        admin, "nf2", 'service "nf-web" { policy = "read" }\nnode "acl1" { policy = "read" }'
    )
    status, text, headers = call(agent, "GET", "/v1/health/service/nf-web", token=service_only)
    assert (status, json.loads(text)) == (200, [])
    assert headers.get("X-Consul-Results-Filtered-By-ACLs") == "true"
    status, text, headers = call(agent, "GET", "/v1/health/service/nf-web", token=with_node)
    assert status == 200 and [e["Node"]["Node"] for e in json.loads(text)] == ["acl1"]
    assert "X-Consul-Results-Filtered-By-ACLs" not in headers
