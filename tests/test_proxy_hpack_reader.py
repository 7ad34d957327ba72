"""The h2c gate's HPACK decoder (proxy/hpack_reader.py) against python-hyper's `hpack`: every
block `hpack`'s encoder writes (Huffman or not, table sizes changing, never-indexed fields)
decodes to what `hpack`'s decoder reads, and bad blocks raise HpackError, nothing else."""

from __future__ import annotations

import pytest
from hpack import Decoder, Encoder
from hpack.exceptions import HPACKError
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.huffman_table import decode_huffman
from hpack.struct import NeverIndexedHeaderTuple
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.proxy.h2_frames import size_update
from gossamer.proxy.hpack_reader import HeaderReader, HpackError, huffman_decoded

NAMES = st.sampled_from([b":path", b":method", b"content-type", b"x-a", b"x-b", b"grpc-timeout",
                         b"user-agent", b"cookie", b"authorization"])  # fmt: skip
VALUES = st.one_of(st.sampled_from([b"GET", b"/", b"application/grpc", b"5S"]),
                   st.binary(max_size=300).filter(lambda v: b"\0" not in v))  # fmt: skip
FIELD = st.tuples(NAMES, VALUES, st.booleans())  # the last: sent never-indexed
RESIZE = st.sampled_from([None, 0, 256, 4096])  # a table size the encoder announces first
BLOCKS = st.lists(st.tuples(st.lists(FIELD, max_size=12), st.booleans(), RESIZE),
                  min_size=1, max_size=12)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(BLOCKS)
def test_every_block_hpacks_encoder_writes_reads_as_hpacks_decoder_reads_it(
    blocks: list[tuple[list[tuple[bytes, bytes, bool]], bool, int | None]],
) -> None:
    encoder, theirs, ours, partial = Encoder(), Decoder(), HeaderReader(), HeaderReader()
    wanted = frozenset((b":path", b"x-a", b"authorization"))
    for fields, huffman, resize in blocks:
        if resize is not None:
            encoder.header_table_size = resize
        sent = [NeverIndexedHeaderTuple(n, v) if never else (n, v) for n, v, never in fields]
        block = encoder.encode(sent, huffman=huffman)
        expected = theirs.decode(block, raw=True)
        got = ours.read(block)
        assert [tuple(f) for f in got] == [tuple(f) for f in expected]
        picked = [tuple(f) for f in partial.read(block, wanted)]  # its table kept in step too
        assert picked == [tuple(f) for f in expected if f[0] in wanted]
        assert [isinstance(f, NeverIndexedHeaderTuple) for f in got] == [
            isinstance(f, NeverIndexedHeaderTuple) for f in expected]  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_hpack_error(block: bytes) -> None:
    reader = HeaderReader()
    try:
        fields = reader.read(block)
    except HpackError:
        return
    try:  # what we accept, hpack accepts too, the same way
        assert [tuple(f) for f in Decoder().decode(block, raw=True)] == [tuple(f) for f in fields]
    except HPACKError:
        pytest.fail(f"read {block!r} that hpack refuses")


@pytest.mark.parametrize(("block", "words"), [
    (b"\x80", "index 0"),  # indexed field 0
    (b"\xbe", "index 62"),  # the dynamic table is empty
    (b"\x40\x05ab", "past the end"),  # a string longer than the block
    (b"\x3f\xe1\x3f", "over the 4096 allowed"),  # a size update past SETTINGS
    (b"\x82\x20", "after a field"),  # a size update after a field
    (b"\x7f\xff\xff\xff\xff\xff", "32 bits"),  # an endless integer
    (b"\x40\x81\xff\x01a", "Huffman"),  # an invalid Huffman string (EOS inside)
])  # fmt: skip
def test_bad_blocks_say_what_is_wrong(block: bytes, words: str) -> None:
    with pytest.raises(HpackError, match=words):
        HeaderReader().read(block)


def test_a_header_list_over_the_limit_is_refused() -> None:
    block = Encoder().encode([(b"x-big", b"v" * 200)] * 5, huffman=False)
    assert len(HeaderReader(max_list=2000).read(block)) == 5
    with pytest.raises(HpackError, match="header list over 1000 bytes"):
        HeaderReader(max_list=1000).read(block)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64), st.binary(max_size=40))
def test_huffman_decodes_as_hpacks_does(text: bytes, noise: bytes) -> None:
    coded = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH).encode(text)
    assert huffman_decoded(coded) == text
    try:
        expected: bytes | None = decode_huffman(noise)
    except HPACKError:
        expected = None
    try:
        got: bytes | None = huffman_decoded(noise)
    except HpackError:
        got = None
    assert got == expected


def test_wanted_fields_only_and_the_table_kept_in_step() -> None:
    encoder, reader = Encoder(), HeaderReader()
    wanted = frozenset((b":status", b"grpc-status"))
    answer = [(b":status", b"200"), (b"server", b"nginx"), (b"grpc-status", b"14")]
    for _ in range(3):  # the first block adds to the table, the next ones refer to it
        block = encoder.encode([*answer, NeverIndexedHeaderTuple(b"x-secret", b"s")])
        assert reader.read(block, wanted) == [(b":status", b"200"), (b"grpc-status", b"14")]
    assert reader.read(encoder.encode([(b"server", b"nginx")])) == [(b"server", b"nginx")]


def test_a_zero_table_is_read_as_nginx_writes_it() -> None:
    """nginx sets its table to 0 and sends literals "with indexing" that are never kept."""
    encoder, reader = Encoder(), HeaderReader()
    encoder.header_table_size = 0
    for _ in range(2):
        block = encoder.encode([(b":status", b"200"), (b"server", b"nginx"), (b"date", b"x")])
        assert reader.read(block, frozenset((b":status",))) == [(b":status", b"200")]
        assert block[0] == 0x20 or block[0] & 0x40 or block[0] & 0x80


def test_size_updates_written_here_read_back_and_are_measured() -> None:
    for size in (0, 30, 31, 4096, 65536):
        reader = HeaderReader()
        reader.max_allowed = 65536
        update = size_update(size)
        assert reader.read(update + size_update(size)) == []
        assert (reader.table_max, reader.resized) == (size, 2 * len(update))
