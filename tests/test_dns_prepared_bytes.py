"""Prepared answers equal the complete path's byte for byte, on every query path.

With the shuffle switched off (an rng whose shuffle keeps the order), the
complete path in answer.py is deterministic, so whatever the prepared path
in prepared.py sends (built, sealed, or kept for the exact query bytes)
must be the very bytes the complete path sends for the same query, the ID
being the one of the query that asked. A table of named paths (plain, EDNS
with and without options, DO and CD, TCP) first, then Hypothesis over every
question the DNS tests know, in any case, with any flags, payload and
options, under several settings.
"""

from __future__ import annotations

import random
from typing import Any

import dns.edns
import dns.flags
import dns.message
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossamer.agent.dns import prepared
from gossamer.agent.dns.answer import Forward, handle
from gossamer.agent.dns.prepared import VARIANTS, Responder
from gossamer.agent.dns.records import Context
from gossamer.agent.dns.settings import DnsSettings
from gossamer.agent.dns.wire import to_wire, udp_limit
from gossamer.agent.dns.zone import Zone
from tests.dns_support import SERIAL, SETTINGS, make_query
from tests.test_dns_prepared import FULL_ZONE, QUESTIONS

TCP_LIMIT = 65535


class InOrder(random.Random):
    """An rng whose shuffle keeps the order: answers become deterministic."""

    def shuffle(self, x: Any) -> None:  # type: ignore[override]
        return None


def complete(wire: bytes, ctx: Context, *, tcp: bool) -> bytes | Forward | None:
    """What the complete path (answer.py, then wire.py) sends for these bytes."""
    out = handle(wire, ctx)
    if out is None or isinstance(out, Forward):
        return out
    if not out.question:  # FORMERR for bytes that do not parse: sent as is
        return out.to_wire()
    limit = TCP_LIMIT if tcp else udp_limit(dns.message.from_wire(wire))
    return to_wire(out, limit, truncate=ctx.settings.enable_truncate)


def contexts(s: DnsSettings, zone: Zone) -> dict[bool, Context]:
    return {tcp: Context(zone, s, SERIAL, udp=not tcp, rng=InOrder()) for tcp in (False, True)}


def assert_prepared_equals_complete(responder: Responder, ctx: Context, wire: bytes, tcp: bool,
                                    ids: list[int]) -> None:  # fmt: skip
    """Asked once per ID (building the entry, sealing it, then kept bytes): every
    response is the complete path's bytes with that query's ID."""
    want = complete(wire, ctx, tcp=tcp)
    for qid in ids:
        asked = qid.to_bytes(2, "big") + wire[2:]
        got = responder.respond(asked, tcp)
        if not isinstance(want, bytes):
            assert got is want
            continue
        assert isinstance(got, bytes)
        assert got[:2] == asked[:2], "the ID of the query that asked"
        assert got[2:] == want[2:], (dns.message.from_wire(got), dns.message.from_wire(want))


COOKIE = dns.edns.CookieOption(bytes.fromhex("0102030405060708"), b"")
PATHS = [
    ("service A", "web.service.consul.", "A"),
    ("service AAAA", "web.service.consul.", "AAAA"),
    ("service ANY", "web.service.consul.", "ANY"),
    ("SRV with glue", "web.service.consul.", "SRV"),
    ("RFC 2782 SRV", "_web._v1.service.consul.", "SRV"),
    ("host-name instance (CNAME)", "api.service.consul.", "A"),
    ("NXDOMAIN", "nope.service.consul.", "A"),
    ("NODATA", "web.service.consul.", "TXT"),
    ("empty non-terminal", "service.consul.", "A"),
    ("node A", "a.node.consul.", "A"),
    ("node TXT (long meta)", "web.prod.node.consul.", "TXT"),
    ("addr A", "0a000001.addr.consul.", "A"),
    ("addr AAAA", "fd000000000000000000000000000010.addr.consul.", "AAAA"),
    ("PTR", "1.0.0.10.in-addr.arpa.", "PTR"),
    ("PTR unknown (NXDOMAIN)", "9.9.3.10.in-addr.arpa.", "PTR"),
    ("REFUSED outside", "example.com.", "A"),
    ("apex NS with glue", "consul.", "NS"),
    ("apex SOA", "consul.", "SOA"),
    ("big SRV (cut over UDP)", "big.service.consul.", "SRV"),
]
SHAPES: dict[str, dict[str, Any]] = {
    "plain": {},
    "EDNS": {"edns": 0, "payload": 1232},
    "EDNS 4096": {"edns": 0, "payload": 4096},
    "EDNS small payload": {"edns": 0, "payload": 100},
    "EDNS + cookie": {"edns": 0, "payload": 1232, "options": [COOKIE]},
    "EDNS + two options": {"edns": 0, "payload": 1400, "options": [
        COOKIE, dns.edns.GenericOption(dns.edns.OptionType.make(65001), b"\x01\x02")]},
    "EDNS + padding": {"edns": 0, "payload": 1232,
                       "options": [dns.edns.GenericOption(dns.edns.OptionType.PADDING, b"")]},
    "no RD": {"rd": False},
}  # fmt: skip


