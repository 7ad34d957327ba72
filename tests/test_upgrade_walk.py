"""A rolling upgrade: this version's agents, sidecars and CLI beside the previous release's.

The previous release (`tests/harness/old_release.py`, commit 8fb720d) runs
from an export of its tree. Each test puts one piece of each version
together and checks what an operator upgrading one host at a time relies
on: each side takes what the other writes, and a sidecar or CLI of either
version works against an agent of the other.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from gossamer.agent.replicated.config_entry_store import ConfigEntryStore
from gossamer.catalog import lww
from gossamer.catalog.hlc import Timestamp
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.model import Check
from gossamer.catalog.store import CatalogStore
from gossamer.catalog.wire import record_from_wire, record_to_wire
from gossamer.proxy.ca.record_signature import BadRecordSignature, verify_record
from tests.harness.cluster import AgentProc, Cluster, free_port, put_exact
from tests.harness.identity import Mesh
from tests.harness.old_release import old_env, old_release
from tests.harness.poll import eventually
from tests.harness.replication import node_record, owner_signer
from tests.proxy_support import App, ProxyProc, register_pair, roundtrip


@pytest.fixture(scope="module")
def old_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return old_release(tmp_path_factory.mktemp("old-release"))


def test_a_new_sidecar_on_an_old_agent_opens_its_upstream_at_once(
    cluster: Cluster, tmp_path: Path, old_path: Path
) -> None:
    """The old agent answers 400 to `/v1/config/service-resolver` (it holds no such kind).
    The sidecar took that for "not known yet": each upstream waited out its 10 s warm-up
    and said its split was not resolved. Now the 400 reads as "no resolvers": the upstream
    opens once its instances are known, with no such warning, and traffic flows."""
    agent = cluster.new_agent("old")
    agent.env = old_env(old_path)
    agent.start()
    eventually(agent.enrolled, 20, what="the agent's certificate")
    app = App("127.0.0.1").start()
    up = free_port("127.0.0.1")
    register_pair(agent, app.port, up)
    put_exact(agent, "web", "db", {"Action": "allow"})
    proxies = [
        ProxyProc(["--sidecar-for", sid, "--http-addr", agent.http], tmp_path / f"{sid}.log")
        for sid in ("db", "web")
    ]
    try:
        for proxy in proxies:
            proxy.start()
        eventually(
            lambda: roundtrip(("127.0.0.1", up), b"ping") == b"ping<eof>",
            30,
            what=f"traffic through web's upstream; log:\n{proxies[1].log()[-2000:]}",
        )
        log = proxies[1].log()
        assert "not resolved" not in log, log
        assert "an agent older than this proxy" in log, log
    finally:
        for proxy in proxies:
            proxy.stop()
        app.stop()


def _config_store(tmp_path: Path, node: str) -> ConfigEntryStore:
    clock = iter(range(1_700_000_000_000, 1_800_000_000_000, 10))
    db = CatalogStore.open(tmp_path / f"{node}.db")
    catalog = LiveCatalog("dc1", db, wall_ms=lambda: 1_000)
    return ConfigEntryStore(db, node=node, wall_ms=lambda: next(clock), notify=catalog.touch)


def test_a_config_entry_of_a_later_kind_is_kept_and_passed_on_not_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A release after this one will hold kinds this one does not (as this one holds
    service-resolver, which 8fb720d refused at the key: every anti-entropy round offered
    it again and the old agent logged a refusal each time, for as long as it ran). This
    version keeps such an entry in its map, so its digest agrees with the newer peer's
    and the entry reaches peers through it, and serves it nowhere."""
    newer = lww.Entry(
        Timestamp(1_700_000_000_000, 0, "newer"),
        {"Kind": "ingress-gateway", "Name": "web", "Listeners": [{"Port": 8080}]},
    )
    here, further = _config_store(tmp_path, "here"), _config_store(tmp_path, "further")
    assert here.absorb([("ingress-gateway/web", newer)]) == ["ingress-gateway/web"]
    assert "refusing" not in caplog.text
    assert here.get("ingress-gateway", "web") is None  # not served
    assert here.snapshot().entries.entries == {"ingress-gateway/web": newer}
    passed_on = list(here.snapshot().entries.entries.items())
    assert further.absorb(passed_on) == ["ingress-gateway/web"]
    assert here.absorb([("not a key", newer)]) == []  # still refused: no kind/name shape


MANAGEMENT = "5d0c9a1e-7b3f-4e2a-9c61-0f8e2d4b6a13"


def _acl_config(tmp_path: Path) -> str:
    config = tmp_path / "acl.yaml"
    config.write_text(
        "acl:\n  enabled: true\n  default_policy: deny\n"
        f"  tokens:\n    initial_management: {MANAGEMENT}\n"
    )
    return str(config)


