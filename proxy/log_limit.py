"""Logging a refusal at most once per source per interval, with bounded memory. Pure.

Shared by agent RPC (agent/sync/refusals.py) and the proxy's inbound port: a
scanner or a misconfigured peer retrying every second must not fill the
disk, yet the operator learns of it within a minute. The clock is passed in
(milliseconds), so the limiter is a plain function of its inputs.

The remembered sources are bounded (`MAX_REMEMBERED`): when full, those
whose interval has passed are forgotten first, and if none has, the oldest
is — a flood from many addresses costs at most one log line each per
minute, and memory stays flat. They are kept in the order they were last
logged, so the stale ones and the oldest are at the front: a new source
costs O(1) however full the memory (a scan of it cost ~150 us a refusal).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

LOG_INTERVAL_MS = 60_000  # one line per source per minute
MAX_REMEMBERED = 4096  # sources kept for the limiter


@dataclass
class LogLimiter:
    """Says whether to log a refusal from an address: once per interval per address."""

    interval_ms: int = LOG_INTERVAL_MS
    capacity: int = MAX_REMEMBERED
    _last: OrderedDict[str, int] = field(default_factory=OrderedDict)  # oldest logged first

    def allow(self, address: str, now_ms: int) -> bool:
        """True when `address` was not logged within the interval before `now_ms` (then noted)."""
        last = self._last.get(address)
        if last is not None and now_ms - last < self.interval_ms:
            return False
        if last is None and len(self._last) >= self.capacity:
            self._forget(now_ms)
        self._last[address] = now_ms
        self._last.move_to_end(address)  # logged now: the youngest
        return True

    def _forget(self, now_ms: int) -> None:
        """The stale ones go, from the front; if none is, the oldest (all recent: full)."""
        while self._last:
            oldest, logged = next(iter(self._last.items()))
            if now_ms - logged < self.interval_ms and len(self._last) < self.capacity:
                return
            del self._last[oldest]
