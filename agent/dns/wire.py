"""Fitting a response into the size a client accepts. Pure.

UDP answers fit 512 bytes, or the client's EDNS buffer; TCP ones 64 KB.
What does not fit is cut from the end, and TC tells the client to retry
over TCP.
"""

from __future__ import annotations

import dns.exception
import dns.message
import dns.rrset


def udp_limit(query: dns.message.Message) -> int:
    """The UDP size a client accepts: 512 without EDNS, else its payload (at least 512)."""
    return max(query.payload, 512) if query.edns >= 0 else 512


def to_wire(response: dns.message.Message, max_size: int, *, truncate: bool = True) -> bytes:
    """Wire bytes of at most `max_size`, compressed; records cut from the end to fit.

    The additional section goes first (it only saves lookups), then answer
    records; TC is set when an answer record was cut (unless `truncate` is
    off, which is Consul's silent cut) so the client retries over TCP.
    Records keep the order answer() gave them (dnspython's own shuffle is
    off, or nearest-first would be lost on the wire).
    """
    try:
        return response.to_wire(max_size=max_size, want_shuffle=False)
    except dns.exception.TooBig:
        pass
    response.additional.clear()
    try:
        return response.to_wire(max_size=max_size, want_shuffle=False)
    except dns.exception.TooBig:
        pass
    best = _most_answers(response, max_size)
    if not best:
        response.answer = []
        response.authority.clear()
        best = response.to_wire(max_size=max_size, want_shuffle=False)
    if truncate:
        best = best[:2] + bytes([best[2] | 0x02]) + best[3:]  # TC
    return best


def _most_answers(response: dns.message.Message, max_size: int) -> bytes:
    """The response with as many leading answer records as fit; b"" if not even one does."""
    answers = list(response.answer)
    bad = sum(len(rrset) for rrset in answers)  # a count known not to fit
    fits, best = 0, b""
    count = 1
    while count < bad:  # grow 1, 2, 4, ...: small answers (UDP) cost a few small renders
        wire = _render_first(response, answers, count, max_size)
        if wire is None:
            bad = count
            break
        fits, best = count, wire
        count *= 2
    while bad - fits > 1:  # then halve the gap between what fits and what does not
        middle = (fits + bad) // 2
        wire = _render_first(response, answers, middle, max_size)
        if wire is None:
            bad = middle
        else:
            fits, best = middle, wire
    return best


def _render_first(
    response: dns.message.Message, answers: list[dns.rrset.RRset], count: int, max_size: int
) -> bytes | None:
    response.answer = _first_records(answers, count)
    try:
        return response.to_wire(max_size=max_size, want_shuffle=False)
    except dns.exception.TooBig:
        return None


def _first_records(rrsets: list[dns.rrset.RRset], count: int) -> list[dns.rrset.RRset]:
    kept: list[dns.rrset.RRset] = []
    for rrset in rrsets:
        if count <= 0:
            break
        part = dns.rrset.RRset(rrset.name, rrset.rdclass, rrset.rdtype)
        part.update_ttl(rrset.ttl)
        for rdata in list(rrset)[:count]:
            part.add(rdata)
        kept.append(part)
        count -= len(part)
    return kept
