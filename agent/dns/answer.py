"""DNS question -> answer from a prepared Zone. Pure: no I/O, no clock.

This is the complete (slow) path: every query the prepared-answer cache in
prepared.py cannot serve comes here, and the cache is filled from here, so
there is one place that decides what an answer is.

Rcodes: an unknown name in our domains is NXDOMAIN with the SOA in authority;
a name that exists without records of the asked type, or an empty
non-terminal, is NOERROR with no answers and the SOA (NODATA); a name
outside our domains is forwarded to the recursors (the caller does it) or
REFUSED without them; AXFR/IXFR and opcodes other than QUERY are NOTIMP;
EDNS versions other than 0 get BADVERS; a message that does not parse gets
FORMERR; one too short for a header, or itself a response, gets nothing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.rrset

from gossamer.agent.dns import names
from gossamer.agent.dns.settings import DnsSettings
from gossamer.agent.dns.zone import Endpoint, NodeEntry, Zone

SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 3600, 600, 86400  # Consul's defaults
MAX_NS = 3
# A random (or nearest) 500 of a larger service: more would not fit 64 KB of
# TCP with long node names, and cutting a bigger answer costs CPU per query.
MAX_ANSWER_RECORDS = 500
OUR_PAYLOAD = 4096  # the EDNS UDP size we advertise (prepared answers send the same)
HEADER_SIZE = 12
A, AAAA, ANY = dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.ANY
SRV, TXT, PTR, CNAME = dns.rdatatype.SRV, dns.rdatatype.TXT, dns.rdatatype.PTR, dns.rdatatype.CNAME
NO_ZONE_TRANSFER = frozenset({dns.rdatatype.AXFR, dns.rdatatype.IXFR})
REVERSE = (dns.name.from_text("in-addr.arpa."), dns.name.from_text("ip6.arpa."))


class Forward:
    """The query is for a name outside our domains and recursors are set."""


FORWARD = Forward()


@dataclass(frozen=True)
class Context:
    zone: Zone
    settings: DnsSettings
    serial: int
    udp: bool = True
    rng: random.Random | None = None


class _NotFound(Exception):
    """No such name (NXDOMAIN)."""


Records = tuple[list[dns.rrset.RRset], list[dns.rrset.RRset]]  # answer, additional


def handle(wire: bytes, ctx: Context) -> dns.message.Message | Forward | None:
    """Parse and answer; None when not even a header can be read (drop it)."""
    try:
        query = dns.message.from_wire(wire)
    except Exception:  # any parse failure: dnspython raises several kinds
        return formerr_for(wire)
    return answer(query, ctx)


def formerr_for(wire: bytes) -> dns.message.Message | None:
    if len(wire) < HEADER_SIZE:
        return None
    response = dns.message.Message(id=int.from_bytes(wire[:2], "big"))
    response.flags = dns.flags.QR | (int.from_bytes(wire[2:4], "big") & dns.flags.RD)
    response.set_rcode(dns.rcode.FORMERR)
    return response


def answer(query: dns.message.Message, ctx: Context) -> dns.message.Message | Forward | None:
    """The response; None for a message that is itself a response (dropped: no loops)."""
    if query.flags & dns.flags.QR:
        return None
    response = dns.message.make_response(query, our_payload=OUR_PAYLOAD)
    response.flags |= query.flags & dns.flags.CD  # RFC 4035 3.2.2 (the prepared path copies it too)
    response.flags &= ~dns.flags.RA
    if ctx.settings.recursion:
        response.flags |= dns.flags.RA
    if query.edns > 0:
        response.use_edns(0, 0, query.payload)
        response.set_rcode(dns.rcode.BADVERS)
        return response
    if query.opcode() != dns.opcode.QUERY:
        response.set_rcode(dns.rcode.NOTIMP)
        return response
    if len(query.question) != 1:
        response.set_rcode(dns.rcode.FORMERR)
        return response
    question = query.question[0]
    if question.rdtype in NO_ZONE_TRANSFER:
        response.set_rcode(dns.rcode.NOTIMP)
        return response
    domain = _domain_of(question.name, ctx.settings)
    if domain is None:
        return _outside(question, response, ctx)
    if question.rdclass not in (dns.rdataclass.IN, dns.rdataclass.ANY):
        response.set_rcode(dns.rcode.REFUSED)
        return response
    response.flags |= dns.flags.AA
    labels = [
        label.decode("ascii", "replace").lower()
        for label in question.name.relativize(domain).labels
    ]
    soa = _soa(domain, ctx)
    try:
        records, extra = _lookup(names.parse(labels, ctx.zone.datacenter), question, domain, ctx)
    except _NotFound:
        response.set_rcode(dns.rcode.NXDOMAIN)
        response.authority.append(soa)
        return response
    response.answer.extend(records)
    response.additional.extend(extra)
    if not records:
        response.authority.append(soa)
    return response


def _domain_of(name: dns.name.Name, settings: DnsSettings) -> dns.name.Name | None:
    for text in settings.domains:
        domain = dns.name.from_text(text)
        if name.is_subdomain(domain):
            return domain
    return None


def _outside(
    question: dns.rrset.RRset, response: dns.message.Message, ctx: Context
) -> dns.message.Message | Forward:
    """Reverse lookups of known addresses are ours; everything else recurses."""
    address = _reverse_address(question.name)
    if address is not None and question.rdtype in (PTR, ANY):
        targets = ctx.zone.ptr.get(address)
        if targets:
            response.flags |= dns.flags.AA
            response.answer.append(_ptr_rrset(question.name, targets, ctx))
            return response
    if ctx.settings.recursion:
        return FORWARD
    if address is not None:  # a reverse name we do not know, and nobody to ask
        response.set_rcode(dns.rcode.NXDOMAIN)
        return response
    response.set_rcode(dns.rcode.REFUSED)
    return response


def _reverse_address(name: dns.name.Name) -> str | None:
    if not any(name.is_subdomain(zone) for zone in REVERSE):
        return None
    try:
        return str(dns.reversename.to_address(name))
    except Exception:  # a partial or malformed reverse name
        return None


def _ptr_rrset(
    qname: dns.name.Name, targets: tuple[tuple[str, str], ...], ctx: Context
) -> dns.rrset.RRset:
    s = ctx.settings
    texts = [f"{name}.{kind}.{s.datacenter}.{s.domain}" for kind, name in targets]
    ttl = min(
        s.node_ttl if kind == "node" else s.service_ttl_for(name.lower()) for kind, name in targets
    )
    return dns.rrset.from_text_list(qname, ttl, "IN", "PTR", texts)


def _lookup(
    form: names.Form, question: dns.rrset.RRset, domain: dns.name.Name, ctx: Context
) -> Records:
    qname, rdtype = question.name, question.rdtype
    match form:
        case names.Apex():
            return _apex(rdtype, domain, ctx)
        case names.EmptyNonTerminal():
            return [], []
        case names.ServiceName(service, tags):
            found = ctx.zone.services.get(service, ())
            endpoints = [e for e in found if all(t in e.tags for t in tags)]
            return _endpoints(qname, rdtype, service, endpoints, domain, ctx)
        case names.ConnectName(service):
            return _endpoints(
                qname, rdtype, service, list(ctx.zone.connect.get(service, ())), domain, ctx
            )
        case names.NodeName(node):
            entry = ctx.zone.nodes.get(node)
            if entry is None:
                raise _NotFound
            return _node(qname, rdtype, entry, ctx), []
        case names.AddrName(address):
            rrset = _address_rrset(qname, [address], rdtype, 0)
            return ([rrset] if rrset is not None else []), []
    raise _NotFound


def _apex(rdtype: int, domain: dns.name.Name, ctx: Context) -> Records:
    records: list[dns.rrset.RRset] = []
    extra: list[dns.rrset.RRset] = []
    if rdtype in (dns.rdatatype.SOA, ANY):
        records.append(_soa(domain, ctx))
    if rdtype in (dns.rdatatype.NS, ANY):
        agents = ctx.zone.agents[:MAX_NS]
        targets = [_node_name(a.name, domain, ctx) for a in agents]
        if targets:
            records.append(
                dns.rrset.from_text_list(domain, ctx.settings.node_ttl, "IN", "NS", targets)
            )
        for agent, target in zip(agents, targets, strict=True):
            glue = _address_rrset(
                dns.name.from_text(target), [agent.address], ANY, ctx.settings.node_ttl
            )
            if glue is not None:
                extra.append(glue)
    return records, extra


def _endpoints(
    qname: dns.name.Name,
    rdtype: int,
    service: str,
    endpoints: list[Endpoint],
    domain: dns.name.Name,
    ctx: Context,
) -> Records:
    if not endpoints:
        raise _NotFound
    endpoints = _ordered(endpoints, ctx)[:MAX_ANSWER_RECORDS]
    ttl = ctx.settings.service_ttl_for(service)
    limit = ctx.settings.udp_answer_limit if ctx.udp else 0
    if rdtype == SRV:
        return _srv(qname, endpoints[:limit] if limit else endpoints, domain, ttl, ctx)
    if rdtype not in (A, AAAA, ANY):
        return [], []
    addresses = list(dict.fromkeys(e.address for e in endpoints))
    records = []
    for kind in (A, AAAA) if rdtype == ANY else (rdtype,):
        rrset = _address_rrset(qname, addresses, kind, ttl, limit)
        if rrset is not None:
            records.append(rrset)
    if addresses and not any(_is_ip(a) for a in addresses):
        # registered by host name only: point at it, whatever the address type asked
        records.append(dns.rrset.from_text(qname, ttl, "IN", "CNAME", _absolute(addresses[0])))
    return records, []


def _srv(
    qname: dns.name.Name, endpoints: list[Endpoint], domain: dns.name.Name, ttl: int, ctx: Context
) -> Records:
    lines: list[str] = []
    extra: dict[str, dns.rrset.RRset] = {}
    for e in endpoints:
        if not _is_ip(e.address):
            target = _absolute(e.address)
        elif e.address == e.node_address:
            target = _node_name(e.node, domain, ctx)
        else:
            target = f"{names.hex_address(e.address)}.addr.{ctx.settings.datacenter}.{domain}"
        lines.append(f"1 {e.weight} {e.port} {target}")
        if target not in extra and _is_ip(e.address):
            glue = _address_rrset(dns.name.from_text(target), [e.address], ANY, ttl)
            if glue is not None:
                extra[target] = glue
    return [dns.rrset.from_text_list(qname, ttl, "IN", "SRV", lines)], list(extra.values())


def _node(
    qname: dns.name.Name, rdtype: int, entry: NodeEntry, ctx: Context
) -> list[dns.rrset.RRset]:
    ttl = ctx.settings.node_ttl
    records = []
    if rdtype in (A, AAAA, ANY):
        for kind in (A, AAAA) if rdtype == ANY else (rdtype,):
            rrset = _address_rrset(qname, [entry.address], kind, ttl)
            if rrset is not None:
                records.append(rrset)
        if not _is_ip(entry.address) and rdtype in (A, ANY):
            records.append(dns.rrset.from_text(qname, ttl, "IN", "CNAME", _absolute(entry.address)))
    if rdtype in (TXT, ANY) and entry.meta:
        texts = [_txt(f"{k}={v}") for k, v in entry.meta]
        records.append(dns.rrset.from_text_list(qname, ttl, "IN", "TXT", texts))
    return records


def _ordered(endpoints: list[Endpoint], ctx: Context) -> list[Endpoint]:
    """Shuffled on every answer, or nearest first by network coordinates."""
    rng = ctx.rng or random
    shuffled = list(endpoints)
    rng.shuffle(shuffled)
    if ctx.settings.nearest_first and ctx.zone.distance:
        far = float("inf")
        shuffled.sort(key=lambda e: ctx.zone.distance.get(e.node, far))  # stable: ties stay random
    return shuffled


def _address_rrset(
    name: dns.name.Name, addresses: list[str], rdtype: int, ttl: int, limit: int = 0
) -> dns.rrset.RRset | None:
    """A (or AAAA) records for the addresses of that family; ANY picks A first."""
    v4 = [a for a in addresses if names.ip_version(a) == 4]
    v6 = [a for a in addresses if names.ip_version(a) == 6]
    if limit:
        v4, v6 = v4[:limit], v6[:limit]
    if rdtype in (A, ANY) and v4:
        return dns.rrset.from_text_list(name, ttl, "IN", "A", v4)
    if rdtype in (AAAA, ANY) and v6:
        return dns.rrset.from_text_list(name, ttl, "IN", "AAAA", v6)
    return None


def _soa(domain: dns.name.Name, ctx: Context) -> dns.rrset.RRset:
    d = domain.to_text()
    neg = ctx.settings.negative_ttl
    return dns.rrset.from_text(
        domain, neg, "IN", "SOA",
        f"ns.{d} hostmaster.{d} {ctx.serial} {SOA_REFRESH} {SOA_RETRY} {SOA_EXPIRE} {neg}",
    )  # fmt: skip


def _node_name(node: str, domain: dns.name.Name, ctx: Context) -> str:
    return f"{node}.node.{ctx.settings.datacenter}.{domain.to_text()}"


def _absolute(host: str) -> str:
    return host if host.endswith(".") else host + "."


def _txt(text: str) -> str:
    """One TXT record; strings longer than 255 bytes go in several chunks."""
    raw = text.encode()
    chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
    return " ".join('"' + "".join(_txt_char(b) for b in chunk) + '"' for chunk in chunks)


def _txt_char(byte: int) -> str:
    if byte in (0x22, 0x5C):
        return "\\" + chr(byte)
    return chr(byte) if 0x20 <= byte < 0x7F else f"\\{byte:03d}"


def _is_ip(address: str) -> bool:
    return names.ip_version(address) != 0
