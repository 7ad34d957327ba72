"""The complete DNS path (answer.py) over a catalog built in-process: tables of questions.

Every response is read back from the wire, as a client sees it. The catalog
is described in tests/dns_support.py.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import pytest

from gossamer.agent.dns.answer import FORWARD, OUR_PAYLOAD, answer, handle
from gossamer.agent.dns.records import Context
from gossamer.agent.dns.settings import DnsSettings
from gossamer.agent.dns.wire import to_wire, udp_limit
from gossamer.agent.dns.zone import build_zone
from gossamer.catalog.model import NodeRecord
from tests.dns_support import (
    LONG_META,
    SERIAL,
    SETTINGS,
    ZONE,
    ask,
    catalog_records,
    catalog_state,
    check,
    ctx,
    make_query,
    message,
    node,
    rdata_texts,
    rr_texts,
    soa_of,
    svc,
)

WEB_A = ("0 A 10.0.0.1", "0 A 10.0.0.2")
WEB_SRV = ("0 SRV 1 10 80 a.node.dc1.consul.", "0 SRV 1 2 81 b.node.dc1.consul.",
           "0 SRV 1 1 86 six.node.dc1.consul.")  # fmt: skip
WEB_GLUE = ("a.node.dc1.consul. 0 A 10.0.0.1", "b.node.dc1.consul. 0 A 10.0.0.2",
            "six.node.dc1.consul. 0 AAAA fd00::6")  # fmt: skip
V1_SRV = ("0 SRV 1 10 80 a.node.dc1.consul.", "0 SRV 1 2 81 b.node.dc1.consul.")
V1_GLUE = ("a.node.dc1.consul. 0 A 10.0.0.1", "b.node.dc1.consul. 0 A 10.0.0.2")
SOA = f"0 SOA ns.consul. hostmaster.consul. {SERIAL} 3600 600 86400 0"
LONG_TXT = f'"long={LONG_META[:250]}" "{LONG_META[250:]}"'
V6_ADDR = "fd000000000000000000000000000010.addr.dc1.consul."


@dataclass(frozen=True)
class Case:
    """One question and what must come back.

    `answer` lines are `TTL TYPE RDATA` (owner: the question's name);
    `additional` lines are complete. `soa`: the SOA in authority (NXDOMAIN, NODATA).
    """

    id: str
    name: str
    rdtype: str = "A"
    rcode: str = "NOERROR"
    answer: tuple[str, ...] = ()
    additional: tuple[str, ...] = ()

    @property
    def soa(self) -> bool:
        return not self.answer


def nx(id: str, name: str, rdtype: str = "A") -> Case:
    return Case(id, name, rdtype, "NXDOMAIN")


def nodata(id: str, name: str, rdtype: str = "A") -> Case:
    return Case(id, name, rdtype)


CASES = [
    # --- services -----------------------------------------------------------------------
    Case("service A", "web.service.consul.", "A", answer=WEB_A),
    Case("service A with dc", "web.service.dc1.consul.", "A", answer=WEB_A),
    Case("service AAAA", "web.service.consul.", "AAAA", answer=("0 AAAA fd00::6",)),
    Case("service ANY", "web.service.consul.", "ANY", answer=(*WEB_A, "0 AAAA fd00::6")),
    Case("service SRV", "web.service.consul.", "SRV", answer=WEB_SRV, additional=WEB_GLUE),
    Case("tag", "v1.web.service.consul.", "A", answer=WEB_A),
    Case("tag registered in mixed case", "primary.web.service.consul.", answer=("0 A 10.0.0.1",)),
    Case("two tags", "primary.v1.web.service.consul.", answer=("0 A 10.0.0.1",)),
    Case("two tags other order", "v1.primary.web.service.dc1.consul.", answer=("0 A 10.0.0.1",)),
    Case("tag SRV", "v1.web.service.consul.", "SRV", answer=V1_SRV, additional=V1_GLUE),
    nx("tag only on a critical instance", "v2.web.service.consul."),
    nx("unknown tag", "nosuch.web.service.consul."),
    nx("two tags not on one instance", "primary.v2.web.service.consul."),
    Case("rfc2782 _tcp.service", "_web._tcp.service.consul.", "SRV", answer=WEB_SRV,
         additional=WEB_GLUE),
    Case("rfc2782 _tcp", "_web._tcp.consul.", "SRV", answer=WEB_SRV, additional=WEB_GLUE),
    Case("rfc2782 _udp", "_web._udp.service.consul.", "SRV", answer=WEB_SRV,
         additional=WEB_GLUE),
    Case("rfc2782 tag with dc", "_web._v1.service.dc1.consul.", "SRV", answer=V1_SRV,
         additional=V1_GLUE),
    Case("rfc2782 A", "_web._tcp.service.consul.", "A", answer=WEB_A),
    nx("rfc2782 unknown tag", "_web._v2.service.consul.", "SRV"),
    nx("rfc2782 unknown service", "_nope._tcp.service.consul.", "SRV"),
    Case("own address differs: addr target", "db.service.consul.", "SRV",
         answer=("0 SRV 1 1 5432 0a010001.addr.dc1.consul.",),
         additional=("0a010001.addr.dc1.consul. 0 A 10.1.0.1",)),
    Case("own address A", "db.service.consul.", answer=("0 A 10.1.0.1",)),
    nodata("AAAA of an IPv4-only service", "db.service.consul.", "AAAA"),
    nodata("TXT of a service", "web.service.consul.", "TXT"),
    Case("own address equal to the node's: node target", "cache.service.consul.", "SRV",
         answer=("0 SRV 1 1 6379 c.node.dc1.consul.",),
         additional=("c.node.dc1.consul. 0 A 10.0.0.3",)),
    Case("IPv6 own address: 32-hex addr target", "v6svc.service.consul.", "SRV",
         answer=(f"0 SRV 1 1 7000 {V6_ADDR}",), additional=(f"{V6_ADDR} 0 AAAA fd00::10",)),
    Case("IPv6 own address AAAA", "v6svc.service.consul.", "AAAA", answer=("0 AAAA fd00::10",)),
    nodata("A of an IPv6-only service", "v6svc.service.consul.", "A"),
    Case("A deduplicated by address", "dup.service.consul.", answer=("0 A 10.9.9.9",)),
    Case("SRV of a shared address: one glue", "dup.service.consul.", "SRV",
         answer=("0 SRV 1 1 90 0a090909.addr.dc1.consul.",
                 "0 SRV 1 1 91 0a090909.addr.dc1.consul."),
         additional=("0a090909.addr.dc1.consul. 0 A 10.9.9.9",)),
    Case("hostname address: SRV target", "api.service.consul.", "SRV",
         answer=("0 SRV 1 1 443 api.example.com.",)),
    Case("hostname address: A is a CNAME", "api.service.consul.", "A",
         answer=("0 CNAME api.example.com.",)),
    Case("hostname address: AAAA is the same CNAME", "api.service.consul.", "AAAA",
         answer=("0 CNAME api.example.com.",)),
    nx("node check critical: only instance gone", "lonely.service.consul."),
    nx("failed node: only instance gone", "ghost.service.consul."),
    nx("failed node: SRV", "ghost.service.consul.", "SRV"),
    nx("unknown service", "nope.service.consul."),
    nx("unknown service SRV", "nope.service.consul.", "SRV"),
    nx("service in another dc", "web.service.dc2.consul."),
    # --- connect ------------------------------------------------------------------------
    Case("connect: sidecar proxy SRV", "web.connect.consul.", "SRV",
         answer=("0 SRV 1 1 21000 a.node.dc1.consul.",),
         additional=("a.node.dc1.consul. 0 A 10.0.0.1",)),
    Case("connect: sidecar proxy A", "web.connect.dc1.consul.", answer=("0 A 10.0.0.1",)),
    Case("connect: native SRV", "native.connect.consul.", "SRV",
         answer=("0 SRV 1 1 9000 b.node.dc1.consul.",),
         additional=("b.node.dc1.consul. 0 A 10.0.0.2",)),
    nx("connect: no proxy", "db.connect.consul.", "SRV"),
    Case("proxy by its own name", "web-sidecar-proxy.service.consul.", answer=("0 A 10.0.0.1",)),
    # --- nodes --------------------------------------------------------------------------
    Case("node A", "a.node.consul.", answer=("0 A 10.0.0.1",)),
    Case("node A with dc", "a.node.dc1.consul.", answer=("0 A 10.0.0.1",)),
    nodata("node AAAA of an IPv4 node", "a.node.consul.", "AAAA"),
    nodata("node TXT without meta", "a.node.consul.", "TXT"),
    Case("node AAAA", "six.node.consul.", "AAAA", answer=("0 AAAA fd00::6",)),
    nodata("node A of an IPv6 node", "six.node.consul.", "A"),
    Case("node with a dot", "web.prod.node.consul.", answer=("0 A 10.0.0.8",)),
    Case("node TXT: meta as key=value, long value chunked", "web.prod.node.consul.", "TXT",
         answer=(f"0 TXT {LONG_TXT}", '0 TXT "rack=r1"')),
    Case("node ANY", "web.prod.node.consul.", "ANY",
         answer=("0 A 10.0.0.8", f"0 TXT {LONG_TXT}", '0 TXT "rack=r1"')),
    Case("failed node still resolves", "e.node.consul.", answer=("0 A 10.0.0.5",)),
    nx("unknown node", "nobody.node.consul."),
    nx("node of another dc", "x.node.consul."),
    nx("node with another dc label", "x.node.dc2.consul."),
    # --- addr ---------------------------------------------------------------------------
    Case("addr IPv4", "0a000001.addr.consul.", answer=("0 A 10.0.0.1",)),
    Case("addr IPv4 with dc", "0a000001.addr.dc1.consul.", answer=("0 A 10.0.0.1",)),
    nodata("addr AAAA of IPv4", "0a000001.addr.consul.", "AAAA"),
    Case("addr IPv6", "fd000000000000000000000000000006.addr.consul.", "AAAA",
         answer=("0 AAAA fd00::6",)),
    Case("addr ANY", "0a000001.addr.consul.", "ANY", answer=("0 A 10.0.0.1",)),
    nx("addr bad hex", "zz000001.addr.consul."),
    nx("addr wrong length", "0a0001.addr.consul."),
    # --- reverse ------------------------------------------------------------------------
    Case("PTR of a node address", "1.0.0.10.in-addr.arpa.", "PTR",
         answer=("0 PTR a.node.dc1.consul.",)),
    Case("PTR of a service address", "1.0.1.10.in-addr.arpa.", "PTR",
         answer=("0 PTR db.service.dc1.consul.",)),
    Case("PTR of a shared service address", "9.9.9.10.in-addr.arpa.", "PTR",
         answer=("0 PTR dup.service.dc1.consul.",)),
    Case("PTR ANY", "1.0.0.10.in-addr.arpa.", "ANY", answer=("0 PTR a.node.dc1.consul.",)),
    Case("PTR of a failed node", "5.0.0.10.in-addr.arpa.", "PTR",
         answer=("0 PTR e.node.dc1.consul.",)),
    Case("ip6.arpa of a node", dns.reversename.from_address("fd00::6").to_text(), "PTR",
         answer=("0 PTR six.node.dc1.consul.",)),
    Case("ip6.arpa of a service", dns.reversename.from_address("fd00::10").to_text(), "PTR",
         answer=("0 PTR v6svc.service.dc1.consul.",)),
    # --- apex and empty non-terminals ---------------------------------------------------
    Case("apex SOA", "consul.", "SOA", answer=(SOA,)),
    Case("apex NS with glue", "consul.", "NS",
         answer=("0 NS a.node.dc1.consul.", "0 NS b.node.dc1.consul."), additional=V1_GLUE),
    Case("apex ANY", "consul.", "ANY",
         answer=(SOA, "0 NS a.node.dc1.consul.", "0 NS b.node.dc1.consul."),
         additional=V1_GLUE),
    nodata("apex A", "consul."),
    nodata("ENT service", "service.consul."),
    nodata("ENT service SRV", "service.consul.", "SRV"),
    nodata("ENT node", "node.consul."),
    nodata("ENT dc", "dc1.consul."),
    nodata("ENT dc NS", "dc1.consul.", "NS"),
    nodata("ENT service.dc", "service.dc1.consul."),
    nodata("ENT _tcp.service", "_tcp.service.consul.", "SRV"),
    nodata("ENT _tcp", "_tcp.consul."),
    nodata("ENT connect", "connect.consul."),
    nodata("ENT addr", "addr.consul."),
    nx("another dc", "dc2.consul."),
    nx("nonsense", "what.ever.consul."),
    nx("query form unsupported", "web.query.consul."),
]  # fmt: skip


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_lookup(case: Case) -> None:
    resp = ask(case.name, case.rdtype)
    assert dns.rcode.to_text(resp.rcode()) == case.rcode
    assert resp.flags & dns.flags.QR
    assert resp.flags & dns.flags.AA
    assert not resp.flags & dns.flags.RA  # no recursors configured
    assert not resp.flags & dns.flags.TC
    assert resp.opcode() == dns.opcode.QUERY
    assert [q.to_text() for q in resp.question] == [f"{case.name} IN {case.rdtype}"]
    assert rr_texts(resp.answer) == sorted(f"{case.name} {line}" for line in case.answer)
    assert rr_texts(resp.additional) == sorted(case.additional)
    soa = soa_of(resp)
    if case.soa:
        assert soa is not None and rr_texts([soa]) == [f"consul. {SOA}"]
        assert len(resp.authority) == 1
    else:
        assert not resp.authority


def test_question_case_echoed_and_labels_match_without_case() -> None:
    for name, rdtype, want in [
        ("WeB.SeRvIcE.CoNsUl.", "A", ["10.0.0.1", "10.0.0.2"]),
        ("PRIMARY.V1.WEB.SERVICE.DC1.CONSUL.", "A", ["10.0.0.1"]),
        ("_WEB._TCP.Service.Consul.", "SRV", rdata_texts(ask("web.service.consul.", "SRV").answer)),
        ("A.Node.DC1.Consul.", "A", ["10.0.0.1"]),
        ("0A000001.ADDR.consul.", "A", ["10.0.0.1"]),
        ("Web.Connect.Consul.", "A", ["10.0.0.1"]),
        ("1.0.0.10.IN-ADDR.ARPA.", "PTR", ["a.node.dc1.consul."]),
    ]:
        resp = ask(name, rdtype)
        assert resp.rcode() == dns.rcode.NOERROR, name
        assert resp.question[0].name.to_text() == name  # exactly as asked
        assert all(rrset.name.to_text() == name for rrset in resp.answer)
        assert [t.lower() for t in rdata_texts(resp.answer)] == [w.lower() for w in want]
    upper = ask("NOPE.Service.CONSUL.")
    assert upper.rcode() == dns.rcode.NXDOMAIN
    assert upper.question[0].name.to_text() == "NOPE.Service.CONSUL."


def test_soa_fields_and_negative_ttl() -> None:
    settings = DnsSettings(negative_ttl=15, node_ttl=30)
    for name in ("nope.service.consul.", "service.consul.", "db.service.consul."):
        resp = ask(name, "AAAA", settings)
        soa = soa_of(resp)
        assert soa is not None and soa.ttl == 15
        rd = soa[0]
        assert (rd.mname.to_text(), rd.rname.to_text()) == ("ns.consul.", "hostmaster.consul.")
        assert (rd.serial, rd.refresh, rd.retry, rd.expire, rd.minimum) == (
            SERIAL, 3600, 600, 86400, 15,
        )  # fmt: skip


# --- health ------------------------------------------------------------------------------


def with_b(*, checks: tuple[tuple[str, str, str], ...] = (), failed: bool = False) -> ZoneCase:
    """The catalog with node b's checks replaced: (check id, status, service id)."""
    records = [
        replace(r, checks=tuple(check(c, s, sid) for c, s, sid in checks)) if r.node == "b" else r
        for r in catalog_records()
    ]
    return ZoneCase(records, ("e", "b") if failed else ("e",))


@dataclass(frozen=True)
class ZoneCase:
    records: list[NodeRecord]
    failed: tuple[str, ...]


HEALTH_CASES = [
    # (id, node b's health, only_passing, web A answer, web SRV weight of b or None)
    ("b passing", with_b(checks=(("web2-http", "passing", "web2"),)), False,
     ["10.0.0.1", "10.0.0.2"], 5),
    ("b warning: kept, Weights.Warning", with_b(checks=(("web2-http", "warning", "web2"),)), False,
     ["10.0.0.1", "10.0.0.2"], 2),
    ("b warning, only_passing", with_b(checks=(("web2-http", "warning", "web2"),)), True,
     ["10.0.0.1"], None),
    ("b node warning: Weights.Warning", with_b(checks=(("mem", "warning", ""),)), False,
     ["10.0.0.1", "10.0.0.2"], 2),
    ("b service critical", with_b(checks=(("web2-http", "critical", "web2"),)), False,
     ["10.0.0.1"], None),
    ("b critical among passing", with_b(checks=(("web2-a", "passing", "web2"),
                                                ("web2-b", "critical", "web2"))), False,
     ["10.0.0.1"], None),
    ("b node check critical", with_b(checks=(("disk", "critical", ""),)), False,
     ["10.0.0.1"], None),
    ("b failed (serfHealth)", with_b(failed=True), False, ["10.0.0.1"], None),
    ("another service's critical check does not count",
     with_b(checks=(("native-x", "critical", "native1"),)), False, ["10.0.0.1", "10.0.0.2"], 5),
]  # fmt: skip


@pytest.mark.parametrize(
    ("zc", "only_passing", "want_a", "b_weight"),
    [pytest.param(*rest, id=cid) for cid, *rest in HEALTH_CASES],
)
def test_health(zc: ZoneCase, only_passing: bool, want_a: list[str], b_weight: int | None) -> None:
    settings = DnsSettings(only_passing=only_passing)
    zone = build_zone(catalog_state(zc.records, zc.failed), "dc1", only_passing=only_passing)
    assert rdata_texts(ask("web.service.consul.", "A", settings, zone).answer) == want_a
    srv = {
        rd.target.to_text(): rd
        for rd in ask("web.service.consul.", "SRV", settings, zone).answer[0]
    }
    assert srv["a.node.dc1.consul."].weight == 10
    if b_weight is None:
        assert "b.node.dc1.consul." not in srv
    else:
        assert srv["b.node.dc1.consul."].weight == b_weight


def test_every_instance_critical_is_nxdomain() -> None:
    records = [
        node("a", "10.0.0.1", svc("w1", "solo", 1), checks=[check("c1", "critical", "w1")]),
        node("b", "10.0.0.2", svc("w2", "solo", 2), checks=[check("c2", "critical", "")]),
        node("c", "10.0.0.3", svc("w3", "solo", 3)),
    ]
    zone = build_zone(catalog_state(records, ("c",)), "dc1")
    for rdtype in ("A", "AAAA", "SRV", "ANY"):
        resp = ask("solo.service.consul.", rdtype, zone=zone)
        assert resp.rcode() == dns.rcode.NXDOMAIN and soa_of(resp) is not None
    assert rdata_texts(ask("c.node.consul.", zone=zone).answer) == ["10.0.0.3"]


def test_maintenance_status_never_hides_a_critical_check() -> None:
    # A "maintenance" status (allowed in records) ranks with critical: it must not
    # mask the critical check next to it, nor be served itself.
    for checks in (
        [check("maint", "maintenance"), check("http", "critical", "w1")],
        [check("maint", "maintenance", "w1")],
    ):
        records = [node("a", "10.0.0.1", svc("w1", "solo", 1), checks=checks)]
        zone = build_zone(catalog_state(records, ()), "dc1")
        assert ask("solo.service.consul.", zone=zone).rcode() == dns.rcode.NXDOMAIN, checks


# --- ordering -----------------------------------------------------------------------------


def test_answers_are_shuffled() -> None:
    c = Context(ZONE, SETTINGS, SERIAL, rng=random.Random(7))
    orders = set()
    for _ in range(40):
        resp = wire_answer(make_query("web.service.consul.", "SRV"), c)
        orders.add(tuple(rd.port for rd in resp.answer[0]))
    assert len(orders) > 1
    assert all(sorted(o) == [80, 81, 86] for o in orders)


def wire_answer(query: dns.message.Message, c: Context) -> dns.message.Message:
    """answer(), through the wire as a client reads it."""
    return dns.message.from_wire(to_wire(message(answer(query, c)), udp_limit(query)))


def test_nearest_first_orders_by_distance() -> None:
    distance = {"six": 0.001, "b": 0.002, "a": 0.030}
    zone = build_zone(catalog_state(), "dc1", distance=distance)
    settings = DnsSettings(nearest_first=True)
    for seed in range(10):
        c = Context(zone, settings, SERIAL, rng=random.Random(seed))
        resp = wire_answer(make_query("web.service.consul.", "SRV"), c)
        assert [rd.port for rd in resp.answer[0]] == [86, 81, 80]
        assert [r.name.to_text() for r in resp.additional] == [
            "six.node.dc1.consul.", "b.node.dc1.consul.", "a.node.dc1.consul.",
        ]  # fmt: skip
        a = wire_answer(make_query("web.service.consul.", "A"), c)
        assert [rd.to_text() for rd in a.answer[0]] == ["10.0.0.2", "10.0.0.1"]


def test_nearest_first_puts_unknown_distances_last() -> None:
    zone = build_zone(catalog_state(), "dc1", distance={"a": 0.5})
    for seed in range(10):
        c = Context(zone, DnsSettings(nearest_first=True), SERIAL, rng=random.Random(seed))
        resp = wire_answer(make_query("web.service.consul.", "SRV"), c)
        assert resp.answer[0][0].port == 80


def test_seeded_rng_gives_the_same_wire_order() -> None:
    query = make_query("web.service.consul.", "SRV")
    first = to_wire(
        message(answer(query, Context(ZONE, SETTINGS, SERIAL, rng=random.Random(3)))), 512
    )
    again = to_wire(
        message(answer(query, Context(ZONE, SETTINGS, SERIAL, rng=random.Random(3)))), 512
    )
    assert first == again


# --- TTLs ---------------------------------------------------------------------------------

TTL_SETTINGS = DnsSettings(
    node_ttl=30, service_ttl={"web": 10, "d*": 7, "db*": 8, "*": 5}, negative_ttl=3
)


@pytest.mark.parametrize(
    ("name", "rdtype", "ttl"),
    [
        ("web.service.consul.", "A", 10),  # exact
        ("web.service.consul.", "SRV", 10),
        ("v1.web.service.consul.", "A", 10),
        ("_web._tcp.service.consul.", "SRV", 10),
        ("db.service.consul.", "A", 8),  # longest prefix
        ("dup.service.consul.", "A", 7),  # shorter prefix
        ("cache.service.consul.", "A", 5),  # "*"
        ("api.service.consul.", "A", 5),  # the CNAME too
        ("web.connect.consul.", "A", 10),  # connect: the service asked for
        ("a.node.consul.", "A", 30),
        ("web.prod.node.consul.", "TXT", 30),
        ("1.0.0.10.in-addr.arpa.", "PTR", 30),  # a node's PTR
        ("1.0.1.10.in-addr.arpa.", "PTR", 8),  # a service's PTR
        ("consul.", "NS", 30),
    ],
)
def test_ttls(name: str, rdtype: str, ttl: int) -> None:
    resp = ask(name, rdtype, TTL_SETTINGS)
    assert resp.answer and {rrset.ttl for rrset in resp.answer} == {ttl}


def test_srv_glue_ttls() -> None:
    resp = ask("web.service.consul.", "SRV", TTL_SETTINGS)
    assert {rrset.ttl for rrset in resp.additional} == {10}
    ns = ask("consul.", "NS", TTL_SETTINGS)
    assert {rrset.ttl for rrset in ns.additional} == {30}


def test_negative_ttl_in_nxdomain_and_nodata() -> None:
    for name, rdtype in (("nope.service.consul.", "A"), ("a.node.consul.", "AAAA")):
        soa = soa_of(ask(name, rdtype, TTL_SETTINGS))
        assert soa is not None and soa.ttl == 3 and soa[0].minimum == 3


# --- TXT ----------------------------------------------------------------------------------


def test_txt_meta_strings_are_chunked_at_255_bytes() -> None:
    resp = ask("web.prod.node.consul.", "TXT")
    strings = sorted(rd.strings for rd in resp.answer[0])
    long = f"long={LONG_META}".encode()
    assert strings == [(long[:255], long[255:]), (b"rack=r1",)]


def test_txt_escapes_quotes_and_non_ascii() -> None:
    meta = {"q": 'say "hi" \\ ok', "u": "caf\u00e9"}
    zone = build_zone(catalog_state([node("m", "10.0.0.9", meta=meta)], ()), "dc1")
    resp = ask("m.node.consul.", "TXT", zone=zone)
    assert sorted(rd.strings for rd in resp.answer[0]) == [
        (b'q=say "hi" \\ ok',), ("u=caf\u00e9".encode(),),
    ]  # fmt: skip


# --- protocol negatives ------------------------------------------------------------------


@pytest.mark.parametrize("rdtype", ["AXFR", "IXFR"])
def test_zone_transfers_not_implemented(rdtype: str) -> None:
    resp = message(answer(make_query("consul.", rdtype), ctx()))
    assert resp.rcode() == dns.rcode.NOTIMP and not resp.answer


@pytest.mark.parametrize("opcode", [dns.opcode.NOTIFY, dns.opcode.UPDATE, dns.opcode.STATUS])
def test_other_opcodes_not_implemented(opcode: dns.opcode.Opcode) -> None:
    query = make_query("consul.", "SOA")
    query.set_opcode(opcode)
    wire = query.to_wire()
    resp = handle(wire, ctx())
    assert isinstance(resp, dns.message.Message)
    back = dns.message.from_wire(to_wire(resp, 512))
    assert back.rcode() == dns.rcode.NOTIMP and back.opcode() == opcode and not back.answer


def test_edns_version_1_is_badvers_with_opt() -> None:
    query = make_query("web.service.consul.", edns=1)
    out = handle(query.to_wire(), ctx())
    assert isinstance(out, dns.message.Message)
    resp = dns.message.from_wire(to_wire(out, 512))
    assert resp.rcode() == dns.rcode.BADVERS
    assert resp.edns == 0 and not resp.answer


def test_unknown_edns_option_is_ignored() -> None:
    option = dns.edns.GenericOption(dns.edns.OptionType.make(65001), b"whatever")
    resp = ask("web.service.consul.", edns=0, payload=1232, options=[option])
    assert resp.rcode() == dns.rcode.NOERROR and resp.edns == 0
    assert rdata_texts(resp.answer) == ["10.0.0.1", "10.0.0.2"]


def test_several_questions_formerr() -> None:
    query = make_query("web.service.consul.")
    query.question.append(query.question[0])
    resp = message(answer(query, ctx()))
    assert resp.rcode() == dns.rcode.FORMERR


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00", id="question missing"),
        pytest.param(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05ab", id="cut label"),
        pytest.param(b"\x12\x34\x01\x00" + b"\xff" * 20, id="counts garbage"),
        pytest.param(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",
                     id="pointer loop"),
    ],
)  # fmt: skip
def test_header_that_parses_but_question_does_not_is_formerr(wire: bytes) -> None:
    resp = handle(wire, ctx())
    assert isinstance(resp, dns.message.Message)
    back = dns.message.from_wire(to_wire(resp, 512))
    assert back.id == 0x1234 and back.rcode() == dns.rcode.FORMERR
    assert back.flags & dns.flags.QR and back.flags & dns.flags.RD


