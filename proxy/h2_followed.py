"""The relay of an upstream's `http2` or `grpc` connection, followed. Shell.

On an upstream's listener (`followed`): bytes go on as they came and an
`H2Follower` (h2_follow.py) reads along; each call is counted on the
outbound edge, and timed by the upstream's limits (h2_relay.H2Relay's
timer: a call that runs out is cut, an idle connection told GOAWAY).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gossamer.proxy.h2_app import AppSide
from gossamer.proxy.h2_follow import H2Follower
from gossamer.proxy.h2_frames import H2Error
from gossamer.proxy.h2_relay import H2Relay, with_timer
from gossamer.proxy.http_limits import Limits
from gossamer.proxy.protocol import GRPC
from gossamer.proxy.relay import Relay
from gossamer.proxy.side import Side

if TYPE_CHECKING:
    from gossamer.proxy.outbound import UpstreamListener


class FollowedRelay(H2Relay):
    """A byte relay whose bytes an `H2Follower` reads along the way (the calling side)."""

    def __init__(self, a: Side, b: Side, on_close: Callable[[Relay], None],
                 follower: H2Follower) -> None:  # fmt: skip
        self.follower = follower
        super().__init__(a, b, on_close)

    def first_gone(self, side: Side) -> None:
        self.follower.side_ended(side.index == 0)

    def app_side(self) -> AppSide:
        return self.follower.answers

    def opaque(self) -> bool:
        return self.follower.opaque

    def cut_timed_out(self, streams: list[int]) -> None:
        self.cutting(self.follower.cut(streams), True)

    def drain(self) -> None:
        """Its listener stopped (a registration change replaced or removed it, or the
        drain): the client is told GOAWAY, so it opens its next calls on a new connection,
        to the listener there now, while the calls under way finish. Without it a channel
        kept its connection, and the upstream as it was configured then, for good."""
        try:
            self.send_to(self.sides[0], self.follower.goaway())
        except H2Error as error:
            self.overwhelmed(error)

    def idle_close(self) -> None:
        try:
            self.send_to(self.sides[0], self.follower.goaway())
        except H2Error as error:
            self.overwhelmed(error)
            return
        self.lost_lingering()  # the GOAWAY goes first, then the client's end

    def carry(self, side: Side, chunks: list[bytes], eof: bool) -> None:
        follower = self.follower
        through = follower.from_client if side.index == 0 else follower.from_app
        self.pass_through(side, chunks, eof, through, self.sides[1 - side.index])


def followed(
    listener: UpstreamListener, client: Side, server: Side, on_close: Callable[[Relay], None]
) -> FollowedRelay:
    """The local `client` joined to an instance of `listener`'s upstream (`server`) byte for
    byte, each call counted on the outbound edge (status, latency)."""
    edge = listener.metrics.outbound(listener.upstream.name)

    def done(status: int, route: str, seconds: float) -> None:
        edge.answered(status, seconds)

    def closed(relay: Relay) -> None:
        follower.close(time.perf_counter())
        on_close(relay)

    def event(name: str) -> None:
        listener.tally.add(f"outbound.http.{name}")

    u = listener.upstream
    # (a service-resolver's RequestTimeout, when it gives one: outbound.set_routing)
    limits = Limits(listener.request_timeout_s, u.request_idle_s, u.client_idle_s)
    follower = H2Follower(done, limits, grpc=u.protocol == GRPC)
    made = FollowedRelay(client, server, closed, follower)
    with_timer(made, follower.calls, limits, event)
    return made