def allow(agent: AgentProc, source: str, destination: str) -> None:
    query = f"source={source}&destination={destination}"
    assert agent.put(f"/v1/connect/intentions/exact?{query}", {"Action": "allow"}) is True


def _write_each_kind(agent: AgentProc) -> None:
    """A service with a passing check, an intention, a config entry and a token, all named
    for `agent`."""
    name = agent.name
    agent.put("/v1/agent/service/register", {"Name": f"svc-{name}", "Port": 80,
              "Check": {"CheckID": f"ttl-{name}", "TTL": "60s"}})  # fmt: skip
    agent.put(f"/v1/agent/check/pass/ttl-{name}")
    allow(agent, f"src-{name}", "dst")
    agent.put("/v1/config", {"Kind": "service-defaults", "Name": f"sd-{name}", "Protocol": "http"})
    agent.put("/v1/acl/token", {"Description": f"tok-{name}", "Policies": []})


def _sees_all(agent: AgentProc, names: list[str]) -> bool:
    services = set(agent.get("/v1/catalog/services"))
    passing = {c["CheckID"] for c in agent.get("/v1/health/state/passing")}
    sources = {i["SourceName"] for i in agent.get("/v1/connect/intentions")}
    entries = {e["Name"] for e in agent.get("/v1/config/service-defaults")}
    tokens = {t["Description"] for t in agent.get("/v1/acl/tokens")}
    return all(
        f"svc-{n}" in services and f"ttl-{n}" in passing and f"src-{n}" in sources
        and f"sd-{n}" in entries and f"tok-{n}" in tokens
        for n in names
    )  # fmt: skip


def test_old_and_new_agents_in_one_cluster_take_each_others_writes(
    cluster: Cluster, tmp_path: Path, old_path: Path
) -> None:
    """Two agents of the previous release and one of this: registrations, health,
    intentions, config entries and ACL tokens written on any of them reach all. A
    service-resolver written on the new agent is refused by the old ones (they hold no
    such kind, and say so in their log) without holding up what comes after it: a
    service-defaults entry written next still reaches them. Upgraded, an old agent takes
    the resolver."""
    config = _acl_config(tmp_path)
    agents = []
    for name, env in (("old1", old_env(old_path)), ("old2", old_env(old_path)), ("new3", None)):
        join = ["--join", agents[0].serf_addr] if agents else []
        agent = cluster.new_agent(name, "--config-file", config, *join)
        agent.env, agent.token = env, MANAGEMENT
        agents.append(agent.start())
    for agent in agents:
        eventually(agent.enrolled, 20, what=f"{agent.name}'s certificate")
    names = [a.name for a in agents]
    for agent in agents:
        _write_each_kind(agent)
    new = agents[2]
    new.put("/v1/config", {"Kind": "service-resolver", "Name": "db", "ConnectTimeout": "3s"})
    new.put("/v1/config", {"Kind": "service-defaults", "Name": "sd-after", "Protocol": "tcp"})
    for agent in agents:
        eventually(lambda a=agent: _sees_all(a, names), 20, what=f"{agent.name} to see all")
        eventually(lambda a=agent: "sd-after" in {e["Name"] for e in
                   a.get("/v1/config/service-defaults")}, 20)  # fmt: skip
    assert [e["Name"] for e in new.get("/v1/config/service-resolver")] == ["db"]
    upgraded = agents[0]  # it said why it has no resolver; once upgraded, it takes it
    eventually(lambda: "key 'service-resolver/db'" in upgraded.log_tail(400), 10)
    upgraded.stop()
    upgraded.env, upgraded.proc = None, None
    upgraded.extra += ["--join", new.serf_addr]  # (it left: its serf snapshot rejoins no one)
    upgraded.start()
    eventually(lambda: [e["Name"] for e in upgraded.get("/v1/config/service-resolver")] == ["db"],
               20, what="the upgraded agent to hold the resolver")  # fmt: skip


