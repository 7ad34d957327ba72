"""`gossamer check` against real agents and proxies, each failure made on purpose.

One mesh is shared by the module: two agents with gossip encryption, `db`
and `web` with running sidecars on the first (which gets 10 s leaves, so a
leaf whose renewal is broken expires within the test). Every test that
breaks something puts it back, so no test depends on another's order.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gossamer.gossip.keyring import generate_key
from tests.harness.cli import DOWN, gossamer, one_error_line
from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.proxy_support import (
    App,
    ProxyProc,
    healthy_sidecars,
    register_pair,
    set_intention,
    sidecar,
    wait_listening,
)


@dataclass
class Mesh:
    cluster: Cluster
    node1: AgentProc
    node2: AgentProc
    key: str
    tmp: Path


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("check")
    c = Cluster(tmp)
    apps: list[App] = []
    proxies: list[ProxyProc] = []
    key = generate_key()
    try:
        config = tmp / "short-leaves.yaml"
        config.write_text("test_leaf_cert_ttl: 10s\n")
        node1 = c.new_agent("node1", "--encrypt", key, "--config-file", str(config)).start()
        node2 = c.new_agent("node2", "--encrypt", key, "--join", node1.serf_addr).start()
        for agent in (node1, node2):
            eventually(
                lambda a=agent: set(a.members().values()) == {1} and len(a.members()) == 2,
                15,
                what=f"{agent.name} to see both alive",
            )
            eventually(agent.enrolled, 20, what=f"{agent.name}'s certificate")
        apps.append(db_app := App("127.0.0.1").start())
        db_in, web_in = register_pair(node1, db_app.port, free_port("127.0.0.1"))
        set_intention(node1, "web", "db", "allow")
        proxies += [db := sidecar(node1, tmp, "db"), web := sidecar(node1, tmp, "web")]
        wait_listening(node1.ip, db_in, db)
        wait_listening(node1.ip, web_in, web)
        eventually(lambda: healthy_sidecars(node1, "db") == 1, 30, what="db's sidecar passing")
        yield Mesh(c, node1, node2, key, tmp)
    finally:
        for proxy in proxies:
            proxy.stop()
        for app in apps:
            app.stop()
        leftovers = c.close()
    assert not leftovers, f"processes left behind: {leftovers}"


def check(agent: AgentProc, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = gossamer("check", "--http-addr", agent.http, *args, env=env)
    assert not result.stderr, result.stderr
    return result.returncode, result.stdout


def marks(out: str) -> dict[str, str]:
    """Each check's line by its mark: {"serf on PATH": "✔", ...} (the name before the colon)."""
    found = {}
    for line in out.splitlines():
        if line[:1] in "✔✘‼-" and line[1:2] == " ":
            found[line[2:].split(": ", 1)[0]] = line[0]
    return found


def failing(out: str) -> list[str]:
    return sorted(name for name, mark in marks(out).items() if mark == "✘")


def test_a_healthy_mesh_passes_and_json_says_the_same(mesh: Mesh) -> None:
    code, out = check(mesh.node1)
    assert code == 0, out
    seen = marks(out)
    assert not failing(out), out
    for name in (
        "serf on PATH",
        "data dir and its permissions",
        "agent reachable",
        "DNS answering",
        "cluster members",
        "clock offset against peers",
        "gossip encryption and keyring",
        "default intention policy",
        "CA and roots valid",
        "agent-RPC identity valid",
        "leaf certificate of db",
        "leaf certificate of web",
        "upstreams of web-sidecar-proxy",
    ):
        assert name in seen, (name, out)
    assert seen["gossip encryption and keyring"] == "✔"  # encrypted, one key on both
    assert (
        sum(n.endswith("port " + mesh.node1.ip + f":{mesh.node1.http_port}/tcp") for n in seen) == 1
    )
    assert "db (1 healthy)" in out
    code, raw = check(mesh.node1, "--json")
    body = json.loads(raw)
    assert code == 0 and body["Success"] is True
    assert {c["Name"] for c in body["Checks"]} == set(seen)
    assert not [c for c in body["Checks"] if c["Status"] == "fail"]
    clock = mesh.node1.get("/v1/agent/clock")
    assert set(clock["Offsets"]) == {"node2"} and abs(clock["Offsets"]["node2"]) < 1.0


def test_serf_missing_from_path_fails_that_line(mesh: Mesh) -> None:
    code, out = check(mesh.node1, env={"PATH": str(mesh.tmp / "empty-bin")})
    assert code == 1
    assert failing(out) == ["serf on PATH"], out
    assert "apt-get install serf" in out


def test_secrets_readable_by_others_fail_the_data_dir_line(mesh: Mesh) -> None:
    key = mesh.node1.data_dir / "serf" / "rpc.json"  # serf's RPC auth key, written once
    key.chmod(0o644)
    try:
        code, out = check(mesh.node1)
    finally:
        key.chmod(0o600)
    assert code == 1
    assert failing(out) == ["data dir and its permissions"], out
    assert "serf/rpc.json (0644)" in out and "chmod go-rwx" in out


