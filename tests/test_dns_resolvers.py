"""Real resolvers in front of gossamer, deployed the way Consul users deploy them.

- dnsmasq forwarding the `consul` domain to the agent (`server=/consul/ip#port`);
- unbound with a stub zone for `consul.` and QNAME minimisation on, strict:
  it asks `service.consul` before `web.service.consul`, so an agent that
  answers NXDOMAIN for that empty non-terminal breaks every lookup;
- HAProxy's `resolvers` section and a `server-template` on
  `_web._tcp.service.consul`: its slots fill with the instances (address and
  port from SRV) and empty when one goes critical (read from its admin socket);
- a service registered on the other agent of a pair appears through dnsmasq
  once it has replicated, and disappears when deregistered.

The agents are real (each with its serf child), the resolvers real child
processes on loopback (tests/harness/resolvers.py); queries go through `dig`
and `kdig`. Instances sit on 127.a.b.11+ with distinct ports; nothing listens
there, which is fine: HAProxy runs no health checks here.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.binaries import find_binary, needs, require
from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.harness.resolvers import (
    ChildServer,
    Dnsmasq,
    Haproxy,
    HaproxyServer,
    Unbound,
)

DEADLINE = 15.0  # seconds for anything eventually consistent (checks, replication, HAProxy)


# -- querying with dig / kdig -----------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: str  # NOERROR, NXDOMAIN, ...
    answer: list[tuple[str, str, str]]  # (owner, type, rdata)

    def rdata(self, rdtype: str) -> list[str]:
        return sorted(rd for _, t, rd in self.answer if t == rdtype)


_STATUS = re.compile(r"status: ([A-Z]+)")


def ask(server: ChildServer, name: str, rdtype: str = "A", tool: str = "dig") -> Reply:
    """Ask `server` with dig or kdig (both print the same sections); parse status and answers."""
    binary = find_binary(tool) or tool
    if tool == "kdig":
        argv = [binary, f"@{server.ip}", "-p", str(server.port), "+time=2", "+retry=1"]
    else:
        argv = [binary, f"@{server.ip}", "-p", str(server.port), "+time=2", "+tries=2"]
    out = subprocess.run([*argv, name, rdtype], capture_output=True, text=True, timeout=20).stdout
    status = _STATUS.search(out)
    assert status, f"{tool} got no answer from {server.name} for {name} {rdtype}:\n{out}"
    answer, section = [], ""
    for line in out.splitlines():
        if line.startswith(";;") and line.rstrip().endswith("SECTION:"):
            section = line.strip("; ").split()[0]
            continue
        if section == "ANSWER" and line.strip() and not line.startswith(";"):
            owner, _ttl, _cls, rtype, *rest = line.split()
            answer.append((owner.lower(), rtype, " ".join(rest)))
        elif not line.strip():
            section = "" if section == "ANSWER" else section
    return Reply(status.group(1), answer)


def srv_endpoints(server: ChildServer, name: str, tool: str = "dig") -> set[tuple[str, int]]:
    """(address, port) of every SRV record of `name`, targets resolved through `server` too."""
    found = set()
    for rd in ask(server, name, "SRV", tool).rdata("SRV"):
        _prio, _weight, port, target = rd.split()
        addrs = ask(server, target, "A", tool).rdata("A")
        assert addrs, f"SRV target {target} of {name} does not resolve through {server.name}"
        found |= {(addr, int(port)) for addr in addrs}
    return found


# -- the agents and the catalog ---------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    id: str
    name: str
    address: str
    port: int
    tags: tuple[str, ...] = ()

    def register(self, agent: AgentProc) -> None:
        agent.put(
            "/v1/agent/service/register",
            {
                "ID": self.id,
                "Name": self.name,
                "Address": self.address,
                "Port": self.port,
                "Tags": list(self.tags),
                "Check": {"TTL": "10m"},
            },
        )
        self.set_check(agent, "pass")

    def set_check(self, agent: AgentProc, state: str) -> None:
        agent.put(f"/v1/agent/check/{state}/service:{self.id}")


def passing(agent: AgentProc, service: str) -> set[str]:
    return {e["Service"]["ID"] for e in agent.get(f"/v1/health/service/{service}?passing")}


@dataclass
class Pair:
    cluster: Cluster
    agents: list[AgentProc]
    web: list[Instance]

    @property
    def first(self) -> AgentProc:
        return self.agents[0]

    def resolver_ip(self) -> str:
        return f"{self.cluster.net}.200"  # the agents are .1 and .2, instances .11+


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """Two joined agents; node1 holds three passing instances of `web`."""
    cluster = Cluster(tmp_path_factory.mktemp("resolvers"))
    try:
        agents = cluster.start(2)
        net = cluster.net
        web = [
            Instance("web-1", "web", f"{net}.11", 9001, ("v1",)),
            Instance("web-2", "web", f"{net}.12", 9002, ("v2",)),
            Instance("web-3", "web", f"{net}.13", 9003, ("v2",)),
        ]
        for inst in web:
            inst.register(agents[0])
        want = {i.id for i in web}
        eventually(lambda: passing(agents[0], "web") == want, DEADLINE, what="3 passing web")
        yield Pair(cluster, agents, web)
    finally:
        leftovers = cluster.close()
    assert not leftovers, f"processes left behind: {leftovers}"


def upstream(agent: AgentProc) -> list[tuple[str, int]]:
    return [(agent.ip, agent.dns_port)]


@pytest.fixture
def dnsmasq(pair: Pair, tmp_path: Path) -> Iterator[Dnsmasq]:
    ip = pair.resolver_ip()
    server = Dnsmasq("dnsmasq", tmp_path / "dnsmasq", ip, free_port(ip))
    server.forward = {"consul": upstream(pair.first)}
    server.start()
    yield server
    server.stop()


# -- dnsmasq ----------------------------------------------------------------------------


@needs("dnsmasq", "dig")
def test_dnsmasq_forwards_the_consul_domain(pair: Pair, dnsmasq: Dnsmasq) -> None:
    web = pair.web
    addrs = sorted(i.address for i in web)

    def a_records() -> bool:
        reply = ask(dnsmasq, "web.service.consul")
        assert reply.status == "NOERROR" and reply.rdata("A") == addrs, reply
        return True

    eventually(a_records, DEADLINE, what="web.service.consul A through dnsmasq")
    endpoints = {(i.address, i.port) for i in web}
    assert srv_endpoints(dnsmasq, "web.service.consul") == endpoints
    assert srv_endpoints(dnsmasq, "_web._tcp.service.consul") == endpoints
    assert ask(dnsmasq, "v2.web.service.consul").rdata("A") == sorted(
        i.address for i in web if "v2" in i.tags
    )
    assert ask(dnsmasq, "nosuch.service.consul").status == "NXDOMAIN"
    # the agents themselves (each registers itself as `consul`; node2's record replicates)
    eventually(
        lambda: (
            ask(dnsmasq, "consul.service.consul").rdata("A") == sorted(a.ip for a in pair.agents)
        ),
        DEADLINE,
        what="consul.service.consul to list both agents through dnsmasq",
    )
    assert ask(dnsmasq, "node2.node.consul").rdata("A") == [pair.agents[1].ip]


@needs("dnsmasq", "dig")
def test_service_on_the_other_agent_appears_through_dnsmasq_after_replication(
    pair: Pair, dnsmasq: Dnsmasq
) -> None:
    """dnsmasq asks node1; the service is registered on node2 and replicates to node1."""
    other = pair.agents[1]
    api = Instance("api-1", "api", f"{pair.cluster.net}.21", 7001)
    assert ask(dnsmasq, "api.service.consul").status == "NXDOMAIN"
    api.register(other)
    try:

        def resolves() -> bool:
            reply = ask(dnsmasq, "api.service.consul")
            assert reply.status == "NOERROR" and reply.rdata("A") == [api.address], reply
            return True

        eventually(resolves, DEADLINE, what="api (registered on node2) through dnsmasq → node1")
        assert srv_endpoints(dnsmasq, "_api._tcp.service.consul") == {(api.address, api.port)}
    finally:
        other.put(f"/v1/agent/service/deregister/{api.id}")

    eventually(
        lambda: ask(dnsmasq, "api.service.consul").status == "NXDOMAIN",
        DEADLINE,
        what="api to be gone through dnsmasq after its deregistration on node2",
    )


# -- unbound ----------------------------------------------------------------------------


@pytest.fixture
def unbound(pair: Pair, tmp_path: Path) -> Iterator[Unbound]:
    ip = pair.resolver_ip()
    server = Unbound("unbound", tmp_path / "unbound", ip, free_port(ip))
    server.stubs = {"consul": upstream(pair.first)}
    server.insecure = ["consul"]
    server.start()
    yield server
    server.stop()


@needs("unbound", "kdig")
def test_unbound_stub_zone_with_qname_minimisation(pair: Pair, unbound: Unbound) -> None:
    web = pair.web

    def a_records() -> bool:
        reply = ask(unbound, "web.service.consul", tool="kdig")
        assert reply.status == "NOERROR" and reply.rdata("A") == sorted(i.address for i in web), (
            f"{reply}\nunbound log:\n{unbound.log_tail(10)}"
        )
        return True

    eventually(a_records, DEADLINE, what="web.service.consul A through unbound")
    endpoints = {(i.address, i.port) for i in web}
    assert srv_endpoints(unbound, "web.service.consul", tool="kdig") == endpoints
    assert srv_endpoints(unbound, "_web._tcp.service.consul", tool="kdig") == endpoints
    assert ask(unbound, "node1.node.consul", tool="kdig").rdata("A") == [pair.first.ip]
    # the empty non-terminals QNAME minimisation walks through: NOERROR, no records
    for ent in ("service.consul", "node.consul", "_tcp.service.consul"):
        reply = ask(unbound, ent, tool="kdig")
        assert (reply.status, reply.answer) == ("NOERROR", []), (ent, reply)
    # a name that exists, a type it has no records of: NODATA, not NXDOMAIN
    reply = ask(unbound, "web.service.consul", "AAAA", tool="kdig")
    assert (reply.status, reply.answer) == ("NOERROR", []), reply
    assert ask(unbound, "nosuch.service.consul", tool="kdig").status == "NXDOMAIN"


# -- answers bigger than a datagram ----------------------------------------------------


BIG = 40  # SRV answer with its additional A records: ~2.8 KB, over any resolver's 1232


@pytest.fixture(scope="module")
def big(pair: Pair) -> list[Instance]:
    """40 instances of `big` on node1 (no checks, so passing)."""
    net = pair.cluster.net
    instances = [Instance(f"big-{i}", "big", f"{net}.{100 + i}", 10000 + i) for i in range(BIG)]
    for inst in instances:
        pair.first.put(
            "/v1/agent/service/register",
            {"ID": inst.id, "Name": inst.name, "Address": inst.address, "Port": inst.port},
        )
    eventually(lambda: len(passing(pair.first, "big")) == BIG, DEADLINE, what=f"{BIG} big")
    return instances


@pytest.mark.parametrize(
    ("resolver", "tool"), [("dnsmasq", "dig"), ("unbound", "kdig")], ids=["dnsmasq", "unbound"]
)
def test_large_answers_get_through_resolvers_over_tcp(
    big: list[Instance], resolver: str, tool: str, request: pytest.FixtureRequest
) -> None:
    """Over UDP the agent sets TC (Consul cuts silently); the resolver retries over TCP.

    dnsmasq passes TC on and forwards the client's TCP retry over TCP; unbound
    asks the agent again over TCP itself. Either way every instance arrives.
    """
    require(resolver, tool)
    server: ChildServer = request.getfixturevalue(resolver)
    want = sorted(i.address for i in big)

    def all_there() -> bool:
        reply = ask(server, "big.service.consul", "A", tool)
        assert reply.rdata("A") == want, f"{len(reply.rdata('A'))} of {BIG} A records"
        return True

    eventually(all_there, DEADLINE, what=f"{BIG} A records through {resolver}")
    srv = ask(server, "_big._tcp.service.consul", "SRV", tool).rdata("SRV")
    assert sorted(int(rd.split()[2]) for rd in srv) == sorted(i.port for i in big)


# -- HAProxy ----------------------------------------------------------------------------


def filled(haproxy: Haproxy) -> set[tuple[str, int]]:
    return {(s.addr, s.port) for s in haproxy.show_servers_state() if s.filled}


@needs("haproxy")
def test_haproxy_server_template_follows_the_catalog(pair: Pair, tmp_path: Path) -> None:
    agent, web = pair.first, pair.web
    ip = pair.resolver_ip()
    haproxy = Haproxy(
        "haproxy",
        tmp_path / "haproxy",
        ip,
        free_port(ip),
        nameservers=upstream(agent),
        resolvers_options=[
            "accepted_payload_size 8192",
            "hold valid 1s",
            "hold obsolete 1s",  # drop an SRV entry 1 s after an answer no longer has it
            "hold nx 1s",
        ],
        backend=[
            # no `check`: nothing listens on the instances' ports
            "server-template web 5 _web._tcp.service.consul resolvers gossamer "
            "resolve-prefer ipv4 init-addr none",
        ],
    )
    everyone = {(i.address, i.port) for i in web}
    with haproxy.start():

        def slots(want: set[tuple[str, int]]) -> list[HaproxyServer]:
            state = haproxy.show_servers_state()
            got = {(s.addr, s.port) for s in state if s.filled}
            assert got == want, f"slots {got}, want {want}:\n{haproxy.log_tail(10)}"
            return state

        state = eventually(lambda: slots(everyone), DEADLINE, what="HAProxy slots to fill")
        assert len(state) == 5 and sum(not s.filled for s in state) == 2

        failing = web[1]
        failing.set_check(agent, "fail")
        try:
            eventually(
                lambda: slots(everyone - {(failing.address, failing.port)}),
                DEADLINE,
                what=f"HAProxy to drop {failing.id} once its check is critical",
            )
        finally:
            failing.set_check(agent, "pass")
        eventually(lambda: slots(everyone), DEADLINE, what=f"{failing.id} back in a slot")
