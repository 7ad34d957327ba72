"""What a sidecar proxy serves (`ProxyConfig`), its defaults and its JSON form. Pure.

The value every part of the proxy reads, so it lives apart from the two
sources that make one: a sidecar registration (config_registration.py) and
the flags of an ad-hoc proxy (config_flags.py); the metrics listener either
names is read by config_metrics.py. The data path imports only this module.
Every problem is a `ConfigError` (config_error.py, re-exported here as the
one error callers catch) naming where it is, so the CLI can exit 2 with it.
Timeouts default to Consul's built-in proxy's (handshake 10 s, local connect
1 s, upstream connect 10 s).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Final

from gossamer.gossip.host_port import host_port
from gossamer.proxy import protocol as proto
from gossamer.proxy import retry_budget as budget
from gossamer.proxy.config_error import ConfigError as ConfigError

HANDSHAKE_TIMEOUT_S = 10.0  # Consul's handshake_timeout_ms default
LOCAL_CONNECT_TIMEOUT_S = 1.0  # Consul's local_connect_timeout_ms default
UPSTREAM_CONNECT_TIMEOUT_S = 10.0  # Consul's connect_timeout_ms default for upstreams
DRAIN_TIMEOUT_S = 15.0  # how long SIGTERM lets open connections finish
DEFAULT_BIND, DEFAULT_INBOUND_BIND = "127.0.0.1", "0.0.0.0"  # upstreams: local unless asked


@dataclass(frozen=True)
class Upstream:
    """One local listener that leads to healthy instances of `name`."""

    name: str
    bind_port: int
    bind_address: str = DEFAULT_BIND
    connect_timeout_s: float = UPSTREAM_CONNECT_TIMEOUT_S
    protocol: str = proto.TCP  # `http`: requests over pooled mTLS connections (http_upstream.py)
    pool_idle: int = proto.POOL_IDLE
    pool_idle_s: float = proto.POOL_IDLE_TIMEOUT_S
    request_timeout_s: float = proto.REQUEST_TIMEOUT_S  # 0.0: none (each one, protocol.py)
    request_idle_s: float = proto.REQUEST_IDLE_S
    client_idle_s: float = proto.CLIENT_IDLE_S  # the proxy's `idle_timeout_ms`
    retry_ratio: float = budget.RATIO  # the retry budget (retry_budget.py): Linkerd's defaults
    retry_min_per_s: float = budget.MIN_PER_S
    # Clients from other hosts, when bound to a network address (`Config.
    # gossamer_remote_clients`): each would speak as this proxy's service. Off: refused.
    remote_clients: bool = False
    # `http2`/`grpc`: each call of a client connection to an instance of its own
    # (h2_balanced.py), as Linkerd does; `Config.gossamer_balance_calls: false`: the
    # connection to one instance, followed (h2_followed.py)
    balance_calls: bool = True
    # The registration gave `connect_timeout_ms` / `request_timeout_ms`: they win over a
    # service-resolver's ConnectTimeout / RequestTimeout (resolver_routes.py), as in Consul
    connect_timeout_set: bool = False
    request_timeout_set: bool = False

    @property
    def listen(self) -> tuple[str, int]:
        return (self.bind_address, self.bind_port)


@dataclass(frozen=True)
class ExposePath:
    """`Proxy.Expose.Paths[i]`: a plain listener on `listener_port` (the inbound listener's
    address) passing requests for exactly `path` to 127.0.0.1:`local_port` (expose.py)."""

    listener_port: int
    path: str
    local_port: int
    protocol: str = "http"  # or "http2": h2c both ways
    from_check: bool = False  # made by the agent for a check (`Expose.Checks`)


@dataclass(frozen=True)
class Timeouts:
    handshake_s: float = HANDSHAKE_TIMEOUT_S
    local_connect_s: float = LOCAL_CONNECT_TIMEOUT_S
    drain_s: float = DRAIN_TIMEOUT_S


@dataclass(frozen=True)
class ProxyConfig:
    """Everything one sidecar serves; `proxy_id` is "" for an ad-hoc proxy."""

    service: str
    proxy_id: str = ""
    bind_address: str = DEFAULT_INBOUND_BIND
    bind_port: int = 0  # 0: no inbound listener
    local_address: str = "127.0.0.1"
    local_port: int = 0
    upstreams: tuple[Upstream, ...] = ()
    expose: tuple[ExposePath, ...] = ()  # none: nothing of expose*.py is imported
    timeouts: Timeouts = field(default_factory=Timeouts)
    protocol: str = proto.TCP  # protocol.py: `http` parses each request inbound
    headers_timeout_s: float = proto.HEADERS_TIMEOUT_S
    max_header_bytes: int = proto.MAX_HEADER_BYTES
    request_timeout_s: float = proto.REQUEST_TIMEOUT_S  # to the local app; 0.0: none
    request_idle_s: float = proto.REQUEST_IDLE_S
    client_idle_s: float = proto.CLIENT_IDLE_S
    metrics_addr: str = ""  # "ADDR:PORT" of the Prometheus listener; "" none
    metrics: bool = True  # count golden metrics on the data path (off only to measure their cost)
    metrics_pinned: bool = False  # set by flags: a registration change keeps the two above
    drain_pinned: bool = False  # --drain-timeout: a registration change keeps timeouts.drain_s


def distinct(upstreams: tuple[Upstream, ...], inbound: tuple[str, int]
             ) -> tuple[Upstream, ...]:  # fmt: skip
    """`upstreams`, each listening where no other listener of the proxy does (the inbound one
    at `inbound`, port 0: none). Two listeners on one port clash when their addresses are the
    same or either is a wildcard: with --workers (SO_REUSEPORT) both would bind, and the
    kernel would spread one's connections over the other. Both sources check with it."""
    seen: list[tuple[tuple[str, int], str]] = (
        [(inbound, "the inbound listener")] if inbound[1] else []
    )
    for u in upstreams:
        for (address, port), name in seen:
            if share_port((address, port), u.listen):
                raise ConfigError(f"upstream {u.name!r}", f"{host_port(*u.listen)} clashes "
                                  f"with {name} on {host_port(address, port)}")  # fmt: skip
        seen.append((u.listen, repr(u.name)))
    return upstreams


def share_port(one: tuple[str, int], other: tuple[str, int]) -> bool:
    """Do listeners at these (address, port) clash: one port, and one address or a wildcard?"""
    return one[1] == other[1] and (one[0] == other[0] or bool({one[0], other[0]} & _ANY_ADDRESS))


_ANY_ADDRESS: Final = frozenset({"0.0.0.0", "::", ""})


def config_to_json(config: ProxyConfig) -> str:
    """`config` as JSON, for handing a checked config to the lean proxy process."""
    return json.dumps(asdict(config), sort_keys=True)


def config_from_json(text: str) -> ProxyConfig:
    """The inverse of `config_to_json`; ConfigError when `text` is not one of its outputs."""
    try:
        raw = json.loads(text)
        upstreams = tuple(Upstream(**u) for u in raw.pop("upstreams"))
        timeouts = Timeouts(**raw.pop("timeouts"))
        expose = tuple(ExposePath(**e) for e in raw.pop("expose", ()))
        return ProxyConfig(**raw, upstreams=upstreams, expose=expose, timeouts=timeouts)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ConfigError("config", f"not a proxy config: {exc}") from None
