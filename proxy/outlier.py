"""Setting aside an upstream instance that keeps failing, and trying it again later. Pure.

Rules (Envoy's consecutive-failure outlier detection, scaled to L4 connects):
- an instance is ejected after `threshold` consecutive failed attempts
  (connect refused or timed out, handshake failed, wrong server identity);
  one success resets its count;
- the n-th ejection lasts `base_ms * n`, capped at `max_ms`, so an instance
  that fails again as soon as it is back stays out longer each time; an
  instance that stays healthy for `forgive_ms` after returning starts
  again from n = 0;
- at most `max_ejected_ratio` of the known instances are out at once (at
  least one is always eligible), so a blip that fails everything cannot
  empty the upstream: then the proxy keeps trying the least-bad ones;
- when an ejection ends the instance is eligible again at once (no probe):
  the next real connection is the probe.
Time is milliseconds passed in by the caller.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
THRESHOLD: Final = 3  # consecutive failures before an instance is set aside
BASE_MS: Final = 10_000  # first ejection: 10 s (Envoy's base is 30 s for 5xx; connects fail faster)
MAX_MS: Final = 300_000  # never out for more than 5 min at a time
FORGIVE_MS: Final = 60_000  # healthy this long after coming back: ejection count resets
MAX_EJECTED_RATIO: Final = 0.5


@dataclass
class _State:
    failures: int = 0
    ejections: int = 0
    until_ms: int = 0
    back_at_ms: int = 0


class Outliers(Generic[K]):
    """Per-instance failure counts and ejections for one upstream. (A plain class: mypyc
    compiles a generic class, not yet a generic dataclass; proxy/native.py.)"""

    def __init__(
        self, threshold: int = THRESHOLD, base_ms: int = BASE_MS, max_ms: int = MAX_MS,
        forgive_ms: int = FORGIVE_MS, max_ejected_ratio: float = MAX_EJECTED_RATIO,
    ) -> None:  # fmt: skip
        self.threshold = threshold
        self.base_ms = base_ms
        self.max_ms = max_ms
        self.forgive_ms = forgive_ms
        self.max_ejected_ratio = max_ejected_ratio
        self._states: dict[K, _State] = {}

    def failed(self, instance: K, now_ms: int, known: int) -> bool:
        """Note a failed attempt; True when this failure ejected the instance."""
        state = self._states.setdefault(instance, _State())
        state.failures += 1
        if state.failures < self.threshold or self.is_ejected(instance, now_ms):
            return False
        if self._ejected_count(now_ms) + 1 > max(0, int(known * self.max_ejected_ratio)):
            return False
        if state.back_at_ms and now_ms - state.back_at_ms >= self.forgive_ms:
            state.ejections = 0
        state.ejections += 1
        state.until_ms = now_ms + min(self.base_ms * state.ejections, self.max_ms)
        state.back_at_ms = state.until_ms
        state.failures = 0
        return True

    def succeeded(self, instance: K) -> None:
        """A connection got through: the failure count starts again."""
        state = self._states.get(instance)
        if state is not None:
            state.failures = 0

    def is_ejected(self, instance: K, now_ms: int) -> bool:
        state = self._states.get(instance)
        return state is not None and state.until_ms > now_ms

    def ejected(self, now_ms: int) -> set[K]:
        """The instances set aside at `now_ms`."""
        return {k for k, s in self._states.items() if s.until_ms > now_ms}

    def forget_except(self, known: Collection[K]) -> None:
        """Drop the state of instances no longer in the catalog (bounded memory)."""
        for instance in [k for k in self._states if k not in known]:
            del self._states[instance]

    def _ejected_count(self, now_ms: int) -> int:
        return sum(1 for s in self._states.values() if s.until_ms > now_ms)
