"""Which address to advertise to peers when the agent binds to every interface.

0.0.0.0 and :: cannot be dialled, so, as Consul does, the agent picks one of
the host's addresses: a private IPv4 for 0.0.0.0, a global IPv6 for ::.
The choice is a pure function of the candidates; finding them on the host
(`local_addresses`) is the only impure part and is skipped when the caller
passes them in.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from typing import Any

from gossamer.agent.config.errors import MERGED, ConfigProblem

# The blocks Consul searches for an address to advertise when bound to
# 0.0.0.0: RFC 1918 private space and RFC 6598 carrier-grade NAT.
PRIVATE_IPV4 = tuple(
    ipaddress.IPv4Network(net)
    for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)


def resolve_advertise(
    values: dict[str, Any],
    origin: dict[str, str],
    problems: list[ConfigProblem],
    host_addresses: list[str] | None,
) -> None:
    bind = values["bind"]
    if "advertise" in values:
        if ipaddress.ip_address(values["advertise"]).is_unspecified:
            message = f"{values['advertise']} cannot be advertised: peers could not dial it"
            problems.append(ConfigProblem(origin["advertise"], "advertise", message))
        return
    if not ipaddress.ip_address(bind).is_unspecified:
        values["advertise"] = bind
        return
    if host_addresses is None:
        host_addresses = local_addresses()
    picked = pick_advertise_address(bind, host_addresses)
    if picked is None:
        version = ipaddress.ip_address(bind).version
        wanted = "global IPv6" if version == 6 else "private IPv4"
        found = (
            [a for a in host_addresses if ":" in a]
            if version == 6
            else [a for a in host_addresses if ":" not in a]
        )  # (of the family :: or 0.0.0.0 looks for: now that IPv6 ones are found, many)
        message = (
            f"not set, and bind is {bind} but this host has no {wanted} address to "
            f"advertise (found: {', '.join(found) or 'none'}); set advertise"
        )
        problems.append(ConfigProblem(MERGED, "advertise", message))
    else:
        values["advertise"] = picked


def pick_advertise_address(bind: str, host_addresses: Sequence[str]) -> str | None:
    """What to advertise for a bind on all interfaces, as Consul chooses it.

    0.0.0.0: the first private IPv4 (RFC 1918 or RFC 6598) in `host_addresses`;
    Consul refuses to choose among several, we take the first so that hosts
    with a second private network (docker0, a VPN) still start. "::": the
    first global IPv6. Entries that are not IP addresses are skipped.
    """
    want_v6 = ipaddress.ip_address(bind).version == 6
    for text in host_addresses:
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            continue
        if want_v6 and addr.version == 6 and addr.is_global:
            return str(addr)
        if not want_v6 and addr.version == 4 and any(addr in net for net in PRIVATE_IPV4):
            return str(addr)
    return None


def local_addresses() -> list[str]:
    """Best-effort host addresses without extra dependencies (impure, never raises).

    The source address of each family's default route comes first (a UDP connect sends
    nothing), then whatever the host name resolves to, then the IPv6 addresses of the
    interfaces (Linux): with only these, `bind: "::"` found no IPv6 address on a host whose
    name does not resolve to one, and refused to start.
    """
    found: list[str] = []
    # TEST-NET-1 and the IPv6 documentation prefix: routed like the internet
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.connect((probe, 9))
                found.append(str(sock.getsockname()[0]))
        except OSError:
            pass
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None)
    except OSError:
        infos = []
    found += [str(info[4][0]) for info in infos]
    try:
        with open("/proc/net/if_inet6", encoding="ascii") as table:
            found += interface_ipv6(table.read())
    except (OSError, ValueError):
        pass
    return list(dict.fromkeys(found))


def interface_ipv6(table: str) -> list[str]:
    """The addresses of Linux's /proc/net/if_inet6 (one a line: 32 hex digits, then the
    interface's index, prefix length, scope, flags and name)."""
    found = []
    for line in table.splitlines():
        fields = line.split()
        if fields and len(fields[0]) == 32:
            found.append(str(ipaddress.IPv6Address(bytes.fromhex(fields[0]))))
    return found
