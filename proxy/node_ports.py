"""Which port a sidecar of `--node` would take from another sidecar of the same process. Pure.

Within one sidecar two listeners on one port are refused when its config is
read (config.distinct). Across the sidecars of a node proxy nothing looked:
two registrations given the same `LocalBindPort` (or inbound or metrics
port) both started, the later listener failed to bind and was tried again
every few seconds with a bare "address already in use" that named neither
sidecar; with `--workers` each worker gave the port to whichever sidecar
warmed first there, so one port could go out as one service in one worker
and as the other in the next. So node.py refuses a sidecar one of whose
listeners clashes with a listener of a sidecar it already serves (the same
rule as `distinct`: the same port, and the same address or either a
wildcard), naming both; the one served first keeps the port.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from gossamer.gossip.host_port import host_port
from gossamer.proxy.config import ProxyConfig

Listener = tuple[str, str, int]  # what it is (in words), its address, its port
_ANY: Final = frozenset({"0.0.0.0", "::", ""})


def listeners(config: ProxyConfig) -> list[Listener]:
    """Every port `config`'s sidecar listens on."""
    found: list[Listener] = []
    if config.bind_port and config.local_port:  # (the runtime opens the inbound only then)
        found.append(("inbound listener", config.bind_address, config.bind_port))
    found.extend((f"upstream {u.name!r}", u.bind_address, u.bind_port) for u in config.upstreams)
    found.extend((f"exposed path {e.path!r}", config.bind_address, e.listener_port)
                 for e in config.expose)  # fmt: skip
    if config.metrics_addr:
        host, _, port = config.metrics_addr.rpartition(":")
        found.append(("metrics listener", host.strip("[]"), int(port)))
    return found


def clash(config: ProxyConfig, served: Iterable[tuple[str, ProxyConfig]]) -> str | None:
    """What of `config` would listen where a sidecar of `served` (proxy ID, config) does, in
    words naming both; None when nothing does."""
    mine = listeners(config)
    for proxy_id, other in served:
        for its, address, port in listeners(other):
            for what, at, wanted in mine:
                if wanted == port and (at == address or {at, address} & _ANY):
                    return (f"its {what} on {host_port(at, wanted)} clashes with sidecar "
                            f"{proxy_id}'s {its} on {host_port(address, port)}, served first; "
                            "give one of them "
                            "another port")  # fmt: skip
    return None
