"""The HTTP API over TLS (`https.port`), served by the same app as plain HTTP.

The TLS context is built from the configured files when the agent starts;
a file that cannot be read or a key that does not match stops the agent
with a ListenError naming the file. With `verify_incoming` a client must
present a certificate signed by `ca_file` (TLS 1.2 or later either way).
"""

from __future__ import annotations

import socket
import ssl

from aiohttp import web

from gossamer.agent.config import AgentConfig
from gossamer.agent.http.front_site import FrontSite
from gossamer.agent.lifecycle.listeners import ListenError


def https_context(c: AgentConfig) -> ssl.SSLContext:
    h = c.https
    assert h.cert_file and h.key_file  # the config section requires both with a port
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(h.cert_file, h.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ListenError(
            f"https: cert_file {h.cert_file} / key_file {h.key_file}: {exc}"
        ) from None
    if h.ca_file:
        try:
            context.load_verify_locations(h.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ListenError(f"https: ca_file {h.ca_file}: {exc}") from None
    if h.verify_incoming:
        context.verify_mode = ssl.CERT_REQUIRED
    return context


async def serve_api(runner: web.AppRunner, c: AgentConfig, api: dict[str, socket.socket]) -> None:
    """Serve the app on the API sockets bound at the start: plain HTTP and/or HTTPS."""
    if "https" in api:
        context = https_context(c)
        await FrontSite(runner, api["https"], ssl_context=context).start()
    if "http" in api:  # the light front answers hot reads first, then aiohttp
        await FrontSite(runner, api["http"]).start()
