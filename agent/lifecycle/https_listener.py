"""The HTTP API over TLS (`https.port`), served by the same app as plain HTTP.

The TLS context is built from the configured files when the agent starts;
a file that cannot be read or a key that does not match stops the agent
with a ListenError naming the file. With `verify_incoming` a client must
present a certificate signed by `ca_file` (TLS 1.2 or later either way).
"""

from __future__ import annotations

import ssl

from aiohttp import web

from gossamer.agent.config import AgentConfig
from gossamer.agent.http.front_site import FrontSite
from gossamer.agent.lifecycle.listeners import ListenError, bind_socket


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


async def serve_https(runner: web.AppRunner, c: AgentConfig) -> None:
    """Start the HTTPS site if `https.port` is set; ListenError if it cannot."""
    if c.https.port is None:
        return
    context = https_context(c)
    sock = bind_socket("the HTTPS API", c.client, c.https.port)
    await FrontSite(runner, sock, ssl_context=context).start()
