"""Hashes over ranges of a catalog digest, so agents that agree exchange a hash, not a digest.

A digest (`merge.digest`) lists every node's `[version, node_id]`: at 10,000
nodes about 590 KB per round, sent even when both sides hold the same
catalog. Here the same stamps are summed instead:

- every stamp `(node, version, node_id)` hashes to 128 bits (BLAKE2b); a
  tombstone's without its node ID (`summed_stamps` says why);
- the *root* is the XOR of all of them: equal digests give equal roots, and
  one changed stamp changes it (XOR is order-free, so no sorting is needed
  and names never repeat, so nothing cancels);
- a node's *range* (bucket) is fixed by its name alone (CRC-32 scaled to the
  bucket count), so the same node falls in the same range on both sides
  whatever its version; a range's sum is the XOR of its stamps, 64 bits.

The round built on it (`sync_exchange.DigestExchange`, `sync_answer`):
root first; if the roots differ, the answering side sends every range's sum;
the asking side then sends its stamps of the differing ranges only, and the
rest of the round is the usual delta and push, limited to those ranges.

Rules this module keeps:
- Pure: stamps in, hashes and bucket numbers out. `state_sums` memoises the
  last few states by identity (states are immutable), because one agent
  asks and answers several rounds per state.
- The asking side picks the bucket count (`buckets_for`, about
  NODES_PER_RANGE stamps per range, at most MAX_BUCKETS); the answering side
  uses the count it is given, so two agents of any sizes compare the same
  ranges.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gossamer.catalog.merge import CatalogState, Stamp, digest
from gossamer.catalog.sync_protocol import Message, RequestError

NODES_PER_RANGE = 32  # a differing range costs ~32 stamps (~1.5 KB); 10,000 nodes: 313 sums
MAX_BUCKETS = 4096  # 32 KB of sums at most, for clusters above ~130,000 nodes
ROOT_BYTES = 16
SUM_BYTES = 8
_MEMO_SIZE = 4  # states remembered by `state_sums`: the current one and a few recent


class RangeError(RequestError):
    """A peer's root, bucket count, sums or ranges are malformed."""


@dataclass(frozen=True)
class RangeSums:
    """The stamps of one digest as (name key, stamp hash) pairs, and their root."""

    root: bytes
    keys: tuple[int, ...]  # CRC-32 of each node name
    hashes: tuple[int, ...]  # 128-bit hash of each stamp, in the same order

    def bucket_sums(self, buckets: int) -> bytes:
        """Every range's sum for `buckets` ranges, SUM_BYTES each, in range order."""
        sums = [0] * buckets
        for key, value in zip(self.keys, self.hashes, strict=True):
            sums[key * buckets >> 32] ^= value
        mask = (1 << (8 * SUM_BYTES)) - 1
        return b"".join((s & mask).to_bytes(SUM_BYTES, "big") for s in sums)


def name_key(node: str) -> int:
    return zlib.crc32(node.encode())


def stamp_hash(node: str, stamp: Stamp) -> int:
    data = f"{node}\0{stamp.version}\0{stamp.node_id}".encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=ROOT_BYTES).digest(), "big")


def sums_of(stamps: Mapping[str, Stamp]) -> RangeSums:
    """The range sums of a digest `{node: Stamp}`."""
    keys = tuple(name_key(n) for n in stamps)
    hashes = tuple(stamp_hash(n, s) for n, s in stamps.items())
    root = 0
    for value in hashes:
        root ^= value
    return RangeSums(root.to_bytes(ROOT_BYTES, "big"), keys, hashes)


def summed_stamps(state: CatalogState, datacenter: str) -> dict[str, Stamp]:
    """`merge.digest`, but a tombstone's stamp without its node ID.

    A tombstone travels as `[node, version]`, so its node ID is whatever this
    agent last held (or "" if it held none): two agents that agree on every
    removal may still differ there, and a sum over it would never settle.
    """
    out = {n: Stamp(t.version, "") for n, t in state.tombstones.get(datacenter, {}).items()}
    out |= {n: Stamp(r.version, r.node_id) for n, r in state.records.get(datacenter, {}).items()}
    return out