def test_an_agent_upgraded_in_place_keeps_everything_and_its_sidecars_keep_working(
    cluster: Cluster, tmp_path: Path, old_path: Path
) -> None:
    """An agent of the previous release with two sidecars (of that release) and one of
    each kind of state is stopped and started with this version on the same data dir:
    services, checks, intentions, config entries, tokens, roots, the leaf (same serial)
    and the node id are all there, and the sidecars carried traffic throughout. Rolled
    back to the previous release, it says which registration it cannot read (an Expose
    path it does not know) and keeps the rest; upgraded again, that one is back."""
    agent = cluster.new_agent("a", "--config-file", _acl_config(tmp_path))
    agent.env, agent.token = old_env(old_path), MANAGEMENT
    agent.start()
    eventually(agent.enrolled, 20, what="the agent's certificate")
    _write_each_kind(agent)
    app = App("127.0.0.1").start()
    up = free_port("127.0.0.1")
    register_pair(agent, app.port, up)
    allow(agent, "web", "db")
    args = ["--http-addr", agent.http, "--token", MANAGEMENT]
    proxies = [
        ProxyProc(["--sidecar-for", sid, *args], tmp_path / f"{sid}.log") for sid in ("db", "web")
    ]
    for proxy in proxies:
        proxy.proc = subprocess.Popen(
            [sys.executable, "-m", "gossamer.agent", "connect", "proxy", *proxy.args],
            stdout=proxy.log_path.open("ab"), stderr=subprocess.STDOUT,
            env=old_env(old_path), start_new_session=True,
        )  # fmt: skip

    def flows() -> bool:
        return roundtrip(("127.0.0.1", up), b"ping") == b"ping<eof>"

    def state() -> dict[str, Any]:
        return {
            "self": agent.get("/v1/agent/self")["Config"]["NodeID"],
            "services": sorted(agent.get("/v1/agent/services")),
            "checks": sorted((k, c["Status"]) for k, c in agent.get("/v1/agent/checks").items()),
            "leaf": agent.get("/v1/agent/connect/ca/leaf/web")["SerialNumber"],
            "roots": sorted(r["ID"] for r in agent.get("/v1/connect/ca/roots")["Roots"]),
            "intentions": sorted(i["SourceName"] for i in agent.get("/v1/connect/intentions")),
            "entries": sorted(e["Name"] for e in agent.get("/v1/config/service-defaults")),
            "tokens": sorted(t["Description"] for t in agent.get("/v1/acl/tokens")),
        }

    try:
        eventually(flows, 30, what="traffic through the old sidecars")
        before = state()

        def restart(env: dict[str, str] | None) -> None:
            agent.stop()
            assert flows()  # the sidecars carry on with what they had
            agent.env, agent.proc = env, None
            agent.start()

        # (polled: right after a start a check may still be on its way back to the status
        # it had; what is lost stays lost, and the wait times out)
        restart(None)  # this version
        eventually(lambda: state() == before, 10, what="the same state after the upgrade")
        eventually(flows, 10, what="traffic after the upgrade")
        path = {"Path": "/metrics", "LocalPathPort": 8080, "ListenerPort": 21600}
        sidecar = {"Proxy": {"Expose": {"Paths": [path]}}}
        exposed = {"Name": "exp", "Port": 8080, "Connect": {"SidecarService": sidecar}}
        agent.put("/v1/agent/service/register", exposed)
        restart(old_env(old_path))  # rolled back
        assert "stored service exp no longer parses, skipped: " in agent.log_tail(200)
        eventually(lambda: state() == before, 10, what="the same state after the rollback")
        restart(None)
        assert {"exp", "exp-sidecar-proxy"} <= set(agent.get("/v1/agent/services"))
        eventually(flows, 10, what="traffic after all that")
    finally:
        for proxy in proxies:
            proxy.stop()
        app.stop()


_RELAY = """
import json, sys
from gossamer.catalog.wire import record_from_wire, record_to_wire
print(json.dumps(record_to_wire(record_from_wire(json.load(sys.stdin)))))
"""


def test_a_record_relayed_by_an_old_agent_is_refused_saying_why(old_path: Path) -> None:
    """A check exposed through its sidecar carries `exposed_port` on the wire; the previous
    release reads the record without it and relays it so. The owner's signature then fails
    (README: the record still arrives from its owner), and the refusal now says that an
    older relaying agent is the likely cause, not only that the signature does not match."""
    mesh = Mesh()
    check = Check("h", "web health", "passing", service_id="web", service_name="web",
                  type="http", exposed_port=21500)  # fmt: skip
    record = owner_signer(mesh)(replace(node_record("n", 3, "web"), checks=(check,)))
    relayed = subprocess.run(
        [sys.executable, "-c", _RELAY],
        input=json.dumps(record_to_wire(record)),
        capture_output=True, text=True, timeout=60, env=old_env(old_path), check=True,
    )  # fmt: skip
    back = record_from_wire(json.loads(relayed.stdout))
    assert back.checks[0].exposed_port == 0 and back.signed == record.signed
    with pytest.raises(BadRecordSignature, match="an agent older than its owner drops"):
        verify_record(back, mesh.bundle, mesh.now)
    verify_record(record_from_wire(record_to_wire(record)), mesh.bundle, mesh.now)
