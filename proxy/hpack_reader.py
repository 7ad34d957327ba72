"""An HPACK decoder (RFC 7541) for the h2c gate, compiled with the data path. Pure.

Why not `hpack`'s `Decoder`: it is the most of the gate's cost (~13 µs for a
gRPC call's nine fields, pure Python with a log call per field), and the gate
reads every header block of every connection. This one does the same work
in typed code mypyc compiles: integers, the static and dynamic tables, size
updates, the three literal forms. It borrows from `hpack` what is data, not
code paths: the static table and the Huffman automaton's table (its own
decoder, pure Python, cost ~1 µs a byte: nginx sends every response
header as a Huffman literal).

A field that came never-indexed is returned as `hpack`'s
`NeverIndexedHeaderTuple`, so that whoever writes it again keeps it so
(h2_frames.literal_block). Anything malformed raises `HpackError`; the
table is then unusable and so is the connection (COMPRESSION_ERROR).
"""

from __future__ import annotations

from collections import deque
from typing import Final

from hpack.huffman_table import HUFFMAN_TABLE
from hpack.struct import NeverIndexedHeaderTuple
from hpack.table import HeaderTable

from gossamer.proxy.h2_fields import field_fault

STATIC: Final[tuple[tuple[bytes, bytes], ...]] = HeaderTable.STATIC_TABLE
ENTRY_OVERHEAD: Final = 32  # bytes an entry counts beyond its name and value (RFC 7541 §4.1)
# The Huffman decoding automaton, a nibble at a time: entry state * 16 + nibble gives the next
# state, flags and the symbol it emits. hpack's table of tuples, flattened into three byte
# strings that compiled code indexes without touching a Python object.
_NEXT: Final = bytes(entry[0] for entry in HUFFMAN_TABLE)
_FLAGS: Final = bytes(entry[1] for entry in HUFFMAN_TABLE)
_SYMBOL: Final = bytes(entry[2] for entry in HUFFMAN_TABLE)
_COMPLETE: Final = 1
_EMIT: Final = 2
_FAIL: Final = 4
Fields = list[tuple[bytes, bytes]]


class HpackError(Exception):
    """A header block that does not decode."""


