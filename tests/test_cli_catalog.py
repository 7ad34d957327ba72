"""`gossamer services` and `gossamer catalog` against real agents, as subprocesses.

The module-scoped `trio` is shared, so each test uses its own service names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.harness.cli import DOWN, gossamer, ok, one_error_line
from tests.harness.cluster import AgentProc
from tests.harness.poll import eventually

RED, GREEN = "\x1b[31m", "\x1b[32m"


def catalog_json(agent: AgentProc, *args: str) -> Any:
    return json.loads(ok("catalog", *args, "--json", "--http-addr", agent.http))


def test_register_from_yaml_file_seen_on_every_agent(trio: list[AgentProc], tmp_path: Path) -> None:
    a, b, c = trio
    definition = tmp_path / "api.yaml"
    definition.write_text(
        "service:\n"
        "  name: yaml-api\n"
        "  id: yaml-api-1\n"
        "  port: 9090\n"
        "  tags: [v1, primary]\n"
        "  meta: {version: '1', since: 2024-01-01}\n"
        "  check: {ttl: 1h, status: passing, name: api alive}\n"
    )
    out = ok("services", "register", str(definition), "--http-addr", a.http)
    assert "Registered service: yaml-api-1" in out

    assert a.get("/v1/agent/service/yaml-api-1")["Meta"] == {"version": "1", "since": "2024-01-01"}
    eventually(lambda: "yaml-api" in catalog_json(c, "services"), 10, what="yaml-api on C")
    assert sorted(catalog_json(c, "services")["yaml-api"]) == ["primary", "v1"]
    listing = ok("catalog", "services", "--tags", "--http-addr", c.http)
    assert any("yaml-api" in line and "primary, v1" in line for line in listing.splitlines())

    eventually(lambda: catalog_json(b, "service", "yaml-api"), 10, what="yaml-api on B")
    table = ok("catalog", "service", "yaml-api", "--http-addr", b.http)
    row = next(line for line in table.splitlines() if "yaml-api-1" in line)
    for cell in ("node1", f"{a.ip}:9090", "v1, primary", "passing", "api alive", "Serf Health"):
        assert cell in row, table
    [entry] = catalog_json(b, "service", "yaml-api")
    assert entry["Service"]["ID"] == "yaml-api-1" and entry["Node"]["Node"] == "node1"

    out = ok("services", "deregister", "yaml-api-1", "--http-addr", a.http)
    assert "Deregistered service: yaml-api-1" in out
    eventually(lambda: "yaml-api" not in catalog_json(c, "services"), 10, what="gone from C")
    eventually(lambda: catalog_json(b, "service", "yaml-api") == [], 10, what="gone from B")


def test_register_from_flags_and_health_colours(trio: list[AgentProc]) -> None:
    a, b, c = trio
    ok(
        "services", "register", "--name", "flagged", "--id", "flagged-b", "--port", "7000",
        "--address", "10.1.2.3", "--tag", "blue", "--tag", "edge", "--meta", "team=core",
        "--meta", "tier=1", "--http-addr", b.http,
    )  # fmt: skip
    body = b.get("/v1/agent/service/flagged-b")
    assert (body["Service"], body["Port"], body["Address"]) == ("flagged", 7000, "10.1.2.3")
    assert body["Tags"] == ["blue", "edge"] and body["Meta"] == {"team": "core", "tier": "1"}
    # A second instance on C whose TTL check starts critical.
    second = {"Name": "flagged", "ID": "flagged-c", "Tags": ["blue"], "Port": 7001}
    c.put("/v1/agent/service/register", {**second, "Check": {"TTL": "1h", "Name": "ttl"}})

    def both() -> list[Any]:
        entries: list[Any] = catalog_json(a, "service", "flagged")
        assert len(entries) == 2
        return entries

    eventually(both, 10, what="both instances on A")
    table = ok("catalog", "service", "flagged", "--http-addr", a.http).splitlines()
    row_b = next(line for line in table if "flagged-b" in line)
    row_c = next(line for line in table if "flagged-c" in line)
    assert "node2" in row_b and "10.1.2.3:7000" in row_b and "blue, edge" in row_b
    assert "passing" in row_b
    assert "node3" in row_c and f"{c.ip}:7001" in row_c and "critical" in row_c and "ttl" in row_c
    coloured = gossamer("catalog", "service", "flagged", "--http-addr", a.http, color=True)
    assert f"{RED}critical" in coloured.stdout and f"{GREEN}passing" in coloured.stdout

    only_edge = ok("catalog", "service", "flagged", "--tag", "edge", "--http-addr", a.http)
    assert "flagged-b" in only_edge and "flagged-c" not in only_edge
    providers = catalog_json(a, "nodes", "--service", "flagged")
    assert sorted(n["Node"] for n in providers) == ["node2", "node3"]

    ok("services", "deregister", "--id", "flagged-b", "--http-addr", b.http)
    ok("services", "deregister", "flagged-c", "--http-addr", c.http)
    eventually(lambda: catalog_json(a, "service", "flagged") == [], 10, what="both gone")


def test_catalog_nodes_and_node_services(trio: list[AgentProc]) -> None:
    a = trio[0]
    table = ok("catalog", "nodes", "--detailed", "--http-addr", a.http)
    for agent in trio:
        row = next(line for line in table.splitlines() if line.split()[:1] == [agent.name])
        assert agent.ip in row and "dc1" in row and "passing" in row and f"lan={agent.ip}" in row
    assert {n["Node"] for n in catalog_json(a, "nodes")} == {"node1", "node2", "node3"}
    ok("services", "register", "--name", "on-node1", "--tag", "t1", "--http-addr", a.http)
    on_node = ok("catalog", "services", "--node", "node1", "--tags", "--http-addr", a.http)
    assert any("on-node1" in line and "t1" in line for line in on_node.splitlines())
    assert "on-node1" in catalog_json(a, "services", "--node", "node1")["Services"]
    missing = gossamer("catalog", "services", "--node", "nobody", "--http-addr", a.http)
    assert "nobody" in one_error_line(missing, 1)
    ok("services", "deregister", "on-node1", "--http-addr", a.http)


def test_register_and_deregister_through_consul_wrappers(
    trio: list[AgentProc], tmp_path: Path
) -> None:
    a = trio[0]
    defs = tmp_path / "many.json"
    services = [{"Name": "wrap-a", "Port": 1}, {"name": "wrap-b", "ID": "wrap-b-1"}]
    defs.write_text(json.dumps({"Services": services}))
    ok("services", "register", str(defs), "--http-addr", a.http)
    assert {"wrap-a", "wrap-b-1"} <= set(a.get("/v1/agent/services"))
    out = ok("services", "deregister", str(defs), "--http-addr", a.http)
    assert "wrap-a" in out and "wrap-b-1" in out
    assert not {"wrap-a", "wrap-b-1"} & set(a.get("/v1/agent/services"))


@pytest.mark.parametrize(
    ("name", "text", "where"),
    [
        ("bad.yaml", "service:\n  name: x\n  port: [1\n  tags: a\n", ":4:7:"),
        ("bad.json", '{"name": "x",\n "port": }', ":2:10:"),
        ("tabs.yml", "name: x\n\tport: 1\n", ":2:1:"),
    ],
)
def test_unparsable_file_is_usage_error_naming_line_and_column(
    tmp_path: Path, name: str, text: str, where: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    line = one_error_line(gossamer("services", "register", str(path), "--http-addr", DOWN), 2)
    assert f"{path}{where}" in line


@pytest.mark.parametrize(
    "args",
    [
        ["services", "register"],
        ["services", "register", "/no/such/file.yaml"],
        ["services", "register", "x.yaml", "--name", "x"],
        ["services", "register", "--name", "x", "--meta", "novalue"],
        ["services", "register", "--name", "x", "--port", "http"],
        ["services", "deregister"],
        ["services"],
        ["catalog", "service"],
        ["catalog", "nodes", "--bogus"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = gossamer(*args, "--http-addr", DOWN)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "error" in result.stderr


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("name: bad-meta\nmeta:\n  'bad key!': v\n", 'Meta["bad key!"]'),
        ("service:\n  port: 80\n", "Name"),
        ("name: bad-check\ncheck: {interval: 10s}\n", "Check"),
    ],
)
def test_agent_rejection_exits_1_naming_the_field(
    trio: list[AgentProc], tmp_path: Path, body: str, field: str
) -> None:
    a = trio[0]
    path = tmp_path / "rejected.yaml"
    path.write_text(body)
    line = one_error_line(gossamer("services", "register", str(path), "--http-addr", a.http), 1)
    assert field in line and "HTTP 400" in line
    assert not any(s.startswith("bad-") for s in a.get("/v1/agent/services"))


def test_deregister_unknown_id_exits_1(trio: list[AgentProc]) -> None:
    result = gossamer("services", "deregister", "no-such-id", "--http-addr", trio[0].http)
    assert "no-such-id" in one_error_line(result, 1)


@pytest.mark.parametrize(
    "args",
    [
        ["catalog", "services"],
        ["catalog", "nodes"],
        ["catalog", "service", "web"],
        ["services", "register", "--name", "web"],
        ["services", "deregister", "web"],
    ],
)
def test_agent_down_is_one_line_and_exit_1(args: list[str]) -> None:
    line = one_error_line(gossamer(*args, "--http-addr", DOWN), 1)
    assert f"cannot reach the gossamer agent at http://{DOWN}" in line


def test_http_addr_before_the_verb(trio: list[AgentProc]) -> None:
    assert gossamer("catalog", "--http-addr", trio[1].http, "nodes").returncode == 0
