"""The prepared (hot) path, prepared.Responder: the same answers as the complete path, and fuzz.

Every response from `Responder.respond` is compared with what answer.py
says for the same bytes (record order aside: both shuffle). The fuzz tests
send random and mutated packets through one long-lived responder and check
that it keeps answering valid queries correctly.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossamer.agent.dns import prepared
from gossamer.agent.dns.answer import FORWARD, Forward, handle
from gossamer.agent.dns.prepared import VARIANTS, Responder
from gossamer.agent.dns.records import MAX_ANSWER_RECORDS, Context
from gossamer.agent.dns.settings import DnsSettings
from gossamer.agent.dns.wire import to_wire, udp_limit
from gossamer.agent.dns.zone import Zone, build_zone
from tests.dns_support import (
    SERIAL,
    SETTINGS,
    ZONE,
    catalog_records,
    catalog_state,
    check,
    make_query,
    message,
    node,
    rdata_texts,
    soa_of,
    summary,
    svc,
)
from tests.test_dns_answer import CASES

TCP_LIMIT = 65535
BIG_NODES = [
    node(f"n{i:02}", f"10.2.0.{i + 1}", svc(f"big{i}", "big", 8000 + i)) for i in range(40)
]
FULL_ZONE = build_zone(catalog_state([*catalog_records(), *BIG_NODES]), "dc1")


def complete(
    wire: bytes, settings: DnsSettings, zone: Zone, *, tcp: bool
) -> bytes | Forward | None:
    """What the complete path (answer.py) sends for these bytes."""
    out = handle(wire, Context(zone, settings, SERIAL, udp=not tcp))
    if out is None or isinstance(out, Forward) or not out.question:
        return out if not isinstance(out, dns.message.Message) else out.to_wire()
    limit = TCP_LIMIT if tcp else udp_limit(dns.message.from_wire(wire))
    return to_wire(out, limit, truncate=settings.enable_truncate)


def mixed_case(name: str, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(c.upper() if rng.random() < 0.5 else c for c in name)


def variants(name: str, rdtype: str, *, few: bool = False) -> Iterator[tuple[str, bytes]]:
    """The same question in several cases, with and without EDNS, RD and CD."""
    for case_id, qname in (
        ("lower", name),
        ("upper", name.upper()),
        ("mixed", mixed_case(name, 3)),
    ):
        yield f"{case_id}", make_query(qname, rdtype).to_wire()
        yield f"{case_id}+edns", make_query(qname, rdtype, edns=0, payload=1232).to_wire()
    if few:
        return
    option = dns.edns.GenericOption(dns.edns.OptionType.make(65001), b"\x01\x02")
    yield "edns+option", make_query(name, rdtype, edns=0, payload=4096, options=[option]).to_wire()
    yield "edns small payload", make_query(name, rdtype, edns=0, payload=100).to_wire()
    yield "no rd", make_query(name, rdtype, rd=False).to_wire()
    cd = make_query(name, rdtype, edns=0)
    cd.flags |= dns.flags.CD
    yield "cd", cd.to_wire()
    do = make_query(name, rdtype, edns=0)
    do.want_dnssec()
    yield "do", do.to_wire()


EXTRA_QUESTIONS = [
    ("big.service.consul.", "A"),
    ("big.service.consul.", "SRV"),
    ("big.service.consul.", "ANY"),
    ("example.com.", "A"),
    ("9.9.3.10.in-addr.arpa.", "PTR"),  # unknown reverse: NXDOMAIN, not authoritative
    ("1.0.0.10.in-addr.arpa.", "A"),
    ("web.service.consul.", "AXFR"),
    ("web.service.consul.", "IXFR"),
    (".", "NS"),
    ("consul.", "CAA"),
]
QUESTIONS = sorted({(c.name, c.rdtype) for c in CASES} | set(EXTRA_QUESTIONS))
SETTINGS_VARIANTS = {
    "default": SETTINGS,
    "recursion": DnsSettings(recursion=True),
    "no truncate, only passing": DnsSettings(enable_truncate=False, only_passing=True),
    "answer limit": DnsSettings(udp_answer_limit=2),
    "ttls": DnsSettings(node_ttl=5, service_ttl={"w*": 7}, negative_ttl=9),
}


def same_response(
    got: bytes | Forward | None,
    want: bytes | Forward | None,
    full: Callable[[], bytes | Forward | None],
) -> None:
    """`got` (prepared) says what `want` (complete) says.

    When records were left out (TC, a silent cut, `udp_answer_limit`), which
    ones depends on the shuffle: then the counts must agree and every record
    must come from `full()`, the uncut answer.
    """
    if not isinstance(want, bytes) or not isinstance(got, bytes):
        assert got is want
        return
    g, w = dns.message.from_wire(got), dns.message.from_wire(want)
    g_sum, w_sum = summary(g), summary(w)
    assert len(got) <= max(len(want), udp_limit(g)) and g.payload == w.payload
    uncut = full() if w.flags & dns.flags.TC or g_sum != w_sum else None
    if isinstance(uncut, bytes):
        f_sum = summary(dns.message.from_wire(uncut))
        for part in ("answer", "additional"):
            if w_sum[part] != f_sum[part]:  # cut: compare counts, and records with the uncut
                assert len(g_sum[part]) == len(w_sum[part]), part
                assert set(g_sum.pop(part)) <= set(f_sum[part]), part
                w_sum.pop(part)
    assert g_sum == w_sum


def uncut(wire: bytes, s: DnsSettings, zone: Zone) -> Callable[[], bytes | Forward | None]:
    return lambda: complete(wire, replace(s, udp_answer_limit=0), zone, tcp=True)


@pytest.mark.parametrize(
    ("settings_id", "tcp"),
    [("default", False), ("default", True)]
    + [(s, False) for s in list(SETTINGS_VARIANTS)[1:]]
    + [("answer limit", True)],
)
def test_prepared_equals_complete(settings_id: str, tcp: bool) -> None:
    """Questions x case x EDNS variants, asked twice: all equal the complete path.

    The variants of one question share one prepared entry (the key is the
    lower-cased question), which collects up to VARIANTS shuffles from the
    complete path and then serves them: the 24 queries per question cover
    both building the entry and reading it.

    Every question under the default settings; a fifth of them (and the
    unusual ones) under the others.
    """
    s = SETTINGS_VARIANTS[settings_id]
    zone = build_zone(catalog_state([*catalog_records(), *BIG_NODES]), "dc1",
                      only_passing=s.only_passing)  # fmt: skip
    responder = Responder(Context(zone, s, SERIAL))
    questions = QUESTIONS if settings_id == "default" else QUESTIONS[::5] + EXTRA_QUESTIONS
    checked = 0
    for name, rdtype in questions:
        for variant_id, wire in variants(name, rdtype):
            want = complete(wire, s, zone, tcp=tcp)
            full = uncut(wire, s, zone)
            for attempt in range(2):
                got = responder.respond(wire, tcp=tcp)
                try:
                    same_response(got, want, full)
                except AssertionError as e:
                    raise AssertionError(f"{name} {rdtype} {variant_id} #{attempt}: {e}") from e
                checked += 1
    assert checked > (2000 if settings_id == "default" else 600)


def test_hot_path_does_not_call_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once an entry holds its shuffles, queries are served from bytes: answer() is not called."""
    responder = Responder(Context(ZONE, SETTINGS, SERIAL))
    questions = [("web.service.consul.", "SRV"), ("nope.service.consul.", "A"),
                 ("a.node.consul.", "A"), ("service.consul.", "A"), ("consul.", "NS")]  # fmt: skip
    wires = [w for name, rdtype in questions for _, w in variants(name, rdtype)]
    for tcp in (False, True):
        for wire in wires * VARIANTS:
            responder.respond(wire, tcp)
    calls = []
    monkeypatch.setattr(prepared, "answer", lambda *a: calls.append(a))
    for tcp in (False, True):
        for wire in wires:
            out = responder.respond(wire, tcp)
            assert isinstance(out, bytes) and out[:2] == wire[:2]
    assert calls == []