_memo: dict[tuple[int, str], tuple[CatalogState, RangeSums]] = {}


def state_sums(state: CatalogState, datacenter: str) -> RangeSums:
    """`sums_of(summed_stamps(state, datacenter))`, remembered for the last few states."""
    key = (id(state), datacenter)
    hit = _memo.get(key)
    if hit is not None and hit[0] is state:
        return hit[1]
    sums = sums_of(summed_stamps(state, datacenter))
    if len(_memo) >= _MEMO_SIZE:
        del _memo[next(iter(_memo))]
    _memo[key] = (state, sums)
    return sums


def buckets_for(count: int) -> int:
    """How many ranges the asking side splits `count` stamps into."""
    return max(1, min(MAX_BUCKETS, -(-count // NODES_PER_RANGE)))


def bucket_of(node: str, buckets: int) -> int:
    return name_key(node) * buckets >> 32


def differing(mine: bytes, theirs: bytes) -> list[int]:
    """The ranges whose sums differ (both from `bucket_sums` with one bucket count)."""
    if len(mine) != len(theirs):
        raise RangeError(f"sums: {len(theirs)} bytes, expected {len(mine)}")
    step = SUM_BYTES
    return [
        i // step for i in range(0, len(mine), step) if mine[i : i + step] != theirs[i : i + step]
    ]


def in_ranges(stamps: Mapping[str, Stamp], buckets: int, ranges: Iterable[int]) -> dict[str, Stamp]:
    """The stamps whose node falls in one of `ranges` (of `buckets`)."""
    wanted = set(ranges)
    return {n: s for n, s in stamps.items() if bucket_of(n, buckets) in wanted}


# -- messages ----------------------------------------------------------------------------


def sums_request(state: CatalogState, datacenter: str) -> Message:
    """The opening of a ranged round: our root, and how many ranges to compare if it differs."""
    sums = state_sums(state, datacenter)
    buckets = buckets_for(len(sums.keys))
    return {"t": "sums", "dc": datacenter, "root": sums.root, "buckets": buckets}


def ranged_digest(state: CatalogState, datacenter: str, buckets: int, ranges: list[int]) -> Message:
    """A digest of only the stamps in `ranges`; the answer is limited to the same ranges."""
    stamps = in_ranges(digest(state, datacenter), buckets, ranges)
    return {
        "t": "digest",
        "dc": datacenter,
        "digest": {n: list(s) for n, s in stamps.items()},
        "buckets": buckets,
        "ranges": ranges,
    }


# -- parsing what a peer sent -------------------------------------------------------------


def parse_root(raw: object) -> bytes:
    if not isinstance(raw, bytes) or len(raw) != ROOT_BYTES:
        raise RangeError(f"root: expected {ROOT_BYTES} bytes")
    return raw


def parse_buckets(raw: object) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or not 1 <= raw <= MAX_BUCKETS:
        raise RangeError(f"buckets: expected an integer from 1 to {MAX_BUCKETS}")
    return raw


def parse_sums(raw: object, buckets: int) -> bytes:
    if not isinstance(raw, bytes) or len(raw) != buckets * SUM_BYTES:
        raise RangeError(f"sums: expected {buckets * SUM_BYTES} bytes for {buckets} ranges")
    return raw


def parse_ranges(raw: object, buckets: int) -> list[int]:
    if not isinstance(raw, list) or len(raw) > buckets:
        raise RangeError(f"ranges: expected a list of at most {buckets} range numbers")
    for item in raw:
        if not isinstance(item, int) or isinstance(item, bool) or not 0 <= item < buckets:
            raise RangeError(f"ranges: {item!r:.40} is not a range number below {buckets}")
    return list(raw)
