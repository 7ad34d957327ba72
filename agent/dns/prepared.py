"""The hot path: answers kept as wire bytes, so a query costs a dict lookup.

A DNS library costs ~70 µs to parse and build one reply in Python; serving
bytes prepared earlier costs a few. For each question (lower-cased name,
type, class) the first query builds the answer through answer.py and keeps
the bytes after the question; later queries get their own header (ID, RD,
CD copied) and their own question bytes (so the case they asked in is
echoed, and the compression pointers into the question stay valid: same
length, same labels) followed by the kept bytes, plus an OPT record when
they sent one. Answers listing several records keep up to VARIANTS
shuffles, one picked per query, so load still spreads over instances.
Once an entry holds all its shuffles, the whole responses (after the ID)
are also kept for the exact bytes a client sent (up to MAX_SEEN queries,
each at most MAX_SEEN_BYTES, the lot dropped when full), so a query asked
again in the same case with the same flags and EDNS options costs one
lookup and one join.

Everything unusual takes the complete path in answer.py: opcodes other
than QUERY, several questions, EDNS versions other than 0, padding options,
names forwarded to the recursors (query_shape.py says which shapes are
served here). Answers larger than the client accepts are cut once per size
through the complete path and kept like the rest. Every cache is dropped
whenever the zone changes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import dns.exception
import dns.message
import dns.rcode

from gossamer.agent.dns.answer import FORWARD, OUR_PAYLOAD, Forward, answer, formerr_for
from gossamer.agent.dns.query_shape import (
    NO_EDNS,
    OPT_TYPE,
    WITH_OPT,
    opt_query,
    opt_size,
    question_end,
)
from gossamer.agent.dns.records import Context
from gossamer.agent.dns.wire import to_wire, udp_limit
from gossamer.agent.dns.zone import Zone

VARIANTS = 8
MAX_ENTRIES = 20_000  # a flood of random names must not grow memory without bound
MAX_SEEN = 2048  # exact query bytes kept with their responses: at most 8 MB each for UDP, TCP
MAX_SEEN_BYTES = 4096  # the responses of one such query, all shuffles together
OPT_RR = opt_query(OUR_PAYLOAD)  # what we answer with: our payload size, no options
TCP_LIMIT = 65535
CACHEABLE = (dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.REFUSED)
HEADER = b"\x00\x00\x01\x00"  # ID 0, RD: the canonical query answers are built from


@dataclass
class _Entry:
    counts: bytes  # QD AN NS AR
    counts_opt: bytes  # the same with AR + 1
    flags1: int  # first flags byte without RD: QR and AA (not AA for a reverse name we do not own)
    flags2: int  # second flags byte: RA and the rcode
    want: int  # how many shuffles to collect
    bodies: list[bytes] = field(default_factory=list)
    # Set once every shuffle is in, for the hot path in respond() (cut answers use
    # only the cycle): the header after the ID for each RD/CD pair (without and with
    # an OPT record), the largest response without OPT, the shuffles in a cycle.
    plain: tuple[bytes, ...] | None = None
    plain_opt: tuple[bytes, ...] = ()  # the same with AR + 1
    size: int = 0  # the largest response without an OPT record
    cycle: Iterator[bytes] = field(default_factory=lambda: iter(()))


class Responder:
    """Answers one query's bytes with the response's bytes (or FORWARD, or None to drop)."""

    def __init__(self, ctx: Context) -> None:
        self._udp_ctx = replace(ctx, udp=True)
        self._tcp_ctx = replace(ctx, udp=False)
        self._caches: tuple[dict[bytes, _Entry], dict[bytes, _Entry]] = ({}, {})
        self._cuts: tuple[dict[bytes, _Entry], dict[bytes, _Entry]] = ({}, {})
        self._seen: tuple[dict[bytes, Iterator[bytes]], dict[bytes, Iterator[bytes]]] = ({}, {})
        # Answers sent, by rcode (the listeners count, `reply[3] & 15`; /v1/agent/metrics reads)
        self.rcodes = [0] * 16

    @property
    def context(self) -> Context:
        return self._udp_ctx

    def update(self, zone: Zone, serial: int) -> None:
        """A new zone: new answers from now on."""
        self._udp_ctx = replace(self._udp_ctx, zone=zone, serial=serial)
        self._tcp_ctx = replace(self._tcp_ctx, zone=zone, serial=serial)
        self._caches = ({}, {})
        self._cuts = ({}, {})
        self._seen = ({}, {})

    def respond(self, data: bytes, tcp: bool = False) -> bytes | Forward | None:
        # The hottest path: these very bytes (after the ID) were answered before.
        seen = self._seen[tcp].get(data[2:])
        if seen is not None:
            return data[:2] + next(seen)
        # Then a query with no EDNS whose answer is complete: the question runs
        # to the end of the packet, so its bytes are data[12:]. With an OPT
        # record (EDNS 0, no options) it is the last 11 bytes.
        counts = data[4:12]
        if len(data) < 17 or data[2] & 0xF8:
            pass
        elif counts == NO_EDNS:
            entry = self._caches[tcp].get(data[12:-4].lower() + data[-4:])
            if entry is not None and entry.plain is not None and (tcp or entry.size <= 512):
                head = entry.plain[(data[2] & 0x01) | (data[3] & 0x10) >> 3]
                return self._remember(data, tcp, head + data[12:], entry, b"")
        elif (
            counts == WITH_OPT
            and data[-11:-8] == OPT_TYPE
            and data[-5] == 0
            and data[-2:] == b"\x00\x00"
        ):
            qend = len(data) - 11
            entry = self._caches[tcp].get(data[12 : qend - 4].lower() + data[qend - 4 : qend])
            if (
                entry is not None
                and entry.plain is not None
                and (tcp or entry.size + 11 <= int.from_bytes(data[-8:-6], "big"))
            ):
                head = entry.plain_opt[(data[2] & 0x01) | (data[3] & 0x10) >> 3]
                return self._remember(data, tcp, head + data[12:qend], entry, OPT_RR)
        return self._respond(data, tcp)

    def _remember(self, data: bytes, tcp: bool, start: bytes, entry: _Entry, end: bytes) -> bytes:
        """The response from a sealed entry; all its shuffles kept for these exact bytes.

        `start` is the header after the ID and the question as asked, `end`
        the OPT record or nothing. Too large an answer is served, not kept.
        """
        if entry.size * len(entry.bodies) > MAX_SEEN_BYTES:
            return data[:2] + start + next(entry.cycle) + end
        seen = self._seen[tcp]
        if len(seen) >= MAX_SEEN:
            seen.clear()  # a flood of distinct queries: start over rather than grow
        cycle = itertools.cycle([start + body + end for body in entry.bodies])
        seen[data[2:]] = cycle
        return data[:2] + next(cycle)

    def _respond(self, data: bytes, tcp: bool) -> bytes | Forward | None:
        parsed = question_end(data)
        if parsed is None:
            return self._complete(data, tcp)
        qend, client_size = parsed
        key = data[12 : qend - 4].lower() + data[qend - 4 : qend]
        entry = self._caches[tcp].get(key)
        if entry is None or len(entry.bodies) < entry.want:
            entry = self._prepare(self._caches[tcp], key, HEADER + NO_EDNS + key, tcp, None)
            if entry is None:
                return self._complete(data, tcp)
        limit = TCP_LIMIT if tcp else (client_size or 512)
        with_opt = client_size > 0
        end = OPT_RR if with_opt else b""
        plain = entry.plain  # set once sealed
        size = entry.size if plain is not None else qend + len(entry.bodies[-1])
        if size + len(end) > limit:
            return self._cut(data, qend, key, limit, with_opt, tcp)
        if plain is not None:
            head = (entry.plain_opt if with_opt else plain)[
                (data[2] & 0x01) | (data[3] & 0x10) >> 3
            ]
            return self._remember(data, tcp, head + data[12:qend], entry, end)
        flags = bytes((entry.flags1 | (data[2] & 0x01), entry.flags2 | (data[3] & 0x10)))
        counts = entry.counts_opt if with_opt else entry.counts
        return data[:2] + flags + counts + data[12:qend] + entry.bodies[-1] + end

    def _cut(
        self, data: bytes, qend: int, key: bytes, limit: int, with_opt: bool, tcp: bool
    ) -> bytes | Forward | None:
        """An answer too big for this client: cut once per size, then served like the rest."""
        cut_key = key + limit.to_bytes(3, "big") + (b"\x01" if with_opt else b"\x00")
        entry = self._cuts[tcp].get(cut_key)
        if entry is None or len(entry.bodies) < entry.want:
            tail = WITH_OPT + key + opt_query(limit) if with_opt else NO_EDNS + key
            entry = self._prepare(self._cuts[tcp], cut_key, HEADER + tail, tcp, limit)
            if entry is None:
                return self._complete(data, tcp)
        # the OPT record, when asked for, is part of the bodies
        if entry.plain is not None:
            head = entry.plain[(data[2] & 0x01) | (data[3] & 0x10) >> 3]
            return self._remember(data, tcp, head + data[12:qend], entry, b"")
        flags = bytes((entry.flags1 | (data[2] & 0x01), entry.flags2 | (data[3] & 0x10)))
        return data[:2] + flags + entry.counts + data[12:qend] + entry.bodies[-1]

    def _prepare(
        self, cache: dict[bytes, _Entry], cache_key: bytes, query_wire: bytes, tcp: bool,
        limit: int | None,
    ) -> _Entry | None:  # fmt: skip
        """Build one more shuffle of an answer through the complete path.

        `limit` None keeps the whole answer (no OPT record: the caller adds
        it); a limit cuts it to that size the way the complete path does.
        """
        entry = cache.get(cache_key)
        if entry is None and len(cache) >= MAX_ENTRIES:
            return None
        rendered = self._render(query_wire, tcp, limit)
        if rendered is None:
            return None
        wire, multi = rendered
        question = query_wire[12 : len(query_wire) - opt_size(query_wire)]
        if wire[12 : 12 + len(question)] != question:
            return None  # the bytes did not read back as the same question (a pointer?)
        if entry is None:
            entry = cache[cache_key] = _new_entry(wire, multi)
        entry.bodies.append(wire[12 + len(question) :])
        if len(entry.bodies) >= entry.want:
            _seal(entry, len(question))
        return entry

    def _render(self, query_wire: bytes, tcp: bool, limit: int | None) -> tuple[bytes, bool] | None:
        """(response bytes, several records in an rrset?) of a cacheable answer, else None."""
        try:
            query = dns.message.from_wire(query_wire)
        except Exception:  # not a question after all: the complete path says why
            return None
        ctx = self._tcp_ctx if tcp else self._udp_ctx
        response = answer(query, ctx)
        if response is None or isinstance(response, Forward) or response.rcode() not in CACHEABLE:
            return None
        multi = any(len(rrset) > 1 for rrset in response.answer)
        if limit is not None:
            return to_wire(response, limit, truncate=ctx.settings.enable_truncate), multi
        try:
            return response.to_wire(max_size=TCP_LIMIT, want_shuffle=False), multi
        except dns.exception.TooBig:  # over 64 KB even for TCP: kept as cut answers
            return None

    def _complete(self, data: bytes, tcp: bool) -> bytes | Forward | None:
        """The full path: parse with dnspython, answer, cut to fit."""
        ctx = self._tcp_ctx if tcp else self._udp_ctx
        try:
            query = dns.message.from_wire(data)
        except Exception:  # dnspython raises several kinds for malformed input
            formerr = formerr_for(data)
            return None if formerr is None else formerr.to_wire()
        response = answer(query, ctx)
        if response is None:
            return None
        if isinstance(response, Forward):
            return FORWARD
        limit = TCP_LIMIT if tcp else udp_limit(query)
        return to_wire(response, limit, truncate=ctx.settings.enable_truncate)


def _new_entry(wire: bytes, multi: bool) -> _Entry:
    """The cache entry of a question, from its first response's header."""
    counts = wire[4:12]
    arcount = int.from_bytes(counts[6:8], "big")
    return _Entry(
        counts=counts,
        counts_opt=counts[:6] + (arcount + 1).to_bytes(2, "big"),
        flags1=wire[2] & 0xFE,
        flags2=wire[3] & 0x8F,
        want=VARIANTS if multi else 1,
    )


def _seal(entry: _Entry, question_size: int) -> None:
    """Every shuffle is in: set up the hot path's precomputed pieces."""
    flags = [bytes((entry.flags1 | rd_cd & 0x01, entry.flags2 | (rd_cd & 0x02) << 3))
             for rd_cd in range(4)]  # fmt: skip
    entry.plain = tuple(f + entry.counts for f in flags)
    entry.plain_opt = tuple(f + entry.counts_opt for f in flags)
    entry.size = 12 + question_size + max(map(len, entry.bodies))
    entry.cycle = itertools.cycle(entry.bodies)