def test_responses_echo_id_and_case() -> None:
    responder = Responder(Context(ZONE, SETTINGS, SERIAL))
    for i, qname in enumerate(
        ["web.service.consul.", "WEB.Service.CONSUL.", "wEb.sErViCe.cOnSuL."]
    ):
        for _ in range(2 * VARIANTS):
            query = make_query(qname, "SRV")
            query.id = i * 1000 + _
            resp = message(responder.respond(query.to_wire()))
            assert resp.id == query.id
            assert resp.question[0].name.to_text() == qname
            assert all(rrset.name.to_text() == qname for rrset in resp.answer)
            assert sorted(rd.port for rd in resp.answer[0]) == [80, 81, 86]


def test_prepared_answers_are_shuffled() -> None:
    responder = Responder(Context(ZONE, SETTINGS, SERIAL, rng=random.Random(5)))
    wire = make_query("web.service.consul.", "SRV").to_wire()
    orders = set()
    for _ in range(100):
        resp = message(responder.respond(wire))
        orders.add(tuple(rd.port for rd in resp.answer[0]))
    assert len(orders) > 1
    assert all(sorted(o) == [80, 81, 86] for o in orders)


def test_prepared_nearest_first() -> None:
    zone = build_zone(catalog_state(), "dc1", distance={"six": 0.001, "b": 0.002, "a": 0.03})
    responder = Responder(Context(zone, DnsSettings(nearest_first=True), SERIAL))
    for _ in range(3 * VARIANTS):
        resp = message(responder.respond(make_query("web.service.consul.", "SRV").to_wire()))
        assert [rd.port for rd in resp.answer[0]] == [86, 81, 80]