def test_a_failed_member_is_named(mesh: Mesh) -> None:
    node3 = mesh.cluster.new_agent("node3", "--encrypt", mesh.key, "--join", mesh.node1.serf_addr)
    node3.start()
    try:
        eventually(lambda: mesh.node1.members().get("node3") == 1, 15, what="node3 alive")
        assert node3.proc is not None
        node3.proc.send_signal(signal.SIGKILL)
        node3.proc.wait(10)
        eventually(lambda: mesh.node1.members().get("node3") == 4, 30, what="node3 failed")
        code, out = check(mesh.node1)
        assert code == 1
        assert failing(out) == ["cluster members"], out
        assert "failed: node3" in out and "force-leave" in out
    finally:
        mesh.node1.put("/v1/agent/force-leave/node3?prune")
        eventually(lambda: "node3" not in mesh.node1.members(), 15, what="node3 pruned")


def test_a_stopped_proxy_fails_its_line(mesh: Mesh) -> None:
    node, port = mesh.node1, free_port(mesh.node1.ip)
    node.put(
        "/v1/agent/service/register",
        {
            "Name": "api",
            "ID": "api",
            "Port": 1,
            "Address": node.ip,
            "Connect": {"SidecarService": {"Port": port, "Address": node.ip}},
        },
    )
    proxy = sidecar(node, mesh.tmp, "api")
    try:
        wait_listening(node.ip, port, proxy)
        code, out = check(node)
        assert code == 0 and marks(out)[f"proxy api-sidecar-proxy up at {node.ip}:{port}"] != "✘"
        assert "certificate of api" in out
        proxy.stop()
        code, out = check(node)
        assert code == 1
        assert failing(out) == [f"proxy api-sidecar-proxy up at {node.ip}:{port}"], out
        assert "gossamer connect proxy --sidecar-for api" in out
    finally:
        proxy.stop()
        node.put("/v1/agent/service/deregister/api")


def test_a_leaf_that_cannot_be_renewed_expires_and_fails(mesh: Mesh) -> None:
    """Renewal is broken on purpose (a directory where the leaf's file goes): the proxy keeps
    presenting its last leaf, which expires within its 10 s life."""
    node, port = mesh.node1, free_port(mesh.node1.ip)
    node.put(
        "/v1/agent/service/register",
        {
            "Name": "old",
            "ID": "old",
            "Port": 1,
            "Address": node.ip,
            "Connect": {"SidecarService": {"Port": port, "Address": node.ip}},
        },
    )
    proxy = sidecar(node, mesh.tmp, "old")
    stored = node.data_dir / "identity" / "leaves" / "old.json"
    try:
        wait_listening(node.ip, port, proxy)
        eventually(stored.exists, 10, what="old's leaf on disk")
        stored.unlink()
        stored.mkdir()

        def expired() -> str:
            code, out = check(node)
            assert code == 1 and "expired" in out, out
            return out

        out = eventually(expired, 30, what="old's leaf to expire")
        assert set(failing(out)) == {
            f"proxy old-sidecar-proxy up at {node.ip}:{port}",
            "leaf certificate of old",
        }, out
    finally:
        proxy.stop()
        node.put("/v1/agent/service/deregister/old")
        if stored.is_dir():
            stored.rmdir()


def test_pre_checks_a_host_with_no_agent_and_names_a_taken_port(mesh: Mesh) -> None:
    ip = mesh.node1.ip
    ports = {
        flag: free_port(ip) for flag in ("--http-port", "--dns-port", "--serf-port", "--rpc-port")
    }
    flags = [
        "--pre",
        "--data-dir",
        str(mesh.tmp / "fresh"),
        "--bind",
        ip,
        "--client",
        ip,
        "--encrypt",
        mesh.key,
        *(x for kv in ports.items() for x in (kv[0], str(kv[1]))),
    ]
    code, out = check(mesh.node1, *flags)
    assert code == 0, out
    assert marks(out)["data dir and its permissions"] == "✔" and "will be created" in out
    with socket.socket() as taken:
        taken.bind((ip, ports["--serf-port"]))
        taken.listen()
        code, out = check(mesh.node1, *flags)
    assert code == 1
    assert failing(out) == [f"serf port {ip}:{ports['--serf-port']}/tcp+udp"], out
    assert f"in use by pid {os.getpid()}" in out
    code, out = check(mesh.node1, *flags[:1], "--data-dir", str(mesh.node1.data_dir), *flags[3:])
    assert code == 1 and "in use by a running agent" in out, out


def test_usage_and_config_errors_exit_2_and_no_agent_exits_1() -> None:
    result = gossamer("check", "--pre", "--bind", "127.0.0.1")  # no data dir and not --dev
    assert "config error: config: data_dir: is required" in one_error_line(result, 2)
    result = gossamer("check", "--http-addr", DOWN)
    assert result.returncode == 1
    assert marks(result.stdout)["agent reachable"] == "✘"
