"""DNS against real agents over real sockets, with dnspython, dig and kdig."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.harness.binaries import needs, require
from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.harness.resolvers import Dnsmasq

BIG = 40  # instances of "big": far more than 512 bytes of SRV records


def query(
    agent: AgentProc,
    name: str,
    rdtype: str = "A",
    *,
    tcp: bool = False,
    edns: int = -1,
    payload: int = 1232,
) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, use_edns=edns, payload=payload)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(q, agent.ip, port=agent.dns_port, timeout=5, ignore_trailing=False)


def records(resp: dns.message.Message, section: str = "answer") -> list[str]:
    return sorted(rd.to_text() for rrset in getattr(resp, section) for rd in rrset)


def tool(name: str, agent: AgentProc, *args: str) -> list[str]:
    out = subprocess.run(
        [name, f"@{agent.ip}", "-p", str(agent.dns_port), "+short", *args],
        capture_output=True, text=True, timeout=20, check=True,
    ).stdout  # fmt: skip
    return sorted(out.split("\n")[:-1])


def register(agent: AgentProc, body: dict[str, object]) -> None:
    agent.put("/v1/agent/service/register", body)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[AgentProc]]:
    """Two joined agents; `a` holds most services, `b` one that replicates to `a`."""
    root = tmp_path_factory.mktemp("dns")
    config = root / "dns.yaml"
    config.write_text(
        "node_meta: {rack: r1, env: prod}\n"
        "dns:\n  alt_domain: mesh.example\n  service_ttl: {'db*': 30s}\n  node_ttl: 5s\n"
    )
    c = Cluster(root)
    a = c.new_agent("node1", "--config-file", str(config)).start()
    b = c.new_agent("node2", "--config-file", str(config), "--join", a.serf_addr).start()
    agents = [a, b]
    try:
        eventually(lambda: len(a.members()) == 2, 15, what="node2 to join")
        weights = {"Passing": 5, "Warning": 1}
        register(a, {"Name": "web", "ID": "web1", "Address": "10.1.0.1", "Port": 8080,
                     "Tags": ["primary", "v1"], "Weights": weights})  # fmt: skip
        register(
            a, {"Name": "web", "ID": "web2", "Address": "10.1.0.2", "Port": 8081, "Tags": ["v1"]}
        )
        ttl = {"CheckID": "web3-ttl", "TTL": "60s", "Status": "passing"}
        register(a, {"Name": "web", "ID": "web3", "Port": 8082, "Check": ttl})
        proxy = {"DestinationServiceName": "web"}
        register(a, {"Name": "web-proxy", "Kind": "connect-proxy", "Port": 21000,
                     "Address": "10.1.0.9", "Proxy": proxy})  # fmt: skip
        register(a, {"Name": "six", "Address": "fd00::6", "Port": 6})
        register(a, {"Name": "dbmain", "Address": "10.1.0.7", "Port": 5432})
        for i in range(BIG):
            address = f"10.2.{i // 200}.{i % 200 + 1}"
            register(a, {"Name": "big", "ID": f"big{i}", "Address": address, "Port": 9000 + i})
        register(b, {"Name": "api", "Address": "10.3.0.1", "Port": 7000})
        eventually(lambda: len(records(query(a, "big.service.consul.", tcp=True))) == BIG, 10)
        eventually(lambda: records(query(a, "api.service.consul.")) == ["10.3.0.1"], 15)
        yield agents
    finally:
        leftovers = c.close()
    assert not leftovers, f"processes left behind: {leftovers}"


@pytest.fixture(scope="module")
def a(pair: list[AgentProc]) -> AgentProc:
    return pair[0]


def test_service_lookups(a: AgentProc) -> None:
    assert records(query(a, "web.service.consul.")) == ["10.1.0.1", "10.1.0.2", a.ip]
    assert records(query(a, "web.service.dc1.consul.", tcp=True)) == ["10.1.0.1", "10.1.0.2", a.ip]
    assert records(query(a, "primary.web.service.consul.")) == ["10.1.0.1"]
    assert records(query(a, "v1.web.service.consul.")) == ["10.1.0.1", "10.1.0.2"]
    assert records(query(a, "primary.v1.web.service.consul.")) == ["10.1.0.1"]  # every tag
    assert query(a, "primary.nope.web.service.consul.").rcode() == dns.rcode.NXDOMAIN
    assert records(query(a, "six.service.consul.", "AAAA")) == ["fd00::6"]
    srv = query(a, "web.service.consul.", "SRV")
    assert records(srv) == sorted([
        "1 5 8080 0a010001.addr.dc1.consul.",
        "1 1 8081 0a010002.addr.dc1.consul.",
        "1 1 8082 node1.node.dc1.consul.",
    ])  # fmt: skip
    assert records(srv, "additional") == sorted(["10.1.0.1", "10.1.0.2", a.ip])


def test_rfc2782_connect_node_addr_and_ptr(a: AgentProc) -> None:
    assert len(records(query(a, "_web._tcp.service.consul.", "SRV"))) == 3
    assert len(records(query(a, "_web._v1.service.consul.", "SRV"))) == 2
    assert len(records(query(a, "_web._tcp.consul.", "SRV"))) == 3
    connect = query(a, "web.connect.consul.", "SRV")
    assert records(connect) == ["1 1 21000 0a010009.addr.dc1.consul."]
    assert records(query(a, "node1.node.consul.")) == [a.ip]
    assert records(query(a, "node1.node.consul.", "TXT")) == ['"env=prod"', '"rack=r1"']
    assert records(query(a, "0a010001.addr.consul.")) == ["10.1.0.1"]
    ptr = query(a, "1.0.1.10.in-addr.arpa.", "PTR")
    assert records(ptr) == ["web.service.dc1.consul."]
    own = ".".join(reversed(a.ip.split("."))) + ".in-addr.arpa."
    assert "node1.node.dc1.consul." in records(query(a, own, "PTR"))


def test_apex_case_ttls_and_alt_domain(a: AgentProc) -> None:
    soa = query(a, "consul.", "SOA")
    mname, rname, _serial, refresh, retry, expire, minimum = records(soa)[0].split()
    assert (mname, rname) == ("ns.consul.", "hostmaster.consul.")
    assert (int(refresh), int(retry), int(expire), int(minimum)) == (3600, 600, 86400, 0)
    ns = query(a, "consul.", "NS")
    assert sorted(records(ns)) == ["node1.node.dc1.consul.", "node2.node.dc1.consul."]
    assert len(records(ns, "additional")) == 2
    mixed = query(a, "WeB.SeRvIcE.CoNsUl.")
    assert mixed.answer[0].name.to_text() == "WeB.SeRvIcE.CoNsUl."  # the asker's case echoed
    assert mixed.answer[0].ttl == 0
    assert query(a, "dbmain.service.consul.").answer[0].ttl == 30  # dns.service_ttl "db*"
    assert query(a, "node2.node.consul.").answer[0].ttl == 5  # dns.node_ttl
    alt = query(a, "web.service.mesh.example.", "SRV")
    assert "1 1 8081 0a010002.addr.dc1.mesh.example." in records(alt)
    assert len(records(query(a, "_web._tcp.service.mesh.example.", "SRV"))) == 3


@pytest.mark.parametrize(
    ("name", "rdtype", "rcode", "soa"),
    [
        ("nope.service.consul.", "A", "NXDOMAIN", True),
        ("nobody.node.consul.", "A", "NXDOMAIN", True),
        ("web.service.dc2.consul.", "A", "NXDOMAIN", True),
        ("zz.addr.consul.", "A", "NXDOMAIN", True),
        ("web.service.consul.", "AAAA", "NOERROR", True),  # NODATA: IPv4 only
        ("web.service.consul.", "TXT", "NOERROR", True),
        ("service.consul.", "A", "NOERROR", True),  # empty non-terminals
        ("dc1.consul.", "A", "NOERROR", True),
        ("_tcp.service.consul.", "A", "NOERROR", True),
        ("example.com.", "A", "REFUSED", False),  # no recursors
    ],
)
def test_negative_answers(a: AgentProc, name: str, rdtype: str, rcode: str, soa: bool) -> None:
    resp = query(a, name, rdtype)
    assert dns.rcode.to_text(resp.rcode()) == rcode
    assert not resp.answer
    assert [r.rdtype for r in resp.authority] == ([dns.rdatatype.SOA] if soa else [])
    assert not resp.flags & dns.flags.RA  # no recursors configured


def test_zone_transfer_versions_and_malformed_packets(a: AgentProc) -> None:
    axfr = query(a, "consul.", "AXFR", tcp=True)
    assert axfr.rcode() == dns.rcode.NOTIMP
    v1 = query(a, "web.service.consul.", edns=1)
    assert v1.rcode() == dns.rcode.BADVERS and v1.edns == 0
    odd = dns.message.make_query("web.service.consul.", "A", use_edns=0)
    odd.use_edns(0, options=[dns.edns.GenericOption(65001, b"\x01\x02")])
    reply = dns.query.udp(odd, a.ip, port=a.dns_port, timeout=5)
    assert len(records(reply)) == 3  # unknown options are ignored
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(
            b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07broken", (a.ip, a.dns_port)
        )
        formerr = dns.message.from_wire(sock.recv(512))
        assert formerr.id == 0xABCD and formerr.rcode() == dns.rcode.FORMERR
        sock.sendto(b"\x01\x02\x03", (a.ip, a.dns_port))  # no header: dropped
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(512)
    with socket.create_connection((a.ip, a.dns_port), timeout=5) as tcp:
        tcp.sendall(b"\x00\x05junk")  # a frame cut short, then closed
    assert records(query(a, "primary.web.service.consul.")) == ["10.1.0.1"]


def test_truncation_and_tcp_retry(a: AgentProc) -> None:
    small = query(a, "big.service.consul.", "SRV")
    assert small.flags & dns.flags.TC and len(small.to_wire()) <= 512
    assert 0 < len(records(small)) < BIG
    edns = query(a, "big.service.consul.", "SRV", edns=0, payload=1232)
    assert len(edns.to_wire()) <= 1232 and edns.flags & dns.flags.TC
    assert len(records(edns)) > len(records(small))
    full = query(a, "big.service.consul.", "SRV", edns=0, payload=8192)
    assert not full.flags & dns.flags.TC and len(records(full)) == BIG
    assert len(records(query(a, "big.service.consul.", "SRV", tcp=True))) == BIG


@needs("dig")
def test_dig_retries_over_tcp_and_gets_everything(a: AgentProc) -> None:
    assert len(tool("dig", a, "+noedns", "big.service.consul", "SRV")) == BIG
    cut = tool("dig", a, "+noedns", "+ignore", "big.service.consul", "SRV")
    assert 0 < len(cut) < BIG
    assert tool("dig", a, "web.service.consul") == sorted(["10.1.0.1", "10.1.0.2", a.ip])
    assert tool("dig", a, "-x", "10.1.0.1") == ["web.service.dc1.consul."]


@needs("kdig")
def test_kdig_reads_the_answers(a: AgentProc) -> None:
    assert len(tool("kdig", a, "+tcp", "big.service.consul", "SRV")) == BIG
    assert tool("kdig", a, "_web._v1.service.consul", "SRV") == sorted(
        ["1 1 8081 0a010002.addr.dc1.consul.", "1 5 8080 0a010001.addr.dc1.consul."]
    )
    assert tool("kdig", a, "node1.node.consul", "TXT") == ['"env=prod"', '"rack=r1"']


def test_a_failing_check_drops_the_instance_and_passing_brings_it_back(a: AgentProc) -> None:
    def web() -> list[str]:
        return records(query(a, "web.service.consul."))

    a.put("/v1/agent/check/fail/web3-ttl")
    eventually(lambda: web() == ["10.1.0.1", "10.1.0.2"], 5, what="web3 to leave DNS")
    a.put("/v1/agent/check/pass/web3-ttl")
    eventually(lambda: a.ip in web(), 5, what="web3 to come back")


def test_a_service_registered_elsewhere_appears_and_leaves(pair: list[AgentProc]) -> None:
    a, b = pair
    register(b, {"Name": "late", "Address": "10.4.0.1", "Port": 1})
    eventually(lambda: records(query(a, "late.service.consul.")) == ["10.4.0.1"], 15)
    b.put("/v1/agent/service/deregister/late")
    eventually(lambda: query(a, "late.service.consul.").rcode() == dns.rcode.NXDOMAIN, 15)


def test_recursors_forward_and_pass_the_rcode_back(cluster: Cluster, tmp_path: Path) -> None:
    require("dnsmasq")
    ip = f"{cluster.net}.200"
    upstream = Dnsmasq("upstream", tmp_path / "upstream", ip, free_port(ip),
                       options=["host-record=outside.test,192.0.2.7", "local=/test/"])  # fmt: skip
    with upstream.start():
        dead = f"{ip}:{free_port(ip)}"  # nothing listens: the next recursor is asked
        agent = cluster.new_agent(
            "rec", "--recursor", dead, "--recursor", f"{ip}:{upstream.port}"
        ).start()
        hit = query(agent, "outside.test.")
        assert records(hit) == ["192.0.2.7"] and hit.flags & dns.flags.RA
        assert query(agent, "missing.test.").rcode() == dns.rcode.NXDOMAIN
        assert records(query(agent, "outside.test.", tcp=True)) == ["192.0.2.7"]
        assert query(agent, "consul.service.consul.").flags & dns.flags.RA


def _mutations() -> st.SearchStrategy[bytes]:
    valid = [
        dns.message.make_query(name, rdtype, use_edns=edns).to_wire()
        for name, rdtype, edns in [
            ("web.service.consul.", "A", -1),
            ("_web._tcp.service.consul.", "SRV", 0),
            ("node1.node.consul.", "TXT", 0),
            ("1.0.1.10.in-addr.arpa.", "PTR", -1),
        ]
    ]

    def mutate(base: bytes, edits: list[tuple[int, int, int]]) -> bytes:
        data = bytearray(base)
        for kind, where, value in edits:
            at = where % (len(data) + 1)
            if kind == 0 and at < len(data):
                data[at] = value
            elif kind == 1:
                data.insert(at, value)
            elif kind == 2 and at < len(data):
                del data[at]
            else:
                del data[at:]
        return bytes(data)

    edit = st.tuples(st.integers(0, 3), st.integers(0, 600), st.integers(0, 255))
    mutated = st.builds(mutate, st.sampled_from(valid), st.lists(edit, min_size=1, max_size=6))
    return st.one_of(mutated, st.binary(max_size=600))


def test_fuzzed_packets_never_stop_the_server(a: AgentProc) -> None:
    """Thousands of random and mutated datagrams and TCP frames, then normal service."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp = socket.create_connection((a.ip, a.dns_port), timeout=5)
    sent = 0

    @settings(max_examples=4000, deadline=None, database=None)
    @given(_mutations())
    def blast(packet: bytes) -> None:
        nonlocal sent, tcp
        udp.sendto(packet, (a.ip, a.dns_port))
        if sent % 8 == 0:
            try:
                tcp.sendall(len(packet).to_bytes(2, "big") + packet)
            except OSError:  # the server closed a stream it could not frame: open another
                tcp.close()
                tcp = socket.create_connection((a.ip, a.dns_port), timeout=5)
        sent += 1

    try:
        blast()
    finally:
        udp.close()
        tcp.close()
    assert sent >= 1000
    assert "Traceback" not in a.log_path.read_text(errors="replace")  # no query hit a bug
    assert records(query(a, "v1.web.service.consul.")) == ["10.1.0.1", "10.1.0.2"]
    assert len(records(query(a, "big.service.consul.", "SRV", tcp=True))) == BIG