def shaped(name: str, rdtype: str, shape: str, *, do: bool = False, cd: bool = False) -> bytes:
    query = make_query(name, rdtype, **SHAPES[shape])
    if do:
        query.want_dnssec()
    if cd:
        query.flags |= dns.flags.CD
    return query.to_wire()


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_path_prepared_equals_complete(shape: str, tcp: bool) -> None:
    ctx = contexts(SETTINGS, FULL_ZONE)[tcp]
    responder = Responder(ctx)
    ids = list(range(1, VARIANTS + 4))
    for _, name, rdtype in PATHS:
        for do, cd in ((False, False), (True, True)):
            for qname in (name, name.upper()):
                wire = shaped(qname, rdtype, shape, do=do, cd=cd)
                assert_prepared_equals_complete(responder, ctx, wire, tcp, ids)


def test_kept_query_bytes_are_served_without_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """A query with options, asked again in the same bytes, is answered from kept bytes."""
    ctx = contexts(SETTINGS, FULL_ZONE)[False]
    responder = Responder(ctx)
    wires = [shaped(name, rdtype, "EDNS + cookie") for _, name, rdtype in PATHS]
    for wire in wires * (VARIANTS + 1):
        responder.respond(wire)
    calls: list[object] = []
    monkeypatch.setattr(prepared, "answer", lambda *a: calls.append(a))
    for wire in wires:
        assert isinstance(responder.respond(b"\x99\x99" + wire[2:]), bytes)
    assert calls == []


def test_kept_query_bytes_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Distinct spellings of one name (0x20 case) do not grow memory without bound."""
    monkeypatch.setattr(prepared, "MAX_SEEN", 16)
    ctx = contexts(SETTINGS, FULL_ZONE)[False]
    responder = Responder(ctx)
    rng = random.Random(7)
    for _ in range(200):
        name = "".join(c.upper() if rng.random() < 0.5 else c for c in "web.service.consul.")
        wire = make_query(name, "SRV").to_wire()
        assert_prepared_equals_complete(responder, ctx, wire, False, [rng.randrange(65536)])
    assert max(len(kept) for kept in responder._seen) <= 16


# --- Hypothesis: any question, any case, flags, payload and options ---------------------------

SETTINGS_CHOICES = [
    SETTINGS,
    DnsSettings(udp_answer_limit=2),
    DnsSettings(enable_truncate=False, node_ttl=5, service_ttl={"w*": 7}, negative_ttl=9),
    DnsSettings(recursion=True, alt_domain="mesh.internal."),
]
RESPONDERS = [
    (contexts(s, FULL_ZONE), {tcp: Responder(c) for tcp, c in contexts(s, FULL_ZONE).items()})
    for s in SETTINGS_CHOICES
]
OPTIONS = st.lists(
    st.one_of(
        st.just(COOKIE),
        st.binary(min_size=8, max_size=8).map(lambda c: dns.edns.CookieOption(c, b"")),
        st.binary(max_size=12).map(
            lambda b: dns.edns.GenericOption(dns.edns.OptionType.make(65001), b)
        ),
        st.just(dns.edns.GenericOption(dns.edns.OptionType.PADDING, b"")),
    ),
    max_size=2,
)


@st.composite
def queries(draw: st.DrawFn) -> bytes:
    name, rdtype = draw(st.sampled_from(QUESTIONS))
    upper = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    name = "".join(c.upper() if u else c for c, u in zip(name, upper, strict=True))
    kw: dict[str, Any] = {"rd": draw(st.booleans())}
    if draw(st.booleans()):
        kw |= {"edns": 0, "payload": draw(st.integers(0, 65535)), "options": draw(OPTIONS)}
    query = make_query(name, rdtype, **kw)
    if draw(st.booleans()):
        query.flags |= dns.flags.CD
    if kw.get("edns") == 0 and draw(st.booleans()):
        query.want_dnssec()
    return query.to_wire()


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    wire=queries(),
    which=st.integers(0, len(SETTINGS_CHOICES) - 1),
    tcp=st.booleans(),
    ids=st.lists(st.integers(0, 65535), min_size=1, max_size=VARIANTS + 2),
)
def test_any_query_prepared_equals_complete(wire: bytes, which: int, tcp: bool,
                                            ids: list[int]) -> None:  # fmt: skip
    ctxs, responders = RESPONDERS[which]
    assert_prepared_equals_complete(responders[tcp], ctxs[tcp], wire, tcp, ids)
