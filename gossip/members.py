"""Serf cluster members as plain values.

Serf's RPC sends a member as a msgpack map whose address is raw IP bytes and
whose status is a word ("alive", "failed", ...). Consul's API reports the
same status as a small integer, so both forms live here. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class MemberStatus(IntEnum):
    """Serf member status with the integer codes Consul's API exposes.

    The numbers are Serf's own `MemberStatus` enum, which Consul passes
    through unchanged in `/v1/agent/members`, so clients compare against them.
    """

    NONE = 0
    ALIVE = 1
    LEAVING = 2
    LEFT = 3
    FAILED = 4

    @classmethod
    def from_name(cls, name: str) -> MemberStatus:
        """Map Serf's status word to its code; unknown words count as NONE.

        A newer serf may add states; treating them as "none" keeps the member
        visible instead of failing the whole members call.
        """
        try:
            return cls[name.upper()]
        except KeyError:
            return cls.NONE


def addr_text(raw: object) -> str:
    """Render Serf's `net.IP` bytes as address text.

    Go may send an IPv4 address in its 16-byte IPv4-mapped form; it is shown
    as plain dotted IPv4 so the same node never has two spellings.
    """
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, bytes | bytearray) or len(raw) not in (4, 16):
        return ""
    ip = ipaddress.ip_address(bytes(raw))
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _int(body: Mapping[str, Any], key: str) -> int:
    value = body.get(key)
    return value if isinstance(value, int) else 0


@dataclass(frozen=True, slots=True)
class Member:
    """One node as Serf sees it.

    Frozen so members can be shared between tasks without defensive copies
    (treat `tags` as read-only too; it is a dict only for easy JSON output).
    """

    name: str
    addr: str
    port: int
    tags: dict[str, str] = field(default_factory=dict)
    status: str = "none"
    protocol_min: int = 0
    protocol_max: int = 0
    protocol_cur: int = 0
    delegate_min: int = 0
    delegate_max: int = 0
    delegate_cur: int = 0

    @property
    def status_code(self) -> int:
        """The Consul/Serf integer code of `status` (see MemberStatus)."""
        return int(MemberStatus.from_name(self.status))

    @classmethod
    def from_rpc(cls, body: Mapping[str, Any]) -> Member:
        """Build a Member from one entry of an RPC `Members` list.

        Missing or mistyped fields get neutral defaults: one odd member must
        not make a members call fail.
        """
        raw_tags = body.get("Tags")
        tags = (
            {str(k): str(v) for k, v in raw_tags.items()} if isinstance(raw_tags, Mapping) else {}
        )
        return cls(
            name=str(body.get("Name", "")),
            addr=addr_text(body.get("Addr")),
            port=_int(body, "Port"),
            tags=tags,
            status=str(body.get("Status", "none")),
            protocol_min=_int(body, "ProtocolMin"),
            protocol_max=_int(body, "ProtocolMax"),
            protocol_cur=_int(body, "ProtocolCur"),
            delegate_min=_int(body, "DelegateMin"),
            delegate_max=_int(body, "DelegateMax"),
            delegate_cur=_int(body, "DelegateCur"),
        )
