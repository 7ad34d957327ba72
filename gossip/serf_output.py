"""Reading serf's own log output: why did it exit, and which level to ask for.

Pure functions over the lines serf printed, so the classification is tested
with tables instead of by breaking real processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gossamer.gossip.addresses import format_host_port


class _Where(Protocol):
    @property
    def node(self) -> str: ...
    @property
    def bind(self) -> str: ...
    @property
    def port(self) -> int: ...


@dataclass(frozen=True)
class ExitReason:
    message: str
    fatal: bool = False
    rpc_port_taken: bool = False


_LEVELS = {"trace": "debug", "debug": "debug", "info": "info", "warn": "warn", "error": "err"}


def serf_log_level(level: str) -> str:
    return _LEVELS.get(level.lower(), "info")


def classify_exit(lines: list[str], where: _Where, rpc_addr: str) -> ExitReason:
    """Turn serf's last output lines into one clear sentence."""
    text = "\n".join(lines)
    if "minority in name conflict resolution" in text:
        return ExitReason(
            f"node name {where.node!r} is already in use by another member of the "
            "cluster; pick a unique name with --node",
            fatal=True,
        )
    if "address already in use" in text:
        if rpc_addr in text:
            return ExitReason("serf RPC port taken", rpc_port_taken=True)
        return ExitReason(
            f"cannot bind the gossip port {format_host_port(where.bind, where.port)}: "
            "address already in use",
            fatal=True,
        )
    if "cannot assign requested address" in text:
        return ExitReason(
            f"cannot bind the gossip port {format_host_port(where.bind, where.port)}: "
            "the address is not on this host",
            fatal=True,
        )
    for line in reversed(lines):
        if "Failed" in line or "[ERR]" in line or "Error" in line:
            return ExitReason(line.strip().lstrip("=> ").strip())
    return ExitReason("")
