"""What the proxy counts: connections allowed, denied, terminated, refused by reason. Pure.

Each refusal has one reason (the constants below). `Tally.refuse` counts it
and says whether to log it: at most once per source per minute
(`log_limit.LogLimiter`), so a scanner cannot fill the disk. The counters
are plain ints, read when `GET /stats` (or SIGUSR1's log line) asks; a
counter costs a dict increment on the data path, nothing more.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from gossamer.proxy.log_limit import LogLimiter

# Why an inbound connection was refused (the counter names).
NOT_TLS: Final = "not-tls"  # plaintext, garbage, a TLS version below 1.3
HANDSHAKE_TIMEOUT: Final = "handshake-timeout"
# the peer spoke TLS and ended the handshake with an alert: it refused this proxy's certificate
# (a trust bundle behind a rotation, another mesh's) or could not go on
PEER_REFUSED: Final = "peer-refused"
NO_CERTIFICATE: Final = "no-certificate"
UNKNOWN_ISSUER: Final = "unknown-issuer"  # a rogue CA, another mesh's root, a self-signed leaf
EXPIRED: Final = "expired"
NOT_YET_VALID: Final = "not-yet-valid"
FOREIGN_TRUST_DOMAIN: Final = "foreign-trust-domain"
WRONG_PURPOSE: Final = "wrong-purpose"
NOT_SPIFFE: Final = "not-spiffe"  # no SPIFFE URI SAN, or one that is not well formed
NOT_A_SERVICE: Final = "not-a-service"  # an agent's certificate, not a service's
BAD_CERTIFICATE: Final = "bad-certificate"  # anything else a certificate check refused
DENIED: Final = "denied"  # a verified service that no intention lets in
LOCAL_UNREACHABLE: Final = "local-unreachable"  # allowed, but the local app did not answer
NO_IDENTITY: Final = "no-identity"  # the proxy has no leaf yet: it cannot serve TLS
REVOKED: Final = "revoked"  # the peer's leaf was issued by a revoked agent (`ca revoke-agent`)
# its host already has as many connections in their handshake as one source may (inbound.py)
TOO_MANY_HANDSHAKES: Final = "too-many-handshakes"

INBOUND_REASONS: Final = (
    NOT_TLS, HANDSHAKE_TIMEOUT, PEER_REFUSED, NO_CERTIFICATE, UNKNOWN_ISSUER, EXPIRED,
    NOT_YET_VALID, FOREIGN_TRUST_DOMAIN, WRONG_PURPOSE, NOT_SPIFFE, NOT_A_SERVICE,
    BAD_CERTIFICATE, DENIED, LOCAL_UNREACHABLE, NO_IDENTITY, REVOKED, TOO_MANY_HANDSHAKES,
)  # fmt: skip

# Outbound: why one attempt at an instance failed, and why a client was turned away.
CONNECT_FAILED: Final = "connect-failed"
WRONG_SERVER: Final = "wrong-server"  # its certificate is not the upstream's SPIFFE ID
NO_HEALTHY_INSTANCE: Final = "no-healthy-instance"
ALL_ATTEMPTS_FAILED: Final = "all-attempts-failed"
# from another host, on an upstream listener bound to a network address (local_peer.py)
REMOTE_CLIENT: Final = "remote-client"
OUTBOUND_REASONS: Final = (
    CONNECT_FAILED, HANDSHAKE_TIMEOUT, WRONG_SERVER, NO_HEALTHY_INSTANCE, ALL_ATTEMPTS_FAILED,
    NO_IDENTITY, REMOTE_CLIENT,
)  # fmt: skip


@dataclass
class Tally:
    """The proxy's counters and the limiter of refusal log lines."""

    limiter: LogLimiter = field(default_factory=LogLimiter)
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, name: str, amount: int = 1) -> None:
        self.counts[name] += amount

    def refuse(self, direction: str, reason: str, source: str, now_ms: int) -> bool:
        """Count a refusal (`inbound.refused.<reason>`); True when it should be logged."""
        known = INBOUND_REASONS if direction == "inbound" else OUTBOUND_REASONS
        if reason not in known:
            raise ValueError(f"unknown {direction} refusal reason {reason!r}")
        self.counts[f"{direction}.refused.{reason}"] += 1
        # A source's refusals log once a minute whatever their reasons (a scanner trying
        # plaintext, then no certificate, then a rogue CA is one line); an upstream's
        # once a minute per reason (no instance, then all attempts failed, say why each).
        key = f"in/{source}" if direction == "inbound" else f"out/{reason}/{source}"
        return self.limiter.allow(key, now_ms)

    def snapshot(self) -> dict[str, int]:
        """Every counter, sorted by name; refusal reasons present with 0 so readers see them."""
        every = {f"inbound.refused.{r}": 0 for r in INBOUND_REASONS}
        every |= {f"outbound.refused.{r}": 0 for r in OUTBOUND_REASONS}
        every |= dict(self.counts)
        return dict(sorted(every.items()))
