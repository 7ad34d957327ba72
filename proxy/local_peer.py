"""Whether a peer is on this host: who may use a listener that is not loopback-only. Pure.

A listener bound to a host's network address (an upstream's
`LocalBindAddress`, a metrics address) is reachable from the network, and
anyone who reaches it would act as the proxy's service (an upstream) or
read its figures (metrics). A connection comes from this host when its
peer is a loopback address, or when the peer's address is the listener's
own (a local client dialing this host's address gets that address as its
source). Those are served as a loopback-only listener would serve them;
the callers decide what others get.
"""

from __future__ import annotations

_V6_LOOPBACK = ("::1", "0:0:0:0:0:0:0:1")


def loopback(host: str) -> bool:
    """Whether an address (a bind address, or a peer's as the kernel writes it) is loopback:
    127.0.0.0/8, ::1 or an IPv4-mapped 127.x. By its text: the proxy process leaves
    `ipaddress` out (test_proxy_footprint.py)."""
    text = host.strip("[]").lower()
    if text.startswith("::ffff:"):
        text = text[7:]
    if text == "localhost" or text in _V6_LOOPBACK:
        return True
    parts = text.split(".")
    return len(parts) == 4 and parts[0] == "127" and all(p.isdigit() for p in parts)


def from_this_host(peer: object, own: object) -> bool:
    """Whether a connection whose ends are `peer` and `own` (`getpeername`, `getsockname`)
    comes from this host."""
    if not isinstance(peer, tuple) or not isinstance(own, tuple) or not peer or not own:
        return False  # (a Unix socket is not what these listen on)
    return loopback(str(peer[0])) or str(peer[0]) == str(own[0])
