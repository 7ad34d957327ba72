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
process keeps what it serves: what each of its listeners bound, as the
kernel says (`getsockname`: a name is what it resolved to, `0:0::1` is
`::1`). A listener that would serve an address and port another still
serves raises EADDRINUSE, as the bind would without SO_REUSEPORT: it is
bound, checked and closed before it listens, so no client reaches it. A
wildcard covers its own family only: 0.0.0.0 every IPv4 address, `::` every
IPv6 one (bound IPV6_V6ONLY, as the kernel then lets `::` and 127.0.0.1 share
a port). A listener is forgotten once closed. Nor may another process join
the group: a shared listener whose address another process outside this
proxy's workers listens on is refused the same way (port_owners.py), so a
second proxy run with `--workers` on the same port does not take half of
the first one's clients.

A listener that cannot be had (its port taken, its address not this host's,
a name that does not resolve) raises `CannotListen`: the OSError as it came,
with `where` it was asked for and the `reason` in words, so the CLI can say
in one line what it could not have and where (process.py).

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
import weakref
from collections.abc import Callable, Iterable

from gossamer.gossip.host_port import host_port
from gossamer.proxy.port_owners import Bound, foreign_listener, overlap, port_lock

# Connections the kernel completes before the proxy accepts them: asyncio's and uvloop's
# default, 100, dropped the SYNs of a burst of 1,000 client connections (each retried a
# second later); the kernel caps this at net.core.somaxconn (4096 since Linux 5.4), which
# is what Envoy asks for on Linux.
BACKLOG = 65535
_shared = False  # SO_REUSEPORT on every listener: this process is one of several workers
_leader = 0  # then: the pid of worker 0, whose children are the other workers (port_owners.py)
# This process's listeners and what each bound. Weak: the record keeps no server alive (a
# serving one the loop holds); one closed but still held by its owner is passed over and
# dropped at the next look.
_serving: weakref.WeakKeyDictionary[asyncio.Server, tuple[Bound, ...]] = weakref.WeakKeyDictionary()


class CannotListen(OSError):
    """A listener that cannot be had: the OSError binding it raised (its errno and text, as
    logged), `where` it was asked for (`127.0.0.1:21000`, `[::1]:21000`) and the `reason` in
    words (`address already in use`)."""

    where: str = ""
    reason: str = ""


def _cannot(exc: OSError, host: str, port: int, reason: str = "") -> CannotListen:
    """`exc` as a CannotListen for `host`:`port`; the reason, unless given, is the errno's
    (the loop's own text for a name's bind adds the address) or the resolver's."""
    refused = CannotListen(*exc.args)
    refused.where = host_port(host, port)
    if not reason:
        number = exc.errno
        reason = os.strerror(number) if number and number > 0 else str(exc.strerror or exc)
    refused.reason = reason[:1].lower() + reason[1:]
    return refused


def share_ports(leader: int) -> None:
    """Bind every listener of this process with SO_REUSEPORT (a worker of `--workers N`
    whose worker 0 is `leader`): shared with `leader`'s workers, no other process."""
    global _shared, _leader
    _shared, _leader = True, leader


def ip_family(host: str) -> int | None:
    """AF_INET or AF_INET6 when `host` is an IP literal, else None (a name to resolve)."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except (OSError, ValueError):
            continue
        return family
    return None


def bound_socket(
    host: str, port: int, shared: bool = False, *, listening: bool = True
) -> socket.socket | None:
    """A bound, non-blocking socket on an IP literal, listening unless told not to; None for
    a name. OSError (the address is taken, not ours) as binding it would raise."""
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
        if listening:
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
    only worker 0 opens: the metrics port). EADDRINUSE when another listener of this process
    serves an address it bound (`held_by`): it is closed before it listens. Whatever the
    kernel or the resolver refuses is raised as a CannotListen naming `host`:`port`."""
    try:
        return await _serve(factory, host, port, _shared and not own)
    except CannotListen:
        raise
    except OSError as exc:
        raise _cannot(exc, host, port) from exc


async def _serve(
    factory: Callable[[], asyncio.BaseProtocol], host: str, port: int, shared: bool
) -> asyncio.Server:
    if not shared or not port:
        return await _serve_checked(factory, host, port, shared, None)
    lock = await port_lock(port)  # (another proxy's look and listen, then ours)
    try:
        if ip_family(host) is None:  # a name: resolved and bound by the loop, under the lock
            return await _serve_checked(factory, host, port, shared, None)
        # An IP literal: bound, looked at and listening with no await between, so the lock is
        # held for that alone (held across the loop's awaits, it waited on every other
        # listener's look: seconds for a `--node` proxy's hundreds; found by a review).
        sock = _listening_alone(host, port)
    finally:
        if lock is not None:
            lock.close()
    return await _serve_checked(factory, host, port, shared, sock)


