"""DNS question -> answer, with no I/O.

What is answered (the Consul forms that gossip alone can back; services from
the catalog extend `lookup_service`):
- `<node>.node[.<dc>].consul`  A/AAAA of a member that has not left;
- `consul.service[.<dc>].consul`  A/AAAA/SRV of the alive agents (every agent
  registers itself as service `consul`, its port being the agent RPC port);
- the zone apex: SOA, and NS naming up to three alive agents with glue.
Rcodes as Consul: an unknown name in the zone is NXDOMAIN with the SOA in
authority; a known name without records of the asked type is NOERROR with
no answers (NODATA); a name outside the zone is REFUSED (no recursors are
configured); a message that does not parse is FORMERR; an opcode other than
QUERY is NOTIMP. Answers are authoritative; outputs are sorted so they are
stable.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from gossamer.agent.member_tags import rpc_port
from gossamer.gossip.member_table import MemberMap
from gossamer.gossip.members import Member

SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, SOA_MIN_TTL = 3600, 600, 86400, 0  # Consul's defaults
MAX_NS = 3


@dataclass(frozen=True)
class DnsView:
    """What the answers are computed from; swapped whole when state changes."""

    datacenter: str
    members: MemberMap = field(default_factory=dict)
    domain: str = "consul."
    ttl: int = 0
    serial: int = 1


class NotFound(Exception):
    """No such name in the zone (NXDOMAIN)."""


def handle(wire: bytes, view: DnsView) -> dns.message.Message | None:
    """Parse `wire` and answer it; None when not even a header can be read."""
    try:
        query = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return formerr_for(wire)
    return answer(query, view)


def formerr_for(wire: bytes) -> dns.message.Message | None:
    if len(wire) < 12:
        return None
    response = dns.message.Message(id=int.from_bytes(wire[:2], "big"))
    response.flags = dns.flags.QR
    response.set_rcode(dns.rcode.FORMERR)
    return response


def answer(query: dns.message.Message, view: DnsView) -> dns.message.Message:
    response = dns.message.make_response(query)
    response.flags &= ~dns.flags.RA
    if query.opcode() != dns.opcode.QUERY:
        response.set_rcode(dns.rcode.NOTIMP)
        return response
    if len(query.question) != 1:
        response.set_rcode(dns.rcode.FORMERR)
        return response
    question = query.question[0]
    zone = dns.name.from_text(view.domain)
    if question.rdclass not in (dns.rdataclass.IN, dns.rdataclass.ANY):
        response.set_rcode(dns.rcode.REFUSED)
        return response
    if not question.name.is_subdomain(zone):
        response.set_rcode(dns.rcode.REFUSED)
        return response
    response.flags |= dns.flags.AA
    relative = question.name.relativize(zone).labels
    labels = [label.decode("ascii", "replace").lower() for label in relative]
    try:
        records, extra = _lookup(labels, question.rdtype, question.name, view)
    except NotFound:
        response.set_rcode(dns.rcode.NXDOMAIN)
        response.authority.append(_soa(view))
        return response
    response.answer.extend(records)
    response.additional.extend(extra)
    if not records:
        response.authority.append(_soa(view))
    return response


Lookup = tuple[list[dns.rrset.RRset], list[dns.rrset.RRset]]


def _lookup(labels: list[str], rdtype: int, qname: dns.name.Name, view: DnsView) -> Lookup:
    if labels in ([], ["@"]):
        return _apex(rdtype, view)
    labels = _strip_datacenter(labels, view)
    if len(labels) >= 2 and labels[-1] == "node":
        return _node(".".join(labels[:-1]), rdtype, qname, view), []
    if len(labels) == 2 and labels[-1] == "service":
        return _service(labels[0], rdtype, qname, view)
    raise NotFound


def _strip_datacenter(labels: list[str], view: DnsView) -> list[str]:
    """`x.node.dc1` -> `x.node`; another datacenter is unknown here."""
    if len(labels) >= 3 and labels[-2] in ("node", "service"):
        if labels[-1] != view.datacenter.lower():
            raise NotFound
        return labels[:-1]
    return labels


def _apex(rdtype: int, view: DnsView) -> Lookup:
    zone = dns.name.from_text(view.domain)
    if rdtype == dns.rdatatype.SOA:
        return [_soa(view)], []
    if rdtype == dns.rdatatype.NS:
        servers = _alive(view)[:MAX_NS]
        names = [_node_fqdn(m, view) for m in servers]
        ns = dns.rrset.from_text_list(zone, view.ttl, "IN", "NS", names)
        glue = [
            _address_rrset(dns.name.from_text(n), [m], view)
            for n, m in zip(names, servers, strict=True)
        ]
        return ([ns] if names else []), [g for g in glue if g is not None]
    return [], []


def _node(name: str, rdtype: int, qname: dns.name.Name, view: DnsView) -> list[dns.rrset.RRset]:
    member = next(
        (m for m in view.members.values() if m.name.lower() == name and m.status != "left"), None
    )
    if member is None:
        raise NotFound
    rrset = _address_rrset(qname, [member], view, rdtype)
    return [rrset] if rrset is not None else []


def _service(service: str, rdtype: int, qname: dns.name.Name, view: DnsView) -> Lookup:
    if service != "consul":
        raise NotFound  # the catalog's services arrive with it
    agents = [m for m in _alive(view) if rpc_port(m) is not None]
    if not agents:
        raise NotFound
    if rdtype == dns.rdatatype.SRV:
        targets = [(m, _node_fqdn(m, view)) for m in agents]
        srv = dns.rrset.from_text_list(
            qname, view.ttl, "IN", "SRV", [f"1 1 {rpc_port(m)} {t}" for m, t in targets]
        )
        extra = [_address_rrset(dns.name.from_text(t), [m], view) for m, t in targets]
        return [srv], [e for e in extra if e is not None]
    rrset = _address_rrset(qname, agents, view, rdtype)
    return ([rrset] if rrset is not None else []), []


def _alive(view: DnsView) -> list[Member]:
    return sorted((m for m in view.members.values() if m.status == "alive"), key=lambda m: m.name)


def _node_fqdn(member: Member, view: DnsView) -> str:
    return f"{member.name}.node.{view.datacenter}.{view.domain}"


def _address_rrset(
    name: dns.name.Name, members: list[Member], view: DnsView, rdtype: int = dns.rdatatype.ANY
) -> dns.rrset.RRset | None:
    """A (or AAAA) records for the members' addresses that fit the asked type."""
    want_v4 = rdtype in (dns.rdatatype.A, dns.rdatatype.ANY)
    want_v6 = rdtype in (dns.rdatatype.AAAA, dns.rdatatype.ANY)
    v4 = sorted({m.addr for m in members if ipaddress.ip_address(m.addr).version == 4})
    v6 = sorted({m.addr for m in members if ipaddress.ip_address(m.addr).version == 6})
    if want_v4 and v4:
        return dns.rrset.from_text_list(name, view.ttl, "IN", "A", v4)
    if want_v6 and v6:
        return dns.rrset.from_text_list(name, view.ttl, "IN", "AAAA", v6)
    return None


def _soa(view: DnsView) -> dns.rrset.RRset:
    d = view.domain
    return dns.rrset.from_text(
        d, SOA_MIN_TTL, "IN", "SOA",
        f"ns.{d} hostmaster.{d} {view.serial} {SOA_REFRESH} {SOA_RETRY} {SOA_EXPIRE} {SOA_MIN_TTL}",
    )  # fmt: skip
