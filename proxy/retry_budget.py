"""How many retries an upstream may make: Linkerd's retry budget. Pure.

Retries are allowed while they stay under `ratio` of the requests of the
last `window_s` seconds, plus `min_per_s` a second so a quiet upstream can
still retry at all (Linkerd's defaults: 0.2, 10/s, 10 s). A failing
upstream therefore sees at most 1.2x its normal load from this proxy, never
a retry storm. Counts are kept per second in a ring, so memory is fixed and
each call is O(1) amortized. Time is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

RATIO: Final = 0.2
MIN_PER_S: Final = 10.0
WINDOW_S: Final = 10


@dataclass
class RetryBudget:
    ratio: float = RATIO
    min_per_s: float = MIN_PER_S
    window_s: int = WINDOW_S
    _requests: list[int] = field(default_factory=list)
    _retries: list[int] = field(default_factory=list)
    _second: int = -1

    def __post_init__(self) -> None:
        self._requests = [0] * self.window_s
        self._retries = [0] * self.window_s

    def request(self, now_s: float) -> None:
        """A first attempt: it adds `ratio` of a retry to the budget."""
        self._requests[self._slot(now_s)] += 1

    def try_retry(self, now_s: float) -> bool:
        """May one more retry go now? If so it is counted against the budget."""
        slot = self._slot(now_s)
        allowed = self.min_per_s * self.window_s + self.ratio * sum(self._requests)
        if sum(self._retries) + 1 > allowed:
            return False
        self._retries[slot] += 1
        return True

    def _slot(self, now_s: float) -> int:
        second = int(now_s)
        if second != self._second:  # clear the seconds that passed since the last call
            for s in range(max(self._second + 1, second - self.window_s + 1), second + 1):
                self._requests[s % self.window_s] = 0
                self._retries[s % self.window_s] = 0
            self._second = second
        return second % self.window_s
