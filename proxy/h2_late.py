"""The three ways into the HTTP/2 data path, for the compiled core to call (native.py).

Interpreted on purpose: mypyc links a compiled module to every compiled module it
imports, even in a function body, so an import of an h2 module in inbound.py or
outbound.py would load the HTTP/2 library (`gossamer_h2`) in every sidecar. Called
through this module, the core's library has no tie to it and only a sidecar that
meets HTTP/2 maps its code. Once per connection, not per request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gossamer.proxy.inbound import Inbound
    from gossamer.proxy.outbound import UpstreamListener
    from gossamer.proxy.relay import Relay
    from gossamer.proxy.side import PlainSide, Side


def gated(inbound: Inbound, client: Side, app: Side, source: str, peer: str,
          xfcc: bytes) -> Relay:  # fmt: skip
    """h2_relay.gated: an inbound connection's calls decided one by one."""
    from gossamer.proxy.h2_relay import gated as gate

    return gate(inbound, client, app, source, peer, xfcc)


def balanced(listener: UpstreamListener, client: PlainSide,
             relay_bytes: Callable[[PlainSide], None]) -> None:  # fmt: skip
    """h2_balanced.accept: a client's calls balanced one by one over the instances."""
    from gossamer.proxy.h2_balanced import accept

    accept(listener, client, relay_bytes)


def followed(listener: UpstreamListener, client: Side, server: Side,
             on_close: Callable[[Relay], None]) -> Relay:  # fmt: skip
    """h2_followed.followed: the connection to one instance, each call counted."""
    from gossamer.proxy.h2_followed import followed as follow

    return follow(listener, client, server, on_close)
