"""The HTTP API's sites: plain HTTP and/or HTTPS, served by one app on sockets bound up front.

The TLS context's certificate comes from `https.cert_file`/`key_file` when
given (read when the agent starts; a file that cannot be read or a key that
does not match stops the agent with a ListenError naming the file), else
from the mesh CA (agent/identity/https_certificate.py), signed by the agent
itself and swapped in place on renewal and rotation. With `verify_incoming`
a client must present a certificate signed by `ca_file` (TLS 1.2 or later
either way).
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from aiohttp import web

from gossamer.agent.config import AgentConfig
from gossamer.agent.http.front_site import FrontSite
from gossamer.agent.identity.files import IdentityFiles
from gossamer.agent.identity.https_certificate import HttpsCertificate
from gossamer.agent.identity.mesh_identity import MeshIdentity
from gossamer.agent.lifecycle.listeners import BACKLOG, ListenError
from gossamer.proxy.ca.agent_server import server_names


def https_context(c: AgentConfig) -> ssl.SSLContext:
    """The server context, with the configured certificate files loaded if there are any."""
    h = c.https
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if h.cert_file and h.key_file:
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


def mesh_certificate(
    c: AgentConfig, context: ssl.SSLContext, identity: MeshIdentity, node_id: str, data_dir: Path
) -> HttpsCertificate:
    """The mesh CA's certificate for `context`, loaded now if the agent is enrolled already."""
    names = server_names(c.node, c.datacenter, c.dns.domain, (c.client, c.bind, c.advertise))
    certificate = HttpsCertificate(
        identity, IdentityFiles(data_dir), context, names,
        node=c.node, node_id=node_id, datacenter=c.datacenter,
    )  # fmt: skip
    certificate.refresh()
    return certificate


async def serve_api(
    runner: web.AppRunner,
    c: AgentConfig,
    api: dict[str, socket.socket],
    mesh: tuple[MeshIdentity, str, Path],
) -> HttpsCertificate | None:
    """Serve the app on the API sockets: plain HTTP and/or HTTPS (mesh: identity, node id,
    data dir, for a certificate from the mesh CA); the mesh certificate's keeper, if any."""
    certificate = None
    if "https" in api:
        context = https_context(c)
        if not c.https.cert_file:
            certificate = mesh_certificate(c, context, *mesh)
        await FrontSite(runner, api["https"], ssl_context=context, backlog=BACKLOG).start()
    if "http" in api:  # the light front answers hot reads first, then aiohttp
        await FrontSite(runner, api["http"], backlog=BACKLOG).start()
    return certificate
