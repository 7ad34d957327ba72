"""`host:port` as the proxy's logs and errors write an address. Pure.

An IPv6 address goes in brackets (`[::1]:21000`), as Consul and Go's
JoinHostPort write it, since `::1:21000` cannot be read back. The proxy's
addresses come from its config and its sockets, already in canonical form,
so this does not parse them: `gossip.addresses.format_host_port` does, and
would bring `ipaddress` and `re` into every proxy process for a log line.
"""

from __future__ import annotations


def host_port(host: str, port: int) -> str:
    """`host`:`port`, an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
