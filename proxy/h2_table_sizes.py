"""The HPACK table sizes a client asked of the app, as the gate must honour them. Pure.

RFC 7541 §4.2: once the app acknowledges a client's SETTINGS_HEADER_TABLE_SIZE below
its encoder's table, the client's decoder wants the next header block it reads to open
with a size update. The app's own next block does; one of the gate's, going first, must
too (h2_app.py `table_update`). Each asked size waits here, by the number of the
SETTINGS frame that carried it, for that frame's ACK.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from gossamer.proxy.h2_frames import NO_SIZE, size_update, table_size

MAX_ASKED: Final = 16  # the client's table sizes kept until the app acknowledges them


class TableSizes:
    def __init__(self) -> None:
        self._asked: deque[tuple[int, int]] = deque()
        self._sent = self._acked = 0
        self.due = NO_SIZE  # the size update owed by the next block the client reads

    def asked(self, payload: bytes) -> None:
        """A SETTINGS payload of the client's went to the app."""
        self._sent += 1
        size = table_size(payload)
        if size == NO_SIZE:
            return
        if len(self._asked) < MAX_ASKED:
            self._asked.append((self._sent, size))
        else:  # a client that keeps asking before the app answers: its latest ones wait more
            self._asked[-1] = (self._sent, min(self._asked[-1][1], size))

    def acked(self, table_max: int) -> None:
        """The app acknowledged a SETTINGS frame of the client's; `table_max` is the app's
        encoder table as read so far (below 0: not followed, nothing is owed)."""
        self._acked += 1
        while self._asked and self._asked[0][0] <= self._acked:
            size = self._asked.popleft()[1]
            if size < table_max:
                self.due = min(self.due, size)

    def update(self) -> bytes:
        """What a header block of the gate's for the client opens with: the size update the
        client's decoder waits for, if any (sent again, it changes nothing)."""
        return b"" if self.due == NO_SIZE else size_update(self.due)
