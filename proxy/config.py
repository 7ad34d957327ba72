"""What a sidecar proxy serves, read from a sidecar registration or from flags. Pure.

Two sources, one value (`ProxyConfig`):
- a registration, as `GET /v1/agent/service/<id>-sidecar-proxy` shows it
  (the agent has expanded `Connect.SidecarService` already): `Kind` must be
  `connect-proxy`; the proxy's identity is `Proxy.DestinationServiceName`;
  its inbound port is `Port`, bound on `Proxy.Config.bind_address`, else `Address`, else
  0.0.0.0 (as Consul's built-in proxy); the app is `LocalServiceAddress:LocalServicePort`;
  each `Upstreams[i]` listens on `LocalBindAddress` (127.0.0.1) : `LocalBindPort`;
- flags for an ad-hoc proxy: `--service NAME`, `--upstream NAME:PORT` or
  `NAME:ADDR:PORT` (repeatable), no inbound listener unless a port is given.

Every problem is a `ConfigError` (config_error.py, raised by the checks of config_fields.py)
naming where it is (`--upstream 'db'`, `Proxy.Upstreams[1].LocalBindPort`), so the CLI can
exit 2 with it. Timeouts default to Consul's built-in proxy's (handshake 10 s, local connect
1 s, upstream connect 10 s).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final

from gossamer.proxy import config_fields as fields
from gossamer.proxy import protocol as proto
from gossamer.proxy.config_error import ConfigError as ConfigError

HANDSHAKE_TIMEOUT_S = 10.0  # Consul's handshake_timeout_ms default
LOCAL_CONNECT_TIMEOUT_S = 1.0  # Consul's local_connect_timeout_ms default
UPSTREAM_CONNECT_TIMEOUT_S = 10.0  # Consul's connect_timeout_ms default for upstreams
DRAIN_TIMEOUT_S = 15.0  # how long SIGTERM lets open connections finish
MAX_WORKERS = 64  # `--workers`: processes serving one proxy (workers.py)
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
    # Clients from other hosts, when bound to a network address (`Config.
    # gossamer_remote_clients`): each would speak as this proxy's service. Off: refused.
    remote_clients: bool = False

    @property
    def listen(self) -> tuple[str, int]:
        return (self.bind_address, self.bind_port)


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


def config_from_registration(body: Mapping[str, Any], proxy_id: str) -> ProxyConfig:
    """The config a sidecar registration describes; ConfigError naming the first problem."""
    if body.get("Kind") != "connect-proxy":
        raise ConfigError(proxy_id, f"is not a connect-proxy (Kind {body.get('Kind', '')!r})")
    proxy = fields.mapping(body.get("Proxy"), "Proxy")
    options = fields.mapping(proxy.get("Config", {}), "Proxy.Config")
    service = fields.service_name(
        proxy.get("DestinationServiceName"), "Proxy.DestinationServiceName"
    )
    local_port = fields.port(proxy.get("LocalServicePort"), "Proxy.LocalServicePort")
    raw_upstreams = proxy.get("Upstreams") or []
    if not isinstance(raw_upstreams, list):
        raise ConfigError("Proxy.Upstreams", "must be a list")
    client_idle = proto.client_idle_of(options)
    port_key = "Proxy.Config.bind_port" if "bind_port" in options else "Port"
    upstreams = tuple(_upstream(u, f"Proxy.Upstreams[{i}]", client_idle)
                      for i, u in enumerate(raw_upstreams))  # fmt: skip
    bind_address = (
        fields.text(options.get("bind_address"), "Proxy.Config.bind_address")
        or fields.text(body.get("Address"), "Address")
        or DEFAULT_INBOUND_BIND
    )
    bind_port = fields.port(options.get("bind_port", body.get("Port")), port_key)
    return ProxyConfig(
        service=service,
        proxy_id=proxy_id,
        bind_address=bind_address,
        bind_port=bind_port,
        local_address=fields.text(proxy.get("LocalServiceAddress"), "Proxy.LocalServiceAddress")
        or "127.0.0.1",
        local_port=local_port,
        upstreams=_distinct(upstreams, (bind_address, bind_port)),
        timeouts=_timeouts(options),
        **proto.l7_fields(options),
        metrics_addr=metrics_addr_of(options),
        metrics=fields.flag(options, "gossamer_metrics", "Proxy.Config"),
    )


def check_http_keys(proxy: Mapping[str, Any], where: str) -> None:
    """Check the HTTP keys a registration's `Proxy` (at `where`) gives the built-in proxy, so a
    bad one is refused at registration (ConfigError naming it) instead of by the proxy later.
    Only these keys: the rest of `Config` stays free-form, as in Consul."""
    options = proxy.get("Config") or {}
    if isinstance(options, Mapping):
        proto.l7_fields(options, f"{where}.Config")
    for i, u in enumerate(proxy.get("Upstreams") or []):
        options = u.get("Config") if isinstance(u, Mapping) else None
        if isinstance(options, Mapping):
            proto.upstream_fields(options, f"{where}.Upstreams[{i}].Config")


METRICS_KEYS = ("gossamer_metrics_bind_addr", "envoy_prometheus_bind_addr")  # ours wins


def metrics_addr_of(options: Mapping[str, Any]) -> str:
    """The metrics listener a registration's `Proxy.Config` names, as ADDR:PORT, or ""."""
    for key in METRICS_KEYS:
        if text := fields.text(options.get(key), f"Proxy.Config.{key}"):
            return metrics_addr(text, f"Proxy.Config.{key}")
    return ""


