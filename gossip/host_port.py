"""`host:port` as output and logs write an address. Pure, and light.

An IPv6 address goes in brackets (`[::1]:21000`), as Consul and Go's
JoinHostPort write it, since `::1:21000` cannot be read back. This does
not parse the host: `addresses.format_host_port` puts an IP literal in
canonical form first and then calls this; the proxy, whose addresses come
from its config and its sockets already canonical, calls this directly,
so `ipaddress` and `re` stay out of every proxy process.
"""

from __future__ import annotations


def host_port(host: str, port: int) -> str:
    """`host`:`port`, an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
