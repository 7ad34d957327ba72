"""A catalog built in-process for the DNS unit tests, and helpers to ask it questions.

No agents and no I/O: node records are merged into a `CatalogState`, one
node is marked failed through the Serf overlay, and `build_zone` turns the
state into the Zone the answers are read from.

The catalog (datacenter dc1; node "x" lives in dc2):

    node     address   services (id name port [address] [tags])       health
    a        10.0.0.1  web1 web 80 [v1, Primary] weights 10/1         passing
                       consul 8300; db1 db 5432 @10.1.0.1
                       sidecar web-sidecar-proxy 21000 (-> web)
                       v6 v6svc 7000 @fd00::10; dup1 dup 90 @10.9.9.9
    b        10.0.0.2  web2 web 81 [v1] weights 5/2                   web2 warning
                       consul 8300; native1 native 9000 (Connect.Native)
                       dup2 dup 91 @10.9.9.9
    c        10.0.0.3  web3 web 82 [v2]                               web3 critical
                       cache1 cache 6379 @10.0.0.3 (the node's own)
    d        10.0.0.4  web4 web 83; lonely1 lonely 1000               node check critical
    e        10.0.0.5  web5 web 84; ghost1 ghost 2000                 Serf: failed
    f        10.0.0.6  api1 api 443 @api.example.com                  passing
    six      fd00::6   web6 web 86                                    passing
    web.prod 10.0.0.8  (none); meta rack=r1, long=<300 x>             passing
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.rdatatype
import dns.rrset

from gossamer.agent.dns.answer import Forward, answer
from gossamer.agent.dns.records import Context
from gossamer.agent.dns.settings import DnsSettings
from gossamer.agent.dns.wire import to_wire, udp_limit
from gossamer.agent.dns.zone import Zone, build_zone
from gossamer.catalog import merge
from gossamer.catalog.model import Check, NodeRecord, Service

SERIAL = 1234
LONG_META = "x" * 300


def node(
    name: str,
    address: str,
    *services: Service,
    checks: Sequence[Check] = (),
    meta: dict[str, str] | None = None,
    datacenter: str = "dc1",
) -> NodeRecord:
    return NodeRecord(
        node=name, node_id=f"id-{name}", datacenter=datacenter, address=address,
        version=1, origin=name, meta=meta or {}, services=services, checks=tuple(checks),
    )  # fmt: skip


def svc(sid: str, name: str, port: int, address: str = "", **kw: Any) -> Service:
    return Service(id=sid, name=name, port=port, address=address, **kw)


def check(cid: str, status: str, service_id: str = "") -> Check:
    return Check(check_id=cid, name=cid, status=status, service_id=service_id)


def catalog_records() -> list[NodeRecord]:
    return [
        node("a", "10.0.0.1",
             svc("web1", "web", 80, tags=("v1", "Primary"), weights=(10, 1)),
             svc("consul", "consul", 8300),
             svc("db1", "db", 5432, "10.1.0.1"),
             svc("sidecar", "web-sidecar-proxy", 21000, kind="connect-proxy",
                 proxy={"DestinationServiceName": "web", "LocalServicePort": 80}),
             svc("v6", "v6svc", 7000, "fd00::10"),
             svc("dup1", "dup", 90, "10.9.9.9"),
             checks=[check("web1-http", "passing", "web1")]),
        node("b", "10.0.0.2",
             svc("web2", "web", 81, tags=("v1",), weights=(5, 2)),
             svc("consul", "consul", 8300),
             svc("native1", "native", 9000, connect={"Native": True}),
             svc("dup2", "dup", 91, "10.9.9.9"),
             checks=[check("web2-http", "warning", "web2")]),
        node("c", "10.0.0.3",
             svc("web3", "web", 82, tags=("v2",)),
             svc("cache1", "cache", 6379, "10.0.0.3"),
             checks=[check("web3-http", "critical", "web3")]),
        node("d", "10.0.0.4", svc("web4", "web", 83), svc("lonely1", "lonely", 1000),
             checks=[check("disk", "critical")]),
        node("e", "10.0.0.5", svc("web5", "web", 84), svc("ghost1", "ghost", 2000)),
        node("f", "10.0.0.6", svc("api1", "api", 443, "api.example.com")),
        node("six", "fd00::6", svc("web6", "web", 86)),
        node("web.prod", "10.0.0.8", meta={"rack": "r1", "long": LONG_META}),
        node("x", "10.5.0.1", svc("webx", "web", 80), datacenter="dc2"),
    ]  # fmt: skip


def catalog_state(
    records: Iterable[NodeRecord] | None = None, failed: Iterable[str] = ("e",)
) -> merge.CatalogState:
    """The records merged as replication would; `failed` nodes marked failed by Serf."""
    state, _ = merge.apply_many(
        merge.CatalogState(), catalog_records() if records is None else records
    )
    for name in failed:
        state, _ = merge.mark_failed(state, "dc1", name)
    return state


STATE = catalog_state()
ZONE = build_zone(STATE, "dc1")
SETTINGS = DnsSettings(datacenter="dc1")


def ctx(
    settings: DnsSettings = SETTINGS, zone: Zone = ZONE, *, udp: bool = True, serial: int = SERIAL
) -> Context:
    return Context(zone=zone, settings=settings, serial=serial, udp=udp)


def make_query(
    name: str,
    rdtype: str = "A",
    *,
    edns: int = -1,
    payload: int = 1232,
    options: Sequence[dns.edns.Option] = (),
    rd: bool = True,
) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, use_edns=edns, payload=payload, options=list(options))
    q.id = 0x4242
    if not rd:
        q.flags &= ~dns.flags.RD
    return q


def ask(
    name: str,
    rdtype: str = "A",
    settings: DnsSettings = SETTINGS,
    zone: Zone = ZONE,
    **query_kw: Any,
) -> dns.message.Message:
    """The complete path, read back from the wire as a client would see it."""
    query = make_query(name, rdtype, **query_kw)
    out = message(answer(query, ctx(settings, zone)))
    wire = to_wire(out, udp_limit(query), truncate=settings.enable_truncate)
    return dns.message.from_wire(wire)


def message(out: dns.message.Message | Forward | bytes | None) -> dns.message.Message:
    """The response, asserting there is one (not FORWARD, not dropped); bytes are parsed."""
    if isinstance(out, bytes):
        return dns.message.from_wire(out)
    assert isinstance(out, dns.message.Message), out
    return out


def rr_texts(rrsets: Iterable[dns.rrset.RRset]) -> list[str]:
    """Sorted `name ttl TYPE rdata` lines, one per record."""
    out: list[str] = []
    for rrset in rrsets:
        kind = dns.rdatatype.to_text(rrset.rdtype)
        out.extend(f"{rrset.name} {rrset.ttl} {kind} {rd.to_text()}" for rd in rrset)
    return sorted(out)


def rdata_texts(rrsets: Iterable[dns.rrset.RRset]) -> list[str]:
    """Sorted rdata texts only."""
    return sorted(rd.to_text() for rrset in rrsets for rd in rrset)


def soa_of(msg: dns.message.Message) -> dns.rrset.RRset | None:
    soas = [r for r in msg.authority if r.rdtype == dns.rdatatype.SOA]
    return soas[0] if soas else None


def summary(msg: dns.message.Message) -> dict[str, Any]:
    """What two responses must agree on (record order aside)."""
    return {
        "id": msg.id,
        "flags": dns.flags.to_text(msg.flags),
        "opcode": msg.opcode(),
        "rcode": msg.rcode(),
        "question": [r.to_text() for r in msg.question],
        "answer": rr_texts(msg.answer),
        "authority": rr_texts(msg.authority),
        "additional": rr_texts(msg.additional),
        "edns": msg.edns,
    }
