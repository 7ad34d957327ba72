"""This agent's hybrid logical clock, persisted so that a restart never goes back in time.

The clock itself is the pure `catalog.hlc`; this keeps the current value,
reads the wall clock and stores every stamp it issues (`save_hlc`) before
the stamp is used. Stamps received from peers move it forward too, except
one too far ahead of our wall clock (a peer with a broken clock must not
drag every later local write into the future); that entry is still kept,
and a local write to the same key is stamped after it anyway (`tick(after=)`),
so a write acknowledged here never silently loses to an older one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from gossamer.catalog import hlc
from gossamer.catalog.store import CatalogStore

log = logging.getLogger("gossamer.hlc")

MAX_SKEW_MS = 5 * 60 * 1000  # a peer's stamp further ahead than this does not move our clock


class HlcClock:
    def __init__(
        self,
        store: CatalogStore,
        node: str,
        *,
        wall_ms: Callable[[], int],
        seen: Iterable[hlc.Timestamp] = (),
    ) -> None:
        """Resume from the stored last stamp, then past the stamps in `seen` (stored entries)."""
        self._store = store
        self._wall_ms = wall_ms
        last = store.hlc_last()
        self._clock = hlc.Clock(node, last if last is not None else hlc.Timestamp(0, 0, ""))
        for stamp in seen:
            self.observe(stamp)

    @property
    def last(self) -> hlc.Timestamp:
        return self._clock.last

    def tick(self, after: hlc.Timestamp | None = None) -> hlc.Timestamp:
        """A stamp for a local write, later than everything seen and than `after`; stored."""
        wall = self._wall_ms()
        if after is not None:
            self._clock, _ = hlc.update(self._clock, after, wall)
        self._clock, stamp = hlc.now(self._clock, wall)
        self._store.save_hlc(stamp)
        return stamp

    def observe(self, stamp: hlc.Timestamp) -> None:
        """A stamp from a peer: move past it, unless it is implausibly far ahead."""
        try:
            self._clock, _ = hlc.update(
                self._clock, stamp, self._wall_ms(), max_skew_ms=MAX_SKEW_MS
            )
        except hlc.ClockSkewError as exc:
            log.warning("not following a peer's clock: %s", exc)
