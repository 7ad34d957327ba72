"""Consul's service identities: a token field that stands for a fixed policy.

A token made with `ServiceIdentities: [{"ServiceName": "web"}]` holds what
Consul's template grants a service and its sidecar, and nothing else:
`service:write` on `web` and `web-sidecar-proxy`, `service:read` on every
service and `node:read` on every node (to find its upstreams' instances).
`Datacenters`, when given, limits where the identity applies. Names are
Consul's: lower-case letters, digits, `-` and `_`, at most 256 characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from gossamer.agent.acl.rules import Rules, parse_rules

_NAME = re.compile(r"[a-z0-9](?:[a-z0-9_-]{0,254}[a-z0-9])?")
FIELD = "ServiceIdentities"


@dataclass(frozen=True)
class ServiceIdentity:
    name: str
    datacenters: tuple[str, ...] = ()

    def applies(self, datacenter: str) -> bool:
        return not self.datacenters or datacenter in self.datacenters


@lru_cache(maxsize=1024)
def identity_rules(name: str) -> Rules:
    """The rules Consul's service identity template grants `name` (a checked name)."""
    return parse_rules(
        f'service "{name}" {{ policy = "write" }}\n'
        f'service "{name}-sidecar-proxy" {{ policy = "write" }}\n'
        'service_prefix "" { policy = "read" }\n'
        'node_prefix "" { policy = "read" }\n'
    )


def read_identities(value: Any, problems: list[str]) -> tuple[ServiceIdentity, ...]:
    """`ServiceIdentities` of a token body; each problem appended, naming its entry."""
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.append(f"{FIELD}: must be a list of {{ServiceName, Datacenters}}")
        return ()
    found: dict[str, ServiceIdentity] = {}
    for i, entry in enumerate(value):
        entry = {str(k).lower(): v for k, v in entry.items()} if isinstance(entry, dict) else {}
        name, dcs = entry.get("servicename"), entry.get("datacenters") or []
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            problems.append(f"{FIELD}[{i}].ServiceName: {name!r} must be lower-case letters, "
                            "digits, '-' or '_' (Consul's service identity names)")  # fmt: skip
        elif not isinstance(dcs, list) or not all(isinstance(d, str) and d for d in dcs):
            problems.append(f"{FIELD}[{i}].Datacenters: must be a list of names")
        else:
            found[name] = ServiceIdentity(name, tuple(dcs))
    return tuple(found.values())


def identities_json(identities: tuple[ServiceIdentity, ...]) -> list[dict[str, Any]]:
    """As Consul renders them (and as they are stored in the replicated map)."""
    return [
        {"ServiceName": s.name, **({"Datacenters": list(s.datacenters)} if s.datacenters else {})}
        for s in identities
    ]


def identities_from_json(value: Any) -> tuple[ServiceIdentity, ...]:
    """Stored identities back; raises TypeError/ValueError for ones that are not."""
    problems: list[str] = []
    identities = read_identities(value, problems)
    if problems:
        raise ValueError("; ".join(problems))
    return identities
