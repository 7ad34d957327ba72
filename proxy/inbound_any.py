"""Where an inbound listener asked to listen on 0.0.0.0 listens on a host without IPv4.

0.0.0.0 (the inbound default when a sidecar names no address, as Consul's built-in proxy
binds) is every IPv4 address of the host. On a host whose only IPv4 address is loopback (an
IPv6-only host or namespace), that listener serves 127.0.0.1 alone, and peers, which dial
the node's IPv6 address that the catalog gives for the sidecar, are refused. There it
listens on "" instead: every address of both families (0.0.0.0 and ::), so the sidecar is
reached at its IPv6 address and its default check at 127.0.0.1 still passes. A host with
an IPv4 address other than loopback keeps 0.0.0.0, as before.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import sys

WILDCARD_V4, BOTH_FAMILIES = "0.0.0.0", ""
_SIOCGIFADDR = 0x8915  # Linux: an interface's (first) IPv4 address


def listen_host(address: str) -> str:
    """The host to listen on for an inbound listener asked for `address`."""
    if address != WILDCARD_V4 or has_ipv4_beyond_loopback():
        return address
    return BOTH_FAMILIES


def has_ipv4_beyond_loopback() -> bool:
    """Whether an interface of this host holds an IPv4 address outside 127.0.0.0/8; True where
    this cannot be told (not Linux, no interface list), so 0.0.0.0 is kept there."""
    if not sys.platform.startswith("linux"):
        return True
    try:
        interfaces = socket.if_nameindex()
    except OSError:
        return True
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in interfaces:
            request = struct.pack("256s", name.encode()[:15])
            try:
                reply = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
            except OSError:  # (no IPv4 address on it)
                continue
            if reply[20] != 127:  # (the address's first byte: not in 127.0.0.0/8; no
                return True  # `ipaddress` in the proxy for this, test_proxy_footprint.py)
    return False
