"""The record sets a name in our domains answers with. Pure: no I/O, no clock.

`lookup` takes a parsed name form (names.py) and the question's type and
gives (answer, additional) record sets, or raises `NotFound` for a name that
does not exist (NXDOMAIN); an empty answer is a name without records of
that type (NODATA). answer.py turns these into a message.

Rules it keeps:
- Services answer at most `MAX_ANSWER_RECORDS` instances, shuffled on every
  answer (or nearest first by network coordinates; ties stay random), and
  UDP answers at most `udp_answer_limit` of them when that is set.
- An instance registered by host name answers with a CNAME to that host,
  whatever address type was asked. SRV targets are that host, the node's
  name when the service uses the node's address, or else an `.addr.` name;
  targets with an IP address get A/AAAA glue in the additional section.
- TTLs come from the settings: per service, per node, and the negative TTL
  in the SOA.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import dns.name
import dns.rdatatype
import dns.rrset

from gossamer.agent.dns import names
from gossamer.agent.dns.settings import DnsSettings
from gossamer.agent.dns.zone import Endpoint, NodeEntry, Zone

SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 3600, 600, 86400  # Consul's defaults
MAX_NS = 3
# A random (or nearest) 500 of a larger service: more would not fit 64 KB of
# TCP with long node names, and cutting a bigger answer costs CPU per query.
MAX_ANSWER_RECORDS = 500
A, AAAA, ANY = dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.ANY
SRV, TXT = dns.rdatatype.SRV, dns.rdatatype.TXT


@dataclass(frozen=True)
class Context:
    zone: Zone
    settings: DnsSettings
    serial: int
    udp: bool = True
    rng: random.Random | None = None


class NotFound(Exception):
    """No such name (NXDOMAIN)."""


Records = tuple[list[dns.rrset.RRset], list[dns.rrset.RRset]]  # answer, additional


def lookup(
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
                raise NotFound
            return _node(qname, rdtype, entry, ctx), []
        case names.AddrName(address):
            rrset = _address_rrset(qname, [address], rdtype, 0)
            return ([rrset] if rrset is not None else []), []
    raise NotFound


def _apex(rdtype: int, domain: dns.name.Name, ctx: Context) -> Records:
    records: list[dns.rrset.RRset] = []
    extra: list[dns.rrset.RRset] = []
    if rdtype in (dns.rdatatype.SOA, ANY):
        records.append(soa(domain, ctx))
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
        raise NotFound
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


def soa(domain: dns.name.Name, ctx: Context) -> dns.rrset.RRset:
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


def ptr_rrset(
    qname: dns.name.Name, targets: tuple[tuple[str, str], ...], ctx: Context
) -> dns.rrset.RRset:
    s = ctx.settings
    texts = [f"{name}.{kind}.{s.datacenter}.{s.domain}" for kind, name in targets]
    ttl = min(
        s.node_ttl if kind == "node" else s.service_ttl_for(name.lower()) for kind, name in targets
    )
    return dns.rrset.from_text_list(qname, ttl, "IN", "PTR", texts)