def test_update_changes_answers() -> None:
    responder = Responder(Context(ZONE, SETTINGS, SERIAL))
    a = make_query("web.service.consul.", "A").to_wire()
    nx = make_query("new.service.consul.", "A").to_wire()
    for _ in range(3):
        assert rdata_texts(message(responder.respond(a)).answer) == ["10.0.0.1", "10.0.0.2"]
        assert message(responder.respond(nx)).rcode() == dns.rcode.NXDOMAIN
    records = [
        replace(r, checks=(check("web2-http", "critical", "web2"),)) if r.node == "b" else r
        for r in catalog_records()
    ]
    records.append(node("g", "10.0.0.9", svc("web9", "web", 89), svc("new1", "new", 1)))
    responder.update(build_zone(catalog_state(records), "dc1"), SERIAL + 1)
    for _ in range(3):
        assert rdata_texts(message(responder.respond(a)).answer) == ["10.0.0.1", "10.0.0.9"]
        assert rdata_texts(message(responder.respond(nx)).answer) == ["10.0.0.9"]
    gone = message(responder.respond(make_query("nope.service.consul.").to_wire()))
    soa = soa_of(gone)
    assert soa is not None and soa[0].serial == SERIAL + 1
    assert responder.context.serial == SERIAL + 1


# --- sizes through the responder ----------------------------------------------------------


def big_over(settings: DnsSettings, rdtype: str, *, tcp: bool = False, **kw: Any) -> list[bytes]:
    """The responses to identical queries, until the prepared entry serves them."""
    responder = Responder(Context(FULL_ZONE, settings, SERIAL))
    wire = make_query("big.service.consul.", rdtype, **kw).to_wire()
    out = [responder.respond(wire, tcp=tcp) for _ in range(VARIANTS + 2)]
    assert all(isinstance(o, bytes) for o in out)
    return [o for o in out if isinstance(o, bytes)]


def count(msg: dns.message.Message) -> int:
    return sum(len(rrset) for rrset in msg.answer)


@pytest.mark.parametrize("rdtype", ["A", "SRV", "ANY"])
def test_udp_without_edns_fits_512_with_tc(rdtype: str) -> None:
    for wire in big_over(SETTINGS, rdtype):
        resp = dns.message.from_wire(wire)
        assert len(wire) <= 512 and resp.flags & dns.flags.TC
        assert 0 < count(resp) < 40 and resp.edns < 0


@pytest.mark.parametrize("rdtype", ["A", "SRV"])
def test_udp_with_edns_4096_gets_all(rdtype: str) -> None:
    for wire in big_over(SETTINGS, rdtype, edns=0, payload=4096):
        resp = dns.message.from_wire(wire)
        assert len(wire) <= 4096 and not resp.flags & dns.flags.TC
        assert count(resp) == 40 and resp.edns == 0


@pytest.mark.parametrize("rdtype", ["A", "SRV"])
def test_tcp_gets_all(rdtype: str) -> None:
    for wire in big_over(SETTINGS, rdtype, tcp=True):
        resp = dns.message.from_wire(wire)
        assert count(resp) == 40 and not resp.flags & dns.flags.TC
        if rdtype == "SRV":
            assert len(resp.additional) == 40


def test_truncate_off_cuts_without_tc() -> None:
    for wire in big_over(DnsSettings(enable_truncate=False), "A"):
        resp = dns.message.from_wire(wire)
        assert len(wire) <= 512 and not resp.flags & dns.flags.TC and 0 < count(resp) < 40


@pytest.mark.parametrize("rdtype", ["A", "SRV"])
def test_udp_answer_limit(rdtype: str) -> None:
    limited = DnsSettings(udp_answer_limit=3)
    for wire in big_over(limited, rdtype):
        resp = dns.message.from_wire(wire)
        assert count(resp) == 3 and not resp.flags & dns.flags.TC
    for wire in big_over(limited, rdtype, tcp=True):
        assert count(dns.message.from_wire(wire)) == 40


