"""The tagged addresses Consul always shows for nodes and services, filled in at render time.

A Consul agent tags its own node with `lan`, `wan` and the family-specific
`lan_ipv4`/`wan_ipv4` (or `_ipv6`), all defaulting to its advertise address,
and tags a service that has an IP `Address` with `lan_ipv4`/`wan_ipv4` (or
`_ipv6`) at that address and port. Records hold only what was published;
the defaults are added when answering, so records from older agents get
them too and the wire format does not change. What a record sets wins.
External nodes (catalog registrations) keep exactly what was registered, as
Consul's catalog does.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gossamer.catalog.model import Service


def _family(address: str) -> str:
    """`ipv4` or `ipv6` for an IP literal, '' for a name (or nothing)."""
    try:
        return f"ipv{ipaddress.ip_address(address).version}"
    except ValueError:
        return ""


def _misfiled(key: str, value: str) -> bool:
    """A `*_ipv4`/`*_ipv6` tag holding an address of the other family: earlier agents
    published their own address as `lan_ipv4` even when it was IPv6, and peers keep
    their records."""
    _, _, family = key.rpartition("_")
    return family in ("ipv4", "ipv6") and _family(value) not in ("", family)


def node_tagged(address: str, stored: Mapping[str, str], *, external: bool) -> dict[str, str]:
    """A node's `TaggedAddresses`: Consul's four defaults for an agent's node, then what it set."""
    if external or not address:
        return dict(sorted(stored.items()))
    tagged = {"lan": address, "wan": address} | {
        key: value for key, value in stored.items() if not _misfiled(key, value)
    }
    for pool in ("lan", "wan"):  # lan_ipv4 follows lan, wan_ipv4 follows wan
        if family := _family(tagged[pool]):
            tagged.setdefault(f"{pool}_{family}", tagged[pool])
    return dict(sorted(tagged.items()))


def service_tagged(
    service: Service, stored: Mapping[str, tuple[str, int]]
) -> dict[str, tuple[str, int]]:
    """An agent's service's tagged addresses: `lan_<family>`/`wan_<family>` for an IP address,
    then its own (services of external nodes keep only their own)."""
    here = (service.address, service.port)
    family = _family(service.address)
    defaults = {f"lan_{family}": here, f"wan_{family}": here} if family else {}
    return dict(sorted((defaults | dict(stored)).items()))
