"""The mesh CA across real agents (each with its real serf child) on loopback.

Roots and leaves are checked as a client would: through the HTTP API (and
py-consul, and the CLI), verified with proxy/ca/verify.py AND with
`openssl verify`. Agents that must renew or retire something within a test
run with the test-only `test_leaf_cert_ttl` (10 s): leaves renew 4.5-6 s
after issue, and a retired root stays trusted 20 s. Convergence is polled
with deadlines, never slept for.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import consul
import pytest

from gossamer.intentions.spiffe import ServiceId
from gossamer.proxy.ca.errors import CertificateError
from gossamer.proxy.ca.verify import load_pem_chain, verify_chain
from tests.harness.binaries import find_binary, require
from tests.harness.cli import gossamer
from tests.harness.cluster import AgentProc, Cluster, http_json
from tests.harness.poll import eventually

SHORT_TTL = "test_leaf_cert_ttl: 10s\n"


def register(agent: AgentProc, name: str) -> None:
    agent.put("/v1/agent/service/register", {"Name": name, "Port": 8080})


def leaf(agent: AgentProc, service: str) -> dict[str, Any]:
    found: dict[str, Any] = agent.get(f"/v1/agent/connect/ca/leaf/{service}")
    return found


def blocking_leaf(agent: AgentProc, service: str, index: int) -> tuple[dict[str, Any], int]:
    """GET the leaf as a blocking query from `index`: its body and X-Consul-Index."""
    url = f"{agent.http}/v1/agent/connect/ca/leaf/{service}?index={index}&wait=30s"
    with urllib.request.urlopen(url, timeout=45) as resp:
        return json.loads(resp.read()), int(resp.headers["X-Consul-Index"])


def bundle(agent: AgentProc) -> list[Any]:
    roots = agent.get("/v1/agent/connect/ca/roots")["Roots"]
    return [load_pem_chain(r["RootCert"])[0] for r in roots]


def cross_signed(agent: AgentProc) -> list[Any]:
    roots = agent.get("/v1/connect/ca/roots")["Roots"]
    return [c for r in roots for pem in r["IntermediateCerts"] or [] for c in load_pem_chain(pem)]


def verify(body: dict[str, Any], roots: list[Any], extra: list[Any] = ()) -> str:  # type: ignore[assignment]
    chain = load_pem_chain(body["CertPEM"])
    found = verify_chain(chain[0], [*chain[1:], *extra], roots, datetime.now(UTC)).identity
    assert isinstance(found, ServiceId)
    return found.service


def openssl_verify(tmp: Path, body: dict[str, Any], agent: AgentProc) -> None:
    require("openssl")
    chain = load_pem_chain(body["CertPEM"])
    pems = body["CertPEM"].split("-----END CERTIFICATE-----\n")
    (tmp / "leaf.pem").write_text(pems[0] + "-----END CERTIFICATE-----\n")
    (tmp / "intermediate.pem").write_text("-----END CERTIFICATE-----\n".join(pems[1:]))
    roots = agent.get("/v1/connect/ca/roots")["Roots"]
    (tmp / "roots.pem").write_text("".join(r["RootCert"] for r in roots))
    assert len(chain) == 2
    openssl = find_binary("openssl")
    assert openssl is not None
    result = subprocess.run(
        [openssl, "verify", "-CAfile", str(tmp / "roots.pem"),
         "-untrusted", str(tmp / "intermediate.pem"), str(tmp / "leaf.pem")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0 and "leaf.pem: OK" in result.stdout, result.stdout + result.stderr


def short_ttl_agent(cluster: Cluster, name: str, *extra: str) -> AgentProc:
    config = cluster.root / f"{name}.yaml"
    config.write_text(SHORT_TTL)
    return cluster.new_agent(name, "--config-file", str(config), *extra)


# --- one agent --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def solo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    c = Cluster(tmp_path_factory.mktemp("ca-solo"))
    try:
        (agent,) = c.start(1, prefix="ca")
        register(agent, "web")
        yield agent
    finally:
        leftovers = c.close()
    assert not leftovers, f"processes left behind: {leftovers}"


def test_a_lone_agent_serves_roots_and_a_leaf_that_verify(solo: AgentProc, tmp_path: Path) -> None:
    roots = eventually(lambda: solo.get("/v1/connect/ca/roots")["Roots"], 10, what="a CA root")
    assert len(roots) == 1 and roots[0]["Active"]
    body = leaf(solo, "web")
    assert verify(body, bundle(solo)) == "web"
    assert body["ServiceURI"].endswith("/ns/default/dc/dc1/svc/web")
    openssl_verify(tmp_path, body, solo)
    with urllib.request.urlopen(f"{solo.http}/v1/connect/ca/roots?pem=true", timeout=10) as resp:
        assert resp.read().decode() == roots[0]["RootCert"]  # Consul's ?pem=true
    identity = solo.get("/v1/agent/self")["Gossamer"]["Identity"]
    assert identity["Open"] is True and identity["AgentCertificate"]["Valid"] is True


def test_a_leaf_is_refused_for_a_service_not_registered_here(solo: AgentProc) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        leaf(solo, "db")
    assert refused.value.code == 403
    assert refused.value.read().decode().strip() == "service 'db' is not registered on this agent"


def test_py_consul_reads_roots_and_configuration(solo: AgentProc) -> None:
    client = consul.Consul(host=solo.ip, port=solo.http_port)
    roots = client.connect.ca.roots()
    assert roots["ActiveRootID"] == roots["Roots"][0]["ID"]
    assert roots["TrustDomain"].endswith(".consul")
    config = client.connect.ca.configuration()
    assert config["Provider"] == "consul" and config["Config"]["LeafCertTTL"] == "72h0m0s"
    assert "PrivateKey" not in config["Config"]


def test_the_ca_cli(solo: AgentProc) -> None:
    addr = ("--http-addr", f"{solo.ip}:{solo.http_port}")
    shown = gossamer("ca", "leaf", "web", *addr)
    assert shown.returncode == 0, shown.stderr
    assert "/svc/web" in shown.stdout and "Renewal" in shown.stdout
    as_json = gossamer("ca", "roots", "--json", *addr)
    assert (
        as_json.returncode == 0
        and solo.get("/v1/connect/ca/roots")["ActiveRootID"] in as_json.stdout
    )
    for args, says in (
        (("ca", "leaf", "db"), "not registered on this agent"),
        (("ca", "leaf", "we~b"), "may hold only"),
        (("ca", "init"), "rotate it instead"),
        (("ca", "rotate", "--root-cert", "/nonexistent"), "go together"),
        (("ca", "rotate", "--root-cert", "/nonexistent", "--private-key", "/x"), "cannot read"),
        (("ca", "revoke-agent", "no-such-node"), "unknown node: no-such-node"),
    ):
        result = gossamer(*args, *addr)
        assert result.returncode == 2 and says in result.stderr, (args, result.stderr)


def test_revoking_an_agent_is_listed(solo: AgentProc) -> None:
    addr = ("--http-addr", f"{solo.ip}:{solo.http_port}")
    done = gossamer("ca", "revoke-agent", solo.name, "--reason", "test", *addr)
    assert done.returncode == 0, done.stderr
    node_id = solo.get("/v1/agent/self")["Config"]["NodeID"]
    revoked = solo.get("/v1/connect/ca/revoked")
    assert [(r["Node"], r["NodeID"], r["Reason"]) for r in revoked] == [
        (solo.name, node_id, "test")
    ]


def test_a_join_token_too_short_is_a_config_error_naming_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(
        "join_token: too-short\n"
        "connect:\n  ca_config:\n    root_cert: not a pem\n    private_key: nor this\n"
    )
    result = gossamer("agent", "--dev", "--node", "x", "--config-file", str(config))
    assert result.returncode == 2
    assert f"{config}: join_token: must be a string of at least 16 characters" in result.stderr
    assert f"{config}: connect.ca_config: PrivateKey: not a PEM private key" in result.stderr
    assert "too-short" not in result.stderr  # a secret is never echoed


# --- durability -------------------------------------------------------------------------------


def test_kill_9_right_after_a_leaf_is_served_keeps_that_leaf(cluster: Cluster) -> None:
    (agent,) = cluster.start(1, prefix="k9")
    register(agent, "api")
    served = leaf(agent, "api")
    assert agent.proc is not None
    agent.proc.send_signal(signal.SIGKILL)  # right after the 200
    agent.proc.wait(10)
    agent.start()
    again = leaf(agent, "api")
    assert (again["SerialNumber"], again["PrivateKeyPEM"]) == (
        served["SerialNumber"], served["PrivateKeyPEM"],
    )  # fmt: skip


# --- several agents ---------------------------------------------------------------------------


def test_racing_agents_converge_on_one_root_and_trust_each_others_leaves(cluster: Cluster) -> None:
    agents = [cluster.new_agent(f"race{i}") for i in range(1, 4)]
    for agent in agents:  # no join targets: each makes a root at once, a real race
        agent.start(wait=False)
    for agent in agents:
        agent.wait_ready()
    first = {a.name: a.get("/v1/connect/ca/roots")["ActiveRootID"] for a in agents}
    assert len(set(first.values())) == 3, first  # three meshes, three roots: they raced
    for agent in agents[1:]:
        http_json(f"{agent.http}/v1/agent/join/{agents[0].serf_addr}", "PUT")

    def one_root() -> str:
        ids = {a.get("/v1/connect/ca/roots")["ActiveRootID"] for a in agents}
        assert len(ids) == 1, ids
        return ids.pop()

    winner = eventually(one_root, 20, what="every agent to trust one root")
    assert winner in first.values()
    for agent in agents:
        register(agent, f"svc-{agent.name}")

    def cross_verified() -> bool:
        for issuer in agents:
            body = leaf(issuer, f"svc-{issuer.name}")
            for checker in agents:
                assert verify(body, bundle(checker)) == f"svc-{issuer.name}"
        return True

    eventually(cross_verified, 15, what="every leaf to verify against every agent's bundle")


def test_the_agent_that_made_the_ca_dies_and_the_others_still_issue_and_renew(
    cluster: Cluster,
) -> None:
    maker = short_ttl_agent(cluster, "mk1").start()
    others = [short_ttl_agent(cluster, f"mk{i}", "--join", maker.serf_addr) for i in (2, 3)]
    for agent in others:
        agent.start()
    root = maker.get("/v1/connect/ca/roots")["ActiveRootID"]
    for agent in others:
        eventually(lambda a=agent: a.get("/v1/connect/ca/roots")["ActiveRootID"] == root, 20,
                   what=f"{agent.name} to learn the root")  # fmt: skip
        register(agent, "web")
        leaf(agent, "web")
    assert maker.proc is not None
    maker.proc.send_signal(signal.SIGKILL)
    maker.proc.wait(10)
    for agent in others:
        before, index = blocking_leaf(agent, "web", 0)
        register(agent, "fresh")
        assert verify(leaf(agent, "fresh"), bundle(agent)) == "fresh"  # issued with the maker gone
        started = time.monotonic()
        body, _ = blocking_leaf(agent, "web", index)  # returns when the leaf is renewed
        assert body["SerialNumber"] != before["SerialNumber"]
        assert time.monotonic() - started < 15  # renewed at 45-60 % of 10 s, not at the wait
        for checker in others:
            assert verify(body, bundle(checker)) == "web"


def test_rotation_old_and_new_leaves_verify_during_the_overlap_only_new_after(
    cluster: Cluster,
) -> None:
    a = short_ttl_agent(cluster, "rot1").start()
    b = short_ttl_agent(cluster, "rot2", "--join", a.serf_addr).start()
    old_root = a.get("/v1/connect/ca/roots")["ActiveRootID"]
    eventually(lambda: b.get("/v1/connect/ca/roots")["ActiveRootID"] == old_root, 20)
    register(a, "web")
    register(b, "db")
    old = [leaf(a, "web"), leaf(b, "db")]
    config = a.get("/v1/connect/ca/configuration")
    assert a.put("/v1/connect/ca/configuration", {**config, "ForceRotate": True}) is True
    new_root = a.get("/v1/connect/ca/roots")["ActiveRootID"]
    assert new_root != old_root

    def overlap() -> list[dict[str, Any]]:
        fresh = [leaf(a, "web"), leaf(b, "db")]
        assert all(f["SerialNumber"] != o["SerialNumber"] for f, o in zip(fresh, old, strict=True))
        for agent in (a, b):
            assert agent.get("/v1/connect/ca/roots")["ActiveRootID"] == new_root
            for body in [*old, *fresh]:  # no verification fails during the overlap
                verify(body, bundle(agent), cross_signed(agent))
        return fresh

    eventually(overlap, 15, what="new leaves on both agents, old and new trusted")

    def retired() -> bool:
        roots = [r["ID"] for r in b.get("/v1/connect/ca/roots")["Roots"]]
        assert roots == [new_root], roots
        return True

    eventually(retired, 40, interval=0.5, what="the old root to leave the bundle")
    for body in old:
        with pytest.raises(CertificateError):
            verify(body, bundle(b), cross_signed(b))
    for body in (leaf(a, "web"), leaf(b, "db")):
        verify(body, bundle(b))


def test_enrolment_by_gossip_keyring_and_refusal_of_a_wrong_join_token(
    cluster: Cluster,
) -> None:
    key = gossamer("keygen").stdout.strip()
    a = cluster.new_agent("gk1", "--encrypt", key).start()
    b = cluster.new_agent("gk2", "--encrypt", key, "--join", a.serf_addr).start()
    root = a.get("/v1/connect/ca/roots")["ActiveRootID"]
    eventually(lambda: b.get("/v1/connect/ca/roots")["ActiveRootID"] == root, 20)
    register(b, "web")
    body = eventually(lambda: leaf(b, "web"), 10, what="gk2 to enrol with the keyring")
    assert verify(body, bundle(a)) == "web"
    identity = b.get("/v1/agent/self")["Gossamer"]["Identity"]
    assert (identity["Enrolment"], identity["Open"]) == ("gossip-keyring", False)

    right, wrong = cluster.root / "right.yaml", cluster.root / "wrong.yaml"
    right.write_text("join_token: the right token, long enough\n")
    wrong.write_text("join_token: a wrong token, also long enough\n")
    c = cluster.new_agent("tk1", "--config-file", str(right)).start()
    d = cluster.new_agent("tk2", "--config-file", str(wrong), "--join", c.serf_addr).start()
    eventually(
        lambda: "cannot enrol: no seal of the CA key offered by" in d.log_path.read_text(), 20
    )
    register(d, "db")
    with pytest.raises(urllib.error.HTTPError) as refused:  # no root it can open, none made
        leaf(d, "db")
    assert refused.value.code == 503
    assert d.get("/v1/agent/self")["Gossamer"]["Identity"]["AgentCertificate"]["Valid"] is False
    assert d.get("/v1/connect/ca/roots")["Roots"] in ([], None)  # it did not make a CA of its own
