"""TLS sessions the outbound side offers back to an instance: resumption without its risks. Pure.

Rules:
- a session is kept per instance (address, port), only with a ticket, and
  only for the client context it was made with: a new leaf or new roots
  make a new context, and every session of the old one is forgotten
  (OpenSSL refuses a session of another context anyway);
- a session is offered for at most `MAX_AGE_S` (5 min; 1 h where reading
  one leaks, below) after it was kept, below OpenSSL's 2 h ticket
  lifetime, so a resumed connection never leans on an old handshake for
  long; the server checks the leaf and the intentions again on every
  connection, resumed or not (authorize.py);
- an instance whose attempt failed loses its session;
- one TLS 1.3 ticket may be offered by many connections at once (tickets
  are stateless on the server), so the newest kept session simply wins;
- at most `CAPACITY` instances are remembered; the oldest goes first;
- a finished connection's session is read only when `wants` says so (none
  kept for its instance, or the kept one older than `REFRESH_S`): each read
  of `SSLObject.session` leaks a copy of the session (~6.6 KiB with its
  certificates) on CPython 3.10 to 3.12 and 3.13.0 (gh-116810, fixed by
  gh-123249 in September 2024: `LEAKY_READ` takes 3.12.8 and 3.13.1 as the
  first fixed, erring on the leaky side; Debian 12's 3.11 leaks); read once
  per connection, that grew a sidecar by ~3 MiB per 500 new connections
  (bench/README.md, "RSS"). Reading it rarely is also
  enough: the kept ticket serves every connection until it is replaced. It
  is also cheaper: the copy goes through DER, decoding the peer's
  certificate again (~150 us of CPU with OpenSSL 3.0, about a sixth of the
  client's whole cost per new connection). Where reads leak, a kept session
  is offered for an hour and read again only once it is gone: replaced a
  minute early every 5 minutes, a busy upstream instance leaked 15 copies
  an hour in each worker, ~2.4 MiB a day per instance, for as long as the
  proxy ran (bench/soak.py). A new client context (a renewed leaf) needs a
  read per instance too; there, reads of one instance are also at least
  `READ_GAP_S` (1 min) apart, whatever the context: with bench/soak.py's
  leaves renewed every 5 s, a read per instance and renewal leaked ~0.45
  MiB a minute in each upstream-side worker. After a renewal, an instance
  read less than a minute before is reached by full handshakes until then.
Time is seconds passed in by the caller.
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import Hashable

_VERSION = sys.version_info[:3]
LEAKY_READ = _VERSION < (3, 12, 8) or (3, 13, 0) <= _VERSION < (3, 13, 1)
MAX_AGE_S = 3600.0 if LEAKY_READ else 300.0
# replaced a minute before it would stop being offered, unless each read leaks a copy
REFRESH_S = MAX_AGE_S if LEAKY_READ else 240.0
# reads of one instance's sessions at least this far apart, whatever the context
READ_GAP_S = 60.0 if LEAKY_READ else 0.0
CAPACITY = 1024


class SessionCache:
    def __init__(
        self, max_age_s: float = MAX_AGE_S, capacity: int = CAPACITY, refresh_s: float = REFRESH_S,
        read_gap_s: float = READ_GAP_S,
    ) -> None:  # fmt: skip
        self._kept: dict[Hashable, tuple[ssl.SSLSession, float]] = {}
        self._read: dict[Hashable, float] = {}  # when each instance's session was last read
        self._context: ssl.SSLContext | None = None
        self._max_age_s = max_age_s
        self._refresh_s = min(refresh_s, max_age_s)
        self._read_gap_s = min(read_gap_s, self._refresh_s)
        self._capacity = capacity

    def wants(self, instance: Hashable, context: ssl.SSLContext, now_s: float) -> bool:
        """Whether a connection to `instance` made with `context` should have its session read
        and kept: none is kept for it, or the kept one is due for replacement; and the last
        read for that instance, under this context or another, is `read_gap_s` old."""
        if context is not self._context:
            return False  # `offer` meets a new context first, and forgets the old one's
        found = self._kept.get(instance)
        if found is not None and now_s - found[1] < self._refresh_s:
            return False
        read = self._read.get(instance)
        return read is None or now_s - read >= self._read_gap_s

    def offer(
        self, instance: Hashable, context: ssl.SSLContext, now_s: float
    ) -> ssl.SSLSession | None:
        """The session to offer `instance` with `context`, or None for a full handshake."""
        if context is not self._context:
            self._kept.clear()
            self._context = context
            return None
        found = self._kept.get(instance)
        if found is None:
            return None
        if now_s - found[1] > self._max_age_s:
            del self._kept[instance]
            return None
        return found[0]

    def keep(
        self,
        instance: Hashable,
        context: ssl.SSLContext,
        session: ssl.SSLSession | None,
        now_s: float,
    ) -> None:
        """Remember `session` (made with `context`) for the next connection to `instance`;
        `session` was read now (`wants` counts the reads)."""
        self._read.pop(instance, None)
        if len(self._read) >= self._capacity:
            del self._read[next(iter(self._read))]
        self._read[instance] = now_s
        if session is None or not session.has_ticket or context is not self._context:
            return
        self._kept.pop(instance, None)
        if len(self._kept) >= self._capacity:
            del self._kept[next(iter(self._kept))]
        self._kept[instance] = (session, now_s)

    def drop(self, instance: Hashable) -> None:
        self._kept.pop(instance, None)
