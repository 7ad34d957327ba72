"""Judges of the host: serf on PATH, the data dir and its permissions, the agent's ports.

Each takes facts a probe gathered (host_probe.py) and returns one result
per line; none does I/O. `running` tells the two modes apart: before an
agent starts (`--pre`) a port must be free and the data dir not locked;
with an agent running, its ports must be held by it (its pid or its serf
child) and the lock is its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gossamer.agent.preflight.result import Result, fail, ok, warn
from gossamer.gossip.addresses import format_host_port

HOST = "host"
# Oldest serf whose RPC has every verb the agent uses (get-coordinate came in 0.7).
MIN_SERF = (0, 7, 0)
_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class SerfFacts:
    path: str | None  # None: not on PATH
    version_output: str = ""
    error: str = ""  # running `serf version` failed


def judge_serf(facts: SerfFacts) -> Result:
    name = "serf on PATH"
    if facts.path is None:
        return fail(
            HOST,
            name,
            "no serf binary on PATH",
            "install it (Debian: apt-get install serf; else a release from "
            "https://github.com/hashicorp/serf/releases) and put it on PATH",
        )
    if facts.error:
        return fail(
            HOST,
            name,
            f"{facts.path}: `serf version` failed: {facts.error}",
            "reinstall serf; the file is not a working serf binary",
        )
    found = _VERSION.search(facts.version_output)
    if found is None:
        return fail(
            HOST,
            name,
            f"{facts.path}: cannot read a version from `serf version`",
            "reinstall serf; the file is not a working serf binary",
        )
    version = tuple(int(g) for g in found.groups())
    shown = ".".join(map(str, version))
    if version < MIN_SERF:
        need = ".".join(map(str, MIN_SERF))
        return fail(
            HOST,
            name,
            f"{facts.path} is serf {shown}, older than {need}",
            f"install serf {need} or newer",
        )
    return ok(HOST, name, f"{facts.path}, version {shown}")


@dataclass(frozen=True)
class DataDirFacts:
    path: str
    exists: bool
    is_dir: bool = True
    writable: bool = True  # the dir, or its nearest existing parent when it does not exist
    # Files and dirs holding secrets (keys, the serf RPC config, the keyring) that
    # group or others may read: (path relative to the data dir, mode).
    exposed: tuple[tuple[str, int], ...] = ()
    lock_holder: int | None = None  # pid of a live agent holding agent.lock
    owner: str = ""  # who owns the dir (or its nearest existing parent): a user name or uid
    user: str = ""  # who runs the check ("" when unknown: judged as if the owner)
    error: str = ""  # the dir could not be looked at (a parent this user may not enter)


DATA_DIR = "data dir and its permissions"


def judge_data_dir(facts: DataDirFacts, running: bool) -> Result:
    where = facts.path
    if facts.error:
        return _unseen_data_dir(facts, running)
    if not facts.exists:
        return _missing_data_dir(facts, running)
    if not facts.is_dir:
        return fail(
            HOST, DATA_DIR, f"{where} is not a directory", "point --data-dir at a directory"
        )
    if not facts.writable:
        if running and _someone_else(facts):  # the agent runs as its owner, not as this user
            return _unseen_data_dir(facts, running)
        return fail(
            HOST, DATA_DIR, f"{where} is not writable by {facts.user or 'this user'}",
            _take_over(facts, where),
        )  # fmt: skip
    if facts.exposed:
        shown = ", ".join(f"{p} ({m:04o})" for p, m in facts.exposed)
        return fail(
            HOST,
            DATA_DIR,
            f"secrets readable by group or others: {shown}",
            "chmod go-rwx "
            + " ".join(f"{where}/{p}" for p, _ in facts.exposed)
            + " (keys 0600, their dirs 0700)",
        )
    if facts.lock_holder is not None and not running:
        return fail(
            HOST,
            DATA_DIR,
            f"{where} is in use by a running agent (pid {facts.lock_holder})",
            "stop that agent first, or run `gossamer check` without --pre",
        )
    return ok(HOST, DATA_DIR, f"{where}, secrets private")


def _someone_else(facts: DataDirFacts) -> bool:
    """The check runs as a user other than the dir's owner, and not as root (who may look)."""
    return bool(facts.user and facts.owner) and facts.user not in (facts.owner, "root")


def _take_over(facts: DataDirFacts, where: str) -> str:
    """A command that makes `where` the checking user's (who is to run the agent)."""
    if not facts.user:
        return f"chown -R the agent's user {where} and chmod u+rwx {where}"
    also = f", or run the agent as {facts.owner}, its owner" if _someone_else(facts) else ""
    return f"as root: chown -R {facts.user} {where} && chmod u+rwx {where}{also}"