def metrics_addr(text: str, where: str) -> str:
    """`ADDR:PORT` checked (a bare `:PORT` listens on 127.0.0.1), ConfigError naming `where`."""
    host, port = fields.host_port("127.0.0.1" + text if text.startswith(":") else text, where)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def with_metrics(config: ProxyConfig, addr: str | None, enabled: bool = True) -> ProxyConfig:
    """`config` with `--metrics-addr` (wins over the registration's key) and `--no-metrics`."""
    if not addr and enabled:
        return config
    where = metrics_addr(addr, "--metrics-addr") if addr else config.metrics_addr
    return replace(config, metrics_addr=where, metrics=config.metrics and enabled,
                   metrics_pinned=True)  # fmt: skip


def keep_pinned(new: ProxyConfig, old: ProxyConfig) -> ProxyConfig:
    """A changed registration's config, with what the flags pinned on `old` kept."""
    if old.metrics_pinned:
        new = replace(new, metrics_addr=old.metrics_addr, metrics=old.metrics, metrics_pinned=True)
    if old.drain_pinned:
        timeouts = replace(new.timeouts, drain_s=old.timeouts.drain_s)
        new = replace(new, timeouts=timeouts, drain_pinned=True)
    return new


def adhoc_config(
    service: str,
    upstreams: Sequence[str],
    *,
    listen: str | None = None,
    local: str | None = None,
    drain_s: float = DRAIN_TIMEOUT_S,
) -> ProxyConfig:
    """An ad-hoc proxy from flags (`--service`, `--upstream`, `--listen`, `--local`)."""
    name = fields.service_name(service, "--service")
    parsed = tuple(parse_upstream_flag(text) for text in upstreams)
    bind_address, bind_port = fields.host_port(listen, "--listen") if listen else ("", 0)
    local_address, local_port = fields.host_port(local, "--local") if local else ("127.0.0.1", 0)
    if bind_port and not local_port:
        raise ConfigError("--listen", "an inbound listener needs --local ADDR:PORT of the app")
    return ProxyConfig(
        service=name,
        bind_address=bind_address or DEFAULT_INBOUND_BIND,
        bind_port=bind_port,
        local_address=local_address,
        local_port=local_port,
        upstreams=_distinct(parsed, (bind_address or DEFAULT_INBOUND_BIND, bind_port)),
        timeouts=Timeouts(drain_s=drain_s),
    )


def parse_upstream_flag(text: str) -> Upstream:
    """`NAME:PORT` or `NAME:ADDR:PORT` (Consul's `-upstream`); ConfigError naming the flag."""
    where = f"--upstream {text!r}"
    name, sep, rest = text.partition(":")
    if not sep:
        raise ConfigError(where, "expected NAME:PORT or NAME:ADDR:PORT")
    fields.service_name(name, where)
    address, port = fields.host_port(rest, where) if ":" in rest else (DEFAULT_BIND, rest)
    return Upstream(name=name, bind_address=address, bind_port=fields.port(port, where))


def workers_text(text: str, where: str) -> str:
    """A `--workers` value checked: "1" to MAX_WORKERS, or "auto"; ConfigError naming `where`
    (the flag, or the Kubernetes annotation that sets it)."""
    if text != "auto" and not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_WORKERS):
        raise ConfigError(where, f'must be 1 to {MAX_WORKERS} or "auto", got {text!r}')
    return text


