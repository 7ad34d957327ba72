"""When to renew a leaf: at about half of its life, at a random point in a window.

The renewal moment is drawn uniformly from 45 % to 60 % of the leaf's life
(NotBefore to NotAfter), with the passed-in `random.Random`:
- half-life leaves as much time again to retry if renewals fail (an agent
  down, a root rotating), long before the leaf expires;
- the window, 15 % of the life wide, spreads leaves that were issued together
  (a restart, a rotation, a thousand services registered at once): with the
  72 h default it is 10.8 h wide, about one renewal every 39 s for a
  thousand leaves; even at the 1 h minimum TTL it is 9 minutes, about two a
  second, never a thousand in the same second.
"""

from __future__ import annotations

import random
from datetime import datetime

from cryptography import x509

WINDOW_START = 0.45
WINDOW_END = 0.60


def renew_at(not_before: datetime, not_after: datetime, rng: random.Random) -> datetime:
    """The moment to renew a certificate valid from `not_before` to `not_after`."""
    life = not_after - not_before
    return not_before + life * rng.uniform(WINDOW_START, WINDOW_END)


def renew_certificate_at(cert: x509.Certificate, rng: random.Random) -> datetime:
    """renew_at for a certificate's own validity window (aware UTC)."""
    return renew_at(cert.not_valid_before_utc, cert.not_valid_after_utc, rng)
