"""The `gossamer` CLI against real agents: output, exit codes, address forms."""

from __future__ import annotations

import json
import os
import signal

import pytest

from gossamer.gossip.keyring import validate_key
from tests.harness.cli import gossamer
from tests.harness.cluster import AgentProc, Cluster
from tests.harness.poll import eventually


def test_members_table_and_json(trio: list[AgentProc]) -> None:
    a = trio[0]
    table = gossamer("members", "--http-addr", f"{a.ip}:{a.http_port}")
    assert table.returncode == 0, table.stderr
    for agent in trio:
        assert agent.name in table.stdout and f"{agent.ip}:{agent.serf_port}" in table.stdout
    assert table.stdout.count("alive") == 3

    def identities_valid() -> bool:
        shown = gossamer("members", "--http-addr", a.http).stdout
        return shown.count("valid until") == 3

    eventually(identities_valid, 20, what="each member's RPC identity shown valid")
    peers = a.get("/v1/agent/self")["Gossamer"]["Identity"]["Peers"]
    assert {p["State"] for p in peers.values()} == {"valid"} and len(peers) == 3
    as_json = gossamer("members", "--json", "--http-addr", a.http)
    assert {m["Name"] for m in json.loads(as_json.stdout)} == {"node1", "node2", "node3"}


@pytest.mark.parametrize("var", ["GOSSAMER_HTTP_ADDR", "CONSUL_HTTP_ADDR"])
def test_address_from_environment(trio: list[AgentProc], var: str) -> None:
    a = trio[1]
    result = gossamer("members", "--json", env={var: f"http://{a.ip}:{a.http_port}"})
    assert result.returncode == 0, result.stderr


def test_gossamer_env_wins_over_consul_env(trio: list[AgentProc]) -> None:
    a = trio[1]
    env = {"GOSSAMER_HTTP_ADDR": f"{a.ip}:{a.http_port}", "CONSUL_HTTP_ADDR": "127.0.0.1:1"}
    assert gossamer("members", env=env).returncode == 0


def test_agent_down_is_one_clear_line_and_exit_1() -> None:
    result = gossamer("members", "--http-addr", "127.0.0.1:1")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the gossamer agent at http://127.0.0.1:1" in lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["members", "--http-addr", "ftp://x:1"],
        ["members", "--http-addr", "host:notaport"],
        ["keyring", "--install", "not-a-key"],
        ["keyring"],
        ["nosuchcommand"],
        ["force-leave"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = gossamer(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "error" in result.stderr


def test_keygen_and_version() -> None:
    key = gossamer("keygen").stdout.strip()
    assert validate_key(key) == key
    assert gossamer("keygen").stdout.strip() != key
    version = gossamer("version")
    assert version.returncode == 0 and version.stdout.startswith("gossamer ")


def test_join_force_leave_reload_and_leave(cluster: Cluster) -> None:
    a = cluster.new_agent("c1").start()
    b = cluster.new_agent("c2").start()
    c = cluster.new_agent("c3").start()
    addr = ["--http-addr", a.http]
    joined = gossamer("join", b.serf_addr, c.serf_addr, *addr)
    assert joined.returncode == 0, joined.stderr
    eventually(lambda: set(a.members()) == {"c1", "c2", "c3"}, 10, what="3 members")
    assert gossamer("join", "127.0.0.1:1", *addr).returncode == 1

    os.kill(c.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
    c.wait_exit()
    eventually(lambda: a.members()["c3"] == 4, 15, what="c3 failed")
    assert gossamer("force-leave", "c3", *addr).returncode == 0
    eventually(lambda: a.members()["c3"] == 3, 10, what="c3 left")
    assert gossamer("force-leave", "c3", "--prune", *addr).returncode == 0
    eventually(lambda: "c3" not in a.members(), 10, what="c3 pruned")
    missing = gossamer("force-leave", "nobody", *addr)
    assert missing.returncode == 1 and "unknown node: nobody" in missing.stderr

    assert gossamer("reload", *addr).returncode == 0
    assert gossamer("leave", "--http-addr", b.http).returncode == 0
    assert b.wait_exit() == 0
    eventually(lambda: a.members()["c2"] == 3, 10, what="c2 left")


def test_a_table_piped_to_another_program_is_not_cut_to_80_columns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rich sizes output to 80 columns when stdout is no terminal: `gossamer stat | grep`
    got `DIRECTI…  SOUR…`. Piped with no COLUMNS, a table is as wide as its cells."""
    import io

    from rich.table import Table

    from gossamer.agent.cli import main

    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr("sys.stdout", io.StringIO())
    console = main._console()
    table = Table(*(f"HEADER{n:02d}" for n in range(12)))
    table.add_row(*(f"value-{n:02d}-long" for n in range(12)))
    with console.capture() as captured:
        console.print(table)
    assert "\u2026" not in captured.get() and "value-11-long" in captured.get()
    monkeypatch.setenv("COLUMNS", "80")  # a width asked for is kept
    assert main._console().width == 80
