"""`gossamer check` against real agents and proxies, each failure made on purpose.

One mesh is shared by the module: three agents with gossip encryption, `db`
and `web` with running sidecars on the first; the second (with 10 s leaves)
runs `old`'s sidecar, whose line to its agent the fixture cuts at once, so
the leaf it holds has expired by the time its test asks (checks look at the asked agent's
own sidecars only, so the first stays healthy); the third is there to be
killed. A fourth agent joins, is revoked and pruned in its own test, and the
ACL case starts an agent of its own. Every test that breaks something puts
it back, so no test depends on another's order. The command runs as a subprocess once (the
healthy case, through the real entry point); the others call the same
`main()` in this process, which saves a Python start-up (~1-3 s here) each.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import ssl
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gossamer.agent.cli.main import main
from gossamer.agent.preflight.agent_probe import presented
from gossamer.gossip.keyring import generate_key
from gossamer.proxy.ca import keys
from gossamer.proxy.ca.profile import common_name, end_entity_builder, sign
from tests.ca_support import make_mesh
from tests.harness.cli import DOWN, gossamer
from tests.harness.cluster import AgentProc, Cluster, free_port, http_json
from tests.harness.poll import eventually
from tests.proxy_support import (
    App,
    ProxyProc,
    healthy_sidecars,
    register_pair,
    set_intention,
    sidecar,
    stop_mesh,
    wait_listening,
)


@dataclass
class Mesh:
    cluster: Cluster
    node1: AgentProc
    node2: AgentProc
    node3: AgentProc  # killed and brought back by the failed-member test
    key: str
    tmp: Path
    old_port: int  # the inbound port of `old`'s sidecar on node2, whose leaf cannot renew


def register_sidecar_only(node: AgentProc, name: str) -> int:
    """Register `name` with a sidecar on `node`; the sidecar's inbound port."""
    port = free_port(node.ip)
    node.put(
        "/v1/agent/service/register",
        {
            "Name": name,
            "ID": name,
            "Port": 1,
            "Address": node.ip,
            "Connect": {"SidecarService": {"Port": port, "Address": node.ip}},
        },
    )
    return port


