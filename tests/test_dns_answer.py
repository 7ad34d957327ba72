"""DNS answers as a pure function: tables of question -> rcode and records, plus fuzzing."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.agent.dns.answer import DnsView, answer, handle
from gossamer.agent.dns.server import render
from gossamer.gossip.members import Member


def member(name: str, addr: str, status: str = "alive", port: str = "8300") -> Member:
    return Member(
        name=name, addr=addr, port=8301, tags={"port": port}, status=status,
        protocol_min=1, protocol_max=5, protocol_cur=2,
        delegate_min=2, delegate_max=5, delegate_cur=4,
    )  # fmt: skip


VIEW = DnsView(
    datacenter="dc1",
    members={
        "a": member("a", "10.0.0.1"),
        "b": member("b", "10.0.0.2"),
        "gone": member("gone", "10.0.0.3", status="failed"),
        "old": member("old", "10.0.0.4", status="left"),
        "six": member("six", "fd00::6"),
        "web.prod": member("web.prod", "10.0.0.5"),
    },
)


def ask(name: str, rdtype: str = "A") -> dns.message.Message:
    return answer(dns.message.make_query(name, rdtype), VIEW)


def texts(resp: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in resp.answer for rd in rrset)


@pytest.mark.parametrize(
    ("name", "rdtype", "rcode", "records"),
    [
        ("a.node.consul.", "A", "NOERROR", ["10.0.0.1"]),
        ("A.NODE.dc1.CONSUL.", "A", "NOERROR", ["10.0.0.1"]),
        ("web.prod.node.consul.", "A", "NOERROR", ["10.0.0.5"]),
        ("gone.node.consul.", "A", "NOERROR", ["10.0.0.3"]),  # failed nodes still resolve
        ("old.node.consul.", "A", "NXDOMAIN", []),  # left nodes are gone
        ("six.node.consul.", "AAAA", "NOERROR", ["fd00::6"]),
        ("six.node.consul.", "A", "NOERROR", []),  # NODATA
        ("a.node.consul.", "TXT", "NOERROR", []),
        ("a.node.dc2.consul.", "A", "NXDOMAIN", []),
        ("nobody.node.consul.", "A", "NXDOMAIN", []),
        ("consul.service.consul.", "A", "NOERROR", ["10.0.0.1", "10.0.0.2", "10.0.0.5"]),
        ("web.service.consul.", "A", "NXDOMAIN", []),
        ("what.ever.consul.", "A", "NXDOMAIN", []),
        ("example.com.", "A", "REFUSED", []),
    ],
)
def test_lookups(name: str, rdtype: str, rcode: str, records: list[str]) -> None:
    resp = ask(name, rdtype)
    assert dns.rcode.to_text(resp.rcode()) == rcode
    assert texts(resp) == records
    if rcode != "REFUSED":
        assert resp.flags & dns.flags.AA
    if rcode == "NXDOMAIN" or (rcode == "NOERROR" and not records):
        assert resp.authority and resp.authority[0].rdtype == dns.rdatatype.SOA


def test_srv_names_the_agents_with_glue() -> None:
    resp = ask("consul.service.consul.", "SRV")
    assert texts(resp) == [
        "1 1 8300 a.node.dc1.consul.", "1 1 8300 b.node.dc1.consul.",
        "1 1 8300 six.node.dc1.consul.", "1 1 8300 web.prod.node.dc1.consul.",
    ]  # fmt: skip
    glue = {rrset.name.to_text(): rrset[0].to_text() for rrset in resp.additional}
    assert glue["a.node.dc1.consul."] == "10.0.0.1"


def test_apex_soa_and_ns() -> None:
    soa = ask("consul.", "SOA")
    assert texts(soa)[0].startswith("ns.consul. hostmaster.consul. 1 3600 600 86400 0")
    ns = ask("consul.", "NS")
    assert texts(ns) == ["a.node.dc1.consul.", "b.node.dc1.consul.", "six.node.dc1.consul."]


def test_opcode_and_question_count() -> None:
    query = dns.message.make_query("a.node.consul.", "A")
    query.set_opcode(dns.opcode.NOTIFY)
    assert answer(query, VIEW).rcode() == dns.rcode.NOTIMP
    two = dns.message.make_query("a.node.consul.", "A")
    two.question.append(two.question[0])
    assert answer(two, VIEW).rcode() == dns.rcode.FORMERR


def test_garbage_with_a_header_gets_formerr_and_short_garbage_nothing() -> None:
    resp = handle(b"\x12\x34" + b"\xff" * 20, VIEW)
    assert resp is not None and resp.id == 0x1234 and resp.rcode() == dns.rcode.FORMERR
    assert handle(b"\x01\x02", VIEW) is None


def test_truncation_sets_tc() -> None:
    many = {f"n{i}": member(f"n{i}", f"10.1.{i // 250}.{i % 250 + 1}") for i in range(200)}
    resp = answer(dns.message.make_query("consul.service.consul.", "A"), DnsView("dc1", many))
    wire = render(resp, 512)
    assert len(wire) <= 512
    assert dns.message.from_wire(wire).flags & dns.flags.TC


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_answer_or_nothing_never_raise(data: bytes) -> None:
    resp = handle(data, VIEW)
    if resp is not None:
        render(resp, 512)
