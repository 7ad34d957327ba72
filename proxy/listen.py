"""The proxy's listening sockets: an IP literal is bound here, a name goes to the loop.

Handed a host string, uvloop's `create_server` resolves it in libuv's thread
pool (four threads, started on first use) after encoding it with the `idna`
codec (which imports `encodings.idna`, `stringprep` and `unicodedata`): about
0.5 MiB of every sidecar's RSS (bench/proxy_rss.py), spent on addresses that
are nearly always IP literals already (`127.0.0.1`, a node's address, `::`).
An IP literal is bound here as `create_server` binds it (SO_REUSEADDR,
IPV6_V6ONLY for IPv6, the same backlog) and the loop is given the socket; a
host name still goes to the loop to resolve.

With worker processes (workers.py) every listener is bound with
SO_REUSEPORT too (`share_ports`, once, before any listener opens): each
worker binds its own socket on the same address and the kernel spreads new
connections over them. Only sockets of the same user can join such a group.

A listener that replaces another on the same port takes over its socket
(`take_over`: a duplicate of its descriptor, so both accept from the one
queue until the old one closes): no connect is refused between them, as
closing one socket and binding another would refuse some.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable

# Connections the kernel completes before the proxy accepts them: asyncio's and uvloop's
# default, 100, dropped the SYNs of a burst of 1,000 client connections (each retried a
# second later); the kernel caps this at net.core.somaxconn (4096 since Linux 5.4), which
# is what Envoy asks for on Linux.
BACKLOG = 65535
_shared = False  # SO_REUSEPORT on every listener: this process is one of several workers


def share_ports() -> None:
    """Bind every listener of this process with SO_REUSEPORT (a worker of `--workers N`)."""
    global _shared
    _shared = True


def ip_family(host: str) -> int | None:
    """AF_INET or AF_INET6 when `host` is an IP literal, else None (a name to resolve)."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        return family
    return None


def bound_socket(host: str, port: int, shared: bool = False) -> socket.socket | None:
    """A listening, non-blocking socket on an IP literal; None for a name. OSError (the
    address is taken, not ours) as binding it would raise."""
    family = ip_family(host)
    if family is None:
        return None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if shared:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def serve(
    factory: Callable[[], asyncio.BaseProtocol], host: str, port: int, *, own: bool = False
) -> asyncio.Server:
    """`loop.create_server(factory, host, port, reuse_address=True)`, without the resolver
    for an IP literal; shared with the other workers (SO_REUSEPORT) unless `own` (a listener
    only worker 0 opens: the metrics port)."""
    loop = asyncio.get_running_loop()
    shared = _shared and not own
    sock = bound_socket(host, port, shared)
    if sock is None:
        return await loop.create_server(factory, host, port, reuse_address=True,
                                        reuse_port=shared or None, backlog=BACKLOG)  # fmt: skip
    return await loop.create_server(factory, sock=sock, backlog=BACKLOG)  # it listens again


async def take_over(factory: Callable[[], asyncio.BaseProtocol], server: asyncio.Server
                    ) -> asyncio.Server | None:  # fmt: skip
    """A server for `factory` on `server`'s listening socket (its descriptor duplicated), so
    `server` may then close without refusing anyone; None when it holds other than one."""
    held = server.sockets
    if len(held) != 1:
        return None
    sock = socket.socket(fileno=os.dup(held[0].fileno()))
    sock.setblocking(False)
    return await asyncio.get_running_loop().create_server(factory, sock=sock, backlog=BACKLOG)
