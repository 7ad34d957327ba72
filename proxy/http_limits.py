"""The timeouts of an HTTP host, in seconds, and the names they are counted by. Pure.

Read from the config by protocol.py; kept by http_deadlines.py for HTTP/1
sessions and h2_deadlines.py for the calls of an h2c connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import inf
from typing import Final

REQUEST_TIMEOUT: Final = "request_timeout"
IDLE_TIMEOUT: Final = "idle_timeout"
CLIENT_IDLE: Final = "client_idle"


@dataclass(frozen=True, slots=True)
class Limits:
    """A host's timeouts in seconds; 0.0 is none."""

    request_s: float
    idle_s: float
    client_idle_s: float

    def recheck_s(self) -> float:
        """How soon to look again while a request waits for a connection (inf: never)."""
        return min((x for x in (self.request_s, self.idle_s / 2, self.client_idle_s / 2) if x),
                   default=inf)  # fmt: skip


NO_LIMITS: Final = Limits(0.0, 0.0, 0.0)