@pytest.mark.parametrize("size", [0, 1, 2, 11])
def test_shorter_than_a_header_is_dropped(size: int) -> None:
    assert handle(b"\x12" * size, ctx()) is None


def test_responses_are_never_answered() -> None:
    # Answering a response (QR set) invites loops between servers; such packets are dropped.
    reply = dns.message.make_response(make_query("web.service.consul."))
    assert handle(reply.to_wire(), ctx()) is None


@pytest.mark.parametrize(
    ("name", "rdtype"),
    [("example.com.", "A"), ("consul.example.com.", "A"), ("com.", "NS"), (".", "NS")],
)
def test_outside_names_refused_or_forwarded(name: str, rdtype: str) -> None:
    resp = message(answer(make_query(name, rdtype), ctx()))
    assert resp.rcode() == dns.rcode.REFUSED
    assert not resp.flags & (dns.flags.AA | dns.flags.RA)
    assert answer(make_query(name, rdtype), ctx(DnsSettings(recursion=True))) is FORWARD


def test_unknown_reverse_names() -> None:
    name = "9.9.3.10.in-addr.arpa."
    resp = message(answer(make_query(name, "PTR"), ctx()))
    assert resp.rcode() == dns.rcode.NXDOMAIN and not resp.flags & dns.flags.AA
    assert answer(make_query(name, "PTR"), ctx(DnsSettings(recursion=True))) is FORWARD
    # A known address asked for another type goes upstream too.
    assert (
        answer(make_query("1.0.0.10.in-addr.arpa.", "A"), ctx(DnsSettings(recursion=True)))
        is FORWARD
    )


