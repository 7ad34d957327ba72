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
children). One that is not theirs makes the bind fail as it would without
SO_REUSEPORT.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable

Bound = tuple[int, int, bytes, int]  # listen.Bound: port, family, packed address, scope
_TABLES = (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6))
_LISTEN = "0A"  # the kernel's TCP_LISTEN state, as the table writes it


def foreign_listener(where: Iterable[Bound], leader: int) -> Bound | None:
    """A listening socket on one of `where`'s addresses (or the wildcard of the same family
    and port) that no process of `leader`'s proxy holds; None when there is none."""
    wanted = tuple(where)
    listening = [(inode, bound) for inode, bound in _listening()
                 if any(_overlap(bound, mine) for mine in wanted)]  # fmt: skip
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
            with open(path) as table:
                lines = table.read().splitlines()[1:]
        except OSError:  # (no IPv6 here)
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            address, _, port = fields[1].partition(":")
            raw = bytes.fromhex(address)  # each 32-bit word in the host's (little) order
            packed = b"".join(raw[at : at + 4][::-1] for at in range(0, len(raw), 4))
            found.append((int(fields[9]), (int(port, 16), int(family), packed, 0)))
    return found


def _overlap(a: Bound, b: Bound) -> bool:
    """Whether listeners on `a` and `b` take each other's clients: the same port and family,
    and the same address or a wildcard (the table has no IPv6 scope: not compared)."""
    return a[:2] == b[:2] and (a[2] == b[2] or not any(a[2]) or not any(b[2]))


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
