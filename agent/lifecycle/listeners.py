"""Binding the agent's own listening sockets up front, with one clear error.

All ports are taken before serf starts or anything joins, so a port in use
stops the agent cleanly instead of half-joining a cluster first.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from gossamer.agent.config import AgentConfig
from gossamer.agent.config.api_address import api_listeners

# Connections the kernel queues for a listener before the agent accepts them: a burst past it
# (a fleet of clients restarting together) is dropped and retried by TCP a second later. Go's
# net package, which Consul's listeners use, asks for net.core.somaxconn: 4096 on current
# kernels (the kernel caps what is asked at it). The servers that take these sockets over
# listen again with this figure: asyncio's and aiohttp's own defaults are 100 and 128.
BACKLOG = 4096


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
            sock.listen(BACKLOG)
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


@dataclass(frozen=True)
class Listeners:
    """The agent's own sockets, bound before serf starts; the servers take them over."""

    api: dict[str, socket.socket]  # "http" and/or "https" (each may be switched off)
    dns_udp: socket.socket
    dns_tcp: socket.socket
    rpc: socket.socket

    def close(self) -> None:
        """Only when start-up fails before the servers own them (closing twice is harmless)."""
        for sock in (*self.api.values(), self.dns_udp, self.dns_tcp, self.rpc):
            sock.close()


def bind_listeners(c: AgentConfig) -> Listeners:
    """API and DNS on the client address, agent RPC on the bind address; ListenError if taken."""
    api = api_listeners(c)
    bound: list[socket.socket] = []
    try:
        for what, host, port, kind in (
            *((f"the {a.scheme.upper()} API", a.host, a.port, socket.SOCK_STREAM) for a in api),
            ("DNS (udp)", c.client, c.dns_port, socket.SOCK_DGRAM),
            ("DNS (tcp)", c.client, c.dns_port, socket.SOCK_STREAM),
            ("agent RPC", c.bind, c.rpc_port, socket.SOCK_STREAM),
        ):
            bound.append(bind_socket(what, host, port, kind))
    except ListenError:
        for sock in bound:
            sock.close()
        raise
    *api_socks, dns_udp, dns_tcp, rpc = bound
    by_scheme = {a.scheme: sock for a, sock in zip(api, api_socks, strict=True)}
    return Listeners(api=by_scheme, dns_udp=dns_udp, dns_tcp=dns_tcp, rpc=rpc)