def test_ra_only_with_recursion() -> None:
    recursing = DnsSettings(recursion=True)
    for name, rdtype in (
        ("web.service.consul.", "A"),
        ("nope.service.consul.", "A"),
        ("consul.", "SOA"),
        ("1.0.0.10.in-addr.arpa.", "PTR"),
    ):
        assert not ask(name, rdtype).flags & dns.flags.RA
        resp = ask(name, rdtype, recursing)
        assert resp.flags & dns.flags.RA and resp.flags & dns.flags.AA


def test_rd_and_cd_copied() -> None:
    assert ask("web.service.consul.").flags & dns.flags.RD
    assert not ask("web.service.consul.", rd=False).flags & dns.flags.RD
    query = make_query("web.service.consul.", edns=0)
    assert not message(answer(query, ctx())).flags & dns.flags.CD
    query.flags |= dns.flags.CD  # RFC 4035 3.2.2: the CD bit is copied
    assert message(answer(query, ctx())).flags & dns.flags.CD


def test_edns_answer_advertises_our_payload() -> None:
    resp = ask("web.service.consul.", edns=0, payload=1232)
    assert resp.edns == 0 and resp.payload == OUR_PAYLOAD


def test_other_class_in_domain_refused() -> None:
    query = dns.message.make_query("web.service.consul.", "A", rdclass=dns.rdataclass.CH)
    resp = message(answer(query, ctx()))
    assert resp.rcode() == dns.rcode.REFUSED


