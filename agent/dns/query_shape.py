"""The shape of a query's bytes, read without a DNS library: where the question ends.

Only the common shape is read: a query (QR=0), opcode QUERY, one question,
no answer or authority records, at most an OPT record of EDNS version 0
ending the packet. The prepared path serves only that shape; everything
else (and an OPT record carrying a padding option, whose answer the
complete path pads, RFC 8467) is left to the complete path in answer.py.
Pure: bytes in, offsets out.
"""

from __future__ import annotations

OPT_TYPE = b"\x00\x00\x29"  # the root name, then type OPT
NO_EDNS = b"\x00\x01\x00\x00\x00\x00\x00\x00"  # QD=1, AN=NS=AR=0
WITH_OPT = b"\x00\x01\x00\x00\x00\x00\x00\x01"  # QD=1, AR=1
OPT_FIXED = 11  # an OPT record without options: name, type, class, TTL, RDLENGTH
PADDING = 12  # EDNS option code (RFC 7830)


def question_end(data: bytes) -> tuple[int, int] | None:
    """(end of the question, client's UDP size or 0 without EDNS), None for other shapes."""
    if len(data) < 17 or data[2] & 0xF8:  # QR set, or an opcode other than QUERY
        return None
    counts = data[4:12]
    if counts == NO_EDNS:
        end = len(data)
        if data[end - 5] != 0:
            return None
        return end, 0
    if counts != WITH_OPT:
        return None
    qend = _name_end(data, 12)
    if qend is None:
        return None
    qend += 4
    n = len(data)
    if (
        n < qend + OPT_FIXED
        or data[qend : qend + 3] != OPT_TYPE
        or data[qend + 6] != 0  # EDNS version
        or qend + OPT_FIXED + int.from_bytes(data[qend + 9 : qend + 11], "big") != n
        or _has_padding(data, qend + OPT_FIXED)
    ):
        return None
    return qend, max(int.from_bytes(data[qend + 3 : qend + 5], "big"), 512)


def _name_end(data: bytes, i: int) -> int | None:
    """The offset after an uncompressed name's root label; None for pointers or overruns."""
    n = len(data)
    while i < n:
        length = data[i]
        if length == 0:
            return i + 1
        if length > 63:
            return None
        i += length + 1
    return None


def _has_padding(data: bytes, i: int) -> bool:
    """Whether the options from `i` to the end include padding (or run over the end)."""
    n = len(data)
    while i < n:
        if i + 4 > n:
            return True  # a cut option: let the complete path judge it
        if int.from_bytes(data[i : i + 2], "big") == PADDING:
            return True
        i += 4 + int.from_bytes(data[i + 2 : i + 4], "big")
    return i != n


def opt_query(payload: int) -> bytes:
    """An option-less OPT record offering `payload` bytes, for the canonical queries."""
    return OPT_TYPE + min(payload, 65535).to_bytes(2, "big") + b"\x00" * 6


def opt_size(query_wire: bytes) -> int:
    return OPT_FIXED if query_wire[4:12] == WITH_OPT else 0