def _unseen_data_dir(facts: DataDirFacts, running: bool) -> Result:
    """This user cannot look at the dir. Before the agent starts that is the agent's problem
    too (it runs as this user); a running agent's dir, owned by the user it runs as, is only
    hidden from this one: the other checks still run, and root can look."""
    why = facts.error or f"owned by {facts.owner}, {facts.user} cannot write to it"
    if running:
        who = "" if facts.owner in ("", "root") else f" or as {facts.owner}"
        return warn(
            HOST, DATA_DIR, f"{facts.path}: {why}: its permissions were not checked",
            f"run the check as root (`sudo gossamer check`){who} to check them",
        )  # fmt: skip
    if facts.error:
        return fail(
            HOST, DATA_DIR, f"{facts.path}: {why}",
            f"{facts.user or 'the agent user'} must be able to enter every folder on the way: "
            f"`namei -l {facts.path}` shows which one is closed",
        )  # fmt: skip
    return fail(HOST, DATA_DIR, f"{facts.path}: {why}", _take_over(facts, facts.path))


def _missing_data_dir(facts: DataDirFacts, running: bool) -> Result:
    where, creatable = facts.path, facts.writable
    if running:
        return fail(
            HOST,
            DATA_DIR,
            f"{where} does not exist",
            "the agent reports a data dir this host does not have: run "
            "`gossamer check` on the agent's own host",
        )
    if not creatable:
        return fail(
            HOST,
            DATA_DIR,
            f"{where} does not exist and cannot be created by {facts.user or 'this user'}",
            f"as root: mkdir -p {where} && chown {facts.user or 'the agent user'} {where}",
        )
    return ok(HOST, DATA_DIR, f"{where} will be created")


@dataclass(frozen=True)
class AgentPorts:
    """Where the agent listens: HTTP(S) and DNS on the client address, serf and RPC on bind.

    `http` or `https` is -1 when that listener is off (Consul's spelling)."""

    client: str
    bind: str
    http: int
    dns: int
    serf: int
    rpc: int
    https: int = -1

    def wanted(self) -> tuple[tuple[str, str, int, tuple[str, ...]], ...]:
        """(role, address, port, protocols) for each port, in the order they are shown."""
        every = (
            ("http", self.client, self.http, ("tcp",)),
            ("https", self.client, self.https, ("tcp",)),
            ("dns", self.client, self.dns, ("udp", "tcp")),
            ("serf", self.bind, self.serf, ("tcp", "udp")),
            ("rpc", self.bind, self.rpc, ("tcp",)),
        )
        return tuple(port for port in every if port[2] > 0)


@dataclass(frozen=True)
class SocketFacts:
    """One port of one protocol: who holds it (pids, names) or why it cannot be bound."""

    proto: str  # "tcp" | "udp"
    holders: tuple[tuple[int, str], ...] = ()  # (pid, command name)
    in_use: bool = False  # bound by someone (holders may be unknown: another user's process)
    error: str = ""  # binding failed for another reason (address not on this host)


@dataclass(frozen=True)
class PortFacts:
    role: str  # http, dns, serf, rpc
    address: str
    port: int
    sockets: tuple[SocketFacts, ...]
    agent_pids: frozenset[int] = field(default_factory=frozenset)


def judge_port(facts: PortFacts, running: bool) -> Result:
    protos = "+".join(s.proto for s in facts.sockets)
    name = f"{facts.role} port {format_host_port(facts.address, facts.port)}/{protos}"
    for sock in facts.sockets:
        if sock.error:
            return fail(
                HOST,
                name,
                f"{sock.proto}: {sock.error}",
                f"use an address of this host for {facts.role}, or free it",
            )
        others = [(pid, cmd) for pid, cmd in sock.holders if pid not in facts.agent_pids]
        if running and not sock.in_use:
            return fail(
                HOST,
                name,
                f"{sock.proto}: nothing listens there",
                "the agent is not serving it: read its log",
            )
        if others or (sock.in_use and not running):
            who = ", ".join(f"pid {pid} ({cmd})" for pid, cmd in others) or "another process"
            return fail(
                HOST,
                name,
                f"{sock.proto}: in use by {who}",
                f"stop that process, or give the agent another {facts.role} port "
                f"(--{facts.role}-port)",
            )
    return ok(HOST, name, "held by this agent" if running else "free")