ALT = DnsSettings(alt_domain="mesh.internal.")


@pytest.mark.parametrize(
    ("name", "rdtype", "rcode", "records", "glue"),
    [
        ("web.service.mesh.internal.", "A", "NOERROR", ["10.0.0.1", "10.0.0.2"], []),
        ("web.service.mesh.internal.", "SRV", "NOERROR",
         ["1 1 86 six.node.dc1.mesh.internal.", "1 10 80 a.node.dc1.mesh.internal.",
          "1 2 81 b.node.dc1.mesh.internal."],
         ["a.node.dc1.mesh.internal.", "b.node.dc1.mesh.internal.",
          "six.node.dc1.mesh.internal."]),
        ("db.service.mesh.internal.", "SRV", "NOERROR",
         ["1 1 5432 0a010001.addr.dc1.mesh.internal."], ["0a010001.addr.dc1.mesh.internal."]),
        ("a.node.dc1.mesh.internal.", "A", "NOERROR", ["10.0.0.1"], []),
        ("mesh.internal.", "NS", "NOERROR",
         ["a.node.dc1.mesh.internal.", "b.node.dc1.mesh.internal."],
         ["a.node.dc1.mesh.internal.", "b.node.dc1.mesh.internal."]),
        ("web.service.consul.", "A", "NOERROR", ["10.0.0.1", "10.0.0.2"], []),
        ("nope.service.mesh.internal.", "A", "NXDOMAIN", [], []),
        ("service.mesh.internal.", "A", "NOERROR", [], []),
    ],
)  # fmt: skip
def test_alt_domain(
    name: str, rdtype: str, rcode: str, records: list[str], glue: list[str]
) -> None:
    resp = ask(name, rdtype, ALT)
    assert dns.rcode.to_text(resp.rcode()) == rcode and resp.flags & dns.flags.AA
    assert rdata_texts(resp.answer) == records
    assert sorted(r.name.to_text() for r in resp.additional) == glue
    if not records:
        soa = soa_of(resp)
        apex = "consul." if name.endswith(".consul.") else "mesh.internal."
        assert soa is not None and soa.name.to_text() == apex
        assert soa[0].mname.to_text() == f"ns.{apex}"