def test_huge_services_are_capped_and_cut_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # 1,200 instances: an answer lists a random MAX_ANSWER_RECORDS of them (500 SRV
    # records with glue fit 64 KB of TCP); over UDP records are cut and TC is set. A cut
    # answer is kept like any other, so repeating the query costs no new cut.
    nodes = [node(f"h{i:04}", f"10.{i // 250}.{i % 250}.1", svc(f"h{i}", "huge", 1000 + i))
             for i in range(1200)]  # fmt: skip
    responder = Responder(Context(build_zone(catalog_state(nodes, ()), "dc1"), SETTINGS, SERIAL))
    udp_queries: list[dict[str, Any]] = [{}, {"edns": 0, "payload": 4096}]
    cut: list[bytes] = []
    for kw in udp_queries:
        for _ in range(VARIANTS):
            wire = responder.respond(make_query("huge.service.consul.", "SRV", **kw).to_wire())
            assert isinstance(wire, bytes)
            cut.append(wire)
        resp = message(wire)
        assert len(wire) <= udp_limit(resp)
        assert resp.flags & dns.flags.TC and 0 < count(resp) < MAX_ANSWER_RECORDS
    calls: list[object] = []
    monkeypatch.setattr(prepared, "answer", lambda *a: calls.append(a))
    for kw in udp_queries:  # the cut answers are kept: no new answer() and no new cut
        wire = responder.respond(make_query("huge.service.consul.", "SRV", **kw).to_wire())
        assert isinstance(wire, bytes) and wire[2:] in {w[2:] for w in cut}
    assert calls == []
    monkeypatch.undo()
    wire = responder.respond(make_query("huge.service.consul.", "SRV").to_wire(), True)
    resp = message(wire)
    assert isinstance(wire, bytes) and len(wire) <= TCP_LIMIT
    assert count(resp) == MAX_ANSWER_RECORDS and not resp.flags & dns.flags.TC
    a = message(responder.respond(make_query("huge.service.consul.", "A").to_wire(), True))
    assert count(a) == MAX_ANSWER_RECORDS and not a.flags & dns.flags.TC


