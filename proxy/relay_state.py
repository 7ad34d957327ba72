"""When a relayed pair of connections is finished: the half-close rules. Pure.

A relay joins two connections, side 0 and side 1. Each direction ends on
its own: when side N's peer stops sending, the relay forwards that end to
the other side (TCP FIN, TLS close_notify or a stream's END) and keeps
carrying the other direction. The pair is closed — both transports, at
once — when:
- both directions have ended (uvloop 0.21-0.23 aborts the process with a
  double free when both directions were half-closed and the transports
  were never closed, so "both ended" must always lead to a close);
- either connection is lost (reset, error, a TLS end without close_notify,
  a stream's RESET or its wire gone): nothing more can be relayed, and the
  other is cut (relay.py `lost`: a reset, no close_notify, RESET), so the
  loss is not taken for an end;
- the relay is terminated (policy change, drain timeout).
"""

from __future__ import annotations

from enum import Enum


class Step(Enum):
    FORWARD_EOF = "forward the end to the other side, keep the other direction"
    CLOSE_BOTH = "close both connections"
    NOTHING = "already handled"


class Halves:
    """Which directions have ended, and whether the pair is closed."""

    def __init__(self) -> None:
        self.ended = [False, False]  # ended[n]: side n's peer has stopped sending
        self.closed = False

    def end_from(self, side: int) -> Step:
        """Side `side` received the end of its input."""
        if self.closed or self.ended[side]:
            return Step.NOTHING
        self.ended[side] = True
        if all(self.ended):
            self.closed = True
            return Step.CLOSE_BOTH
        return Step.FORWARD_EOF

    def lost(self) -> Step:
        """A connection was lost or the relay is terminated."""
        if self.closed:
            return Step.NOTHING
        self.closed = True
        return Step.CLOSE_BOTH