def test_alt_domain_apex_soa() -> None:
    resp = ask("mesh.internal.", "SOA", ALT)
    assert rdata_texts(resp.answer) == [
        f"ns.mesh.internal. hostmaster.mesh.internal. {SERIAL} 3600 600 86400 0"
    ]


# --- sizes (to_wire) ----------------------------------------------------------------------

BIG = build_zone(
    catalog_state(
        [node(f"n{i:02}", f"10.2.0.{i + 1}", svc(f"big{i}", "big", 8000 + i)) for i in range(40)],
        (),
    ),
    "dc1",
)


def big(rdtype: str, settings: DnsSettings = SETTINGS, udp: bool = True, **kw: object) -> bytes:
    query = make_query("big.service.consul.", rdtype, **kw)  # type: ignore[arg-type]
    resp = message(answer(query, ctx(settings, BIG, udp=udp)))
    limit = udp_limit(query) if udp else 65535
    return to_wire(resp, limit, truncate=settings.enable_truncate)


@pytest.mark.parametrize("rdtype", ["A", "SRV", "ANY"])
def test_udp_without_edns_fits_512_and_sets_tc(rdtype: str) -> None:
    wire = big(rdtype)
    resp = dns.message.from_wire(wire)
    assert len(wire) <= 512
    assert resp.flags & dns.flags.TC
    assert 0 < sum(len(r) for r in resp.answer) < 40
    assert resp.rcode() == dns.rcode.NOERROR