def test_refused_answers_are_kept_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flood of names outside the domain must not cost a DNS library parse each."""
    responder = Responder(Context(build_zone(catalog_state(), "dc1"), SETTINGS, SERIAL))
    outside = make_query("example.com.", "A").to_wire()
    assert message(responder.respond(outside)).rcode() == dns.rcode.REFUSED
    calls: list[object] = []
    monkeypatch.setattr(prepared, "answer", lambda *a: calls.append(a))
    again = message(responder.respond(make_query("Example.COM.", "A").to_wire()))
    assert again.rcode() == dns.rcode.REFUSED and not again.flags & dns.flags.AA
    assert calls == []


# --- protocol edges through the responder -------------------------------------------------


def test_edges() -> None:
    plain = Responder(Context(ZONE, SETTINGS, SERIAL))
    recursing = Responder(Context(ZONE, DnsSettings(recursion=True), SERIAL))
    outside = make_query("example.com.").to_wire()
    for tcp in (False, True):
        assert message(plain.respond(outside, tcp)).rcode() == dns.rcode.REFUSED
        assert recursing.respond(outside, tcp) is FORWARD
        assert plain.respond(b"\x00" * 11, tcp) is None
        formerr = message(plain.respond(b"\xab\xcd\x01\x00\x00\x01" + b"\x00" * 6, tcp))
        assert formerr.id == 0xABCD and formerr.rcode() == dns.rcode.FORMERR
        reply = dns.message.make_response(make_query("web.service.consul."))
        assert plain.respond(reply.to_wire(), tcp) is None
        badvers = message(plain.respond(make_query("consul.", edns=1).to_wire(), tcp))
        assert badvers.rcode() == dns.rcode.BADVERS and badvers.edns == 0
        notify = make_query("consul.", "SOA")
        notify.set_opcode(dns.opcode.NOTIFY)
        assert message(plain.respond(notify.to_wire(), tcp)).rcode() == dns.rcode.NOTIMP
        web = message(recursing.respond(make_query("web.service.consul.").to_wire(), tcp))
        assert web.flags & dns.flags.RA and web.flags & dns.flags.AA
        for _ in range(3):  # a reverse name we do not own: NXDOMAIN, never authoritative
            ptr = message(plain.respond(make_query("9.9.3.10.in-addr.arpa.", "PTR").to_wire(), tcp))
            assert ptr.rcode() == dns.rcode.NXDOMAIN and not ptr.flags & dns.flags.AA
        for _ in range(3):  # CD echoed (RFC 4035 3.2.2)
            cd = make_query("web.service.consul.", edns=0)
            cd.flags |= dns.flags.CD
            assert message(plain.respond(cd.to_wire(), tcp)).flags & dns.flags.CD


# --- fuzz ---------------------------------------------------------------------------------

FUZZ_SETTINGS = {
    False: DnsSettings(alt_domain="mesh.internal."),
    True: DnsSettings(recursion=True, udp_answer_limit=5),
}
FUZZ = {k: Responder(Context(FULL_ZONE, s, SERIAL)) for k, s in FUZZ_SETTINGS.items()}
SEEDS = [
    make_query(name, rdtype, **kw).to_wire()
    for name, rdtype in [
        ("web.service.consul.", "A"), ("web.service.consul.", "SRV"),
        ("_web._v1.service.dc1.consul.", "SRV"), ("big.service.consul.", "ANY"),
        ("web.prod.node.consul.", "TXT"), ("1.0.0.10.in-addr.arpa.", "PTR"),
        ("consul.", "ANY"), ("nope.service.mesh.internal.", "AAAA"), ("example.com.", "A"),
    ]
    for kw in ({}, {"edns": 0, "payload": 4096}, {"edns": 0, "payload": 600,
               "options": [dns.edns.GenericOption(dns.edns.OptionType.EXPIRE, b"\x00\x01")]})
]  # fmt: skip
CHECK_QUERY = make_query("web.service.consul.", "SRV")


def check_output(data: bytes, out: bytes | Forward | None, recursion: bool, tcp: bool) -> None:
    if out is None:
        return
    if isinstance(out, Forward):
        assert recursion
        return
    assert isinstance(out, bytes) and len(out) >= 12
    assert out[:2] == data[:2] and out[2] & 0x80  # our ID, and QR set
    resp = dns.message.from_wire(out)
    try:
        query = dns.message.from_wire(data)
    except Exception:
        # FORMERR; or the prepared path answered a query whose OPT carries an option
        # dnspython cannot decode (a malformed client-subnet): options are ignored there.
        assert (resp.rcode() == dns.rcode.FORMERR and len(out) == 12) or resp.question
        return
    assert len(out) <= (TCP_LIMIT if tcp else udp_limit(query))
    assert not query.flags & dns.flags.QR  # responses are dropped, never answered
    assert [q.to_text() for q in resp.question] == [q.to_text() for q in query.question]


FUZZ_COUNT = [0]


def still_answers(recursion: bool) -> None:
    """Every fourth packet, a valid query must still get the right answer (UDP and TCP)."""
    FUZZ_COUNT[0] += 1
    if FUZZ_COUNT[0] % 4:
        return
    for tcp in (False, True):
        CHECK_QUERY.id = random.randrange(65536)
        resp = message(FUZZ[recursion].respond(CHECK_QUERY.to_wire(), tcp))
        assert resp.id == CHECK_QUERY.id and resp.rcode() == dns.rcode.NOERROR
        assert sorted(rd.port for rd in resp.answer[0]) == [80, 81, 86]
        assert len(resp.additional) == 3


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=600), recursion=st.booleans())
def test_fuzz_random_bytes(data: bytes, recursion: bool) -> None:
    for tcp in (False, True):
        check_output(data, FUZZ[recursion].respond(data, tcp), recursion, tcp)
    still_answers(recursion)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 4))]
        elif op == "truncate":
            del data[at:]
    return bytes(data)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated(), recursion=st.booleans())
def test_fuzz_mutated_queries(data: bytes, recursion: bool) -> None:
    for tcp in (False, True):
        check_output(data, FUZZ[recursion].respond(data, tcp), recursion, tcp)
    still_answers(recursion)


def test_after_fuzz_answers_equal_the_complete_path() -> None:
    """Whatever the fuzz left in the caches, answers still match answer.py."""
    for recursion, responder in FUZZ.items():
        s = FUZZ_SETTINGS[recursion]
        for name, rdtype in QUESTIONS[::4] + EXTRA_QUESTIONS:
            for _, wire in variants(name, rdtype, few=True):
                for tcp in (False, True):
                    want = complete(wire, s, FULL_ZONE, tcp=tcp)
                    same_response(responder.respond(wire, tcp), want, uncut(wire, s, FULL_ZONE))