def with_drain(config: ProxyConfig, drain_s: float | None) -> ProxyConfig:
    """`config` with the drain timeout a flag gives (the flag wins over the config key)."""
    if drain_s is None:
        return config
    if not 0 <= drain_s <= fields.MAX_MS // 1000:  # (NaN fails it too)
        raise ConfigError("--drain-timeout", f"must be 0-{fields.MAX_MS // 1000} seconds, "
                          f"got {drain_s}")  # fmt: skip
    timeouts = replace(config.timeouts, drain_s=drain_s)
    return replace(config, timeouts=timeouts, drain_pinned=True)


def config_to_json(config: ProxyConfig) -> str:
    """`config` as JSON, for handing a checked config to the lean proxy process."""
    return json.dumps(asdict(config), sort_keys=True)


def config_from_json(text: str) -> ProxyConfig:
    """The inverse of `config_to_json`; ConfigError when `text` is not one of its outputs."""
    try:
        raw = json.loads(text)
        upstreams = tuple(Upstream(**u) for u in raw.pop("upstreams"))
        timeouts = Timeouts(**raw.pop("timeouts"))
        return ProxyConfig(**raw, upstreams=upstreams, timeouts=timeouts)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ConfigError("config", f"not a proxy config: {exc}") from None


def _upstream(raw: object, where: str, client_idle_s: float) -> Upstream:
    u = fields.mapping(raw, where)
    kind = u.get("DestinationType", "service") or "service"
    if kind != "service":
        raise ConfigError(f"{where}.DestinationType", f"{kind!r} is not supported by the proxy")
    options, at = fields.mapping(u.get("Config", {}), f"{where}.Config"), f"{where}.Config"
    return Upstream(
        name=fields.service_name(u.get("DestinationName"), f"{where}.DestinationName"),
        bind_port=fields.port(u.get("LocalBindPort"), f"{where}.LocalBindPort"),
        bind_address=fields.text(u.get("LocalBindAddress"), f"{where}.LocalBindAddress")
        or DEFAULT_BIND,
        connect_timeout_s=fields.positive_millis(
            options, "connect_timeout_ms", UPSTREAM_CONNECT_TIMEOUT_S, at
        ),
        **proto.upstream_fields(options, at),
        client_idle_s=client_idle_s,
        remote_clients=fields.flag(options, "gossamer_remote_clients", at, default=False),
    )


def _distinct(upstreams: tuple[Upstream, ...], inbound: tuple[str, int]
              ) -> tuple[Upstream, ...]:  # fmt: skip
    """`upstreams`, each listening where no other listener of the proxy does (the inbound one
    at `inbound`, port 0: none). Two listeners on one port clash when their addresses are the
    same or either is a wildcard: with --workers (SO_REUSEPORT) both would bind, and the
    kernel would spread one's connections over the other."""
    seen: list[tuple[tuple[str, int], str]] = (
        [(inbound, "the inbound listener")] if inbound[1] else []
    )
    for u in upstreams:
        for (address, port), name in seen:
            if port == u.bind_port and (address == u.bind_address
                                        or {address, u.bind_address} & _ANY_ADDRESS):  # fmt: skip
                raise ConfigError(f"upstream {u.name!r}", f"{u.bind_address}:{u.bind_port} "
                                  f"clashes with {name} on {address}:{port}")  # fmt: skip
        seen.append((u.listen, repr(u.name)))
    return upstreams


_ANY_ADDRESS: Final = frozenset({"0.0.0.0", "::", ""})


def _timeouts(options: Mapping[str, Any]) -> Timeouts:
    where = "Proxy.Config"
    drain = options.get("drain_timeout_s", DRAIN_TIMEOUT_S)
    most = fields.MAX_MS // 1000
    number = isinstance(drain, int | float) and not isinstance(drain, bool)
    if not (number and 0 <= drain <= most):  # (NaN fails it too: no comparison holds)
        raise ConfigError(f"{where}.drain_timeout_s",
                          f"must be seconds 0-{most}, got {fields.shown(drain)}")  # fmt: skip
    return Timeouts(
        handshake_s=fields.positive_millis(
            options, "handshake_timeout_ms", HANDSHAKE_TIMEOUT_S, where
        ),
        local_connect_s=fields.positive_millis(
            options, "local_connect_timeout_ms", LOCAL_CONNECT_TIMEOUT_S, where
        ),
        drain_s=float(drain),
    )