def _listening_alone(host: str, port: int) -> socket.socket:
    """A shared socket on an IP literal, bound, then listening once no process but this
    proxy's workers listens on its address (port_owners.py)."""
    sock = bound_socket(host, port, True, listening=False)
    assert sock is not None  # (an IP literal)
    try:
        if (other := foreign_listener((_bound(sock),), _leader)) is not None:
            raise _foreign(host, port, other)
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def _foreign(host: str, port: int, other: Bound) -> CannotListen:
    taken = OSError(errno.EADDRINUSE, f"{host_port(host, port)} is served by a process that is not "
                    f"one of this proxy's workers (on {show(other)})")  # fmt: skip
    return _cannot(taken, host, port, f"address already in use (by a process that is not "
                   f"one of this proxy's workers, on {show(other)})")  # fmt: skip


async def _serve_checked(factory: Callable[[], asyncio.BaseProtocol], host: str, port: int,
                         shared: bool, sock: socket.socket | None) -> asyncio.Server:  # fmt: skip
    """`sock`: one `_listening_alone` made (looked at already); None: bind here."""
    loop = asyncio.get_running_loop()
    looked = sock is not None
    if sock is None:
        sock = bound_socket(host, port, shared, listening=False)
    if sock is None:  # a name: the loop resolves it and binds every address it resolves to
        server = await loop.create_server(factory, host, port, reuse_address=True,
                                          reuse_port=shared or None, backlog=BACKLOG,
                                          start_serving=False)  # fmt: skip
    else:
        try:
            server = await loop.create_server(factory, sock=sock, backlog=BACKLOG,
                                              start_serving=False)  # fmt: skip
        except BaseException:
            sock.close()
            raise
    where = bound_by(server)
    if (other := held_by(where)) is not None:
        server.close()
        taken = OSError(errno.EADDRINUSE, f"{host_port(host, port)} is served by another "
                        f"listener of this proxy (on {show(other)})")  # fmt: skip
        raise _cannot(taken, host, port, f"address already in use (served by another "
                      f"listener of this proxy, on {show(other)})")  # fmt: skip
    if shared and not looked and (other := foreign_listener(where, _leader)) is not None:
        server.close()  # (bound, not listening yet: no client reached it)
        raise _foreign(host, port, other)
    _serving[server] = where  # before it serves, with no await between: one check at a time
    try:
        await server.start_serving()
    except BaseException:
        _serving.pop(server, None)
        server.close()
        raise
    return server


def bound_by(server: asyncio.Server) -> tuple[Bound, ...]:
    """The addresses `server`'s sockets are bound to, as the kernel has them."""
    inet = (socket.AF_INET, socket.AF_INET6)
    return tuple(_bound(sock) for sock in server.sockets if sock.family in inet)


def _bound(sock: socket.socket) -> Bound:
    """The address an IPv4 or IPv6 socket is bound to, as the kernel has it."""
    name = sock.getsockname()
    address = socket.inet_pton(sock.family, str(name[0]).partition("%")[0])
    scope = int(name[3]) if sock.family == socket.AF_INET6 else 0
    return (int(name[1]), int(sock.family), address, scope)


def held_by(where: Iterable[Bound]) -> Bound | None:
    """The address of a listener of this process that serves one of `where` (the same
    address and port, or the same port on the wildcard address of the same family); None
    when none does. Closed listeners are forgotten here."""
    wanted = tuple(where)
    for server, bound in list(_serving.items()):
        if not server.is_serving():
            _serving.pop(server, None)
            continue
        for theirs in bound:
            if any(overlap(theirs, mine) for mine in wanted):
                return theirs
    return None


def show(bound: Bound) -> str:
    """`address:port` of a bound address, as a log line would write it."""
    port, family, address, scope = bound
    text = socket.inet_ntop(family, address)
    if family == socket.AF_INET6:
        text = f"[{text}%{scope}]" if scope else f"[{text}]"
    return f"{text}:{port}"


async def take_over(factory: Callable[[], asyncio.BaseProtocol], server: asyncio.Server,
                    host: str, port: int) -> asyncio.Server | None:  # fmt: skip
    """A server for `factory` on `server`'s listening socket (its descriptor duplicated), so
    `server` (on `host`:`port`) may then close without refusing anyone; None when it holds
    other than one. The port stays held, by the successor, with what `server` bound."""
    held = server.sockets
    if len(held) != 1:
        return None
    sock = socket.socket(fileno=os.dup(held[0].fileno()))
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        successor = await loop.create_server(factory, sock=sock, backlog=BACKLOG)
    except BaseException:
        sock.close()
        raise
    _serving[successor] = bound_by(successor)
    return successor
