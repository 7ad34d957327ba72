"""Which instance an HTTP request goes to: peak-EWMA latency, as Linkerd and Finagle. Pure.

For HTTP the proxy sees each request's latency, so it balances on it (at L4
it only sees open connections, balance.py). Each instance keeps a moving
average of its request latencies that decays with time (`tau_s`, 10 s) and
jumps straight up to a slower sample ("peak"): one slow answer is enough to
steer new requests away at once, and the instance earns its way back as
faster samples come in, or as time passes without one (the estimate decays
toward zero, so an instance priced high is tried again). An instance's cost
is that latency times (requests in flight + 1); two instances are drawn at
random and the cheaper one wins (balance.choose over the costs). An instance never measured costs
`default_s` (30 ms, Linkerd's default) when first priced, decaying from then as any estimate
does (as Linkerd's, whose endpoint starts with it): a fixed 30 ms lost every draw against
instances answering in a few milliseconds, so an instance added to a lightly loaded service
never got a request.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Final, Generic, TypeVar

K = TypeVar("K")
TAU_S: Final = 10.0
DEFAULT_S: Final = 0.030


class PeakEwma(Generic[K]):
    """Each instance's latency estimate. (A plain class, not a dataclass: mypyc compiles a
    generic class, not yet a generic dataclass; proxy/native.py.)"""

    def __init__(self, tau_s: float = TAU_S, default_s: float = DEFAULT_S) -> None:
        self.tau_s = tau_s
        self.default_s = default_s
        self._latency: dict[K, tuple[float, float]] = {}  # (seconds, stamp)
        self._first: dict[K, float] = {}  # never measured: when first priced (`_estimate`)

    def observe(self, key: K, seconds: float, now: float) -> None:
        """One request's latency on `key`, finished at `now`."""
        old = self._latency.get(key)
        if old is None:
            self._first.pop(key, None)
            self._latency[key] = (seconds, now)
            return
        weight = math.exp(-max(now - old[1], 0.0) / self.tau_s)
        priced = old[0] * weight  # what `costs` priced it at (the decay toward zero)
        if seconds > priced:
            self._latency[key] = (seconds, now)  # the peak: up at once
            return
        # a faster answer pulls the estimate down toward it, never up (as Linkerd's, whose
        # estimate decays as it is read)
        self._latency[key] = (priced * weight + seconds * (1 - weight), now)

    def costs(self, keys: Iterable[K], outstanding: Mapping[K, int], now: float
              ) -> dict[K, float]:  # fmt: skip
        """Each key's cost: its latency estimate, decayed for the time since its last sample
        (as Finagle's: an instance priced high by a failure is tried again later), times
        (requests in flight + 1)."""
        return {k: self._estimate(k, now) * (outstanding.get(k, 0) + 1) for k in keys}

    def _estimate(self, key: K, now: float) -> float:
        found = self._latency.get(key)
        if found is None:
            first = self._first.setdefault(key, now)
            return self.default_s * math.exp(-max(now - first, 0.0) / self.tau_s)
        return found[0] * math.exp(-max(now - found[1], 0.0) / self.tau_s)

    def forget_except(self, keep: set[K]) -> None:
        for key in [k for k in self._latency if k not in keep]:
            del self._latency[key]
        for key in [k for k in self._first if k not in keep]:
            del self._first[key]
