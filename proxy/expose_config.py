"""A sidecar registration's `Proxy.Expose.Paths` read into `ExposePath`s. Pure.

The agent checked them at registration (catalog/registration_expose.py);
they are read again here with the proxy's own checks, so a registration
from elsewhere (or an old agent) is refused naming the key, as the rest of
the config is. A path's listener shares the inbound listener's address;
its port must not be one of the proxy's other listeners' (the inbound one,
an upstream's, the metrics one): refused here, as `config.distinct` does
for upstreams. `ParsedFromCheck` marks a path the agent made for one of the
service's checks (`Expose.Checks`): as Consul's Envoy listener for one, it
takes connections from this host only (`from_this_host`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from gossamer.proxy import config_fields as fields
from gossamer.proxy.config import ConfigError, ExposePath, ProxyConfig, share_port

PROTOCOLS = ("http", "http2")


def expose_paths(proxy: Mapping[str, Any]) -> tuple[ExposePath, ...]:
    """The exposed paths of a registration's `Proxy` block."""
    expose = fields.mapping(proxy.get("Expose") or {}, "Proxy.Expose")
    raw = expose.get("Paths") or []
    if not isinstance(raw, list):
        raise ConfigError("Proxy.Expose.Paths", "must be a list")
    found: list[ExposePath] = []
    for i, item in enumerate(raw):
        where = f"Proxy.Expose.Paths[{i}]"
        p = fields.mapping(item, where)
        path = fields.text(p.get("Path"), f"{where}.Path")
        if not path.startswith("/"):
            raise ConfigError(f"{where}.Path", f"must start with '/', got {path!r}")
        protocol = fields.text(p.get("Protocol"), f"{where}.Protocol") or "http"
        if protocol not in PROTOCOLS:
            raise ConfigError(f"{where}.Protocol", f'must be "http" or "http2", got {protocol!r}')
        port = fields.port(p.get("ListenerPort"), f"{where}.ListenerPort")
        if any(e.listener_port == port for e in found):
            raise ConfigError(f"{where}.ListenerPort", f"{port} is used by another path")
        found.append(ExposePath(
            listener_port=port, path=path,
            local_port=fields.port(p.get("LocalPathPort"), f"{where}.LocalPathPort"),
            protocol=protocol, from_check=p.get("ParsedFromCheck") is True,
        ))  # fmt: skip
    return tuple(found)


def with_expose(config: ProxyConfig, paths: tuple[ExposePath, ...]) -> ProxyConfig:
    """`config` serving `paths`; ConfigError when one would listen where another of its
    listeners does (a port 0 is refused: the listener must be where the caller looks)."""
    others = [("the inbound listener", (config.bind_address, config.bind_port))]
    others += [(f"upstream {u.name!r}", u.listen) for u in config.upstreams]
    if config.metrics_addr:
        host, _, port = config.metrics_addr.rpartition(":")
        others.append(("the metrics listener", (host.strip("[]"), int(port))))
    for i, e in enumerate(paths):
        where = f"Proxy.Expose.Paths[{i}]"
        if not e.listener_port or not e.local_port:
            raise ConfigError(where, "ListenerPort and LocalPathPort are required")
        for name, at in others:
            if at[1] and share_port(at, (config.bind_address, e.listener_port)):
                said = f"{e.listener_port} clashes with {name} on {at[0]}:{at[1]}"
                raise ConfigError(f"{where}.ListenerPort", said)
    return replace(config, expose=paths)


def from_this_host(peer: str, local: str) -> bool:
    """May a connection from `peer` to `local` (IP addresses) use a check's exposed path?
    Consul lets loopback addresses and its agent's address in; the agent runs on this host,
    so its probe comes from loopback or from the very address it dials (`local`)."""
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback)
                or peer == local)  # fmt: skip