class HeaderReader:
    """One direction's decoding context: the dynamic table the peer's encoder mirrors."""

    def __init__(self, max_list: int = 65536, *, checked: bool = False) -> None:
        self.max_allowed = 4096  # the largest table the encoder may ask for (SETTINGS)
        self.max_list = max_list  # bytes of a decoded list (names, values, 32 each)
        # `checked`: each field decoded from a literal is checked as RFC 9113 §8.2.1 asks
        # (h2_fields.field_fault), `malformed` telling whether the last block held a bad one.
        # Indexed fields were checked when they went into the table, unless a bad one did:
        # then every field is, from then on (`_suspect`). And a list past `max_list` does not
        # raise: the block is read to its end (the table kept in step) without keeping its
        # fields, and `over` tells it, so the gate refuses that request, not the connection.
        self.checked = checked
        self.malformed = False
        self.over = False
        self.resized = 0  # bytes of size updates that opened the last block (0: none)
        self._suspect = False
        self._entries: deque[tuple[bytes, bytes]] = deque()  # newest first
        self._size = 0
        self._max_size = 4096

    def read(
        self, block: bytes, wanted: frozenset[bytes] | None = None
    ) -> list[tuple[bytes, bytes]]:
        """The fields of one complete header block, in order; with `wanted`, only those of
        these names (the others are still read as far as the table needs: a literal that is
        not added to it is skipped undecoded)."""
        fields: list[tuple[bytes, bytes]] = []
        at, end, listed = 0, len(block), 0
        self.malformed = self.over = False
        self.resized = 0
        while at < end:
            first = block[at]
            if first & 0x80:  # indexed field
                index, at = self._integer(block, at, 7)
                field = self._field(index)
                if self._suspect and field_fault(field[0], field[1]):
                    self.malformed = True
                if wanted is not None and field[0] not in wanted:
                    continue
                fields.append(field)
            elif first & 0x40:  # literal, added to the table
                if wanted is not None and self._max_size == 0:  # (nginx's way: never kept)
                    name, at = self._name(block, at, 6)
                    if name not in wanted:
                        at = self._skip(block, at)
                        continue
                    value, at = self._string(block, at)
                    fields.append((name, value))
                    continue
                name, value, at = self._literal(block, at, 6)
                if self.checked and field_fault(name, value):
                    self.malformed = self._suspect = True
                self._add(name, value)
                if wanted is not None and name not in wanted:
                    continue
                fields.append((name, value))
            elif first & 0x20:  # dynamic table size update: only before the first field
                if fields:
                    raise HpackError("a table size update after a field")
                size, at = self._integer(block, at, 5)
                if size > self.max_allowed:
                    raise HpackError(f"a table size of {size}, over the {self.max_allowed} allowed")
                self._max_size = size
                self._evict(0)
                self.resized = at
                continue
            else:  # literal without indexing (0x00) or never indexed (0x10)
                if wanted is not None:
                    name, at = self._name(block, at, 4)
                    if name not in wanted:
                        at = self._skip(block, at)
                        continue
                    value, at = self._string(block, at)
                else:
                    name, value, at = self._literal(block, at, 4)
                    if self.checked and field_fault(name, value):
                        self.malformed = True
                fields.append(NeverIndexedHeaderTuple(name, value) if first & 0x10
                              else (name, value))  # fmt: skip
            listed += len(fields[-1][0]) + len(fields[-1][1]) + ENTRY_OVERHEAD
            if listed > self.max_list:
                if not self.checked:
                    raise HpackError(f"a header list over {self.max_list} bytes")
                self.over, listed = True, self.max_list
                del fields[1:]  # (one kept: a size update after it is still refused)
        return fields

    @property
    def table_max(self) -> int:
        """The table's size as the encoder last set it (4096 until it does)."""
        return self._max_size

    def _field(self, index: int) -> tuple[bytes, bytes]:
        if 0 < index <= len(STATIC):
            return STATIC[index - 1]
        dynamic = index - len(STATIC) - 1
        if index == 0 or dynamic >= len(self._entries):
            raise HpackError(f"index {index} is in neither table")
        return self._entries[dynamic]

    def _literal(self, block: bytes, at: int, prefix: int) -> tuple[bytes, bytes, int]:
        name, at = self._name(block, at, prefix)
        value, at = self._string(block, at)
        return name, value, at

    def _name(self, block: bytes, at: int, prefix: int) -> tuple[bytes, int]:
        """A literal's name: by index, or a string of its own."""
        index, at = self._integer(block, at, prefix)
        if index:
            return self._field(index)[0], at
        return self._string(block, at)

    def _skip(self, block: bytes, at: int) -> int:
        """Past a string, undecoded."""
        if at >= len(block):
            raise HpackError("a string is missing at the end of the block")
        length, at = self._integer(block, at, 7)
        if at + length > len(block):
            raise HpackError(f"a string of {length} bytes runs past the end of the block")
        return at + length

    def _string(self, block: bytes, at: int) -> tuple[bytes, int]:
        if at >= len(block):
            raise HpackError("a string is missing at the end of the block")
        huffman = block[at] & 0x80
        length, at = self._integer(block, at, 7)
        if at + length > len(block):
            raise HpackError(f"a string of {length} bytes runs past the end of the block")
        raw = block[at : at + length]
        return (huffman_decoded(raw) if huffman else raw), at + length

    def _integer(self, block: bytes, at: int, prefix: int) -> tuple[int, int]:
        """An integer with a `prefix`-bit prefix starting at `at` (RFC 7541 §5.1)."""
        mask = (1 << prefix) - 1
        value = block[at] & mask
        at += 1
        if value < mask:
            return value, at
        shift = 0
        while True:
            if at >= len(block):
                raise HpackError("an integer runs past the end of the block")
            byte = block[at]
            at += 1
            value += (byte & 0x7F) << shift
            if not byte & 0x80:
                return value, at
            shift += 7
            if shift > 28:
                raise HpackError("an integer longer than 32 bits")

    def _add(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + ENTRY_OVERHEAD
        if size > self._max_size:  # an entry larger than the table empties it (§4.4)
            self._entries.clear()
            self._size = 0
            return
        self._evict(size)
        self._entries.appendleft((name, value))
        self._size += size

    def _evict(self, room: int) -> None:
        """Drop the oldest entries until `room` more bytes fit."""
        while self._entries and self._size + room > self._max_size:
            name, value = self._entries.pop()
            self._size -= len(name) + len(value) + ENTRY_OVERHEAD


def huffman_decoded(raw: bytes) -> bytes:
    """A Huffman-coded string (RFC 7541 §5.2, Appendix B) decoded; HpackError when the code
    is invalid (EOS inside, or padding that is not the EOS prefix)."""
    out: list[int] = []  # (list.append is native code when compiled; bytearray's is a call)
    state, flags = 0, _COMPLETE
    for byte in raw:
        index = state * 16 + (byte >> 4)
        state, flags = _NEXT[index], _FLAGS[index]
        if flags & _FAIL:
            raise HpackError("a Huffman string that does not decode")
        if flags & _EMIT:
            out.append(_SYMBOL[index])
        index = state * 16 + (byte & 0x0F)
        state, flags = _NEXT[index], _FLAGS[index]
        if flags & _FAIL:
            raise HpackError("a Huffman string that does not decode")
        if flags & _EMIT:
            out.append(_SYMBOL[index])
    if not flags & _COMPLETE:
        raise HpackError("a Huffman string that ends inside a symbol")
    return bytes(out)
