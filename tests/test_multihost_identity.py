"""Issue 10 on separate hosts: three agents with gossip encryption, and an attacker host.

Hosts 1-3 run a cluster with one gossip key: each enrols by the keyring and
shows the others' RPC identities valid. Host 4 is the attacker's machine:
- the outsider of issue 10 (no keyring, no certificate) sends plaintext
  agent-RPC frames, a digest and a push that would turn `web => db` into
  allow, to every agent: it reads not one byte and changes no decision;
- an agent with the wrong gossip key cannot join, so it never gets the
  mesh's root and makes a CA of its own (another mesh, as a host with the
  wrong keyring would); the certificate of that other mesh is then shown to
  an agent's RPC port with `openssl s_client`, and refused in the handshake.
Every refusal is counted by the agent, and the three keep syncing.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from gossamer.catalog.sync_protocol import encode
from tests.harness.binaries import cannot_run
from tests.harness.cli import gossamer
from tests.harness.cluster import AgentProc
from tests.harness.netns import Hosts, cleanup_leftovers, netns_available
from tests.harness.poll import eventually

pytestmark = pytest.mark.netns

MESH = (1, 2, 3)
ATTACKER = 4

# Sends every frame, then reads until the agent closes; prints how many bytes came back.
OUTSIDER = """
import socket, sys
data = bytes.fromhex(sys.argv[1])
got = 0
with socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=5) as s:
    s.sendall(data)
    try:
        while chunk := s.recv(65536):
            got += len(chunk)
    except (ConnectionResetError, TimeoutError):
        pass
print(got)
"""


@dataclass
class Net:
    hosts: Hosts
    agents: dict[int, AgentProc]


def identity(agent: AgentProc) -> dict[str, Any]:
    found: dict[str, Any] = agent.get("/v1/agent/self")["Gossamer"]["Identity"]
    return found


def allowed(agent: AgentProc, source: str, destination: str) -> bool:
    answer = agent.get(f"/v1/connect/intentions/check?source={source}&destination={destination}")
    return bool(answer["Allowed"])


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    ok, why = netns_available()
    if not ok:
        cannot_run(why)
    if shutil.which("openssl") is None:
        cannot_run("openssl is not installed (apt install openssl)")
    cleanup_leftovers()
    key = gossamer("keygen").stdout.strip()
    wrong = gossamer("keygen").stdout.strip()
    hosts = Hosts(ATTACKER, tmp_path_factory.mktemp("idhosts"))
    try:
        first = hosts.agent(1, "--encrypt", key).start()
        agents = {1: first}
        for i in MESH[1:]:
            agents[i] = hosts.agent(i, "--encrypt", key, "--join", first.serf_addr)
            agents[i].start(wait=False)
        agents[ATTACKER] = hosts.agent(ATTACKER, "--encrypt", wrong, "--retry-join", first.ip)
        agents[ATTACKER].start(wait=False)
        for i in MESH:  # h4 never gets ready: its retry-join never succeeds
            agents[i].wait_ready()
        for i in MESH:
            eventually(agents[i].enrolled, 30, what=f"h{i} to enrol by the keyring")
        yield Net(hosts, agents)
    finally:
        leftovers = hosts.close()
    assert not leftovers, f"processes left behind: {leftovers}"


def test_each_agent_enrols_by_the_keyring_and_sees_the_others_valid(net: Net) -> None:
    names = {f"h{i}" for i in MESH}
    for i in MESH:
        mine = identity(net.agents[i])
        assert (mine["Enrolment"], mine["Open"]) == ("gossip-keyring", False)
        assert mine["AgentCertificate"]["Valid"] is True

        def peers_valid(agent: AgentProc = net.agents[i]) -> bool:
            peers = identity(agent)["Peers"]
            return set(peers) == names and {p["State"] for p in peers.values()} == {"valid"}

        eventually(peers_valid, 30, what=f"h{i} to show h1-h3 valid (and no h4)")


def test_the_outsider_reads_nothing_and_turns_no_deny_into_allow(net: Net) -> None:
    a = net.agents[1]
    a.put("/v1/connect/intentions/exact?source=web&destination=db", {"Action": "deny"})
    for i in MESH:
        eventually(lambda i=i: net.agents[i].get("/v1/connect/intentions"), 15)
        assert not allowed(net.agents[i], "web", "db")
    future_ms = int(time.time() * 1000) + 1_000
    stamp = [future_ms, 0, "outsider"]
    entry = {"key": "web => db", "stamp": stamp, "deleted": False, "value": {"Action": "allow"}}
    push = {"t": "push", "dc": "dc1", "records": [], "lww": {"intentions": [entry]}}
    frames = encode({"t": "digest", "dc": "dc1", "digest": {}}) + encode(push)
    before = {i: identity(net.agents[i])["RpcRefusals"].get("not-tls", 0) for i in MESH}
    for i in MESH:
        agent = net.agents[i]
        done = net.hosts.run(
            ATTACKER, sys.executable, "-c", OUTSIDER, frames.hex(), agent.ip, str(agent.rpc_port)
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "0", f"h{i} answered the outsider: {done.stdout}"
    for i in MESH:
        agent = net.agents[i]
        eventually(
            lambda agent=agent, i=i: identity(agent)["RpcRefusals"].get("not-tls", 0) > before[i],
            10,
            what=f"h{i} to count the plaintext outsider",
        )
        assert not allowed(agent, "web", "db")
    net.agents[2].put("/v1/agent/service/register", {"Name": "after-attack", "Port": 1})
    for i in MESH:
        eventually(
            lambda i=i: "after-attack" in net.agents[i].get("/v1/catalog/services"),
            15,
            what=f"h{i} to keep syncing",
        )


def test_a_wrong_keyring_joins_nothing_and_its_own_meshs_certificate_is_refused(
    net: Net,
) -> None:
    rogue = net.agents[ATTACKER]
    mesh_root = net.agents[1].get("/v1/connect/ca/roots")["ActiveRootID"]
    for i in MESH:
        assert "h4" not in net.agents[i].members()
    # With no peer to answer it, the lone agent makes a CA of its own: another mesh.
    eventually(rogue.enrolled, 40, what="h4 to make its own CA and enrol in it")
    assert rogue.get("/v1/connect/ca/roots")["ActiveRootID"] != mesh_root
    target = net.agents[2]
    before = identity(target)["RpcRefusals"].get("unknown-issuer", 0)
    folder = rogue.data_dir / "identity"
    with open(folder / "agent.pem") as mine, open(folder / "intermediate.pem") as ca:
        (folder / "chain.pem").write_text(mine.read() + ca.read())
    shown = net.hosts.run(
        ATTACKER, "openssl", "s_client", "-connect", f"{target.ip}:{target.rpc_port}",
        "-tls1_3", "-cert", str(folder / "chain.pem"), "-key", str(folder / "agent-key.pem"),
        "-ign_eof", timeout=20,
    )  # fmt: skip
    assert "CONNECTED" in shown.stdout, shown.stderr  # it reached the port; TLS said no
    eventually(
        lambda: identity(target)["RpcRefusals"].get("unknown-issuer", 0) > before,
        10,
        what="h2 to refuse the other mesh's certificate",
    )
    assert "h4" not in identity(target)["Peers"]