@pytest.mark.parametrize("rdtype", ["A", "SRV"])
def test_edns_4096_gets_everything(rdtype: str) -> None:
    wire = big(rdtype, edns=0, payload=4096)
    resp = dns.message.from_wire(wire)
    assert len(wire) <= 4096 and not resp.flags & dns.flags.TC
    assert sum(len(r) for r in resp.answer) == 40 and resp.edns == 0
    if rdtype == "SRV":
        assert len(resp.additional) == 40


def test_small_edns_payload_counts_as_512() -> None:
    wire = big("A", edns=0, payload=200)
    assert 200 < len(wire) <= 512
    assert dns.message.from_wire(wire).flags & dns.flags.TC


def test_srv_drops_glue_before_answers() -> None:
    wire = big("SRV", edns=0, payload=2000)
    resp = dns.message.from_wire(wire)
    assert len(wire) <= 2000
    assert sum(len(r) for r in resp.answer) == 40 and not resp.additional
    assert not resp.flags & dns.flags.TC


def test_tcp_gets_everything() -> None:
    resp = dns.message.from_wire(big("SRV", udp=False))
    assert sum(len(r) for r in resp.answer) == 40 and len(resp.additional) == 40
    assert not resp.flags & dns.flags.TC


def test_truncate_off_cuts_silently() -> None:
    wire = big("A", DnsSettings(enable_truncate=False))
    resp = dns.message.from_wire(wire)
    assert len(wire) <= 512 and not resp.flags & dns.flags.TC
    assert 0 < len(resp.answer[0]) < 40


