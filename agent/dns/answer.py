"""DNS question -> answer from a prepared Zone. Pure: no I/O, no clock.

This is the complete (slow) path: every query the prepared-answer cache in
prepared.py cannot serve comes here, and the cache is filled from here, so
there is one place that decides what an answer is. This module decides the
message (rcode, flags, the SOA in authority, forwarding); records.py gives
the record sets of a name.

Rcodes: an unknown name in our domains is NXDOMAIN with the SOA in authority;
a name that exists without records of the asked type, or an empty
non-terminal, is NOERROR with no answers and the SOA (NODATA); a name
outside our domains is forwarded to the recursors (the caller does it) or
REFUSED without them; AXFR/IXFR and opcodes other than QUERY are NOTIMP;
EDNS versions other than 0 get BADVERS; a message that does not parse gets
FORMERR; one too short for a header, or itself a response, gets nothing.
"""

from __future__ import annotations

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
from gossamer.agent.dns.records import ANY, Context, NotFound, lookup, ptr_rrset, soa
from gossamer.agent.dns.settings import DnsSettings

OUR_PAYLOAD = 4096  # the EDNS UDP size we advertise (prepared answers send the same)
HEADER_SIZE = 12
PTR = dns.rdatatype.PTR
NO_ZONE_TRANSFER = frozenset({dns.rdatatype.AXFR, dns.rdatatype.IXFR})
REVERSE = (dns.name.from_text("in-addr.arpa."), dns.name.from_text("ip6.arpa."))


class Forward:
    """The query is for a name outside our domains and recursors are set."""


FORWARD = Forward()


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
    if _refused_unseen(query, response):
        return response
    question = query.question[0]
    domain = _domain_of(question.name, ctx.settings)
    if domain is None:
        return _outside(question, response, ctx)
    if question.rdclass not in (dns.rdataclass.IN, dns.rdataclass.ANY):
        response.set_rcode(dns.rcode.REFUSED)
        return response
    return _in_domain(question, domain, response, ctx)


def _refused_unseen(query: dns.message.Message, response: dns.message.Message) -> bool:
    """Set the rcode of a query answered without looking at its name; True if so."""
    if query.edns > 0:
        response.use_edns(0, 0, query.payload)
        response.set_rcode(dns.rcode.BADVERS)
    elif query.opcode() != dns.opcode.QUERY:
        response.set_rcode(dns.rcode.NOTIMP)
    elif len(query.question) != 1:
        response.set_rcode(dns.rcode.FORMERR)
    elif query.question[0].rdtype in NO_ZONE_TRANSFER:
        response.set_rcode(dns.rcode.NOTIMP)
    else:
        return False
    return True


def _in_domain(
    question: dns.rrset.RRset, domain: dns.name.Name, response: dns.message.Message, ctx: Context
) -> dns.message.Message:
    """The authoritative answer for a name in one of our domains."""
    response.flags |= dns.flags.AA
    labels = [
        label.decode("ascii", "replace").lower()
        for label in question.name.relativize(domain).labels
    ]
    authority = soa(domain, ctx)
    try:
        records, extra = lookup(names.parse(labels, ctx.zone.datacenter), question, domain, ctx)
    except NotFound:
        response.set_rcode(dns.rcode.NXDOMAIN)
        response.authority.append(authority)
        return response
    response.answer.extend(records)
    response.additional.extend(extra)
    if not records:
        response.authority.append(authority)
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
            response.answer.append(ptr_rrset(question.name, targets, ctx))
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
