"""Hybrid logical clock: timestamps that follow the wall clock yet never go backwards.

Cluster-wide state that any agent may write (intentions, the CA bundle,
config entries) is decided by last-writer-wins (DESIGN.md §4), and "last"
must not depend on whose wall clock is right. An HLC stamp is
`(wall_ms, logical, node)`: close to real time, so an operator's later write
normally wins; strictly growing on each clock even when the wall clock jumps
back (NTP step, VM resume); advanced past every stamp it receives, so a
write made after seeing another is ordered after it (causality); and totally
ordered, the node name breaking the last ties, so every agent picks the same
winner. (Kulkarni et al., "Logical Physical Clocks", 2014.)

Pure: the caller passes the wall time in and keeps the returned clock. To
stay monotonic across restarts the shell persists the last stamp and builds
the clock from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_WALL_MS = 2**63 - 1  # SQLite INTEGER
MAX_LOGICAL = 2**32 - 1  # only grows within one millisecond; a bound keeps peers honest


class ClockSkewError(ValueError):
    """A remote stamp is further ahead of our wall clock than allowed."""


class StampError(ValueError):
    """A stamp from a peer is malformed; says what is wrong."""


@dataclass(frozen=True, order=True)
class Timestamp:
    """One HLC reading; compares by (wall_ms, logical, node)."""

    wall_ms: int
    logical: int
    node: str

    def to_wire(self) -> list[int | str]:
        """`[wall_ms, logical, node]`, compact because every LWW entry carries one."""
        return [self.wall_ms, self.logical, self.node]

    @classmethod
    def from_wire(cls, data: object) -> Timestamp:
        """Parse `[wall_ms, logical, node]` from a peer; raises StampError."""
        if not isinstance(data, list) or len(data) != 3:
            raise StampError("stamp: expected [wall_ms, logical, node]")
        wall, logical, node = data
        if not _int_in(wall, MAX_WALL_MS) or not _int_in(logical, MAX_LOGICAL):
            raise StampError("stamp: wall_ms and logical must be non-negative integers")
        if not isinstance(node, str):
            raise StampError("stamp: node must be a string")
        return cls(wall, logical, node)


def _int_in(value: object, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= high


@dataclass(frozen=True)
class Clock:
    """A node's clock: its name and the last stamp it issued or saw."""

    node: str
    last: Timestamp = field(default=Timestamp(0, 0, ""))


def now(clock: Clock, wall_ms: int) -> tuple[Clock, Timestamp]:
    """A stamp for a local event (a write): later than everything this clock has seen."""
    last = clock.last
    wall = max(last.wall_ms, wall_ms)
    logical = last.logical + 1 if wall == last.wall_ms else 0
    stamp = Timestamp(wall, logical, clock.node)
    return Clock(clock.node, stamp), stamp


def update(
    clock: Clock, remote: Timestamp, wall_ms: int, *, max_skew_ms: int | None = None
) -> tuple[Clock, Timestamp]:
    """Take in a stamp received from a peer; returns the clock and a stamp after both.

    With `max_skew_ms`, a remote stamp that far ahead of our wall clock is
    refused (ClockSkewError) instead of dragging this clock into the future:
    one peer with a broken clock must not make every later write here lose.
    """
    if max_skew_ms is not None and remote.wall_ms - wall_ms > max_skew_ms:
        raise ClockSkewError(
            f"stamp from {remote.node!r} is {remote.wall_ms - wall_ms} ms ahead "
            f"(limit {max_skew_ms} ms)"
        )
    last = clock.last
    wall = max(last.wall_ms, remote.wall_ms, wall_ms)
    if wall == last.wall_ms == remote.wall_ms:
        logical = max(last.logical, remote.logical) + 1
    elif wall == last.wall_ms:
        logical = last.logical + 1
    elif wall == remote.wall_ms:
        logical = remote.logical + 1
    else:
        logical = 0
    stamp = Timestamp(wall, logical, clock.node)
    return Clock(clock.node, stamp), stamp