@pytest.mark.parametrize("rdtype", ["A", "SRV"])
def test_udp_answer_limit(rdtype: str) -> None:
    limited = DnsSettings(udp_answer_limit=3)
    resp = dns.message.from_wire(big(rdtype, limited, edns=0, payload=4096))
    assert len(resp.answer[0]) == 3 and not resp.flags & dns.flags.TC
    tcp = dns.message.from_wire(big(rdtype, limited, udp=False))
    assert len(tcp.answer[0]) == 40


def test_udp_limit() -> None:
    assert udp_limit(make_query("consul.")) == 512
    assert udp_limit(make_query("consul.", edns=0, payload=100)) == 512
    assert udp_limit(make_query("consul.", edns=0, payload=4096)) == 4096


def test_serial_in_soa() -> None:
    resp = message(answer(make_query("consul.", "SOA"), Context(ZONE, SETTINGS, 99)))
    assert resp.answer[0][0].serial == 99


def test_ns_without_agents_is_nodata() -> None:
    zone = build_zone(catalog_state([node("solo", "10.0.0.1")], ()), "dc1")
    resp = ask("consul.", "NS", zone=zone)
    assert resp.rcode() == dns.rcode.NOERROR and not resp.answer and soa_of(resp) is not None


def test_ns_lists_at_most_three_agents() -> None:
    records = [node(f"s{i}", f"10.3.0.{i}", svc("consul", "consul", 8300)) for i in range(1, 6)]
    zone = build_zone(catalog_state(records, ()), "dc1")
    resp = ask("consul.", "NS", zone=zone)
    assert len(resp.answer[0]) == 3 and len(resp.additional) == 3
