"""Whether a process outside this proxy's workers listens on a port. Shell (reads /proc).

With `--workers N` every listener is bound with SO_REUSEPORT (listen.py), and
the kernel lets any socket of the same user with that option join the port's
group. A second proxy run with `--workers` too (a mistake: two sidecars
given the same `LocalBindPort`, or the same unit started twice), or any
other program listening with SO_REUSEPORT, would then silently share the
port: half of one sidecar's clients would reach the other's listener and go
out under the other's identity. So before a shared listener listens, the
sockets listening on its address (the kernel's table, /proc/net/tcp and
tcp6, in this network namespace) are matched against the sockets of this
proxy's processes: worker 0 (the `leader`) and the workers it started (its
children). One that is not theirs makes the bind
fail as it would without SO_REUSEPORT. An IPv6 listener on `::` (or a
v4-mapped address) that is not theirs counts against an IPv4 one on the
same port: with IPV6_V6ONLY off, Linux's default, it takes IPv4 clients too
(the table does not say whether it is off, so it is taken to be).

Two proxies opening the same port at the same moment would each look
before the other listens: the look and the listen are one step
(`port_lock`, an abstract unix socket named after the port, bound by one
process at a time in this network namespace), so the second one sees the
first's listener.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections.abc import Iterable

# An address a listener bound: (port, family, the address packed as inet_pton packs it, the
# IPv6 scope). Packed, not `ipaddress`: the proxy process leaves that module out
# (test_proxy_footprint.py), and inet_pton's bytes are one per address, however spelled.
Bound = tuple[int, int, bytes, int]
_TABLES = (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6))
_LISTEN = "0A"  # the kernel's TCP_LISTEN state, as the table writes it
_V4_MAPPED = bytes(10) + b"\xff\xff"  # ::ffff:a.b.c.d
LOCK_WAIT_S = 2.0  # for another process's look and listen (a few ms); then looked at unlocked


async def port_lock(port: int) -> socket.socket | None:
    """The lock of `port`'s look-and-listen, held until the socket is closed; None when it
    could not be had within LOCK_WAIT_S (a process that keeps it: the look goes on alone)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    name = f"\0gossamer/listen/{port}"
    deadline = asyncio.get_running_loop().time() + LOCK_WAIT_S
    try:
        while True:
            try:
                sock.bind(name)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or asyncio.get_running_loop().time() > deadline:
                    sock.close()
                    return None
                await asyncio.sleep(0.002)
                continue
            return sock
    except BaseException:  # (cancelled while waiting: not left open; found by a review)
        sock.close()
        raise


def foreign_listener(where: Iterable[Bound], leader: int) -> Bound | None:
    """A listening socket on one of `where`'s addresses (or the wildcard of the same family
    and port) that no process of `leader`'s proxy holds; None when there is none."""
    wanted = tuple(where)
    listening = [(inode, bound) for inode, bound in _listening()
                 if any(_takes(bound, mine) for mine in wanted)]  # fmt: skip
    if not listening:
        return None
    ours = _inodes(_group(leader))
    for inode, bound in listening:
        if inode not in ours:
            return bound
    return None


def _listening() -> list[tuple[int, Bound]]:
    """(inode, address) of every listening TCP socket in this network namespace."""
    found: list[tuple[int, Bound]] = []
    for path, family in _TABLES:
        try:
            found += _listening_in(path, family)
        except OSError:  # (no IPv6 here)
            continue
    return found


def _listening_in(path: str, family: int) -> list[tuple[int, Bound]]:
    """One table's listeners, read a line at a time. The table lists every socket of the
    namespace, TIME_WAIT ones too: under connection churn ~7,000 lines (1 MB of text). Read
    whole and split, that was ~3 MB alive at once on each listener opened, and the C heap
    kept the pages of that peak (bench/soak.py); a line at a time, a few KiB."""
    found: list[tuple[int, Bound]] = []
    with open(path) as table:
        next(table, None)  # the header
        for line in table:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            address, _, port = fields[1].partition(":")
            raw = bytes.fromhex(address)  # each 32-bit word in the host's (little) order
            packed = b"".join(raw[at : at + 4][::-1] for at in range(0, len(raw), 4))
            found.append((int(fields[9]), (int(port, 16), int(family), packed, 0)))
    return found


def overlap(a: Bound, b: Bound) -> bool:
    """Whether a listener bound to `a` and one bound to `b` would take each other's clients:
    the same port and family, and the same address or a wildcard (IPv6 ones V6ONLY, as
    listen.py binds them)."""
    if a[0] != b[0] or a[1] != b[1]:  # another port, another family
        return False
    return a[2:] == b[2:] or not any(a[2]) or not any(b[2])  # not any: the wildcard


def _takes(theirs: Bound, mine: Bound) -> bool:
    """Whether a listener of the kernel's table on `theirs` takes clients of one on `mine`:
    `overlap`, the table having no IPv6 scope; and an IPv6 one on `::` or a v4-mapped
    address takes an IPv4 one's (dual-stack: above). Mine on IPv6 is V6ONLY: no IPv4."""
    port, family, address, _ = theirs
    if family == socket.AF_INET6 and mine[1] == socket.AF_INET:
        if any(address) and address[:12] != _V4_MAPPED:
            return False
        theirs = (port, socket.AF_INET, address[12:], 0)  # (`::`: 0.0.0.0)
    return overlap(theirs, (*mine[:3], 0))


def _group(leader: int) -> set[int]:
    """`leader` and its children: the proxy's processes (workers.py starts each worker as a
    child of worker 0)."""
    pids = {leader}
    try:
        tasks = os.listdir(f"/proc/{leader}/task")
    except OSError:
        return pids
    for task in tasks:
        try:
            with open(f"/proc/{leader}/task/{task}/children") as children:
                pids.update(int(pid) for pid in children.read().split())
        except (OSError, ValueError):
            continue
    return pids


def _inodes(pids: Iterable[int]) -> set[int]:
    """The inodes of the sockets the processes `pids` hold."""
    inodes: set[int] = set()
    for pid in pids:
        base = f"/proc/{pid}/fd"
        try:
            names = os.listdir(base)
        except OSError:  # (gone since)
            continue
        for name in names:
            try:
                target = os.readlink(f"{base}/{name}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes
