"""Brute force on token secrets: after too many unknown secrets from one client, 429.

Rules this module keeps:
1. Only failures count: a client using valid tokens is never slowed.
2. A client is its remote address. Each has a bucket of `burst` failures
   that refills at `per_second`; an empty bucket refuses the request before
   the secret is even looked at, so guessing runs at the refill rate at best
   (at the defaults, 2 guesses a second: 2^122 secrets stay out of reach).
3. Each refusal is logged once per client per `log_every` seconds by the
   shell, so an attack shows up in the log without flooding it.
4. The table is bounded: past `max_clients` the fullest buckets (clients
   that stopped failing) are forgotten first.
Time is passed in; no clock is read here.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FailureGuard:
    burst: float = 20.0
    per_second: float = 2.0
    max_clients: int = 10_000
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # level, at

    def _level(self, client: str, now: float) -> float:
        level, at = self._buckets.get(client, (self.burst, now))
        return min(self.burst, level + (now - at) * self.per_second)

    def blocked(self, client: str, now: float) -> bool:
        """Whether `client` has used up its failures (answer 429 without looking)."""
        return client in self._buckets and self._level(client, now) < 1.0

    def failed(self, client: str, now: float) -> None:
        """Count one unknown secret from `client`."""
        self._buckets[client] = (max(0.0, self._level(client, now) - 1.0), now)
        if len(self._buckets) > self.max_clients:
            fullest = sorted(self._buckets, key=lambda c: -self._level(c, now))
            for gone in fullest[: len(self._buckets) - self.max_clients]:
                del self._buckets[gone]

    def retry_after(self, client: str, now: float) -> float:
        """Seconds until `client` may try again."""
        return max(0.0, (1.0 - self._level(client, now)) / self.per_second)
