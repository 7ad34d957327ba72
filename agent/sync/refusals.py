"""Counting what agent RPC turns away, and logging it without letting a peer flood the log. Pure.

Every refusal has a reason (the constants below): the server counts each
one, per reason, for `/v1/agent/self` and metrics, and logs it at most once
per peer address per minute (`proxy/log_limit.py`) — a scanner or a misconfigured agent
retrying every second must not fill the disk, yet the operator learns of it
within a minute. The clock is passed in (milliseconds), so the limiter is a
plain function of its inputs and the tests need no sleep.

The remembered addresses are bounded (`MAX_REMEMBERED`): when full, those
whose interval has passed are forgotten first, and if none has, the oldest
is — a flood from many addresses costs at most one log line each per
minute, and memory stays flat.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from gossamer.proxy.log_limit import LogLimiter

# Why a connection or a request was refused (the counter names).
NOT_TLS = "not-tls"  # plaintext, garbage, or a TLS the server does not speak (below 1.3)
HANDSHAKE_TIMEOUT = "handshake-timeout"
UNKNOWN_ISSUER = "unknown-issuer"  # another mesh's CA, a self-signed certificate
EXPIRED = "expired"
NOT_YET_VALID = "not-yet-valid"
FOREIGN_TRUST_DOMAIN = "foreign-trust-domain"
WRONG_PURPOSE = "wrong-purpose"
BAD_CERTIFICATE = "bad-certificate"  # anything else a certificate check refused
NOT_AN_AGENT = "not-an-agent"  # a valid certificate, but a service's, not an agent's
REVOKED = "revoked"
NO_CERTIFICATE = "no-certificate"  # asked for more than "ca-bundle" without a certificate
NOT_ENROLLED = "not-enrolled"  # this agent has no certificate yet: it cannot serve TLS
FOREIGN_RECORD = "foreign-record"  # pushed a record another agent owns
CLOCK_AHEAD = "clock-ahead"  # an LWW entry stamped beyond the HLC bound
UNSIGNED_RELAY = "unsigned-relay"  # relayed another owner's record without its valid signature
LIVE_REMOVAL = "live-removal"  # relayed the removal of a node whose owner is alive
WRONG_AGENT = "wrong-agent"  # the agent that answered is not the member this agent dialled

REASONS = (
    NOT_TLS,
    HANDSHAKE_TIMEOUT,
    UNKNOWN_ISSUER,
    EXPIRED,
    NOT_YET_VALID,
    FOREIGN_TRUST_DOMAIN,
    WRONG_PURPOSE,
    BAD_CERTIFICATE,
    NOT_AN_AGENT,
    REVOKED,
    NO_CERTIFICATE,
    NOT_ENROLLED,
    FOREIGN_RECORD,
    CLOCK_AHEAD,
    UNSIGNED_RELAY,
    LIVE_REMOVAL,
    WRONG_AGENT,
)


@dataclass
class Refusals:
    """The counters per reason, and the limiter that decides which refusals get a log line."""

    limiter: LogLimiter = field(default_factory=LogLimiter)
    _counts: Counter[str] = field(default_factory=Counter)

    def note(self, reason: str, address: str, now_ms: int) -> bool:
        """Count one refusal; True when the caller should log it (see LogLimiter)."""
        if reason not in REASONS:
            raise ValueError(f"unknown refusal reason {reason!r}")
        self._counts[reason] += 1
        return self.limiter.allow(address, now_ms)

    def counts(self) -> dict[str, int]:
        """Every reason with its count so far (zero included, so a reader sees them all)."""
        return {reason: self._counts[reason] for reason in REASONS}

    @property
    def total(self) -> int:
        return sum(self._counts.values())
