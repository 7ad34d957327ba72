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
connections over them. Only sockets of the same user can join such a group,
but every listener of a worker would join, so two listeners of one process
(two sidecars of `--node` given the same port) would share a port and
each get some of the other's clients, under the wrong identity. So a
process keeps what it serves: a listener on an address and port (or the
same port on a wildcard address) that another of its listeners still
serves raises EADDRINUSE, as the bind would without SO_REUSEPORT.

A listener that replaces another on the same port takes over its socket
(`take_over`: a duplicate of its descriptor, so both accept from the one
queue until the old one closes): no connect is refused between them, as
closing one socket and binding another would refuse some.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections.abc import Callable

# Connections the kernel completes before the proxy accepts them: asyncio's and uvloop's
# default, 100, dropped the SYNs of a burst of 1,000 client connections (each retried a
# second later); the kernel caps this at net.core.somaxconn (4096 since Linux 5.4), which
# is what Envoy asks for on Linux.
BACKLOG = 65535
_shared = False  # SO_REUSEPORT on every listener: this process is one of several workers
_WILDCARD = ("", "0.0.0.0", "::")
_serving: dict[int, list[tuple[str, asyncio.Server]]] = {}  # by port: this process's listeners


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
    if port and (other := held_by(host, port)) is not None:
        raise OSError(errno.EADDRINUSE, f"{other}:{port} is served by another listener of "
                      "this proxy")  # fmt: skip
    sock = bound_socket(host, port, shared)
    if sock is None:
        server = await loop.create_server(factory, host, port, reuse_address=True,
                                          reuse_port=shared or None, backlog=BACKLOG)  # fmt: skip
    else:
        server = await loop.create_server(factory, sock=sock, backlog=BACKLOG)  # it listens again
    if port:
        _serving.setdefault(port, []).append((host, server))
    return server


def held_by(host: str, port: int) -> str | None:
    """The address of a listener of this process that serves `port` where `host` would
    (the same address, or either one a wildcard); None when none does."""
    held = _serving.get(port)
    if not held:
        return None
    held[:] = [(h, server) for h, server in held if server.is_serving()]  # closed ones go
    for other, _ in held:
        if other == host or other in _WILDCARD or host in _WILDCARD:
            return other
    return None


async def take_over(factory: Callable[[], asyncio.BaseProtocol], server: asyncio.Server,
                    host: str, port: int) -> asyncio.Server | None:  # fmt: skip
    """A server for `factory` on `server`'s listening socket (its descriptor duplicated), so
    `server` (on `host`:`port`) may then close without refusing anyone; None when it holds
    other than one."""
    held = server.sockets
    if len(held) != 1:
        return None
    sock = socket.socket(fileno=os.dup(held[0].fileno()))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    successor = await loop.create_server(factory, sock=sock, backlog=BACKLOG)
    _serving.setdefault(port, []).append((host, successor))
    return successor
