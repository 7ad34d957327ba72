"""A listening socket served by the light front (front.py) instead of aiohttp directly.

Drop-in for `web.SockSite`, with or without TLS: the front protocol sits
under the TLS transport just as aiohttp's would, and hands connections to
aiohttp's handler through the same transport. `GOSSAMER_HTTP_FRONT=off` in
the agent's environment serves the socket by aiohttp alone, as before the
front existed (the benches compare the two; a way out should the front
misbehave).
"""

from __future__ import annotations

import asyncio
import os
import socket
from ssl import SSLContext

from aiohttp import web

from gossamer.agent.http.front import Front


class FrontSite(web.SockSite):
    def __init__(
        self, runner: web.AppRunner, sock: socket.socket, *, ssl_context: SSLContext | None = None,
        backlog: int = 128,
    ) -> None:  # fmt: skip
        super().__init__(runner, sock, ssl_context=ssl_context, backlog=backlog)
        self.front = Front(runner)

    async def start(self) -> None:
        if os.environ.get("GOSSAMER_HTTP_FRONT") == "off":
            return await super().start()
        self._runner._reg_site(self)  # what BaseSite.start does, then our own server
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.front, sock=self._sock, ssl=self._ssl_context, backlog=self._backlog
        )

    async def stop(self) -> None:
        await super().stop()
        self.front.stop()
