"""A lingering close: an HTTP client's connection ended while it may still be sending.

When the proxy answers a request before the client has sent all of it (a
`400` for a malformed request, an app's early answer and close, a `403`
to `Expect: 100-continue`) and then closes, the kernel answers the bytes
still coming with a reset, and a client that writes its whole body before
it reads (Python's `http.client`, and so `requests`) gets "connection
reset by peer" instead of the answer. nginx and Apache linger for that
reason; so does this: the answer is followed by the end of the proxy's
side (FIN, TLS close_notify, a mux stream's END), and what the client
still sends is read and dropped until it ends too, stays quiet for
`QUIET_S`, or `MOST_S` have gone by. Then the connection is closed.
"""

from __future__ import annotations

import asyncio
from typing import Final

from gossamer.proxy.side import Joint, Side

QUIET_S: Final = 1.0  # no byte from the client for this long: it has stopped sending
MOST_S: Final = 10.0  # a client still sending after this long is cut all the same


_NOBODY: Final = Side()  # no connection: pausing or resuming its reading does nothing


class Lingering(Joint):
    """Takes a side over from its session: its bytes dropped until it ends (`linger`)."""

    def __init__(self, side: Side) -> None:
        self.side = side
        self.heard = False  # a byte came since the last look
        loop = asyncio.get_running_loop()
        self._until = loop.time() + MOST_S
        self._timer: asyncio.TimerHandle | None = loop.call_later(QUIET_S, self._look)

    def peer_of(self, side: Side) -> Side:
        # Its answer not yet written out (a client that reads only once it has sent all)
        # does not pause the reading: what is read is dropped, so nothing builds up.
        return _NOBODY

    def carry(self, side: Side, chunks: list[bytes], eof: bool) -> None:
        self.heard = True
        if eof:
            self._end()

    def side_lost(self, side: Side) -> None:
        self._stop()

    def _look(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        if not self.heard or loop.time() >= self._until:
            self._end()
            return
        self.heard = False
        self._timer = loop.call_later(QUIET_S, self._look)

    def _end(self) -> None:
        self._stop()
        self.side.close()

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def linger(side: Side) -> None:
    """End `side`'s writing now and close it once its client has stopped sending."""
    side.send_eof()
    side.relay = Lingering(side)
    side.resume_reading()
