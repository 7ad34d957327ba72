"""The query paths bench/dns_perf.py measures, and the reference servers set up to answer them.

Each path is one question asked one way (plain UDP, EDNS with or without an
option, TCP), with the rcode the agent must give. The reference servers
(dnsmasq and unbound) are configured from the agent's own replies, so they
serve the very records it serves; a reference takes part in a path only
when its answer has the same rcode and the same answer records (the caller
checks, and says so when it does not).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dns.edns
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.reversename

from tests.harness.resolvers import Unbound

COOKIE = 10  # EDNS option code of a DNS cookie (RFC 7873); a client cookie is 8 bytes
CLIENT_COOKIE = "0102030405060708"


@dataclass(frozen=True)
class QueryPath:
    """One question, asked one way: what dnsperf sends and what the agent must answer."""

    label: str
    name: str
    rdtype: str
    rcode: str = "NOERROR"
    edns: bool = False
    option: bool = False  # an EDNS option (a client cookie) in the OPT record
    tcp: bool = False

    def dnsperf_flags(self) -> list[str]:
        flags = ["-m", "tcp"] if self.tcp else []
        if self.option:
            flags += ["-E", f"{COOKIE}:{CLIENT_COOKIE}"]
        if self.edns or self.option:
            flags += ["-e"]
        return flags

    def query(self) -> dns.message.Message:
        options = [dns.edns.CookieOption(bytes.fromhex(CLIENT_COOKIE), b"")] if self.option else []
        use = 0 if self.edns or self.option else False
        return dns.message.make_query(self.name, self.rdtype, use_edns=use, options=options)


def paths(service: str, node: str, address: str) -> list[QueryPath]:
    """Every path: the hot A/SRV ones, EDNS, the negative answers, node/addr/PTR, TCP."""
    hexed = bytes(int(part) for part in address.split(".")).hex()
    reverse = dns.reversename.from_address(address).to_text(omit_final_dot=True)
    return [
        QueryPath("A", f"{service}.service.consul", "A"),
        QueryPath("A, EDNS", f"{service}.service.consul", "A", edns=True),
        QueryPath("A, EDNS + cookie", f"{service}.service.consul", "A", option=True),
        QueryPath("SRV (RFC 2782) + glue", f"_{service}._tcp.service.consul", "SRV"),
        QueryPath("SRV + glue", f"{service}.service.consul", "SRV"),
        QueryPath("NXDOMAIN", f"nope-{service}.service.consul", "A", rcode="NXDOMAIN"),
        QueryPath("NODATA", f"{service}.service.consul", "TXT"),
        QueryPath("node A", f"{node}.node.consul", "A"),
        QueryPath("addr A", f"{hexed}.addr.consul", "A"),
        QueryPath("PTR", reverse, "PTR"),
        QueryPath("A over TCP", f"{service}.service.consul", "A", tcp=True),
    ]


def ask(ip: str, port: int, path: QueryPath) -> dns.message.Message:
    """The path's question, asked as dnsperf asks it."""
    send = dns.query.tcp if path.tcp else dns.query.udp
    return send(path.query(), ip, port=port, timeout=2)


def same_answer(a: dns.message.Message, b: dns.message.Message) -> str | None:
    """None when both give the same rcode and answer records, else what differs."""
    if a.rcode() != b.rcode():
        return f"rcode {dns.rcode.to_text(b.rcode())}, not {dns.rcode.to_text(a.rcode())}"
    mine, theirs = _records(a), _records(b)
    return None if mine == theirs else f"answers {theirs}, not {mine}"


def _records(msg: dns.message.Message) -> list[str]:
    return sorted(
        f"{dns.rdatatype.to_text(r.rdtype)} {rd.to_text()}" for r in msg.answer for rd in r
    )


def dnsmasq_options(replies: list[dns.message.Message]) -> list[str]:
    """dnsmasq options that make it answer what the agent answered (and NXDOMAIN the rest)."""
    options = ["local=/consul/"]  # its own names only: NXDOMAIN or NODATA for the rest

    def add(line: str) -> None:
        if line not in options:
            options.append(line)

    for reply in replies:
        for rrset in [*reply.answer, *reply.additional]:
            owner = rrset.name.to_text(omit_final_dot=True)
            for rd in rrset:
                if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                    add(f"host-record={owner},{rd.address}")
                elif rrset.rdtype == dns.rdatatype.SRV:
                    target = rd.target.to_text(omit_final_dot=True)
                    add(f"srv-host={owner},{target},{rd.port},{rd.priority},{rd.weight}")
                elif rrset.rdtype == dns.rdatatype.PTR:
                    add(f"ptr-record={owner},{rd.target.to_text(omit_final_dot=True)}")
    return options


def unbound_local_data(replies: list[dns.message.Message]) -> list[str]:
    """unbound `server:` lines serving the agent's records from static local zones.

    The zone of each owner is its domain (`consul.`) or, for a reverse name,
    its parent; the SOA the agent put in a negative answer is served too, so
    unbound's NXDOMAIN and NODATA carry one as the agent's do.
    """
    zones: list[str] = []
    data: list[str] = []
    for reply in replies:
        for rrset in [*reply.answer, *reply.authority, *reply.additional]:
            zone = "consul." if rrset.name.to_text().endswith("consul.") else rrset.name.parent()
            if str(zone) not in zones:
                zones.append(str(zone))
            for line in rrset.to_text().splitlines():
                if f'  local-data: "{line}"' not in data:
                    data.append(f'  local-data: "{line}"')
    return [f'  local-zone: "{zone}" static' for zone in zones] + data


@dataclass
class BenchUnbound(Unbound):
    """The harness's unbound, not logging queries, answering from `local` server lines."""

    local: list[str] = field(default_factory=list)

    def prepare(self) -> None:
        super().prepare()
        text = self.conf_path.read_text().replace("log-queries: yes", "log-queries: no")
        self.conf_path.write_text(text + "server:\n" + "\n".join(self.local) + "\n")
