"""Binding the agent's own listening sockets up front, with one clear error.

All ports are taken before serf starts or anything joins, so a port in use
stops the agent cleanly instead of half-joining a cluster first.
"""

from __future__ import annotations

import errno
import socket


class ListenError(RuntimeError):
    """A port could not be bound; the message names it and why."""


def bind_socket(what: str, host: str, port: int, kind: int = socket.SOCK_STREAM) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        if kind == socket.SOCK_STREAM:
            sock.listen(512)
    except OSError as exc:
        sock.close()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            reason = "address already in use"
        elif exc.errno == errno.EADDRNOTAVAIL:
            reason = "the address is not on this host"
        elif exc.errno == errno.EACCES:
            reason = "permission denied"
        else:
            reason = exc.strerror or str(exc)
        raise ListenError(f"cannot listen for {what} on {where}: {reason}") from None
    sock.setblocking(False)
    return sock
