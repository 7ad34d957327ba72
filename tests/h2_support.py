"""Two real HTTP/2 ends for the pure h2c cores' tests (h2_gate.py, h2_follow.py):
python-hyper's `h2` client and server state machines, whose bytes a test carries between
them through the core under test, cut in pieces of any size."""

from __future__ import annotations

from h2.config import H2Configuration
from h2.connection import H2Connection


class H2Ends:
    """A client and a server `H2Connection`; `carry(up, down)` is what the test puts between
    them. Subclasses set up what `carry` needs, then call `start()`."""

    def __init__(self, chunk: int = 0) -> None:
        self.client = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
        self.server = H2Connection(H2Configuration(client_side=False, header_encoding="utf-8"))
        self.chunk = chunk  # carry this many bytes at a time (0: each send whole)

    def start(self, client_settings: dict[int, int] | None = None,
              server_settings: dict[int, int] | None = None) -> None:  # fmt: skip
        """Both prefaces, the SETTINGS asked for, and their acknowledgements."""
        self.client.initiate_connection()
        self.server.initiate_connection()
        if client_settings:
            self.client.update_settings(client_settings)
        if server_settings:
            self.server.update_settings(server_settings)
        self.pump()

    def pieces(self, data: bytes) -> list[bytes]:
        if not self.chunk:
            return [data]
        return [data[i : i + self.chunk] for i in range(0, len(data), self.chunk)]

    def pump(self) -> None:
        """Move bytes both ways until neither end has anything to send."""
        while True:
            up, down = self.client.data_to_send(), self.server.data_to_send()
            if not up and not down:
                return
            self.carry(up, down)

    def carry(self, up: bytes, down: bytes) -> None:
        raise NotImplementedError