class AgentLine:
    """A TCP relay between a sidecar and its agent, cut on purpose: the sidecar then keeps
    presenting the leaf it holds, which nobody renews for it. (The fixture once made the
    agent's leaf file a directory instead; an agent now serves a leaf it cannot store from
    memory, as Consul's keep leaves, so a disk no longer stops renewal: b0b53d7.)"""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
                agent = socket.create_connection(self.target, timeout=5)
            except OSError:
                return
            agent.settimeout(None)  # (blocking queries wait up to minutes)
            self.sockets += [client, agent]
            for a, b in ((client, agent), (agent, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, to: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                to.sendall(data)
        with contextlib.suppress(OSError):
            to.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        self.server.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


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
        node1 = c.new_agent("node1", "--encrypt", key).start()
        node2 = c.new_agent(
            "node2", "--encrypt", key, "--join", node1.serf_addr, "--config-file", str(config)
        )
        node3 = c.new_agent("node3", "--encrypt", key, "--join", node1.serf_addr)
        for agent in (node2, node3):
            agent.start(wait=False)
        for agent in (node1, node2, node3):
            agent.wait_ready()
            eventually(
                lambda a=agent: list(a.members().values()) == [1, 1, 1],
                15,
                what=f"{agent.name} to see all three alive",
            )
        for agent in (node1, node2):
            eventually(agent.enrolled, 20, what=f"{agent.name}'s certificate")
        apps.append(db_app := App("127.0.0.1").start())
        db_in, web_in = register_pair(node1, db_app.port, free_port("127.0.0.1"))
        set_intention(node1, "web", "db", "allow")
        old_in = register_sidecar_only(node2, "old")
        proxies += [db := sidecar(node1, tmp, "db"), web := sidecar(node1, tmp, "web")]
        line = AgentLine(node2.ip, node2.http_port)
        old = ProxyProc(["--sidecar-for", "old", "--http-addr", line.url], tmp / "proxy-old.log")
        proxies.append(old.start())
        wait_listening(node1.ip, db_in, db)
        wait_listening(node1.ip, web_in, web)
        wait_listening(node2.ip, old_in, old)
        line.cut()
        eventually(lambda: healthy_sidecars(node1, "db") == 1, 30, what="db's sidecar passing")
        yield Mesh(c, node1, node2, node3, key, tmp, old_in)
    finally:
        leftovers = stop_mesh(c, proxies, apps)
    assert not leftovers, f"processes left behind: {leftovers}"


def check_process(agent: AgentProc, *args: str) -> tuple[int, str]:
    result = gossamer("check", "--http-addr", agent.http, *args)
    assert not result.stderr, result.stderr
    return result.returncode, result.stdout


@pytest.fixture
def check(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str]]:
    """`gossamer check --http-addr AGENT ARGS` in this process: (exit code, stdout)."""

    def run(agent: AgentProc, *args: str) -> tuple[int, str]:
        capsys.readouterr()
        code = main(["check", "--http-addr", agent.http, *args])
        out, err = capsys.readouterr()
        assert not err, err
        return code, out

    return run


Check = Callable[..., tuple[int, str]]


def marks(out: str) -> dict[str, str]:
    """Each check's line by its mark: {"serf on PATH": "✔", ...} (the name before the colon)."""
    found = {}
    for line in out.splitlines():
        if line[:1] in "✔✘‼-" and line[1:2] == " ":
            found[line[2:].split(": ", 1)[0]] = line[0]
    return found


def failing(out: str) -> list[str]:
    return sorted(name for name, mark in marks(out).items() if mark == "✘")


def test_a_healthy_mesh_passes_and_json_says_the_same(mesh: Mesh, check: Check) -> None:
    code, out = check_process(mesh.node1)
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
    db_proxy = next(n for n in seen if n.startswith("proxy db-sidecar-proxy up at"))
    assert seen[db_proxy] != "✘" and "certificate of db" in out
    code, raw = check(mesh.node1, "--json")
    body = json.loads(raw)
    assert code == 0 and body["Success"] is True
    assert {c["Name"] for c in body["Checks"]} == set(seen)
    assert not [c for c in body["Checks"] if c["Status"] == "fail"]
    clock = mesh.node1.get("/v1/agent/clock")
    # a lost UDP answer makes a peer Missing (a warning); every peer is in one or the other
    assert set(clock["Offsets"]) | set(clock["Missing"]) == {"node2", "node3"}
    assert clock["Offsets"]
    assert all(abs(offset) < 1.0 for offset in clock["Offsets"].values())


def test_serf_missing_from_path_fails_that_line(
    mesh: Mesh, check: Check, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(mesh.tmp / "empty-bin"))
    code, out = check(mesh.node1)
    assert code == 1
    assert failing(out) == ["serf on PATH"], out
    assert "apt-get install serf" in out


def test_secrets_readable_by_others_fail_the_data_dir_line(mesh: Mesh, check: Check) -> None:
    key = mesh.node1.data_dir / "serf" / "rpc.json"  # serf's RPC auth key, written once
    key.chmod(0o644)
    try:
        code, out = check(mesh.node1)
    finally:
        key.chmod(0o600)
    assert code == 1
    assert failing(out) == ["data dir and its permissions"], out
    assert "serf/rpc.json (0644)" in out and "chmod go-rwx" in out


def test_a_failed_member_is_named_and_back_without_a_new_key_splits_the_keyring(
    mesh: Mesh, check: Check
) -> None:
    """node3 is killed (failed); a key installed meanwhile reaches only the alive members,
    so node3 comes back without it: the keyring differs until the key is removed again."""
    node1, node3, new_key = mesh.node1, mesh.node3, generate_key()
    assert node3.proc is not None
    node3.proc.send_signal(signal.SIGKILL)
    node3.proc.wait(10)
    try:
        eventually(lambda: node1.members().get("node3") == 4, 30, what="node3 failed")
        code, out = check(node1)
        assert code == 1
        assert failing(out) == ["cluster members"], out
        assert "failed: node3" in out
        # the hint's command reaches the agent that was checked, not the CLI's default
        assert f"gossamer force-leave NODE --http-addr {node1.http}`" in out, out
        http_json(f"{node1.http}/v1/operator/keyring", "POST", {"Key": new_key})
        node3.start()
        eventually(lambda: node1.members().get("node3") == 1, 30, what="node3 back")
        code, out = check(node1)
        assert code == 1
        assert failing(out) == ["gossip encryption and keyring"], out
        assert f"{new_key[:8]}… on 2 of 3" in out
    finally:
        http_json(f"{node1.http}/v1/operator/keyring", "DELETE", {"Key": new_key})
    code, out = check(node1)
    assert marks(out)["gossip encryption and keyring"] == "✔", out


def test_a_proxy_that_is_not_running_fails_its_line(mesh: Mesh, check: Check) -> None:
    """`api` is registered with a sidecar whose proxy was never started (the running
    proxies' ✔ is in the healthy test)."""
    node = mesh.node1
    port = register_sidecar_only(node, "api")
    try:
        code, out = check(node)
    finally:
        node.put("/v1/agent/service/deregister/api")
    assert code == 1
    assert failing(out) == [f"proxy api-sidecar-proxy up at {node.ip}:{port}"], out
    assert "Connection refused" in out
    assert "gossamer connect proxy --sidecar-for api" in out


def test_a_leaf_that_cannot_be_renewed_expires_and_fails(mesh: Mesh, check: Check) -> None:
    """The fixture cut `old`'s proxy from its agent: it keeps presenting the last leaf it
    got, which expires within its 10 s life. (The agent's own leaf for `old` is renewed:
    its line passes.)"""
    node, port = mesh.node2, mesh.old_port

    def expired() -> bool:
        not_after = presented(node.ip, port).not_after
        return not_after is not None and not_after < datetime.now(UTC)

    eventually(expired, 30, what="the leaf old's proxy presents to expire")
    code, out = check(node)
    assert code == 1 and "expired" in out
    assert set(failing(out)) == {f"proxy old-sidecar-proxy up at {node.ip}:{port}"}, out


def test_a_sidecar_port_held_by_another_mesh_s_proxy_fails_its_line(
    mesh: Mesh, check: Check, tmp_path: Path
) -> None:
    """Found by a review: a listener presenting a leaf that names the service but was not
    issued by this mesh passed as the service's proxy. Here the leaf carries this mesh's
    exact SPIFFE ID for `api` (trust domain, dc1), signed by another cluster's CA: only the
    chain tells them apart, as the proxy's peers would."""
    node = mesh.node1
    domain = node.get("/v1/agent/connect/ca/roots")["TrustDomain"]
    other = make_mesh(now=datetime.now(UTC) - timedelta(hours=1))
    key = keys.generate_key()
    uri = f"spiffe://{domain}/ns/default/dc/dc1/svc/api"
    leaf = sign(end_entity_builder(common_name("api"), key.public_key(), uri), other.intermediate,
                datetime.now(UTC) - timedelta(minutes=5), timedelta(hours=72))  # fmt: skip
    (tmp_path / "chain.pem").write_text(
        keys.certificate_pem(leaf) + keys.certificate_pem(other.intermediate.certificate)
    )
    (tmp_path / "key.pem").write_text(keys.private_key_pem(key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "chain.pem", tmp_path / "key.pem")
    listener = socket.create_server((node.ip, 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # the test closed the listener
            try:
                context.wrap_socket(conn, server_side=True).close()
            except (OSError, ssl.SSLError):
                conn.close()

    threading.Thread(target=serve, daemon=True).start()
    port = listener.getsockname()[1]
    node.put(
        "/v1/agent/service/register",
        {"Name": "api", "ID": "api", "Port": 1, "Address": node.ip,
         "Connect": {"SidecarService": {"Port": port, "Address": node.ip}}},
    )  # fmt: skip
    try:
        code, out = check(node)
    finally:
        node.put("/v1/agent/service/deregister/api")
        listener.close()
    assert code == 1
    assert failing(out) == [f"proxy api-sidecar-proxy up at {node.ip}:{port}"], out
    assert "its chain does not verify" in out
    assert "not issued by this mesh's CA: a stale proxy from another cluster" in out


def test_a_proxy_bound_on_its_bind_address_is_checked_there(mesh: Mesh, check: Check) -> None:
    """Found by a review: the check dialled the registration's `Address` (what peers dial,
    here an address nothing on this host listens on, as behind a NAT), while the proxy
    binds `Proxy.Config.bind_address` first."""
    node = mesh.node1
    port = free_port(node.ip)
    advertised = node.ip.rsplit(".", 1)[0] + ".200"
    node.put(
        "/v1/agent/service/register",
        {"Name": "pay", "ID": "pay", "Port": 1, "Address": node.ip,
         "Connect": {"SidecarService": {"Port": port, "Address": advertised,
                                        "Proxy": {"Config": {"bind_address": node.ip}}}}},
    )  # fmt: skip
    proxy = sidecar(node, mesh.tmp, "pay")
    try:
        wait_listening(node.ip, port, proxy)
        _, out = check(node)
    finally:
        proxy.stop()
        node.put("/v1/agent/service/deregister/pay")
    assert marks(out)[f"proxy pay-sidecar-proxy up at {node.ip}:{port}"] == "✔", out


def test_a_sidecar_counts_the_check_as_a_probe_not_a_failed_handshake(
    mesh: Mesh, check: Check
) -> None:
    """The check reads the certificates a sidecar presents and leaves before its own turn of
    the handshake: the sidecar counts a probe, as a TCP check. Each run counted a
    `no-certificate` refusal and logged it on every sidecar (found by a walkthrough)."""
    node = mesh.node1
    port, metrics = free_port(node.ip), f"127.0.0.1:{free_port('127.0.0.1')}"
    node.put(
        "/v1/agent/service/register",
        {"Name": "probed", "ID": "probed", "Port": 1, "Address": node.ip,
         "Connect": {"SidecarService": {"Port": port, "Address": node.ip, "Proxy": {
             "Config": {"gossamer_metrics_bind_addr": metrics}}}}},
    )  # fmt: skip
    proxy = sidecar(node, mesh.tmp, "probed")

    def inbound(name: str) -> float:
        with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=10) as response:
            lines = response.read().decode().splitlines()
        ours = [line for line in lines if line.startswith(f"gossamer_proxy_{name}{{")]
        return sum(float(line.rsplit(" ", 1)[1]) for line in ours if '"inbound"' in line)

    try:
        wait_listening(node.ip, port, proxy)
        _, out = check(node)
        assert marks(out)[f"proxy probed-sidecar-proxy up at {node.ip}:{port}"] == "✔", out
        assert inbound("tls_handshake_failures_total") == 0
        assert inbound("refused_total") == 0
        assert "refused" not in proxy.log()
    finally:
        proxy.stop()
        node.put("/v1/agent/service/deregister/probed")


def peer_state(agent: AgentProc, node: str) -> str:
    """What `agent` says of `node`'s RPC identity (`Gossamer.Identity.Peers`)."""
    peers = agent.get("/v1/agent/self")["Gossamer"]["Identity"]["Peers"]
    return str(peers.get(node, {}).get("State", ""))


def test_a_revoked_agent_force_left_no_longer_fails_the_identity_line(
    mesh: Mesh, check: Check
) -> None:
    """Found by a review: the line's own hint (`gossamer force-leave`) leaves the revoked
    node listed as left, and the line kept failing. A fourth agent is revoked here (killed
    first, as a compromised host would be), and pruned at the end."""
    node1 = mesh.node1
    node4 = mesh.cluster.new_agent("node4", "--encrypt", mesh.key, "--join", node1.serf_addr)
    node4.start()
    try:
        eventually(lambda: peer_state(node1, "node4") == "valid", 30, what="node4 enrolled")
        assert node4.proc is not None
        node4.proc.send_signal(signal.SIGKILL)
        node4.proc.wait(10)
        eventually(lambda: node1.members().get("node4") == 4, 30, what="node4 failed")
        node1.put("/v1/connect/ca/revoke-agent/node4", {"Reason": "compromised"})
        eventually(lambda: peer_state(node1, "node4") == "revoked", 10, what="node4 revoked")
        code, out = check(node1)
        assert marks(out)["agent-RPC identity valid"] == "✘" and "node4 (revoked)" in out, out
        node1.put("/v1/agent/force-leave/node4")
        eventually(lambda: node1.members().get("node4") == 3, 30, what="node4 left")
        code, out = check(node1)
        assert code == 0, out
        assert "1 that left not judged" in out
        assert marks(out)["agent-RPC identity valid"] == "✔", out
    finally:
        if node4.proc is not None and node4.proc.poll() is None:
            node4.proc.kill()
            node4.proc.wait(10)
        http_json(f"{node1.http}/v1/agent/force-leave/node4?prune", "PUT")
        eventually(lambda: "node4" not in node1.members(), 30, what="node4 pruned")


MANAGEMENT = "8a1f3c2e-0000-4000-8000-00000000beef"


def test_under_acls_the_check_says_what_the_token_lacks(tmp_path: Path, check: Check) -> None:
    """Found by a review: with ACLs on, a 403 got "start the agent", and a token that can
    read the agent but not its nodes or services passed "0 alive" and checked no sidecar.
    `api`'s sidecar is registered and not running: a ✘ only a full view shows."""
    config = tmp_path / "acl.yaml"
    config.write_text(
        "acl:\n  enabled: true\n  default_policy: deny\n"
        f"  tokens:\n    initial_management: {MANAGEMENT}\n"
    )
    cluster = Cluster(tmp_path)
    agent = cluster.new_agent("acl1", "--config-file", str(config))
    agent.token = MANAGEMENT
    try:
        agent.start()
        port = register_sidecar_only(agent, "api")
        code, out = check(agent)
        assert code == 1 and marks(out)["agent reachable"] == "✘", out
        assert "start the agent" not in out and "--token" in out and "GOSSAMER_HTTP_TOKEN" in out
        rules = 'agent_prefix "" { policy = "read" }'
        agent.put("/v1/acl/policy", {"Name": "agent-read", "Rules": rules})
        body: dict[str, Any] = {"Description": "monitor", "Policies": [{"Name": "agent-read"}]}
        monitor = agent.put("/v1/acl/token", body)["SecretID"]
        code, out = check(agent, "--token", monitor)
        seen = marks(out)
        assert code == 1
        assert seen["cluster members"] == "✘", out
        assert "cannot see the members: the token lacks node:read" in out
        assert seen["local services listed"] == "✘" and "0 of 2 listed" in out, out
        code, out = check(agent, "--token", MANAGEMENT)
        seen = marks(out)
        assert seen["cluster members"] == "✔" and seen["local services listed"] == "✔", out
        assert seen[f"proxy api-sidecar-proxy up at {agent.ip}:{port}"] == "✘", out
    finally:
        leftovers = cluster.close()
    assert not leftovers, leftovers


def test_pre_checks_a_host_with_no_agent_and_names_a_taken_port(mesh: Mesh, check: Check) -> None:
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


def test_usage_and_config_errors_exit_2_and_no_agent_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check", "--pre", "--bind", "127.0.0.1"]) == 2  # no data dir, not --dev
    out, err = capsys.readouterr()
    assert err.splitlines() == [
        "gossamer check: config error: config: data_dir: is required; "
        "set data_dir in a config file or pass --data-dir (or use --dev)"
    ]
    assert main(["check", "--http-addr", DOWN]) == 1
    out, err = capsys.readouterr()
    assert marks(out)["agent reachable"] == "✘" and "gossamer check --pre" in out


def test_an_agent_not_ready_yet_skips_the_checks_after_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A stand-in agent (an HTTP server on a real socket, answering /v1/agent/self as an
    agent still waiting to join does) and nothing else: the line says so, and the checks
    that need a ready agent are skipped rather than failed one by one."""
    body = json.dumps({
        "Config": {"NodeName": "n1"}, "Gossamer": {"Ready": False},
        "DebugConfig": {"DataDir": "/nonexistent", "BindAddr": "127.0.0.1", "HTTPPort": 1,
                        "DNSPort": 2, "SerfPortLAN": 3, "ServerPort": 4}}).encode()  # fmt: skip

    class Self(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path.startswith("/v1/agent/self")
            self.send_response(200 if found else 500)
            self.send_header("Content-Length", str(len(body) if found else 0))
            self.end_headers()
            self.wfile.write(body if found else b"")

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Self)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        code = main(["check", "--http-addr", f"127.0.0.1:{server.server_address[1]}"])
    finally:
        server.shutdown()
    out, _ = capsys.readouterr()
    assert code == 1
    seen = marks(out)
    assert seen["agent reachable"] == "✘" and "not ready yet" in out, out
    for later in ("DNS answering", "cluster members", "clock offset"):
        assert later not in seen, out
    assert seen["the other checks"] == "-", out
