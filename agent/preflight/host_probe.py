"""Gathering the host's facts for host_checks.py: never raises for what it finds wrong.

Who holds a port is read from /proc/net/{tcp,udp}[6] (the socket's inode)
and /proc/<pid>/fd (which process has that inode open); a process of
another user may hide its fds, and then the port shows as in use by
"another process". Linux only, like the agent's PR_SET_PDEATHSIG.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pwd
import shutil
import socket
import stat
import subprocess
from collections.abc import Iterable
from pathlib import Path

from gossamer.agent.preflight.host_checks import (
    AgentPorts,
    DataDirFacts,
    PortFacts,
    SerfFacts,
    SocketFacts,
)

# Under the data dir: what holds secrets (the key files, serf's RPC auth key and keyring,
# and the ACL tokens set through the API when `acl.enable_token_persistence` keeps them).
SECRET_DIRS = ("identity", "identity/leaves", "serf")
SECRET_FILES = frozenset({"rpc.json", "local.keyring"})
SECRET_TOP = ("acl-tokens.json",)  # in the data dir itself (acl_wiring.TOKENS_FILE)
SERF_VERSION_TIMEOUT_S = 10.0
KEYRING_FILE = "serf/local.keyring"


def serf_facts(path_env: str | None = None) -> SerfFacts:
    path = shutil.which("serf", path=path_env)
    if path is None:
        return SerfFacts(None)
    try:
        done = subprocess.run(
            [path, "version"],
            capture_output=True,
            text=True,
            timeout=SERF_VERSION_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return SerfFacts(path, error=str(exc))
    if done.returncode != 0:
        return SerfFacts(path, error=f"exit code {done.returncode}: {done.stderr.strip()[:200]}")
    return SerfFacts(path, done.stdout)


def data_dir_facts(path: Path) -> DataDirFacts:
    """The dir's facts; one this user may not look at (a parent it may not enter) says why
    instead of raising: Path.exists() raises PermissionError there (a non-root user checking
    an agent that runs as root, or `--pre` for a dir under another user's home)."""
    user = _user_name(os.geteuid())
    try:
        exists = path.exists()
        seen = path if exists else next((p for p in path.parents if p.exists()), Path("/"))
        owner = _user_name(seen.stat().st_uid)
    except OSError as exc:
        return DataDirFacts(str(path), True, user=user, error=exc.strerror or str(exc))
    if not exists:
        writable = os.access(seen, os.W_OK | os.X_OK)
        return DataDirFacts(str(path), False, writable=writable, owner=owner, user=user)
    if not path.is_dir():
        return DataDirFacts(str(path), True, is_dir=False, owner=owner, user=user)
    return DataDirFacts(
        str(path),
        True,
        writable=os.access(path, os.W_OK | os.X_OK),
        exposed=tuple(_exposed(path)),
        lock_holder=_lock_holder(path / "agent.lock"),
        owner=owner,
        user=user,
    )


def keyring_kept(data_dir: Path) -> bool:
    """Whether the data dir keeps a gossip keyring (one this user cannot see counts as none:
    the data dir's line says why it cannot look)."""
    try:
        return (data_dir / KEYRING_FILE).exists()
    except OSError:
        return False


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _exposed(root: Path) -> Iterable[tuple[str, int]]:
    """Secrets group or others may read; a folder this user cannot list hides its files from
    others too, so it is passed over (the writable check says the rest)."""
    for rel in SECRET_DIRS:
        folder = root / rel
        try:
            entries = [folder, *sorted(folder.iterdir())] if folder.is_dir() else []
        except OSError:
            entries = [folder]
        for entry in entries:
            if entry != folder and not _is_secret(entry):
                continue
            try:
                mode = stat.S_IMODE(entry.stat().st_mode)
            except OSError:
                continue
            if mode & 0o077:
                yield str(entry.relative_to(root)), mode
    for name in SECRET_TOP:
        try:
            mode = stat.S_IMODE((root / name).stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            yield name, mode


def _is_secret(path: Path) -> bool:
    """Private keys, leaves (they carry theirs), serf's RPC auth key and its gossip keyring."""
    if path.is_dir():
        return False
    return (
        path.name.endswith("-key.pem") or path.parent.name == "leaves" or path.name in SECRET_FILES
    )


def _lock_holder(lock: Path) -> int | None:
    """The pid in agent.lock when an agent holds its lock now (a stale file says nothing)."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        return int(text) if text.isdigit() else -1
    finally:
        os.close(fd)
    return None


def agent_pids(data_dir: Path) -> frozenset[int]:
    """The agent holding `data_dir` and its children (the serf child holds the serf port)."""
    holder = _lock_holder(data_dir / "agent.lock")
    if holder is None or holder < 0:
        return frozenset()
    children = {pid for pid, ppid in _parents().items() if ppid == holder}
    return frozenset({holder, *children})


def ports_facts(ports: AgentPorts, pids: frozenset[int]) -> list[PortFacts]:
    """Each of the agent's ports: who holds it, or whether it can be bound."""
    owners = _socket_owners()  # one walk of /proc for all of them
    return [
        PortFacts(
            role, address, port, tuple(_socket(p, address, port, owners) for p in protos), pids
        )
        for role, address, port, protos in ports.wanted()
    ]


def _socket(proto: str, address: str, port: int, owners: dict[int, tuple[int, str]]) -> SocketFacts:
    inodes = _bound_inodes(proto, address, port)
    holders = tuple(sorted({owners[i] for i in inodes if i in owners}))
    error = "" if inodes else _bind_error(proto, address, port)
    in_use = bool(inodes) or error == "in use"
    return SocketFacts(proto, holders, in_use, "" if error == "in use" else error)


def _bind_error(proto: str, address: str, port: int) -> str:
    """Try to bind: "" when it works, "in use", or the reason it cannot."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, kind) as s:
        if proto == "tcp":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the agent binds
        try:
            s.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "in use"
            return f"cannot bind: {exc.strerror}"
    return ""


def _bound_inodes(proto: str, address: str, port: int) -> set[int]:
    """Inodes of sockets bound to port on `address` or a wildcard (TCP: listening only)."""
    wanted = {address, "0.0.0.0", "::"}
    found = set()
    for suffix in ("", "6"):
        try:
            lines = Path(f"/proc/net/{proto}{suffix}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            ip, _, hex_port = fields[1].partition(":")
            if int(hex_port, 16) != port or (proto == "tcp" and fields[3] != "0A"):
                continue
            if _proc_ip(ip) in wanted or address in ("0.0.0.0", "::"):
                found.add(int(fields[9]))
    return found


def _proc_ip(hex_ip: str) -> str:
    """/proc/net's address: little-endian words of the raw address."""
    raw = bytes.fromhex(hex_ip)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if len(words) == 4:
        return socket.inet_ntop(socket.AF_INET, words)
    mapped = socket.inet_ntop(socket.AF_INET6, words)
    return mapped.removeprefix("::ffff:")


def _socket_owners() -> dict[int, tuple[int, str]]:
    owners: dict[int, tuple[int, str]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
            name = (proc / "comm").read_text().strip()
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                owners[int(target[8:-1])] = (int(proc.name), name)
    return owners


def _parents() -> dict[int, int]:
    out = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat_line = (proc / "stat").read_text()
            except OSError:
                continue
            out[int(proc.name)] = int(stat_line.rsplit(")", 1)[1].split()[1])
    return out
