"""An HPACK decoder (RFC 7541) for the h2c gate, compiled with the data path. Pure.

Why not `hpack`'s `Decoder`: it is the most of the gate's cost (~13 µs for a
gRPC call's nine fields, pure Python with a log call per field), and the gate
reads every header block of every connection. This one does the same work
in typed code mypyc compiles: integers, the static and dynamic tables, size
updates, the three literal forms. It borrows from `hpack` what is data, not
code paths: the static table and the Huffman decoder (strings are short, and
clients index what repeats).

A field that came never-indexed is returned as `hpack`'s
`NeverIndexedHeaderTuple`, so that whoever writes it again keeps it so
(h2_frames.literal_block). Anything malformed raises `HpackError`; the
table is then unusable and so is the connection (COMPRESSION_ERROR).
"""

from __future__ import annotations

from collections import deque

from hpack.exceptions import HPACKDecodingError
from hpack.huffman_table import decode_huffman
from hpack.struct import NeverIndexedHeaderTuple
from hpack.table import HeaderTable

STATIC: tuple[tuple[bytes, bytes], ...] = HeaderTable.STATIC_TABLE
ENTRY_OVERHEAD = 32  # bytes an entry counts beyond its name and value (RFC 7541 §4.1)


class HpackError(Exception):
    """A header block that does not decode."""


class HeaderReader:
    """One direction's decoding context: the dynamic table the peer's encoder mirrors."""

    def __init__(self, max_list: int = 65536) -> None:
        self.max_allowed = 4096  # the largest table the encoder may ask for (SETTINGS)
        self.max_list = max_list  # bytes of a decoded list (names, values, 32 each)
        self._entries: deque[tuple[bytes, bytes]] = deque()  # newest first
        self._size = 0
        self._max_size = 4096

    def read(self, block: bytes) -> list[tuple[bytes, bytes]]:
        """The fields of one complete header block, in order."""
        fields: list[tuple[bytes, bytes]] = []
        at, end, listed = 0, len(block), 0
        while at < end:
            first = block[at]
            if first & 0x80:  # indexed field
                index, at = self._integer(block, at, 7)
                fields.append(self._field(index))
            elif first & 0x40:  # literal, added to the table
                name, value, at = self._literal(block, at, 6)
                self._add(name, value)
                fields.append((name, value))
            elif first & 0x20:  # dynamic table size update: only before the first field
                if fields:
                    raise HpackError("a table size update after a field")
                size, at = self._integer(block, at, 5)
                if size > self.max_allowed:
                    raise HpackError(f"a table size of {size}, over the {self.max_allowed} allowed")
                self._max_size = size
                self._evict(0)
                continue
            else:  # literal without indexing (0x00) or never indexed (0x10)
                name, value, at = self._literal(block, at, 4)
                fields.append(NeverIndexedHeaderTuple(name, value) if first & 0x10
                              else (name, value))  # fmt: skip
            listed += len(fields[-1][0]) + len(fields[-1][1]) + ENTRY_OVERHEAD
            if listed > self.max_list:
                raise HpackError(f"a header list over {self.max_list} bytes")
        return fields

    def _field(self, index: int) -> tuple[bytes, bytes]:
        if 0 < index <= len(STATIC):
            return STATIC[index - 1]
        dynamic = index - len(STATIC) - 1
        if index == 0 or dynamic >= len(self._entries):
            raise HpackError(f"index {index} is in neither table")
        return self._entries[dynamic]

    def _literal(self, block: bytes, at: int, prefix: int) -> tuple[bytes, bytes, int]:
        index, at = self._integer(block, at, prefix)
        if index:
            name = self._field(index)[0]
        else:
            name, at = self._string(block, at)
        value, at = self._string(block, at)
        return name, value, at

    def _string(self, block: bytes, at: int) -> tuple[bytes, int]:
        if at >= len(block):
            raise HpackError("a string is missing at the end of the block")
        huffman = block[at] & 0x80
        length, at = self._integer(block, at, 7)
        if at + length > len(block):
            raise HpackError(f"a string of {length} bytes runs past the end of the block")
        raw = block[at : at + length]
        if not huffman:
            return raw, at + length
        try:
            return decode_huffman(raw), at + length
        except HPACKDecodingError as exc:
            raise HpackError(f"a Huffman string that does not decode: {exc}") from exc

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
