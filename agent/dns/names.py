"""Which Consul name form a question asks for. Pure; labels in, a form out.

Forms, relative to the domain (every one may end in `.<dc>`, this agent's
datacenter; another datacenter is unknown here):
- `<service>.service`, `<tag>.<service>.service`, and beyond Consul
  `<tag1>.<tag2>.<service>.service` (every tag must match);
- RFC 2782 `_<service>._<tag>[.service]`, `_tcp` (or `_udp`) meaning any tag;
- `<node>.node`, `<service>.connect`, `<hex-ip>.addr`;
- empty non-terminals (`service`, `node`, `connect`, `addr`, `<dc>`,
  `_<tag>.service`): names that exist because names exist below them, so a
  resolver doing QNAME minimisation gets NODATA rather than NXDOMAIN.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

KEYWORDS = frozenset({"service", "node", "connect", "addr", "query"})
ANY_TAG = frozenset({"tcp", "udp"})  # RFC 2782 protocol labels: no tag filter


@dataclass(frozen=True)
class Apex:
    pass


@dataclass(frozen=True)
class EmptyNonTerminal:
    pass


@dataclass(frozen=True)
class Unknown:
    pass


@dataclass(frozen=True)
class ServiceName:
    service: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeName:
    node: str


@dataclass(frozen=True)
class ConnectName:
    service: str


@dataclass(frozen=True)
class AddrName:
    address: str


Form = Apex | EmptyNonTerminal | Unknown | ServiceName | NodeName | ConnectName | AddrName


def parse(labels: list[str], datacenter: str) -> Form:
    """`labels` are lower-case, leftmost first, without the domain."""
    if not labels:
        return Apex()
    dc = datacenter.lower()
    if labels[-1] == dc:
        labels = labels[:-1]
    elif len(labels) >= 2 and labels[-1] not in KEYWORDS and labels[-2] in KEYWORDS:
        return Unknown()  # another datacenter
    if not labels or (len(labels) == 1 and labels[0] in KEYWORDS - {"query"}):
        return EmptyNonTerminal()
    if labels[0].startswith("_"):
        return _rfc2782(labels)
    kind = labels[-1]
    if kind == "service" and len(labels) >= 2:
        return ServiceName(labels[-2], tuple(labels[:-2]))
    if kind == "node" and len(labels) >= 2:
        return NodeName(".".join(labels[:-1]))
    if kind == "connect" and len(labels) == 2:
        return ConnectName(labels[0])
    if kind == "addr" and len(labels) == 2:
        address = parse_hex_address(labels[0])
        return AddrName(address) if address else Unknown()
    return Unknown()


def _rfc2782(labels: list[str]) -> Form:
    rest = labels[1:]
    if rest in ([], ["service"]):
        return EmptyNonTerminal()  # `_tcp.service`: parent of `_web._tcp.service`
    if len(labels) >= 2 and labels[1].startswith("_") and labels[2:] in ([], ["service"]):
        service, tag = labels[0][1:], labels[1][1:]
        if not service or not tag:
            return Unknown()
        return ServiceName(service, () if tag in ANY_TAG else (tag,))
    return Unknown()


def parse_hex_address(label: str) -> str | None:
    """`7f000001` -> "127.0.0.1"; 32 hex digits -> an IPv6 address."""
    if len(label) not in (8, 32):
        return None
    try:
        raw = bytes.fromhex(label)
    except ValueError:
        return None
    return str(ipaddress.ip_address(raw))


def ip_version(text: str) -> int:
    """4 or 6 for an IP literal, 0 for anything else (a host name)."""
    try:
        return ipaddress.ip_address(text).version
    except ValueError:
        return 0


def hex_address(address: str) -> str:
    return ipaddress.ip_address(address).packed.hex()
