"""A sidecar proxy's config read from its registration; the check of its keys at registration. Pure.

The registration is what `GET /v1/agent/service/<id>-sidecar-proxy` shows
(the agent has expanded `Connect.SidecarService` already): `Kind` must be
`connect-proxy`; the proxy's identity is `Proxy.DestinationServiceName`;
its inbound port is `Port`, bound on `Proxy.Config.bind_address`, else `Address`, else
0.0.0.0 (as Consul's built-in proxy); the app is `LocalServiceAddress:LocalServicePort`;
each `Upstreams[i]` listens on `LocalBindAddress` (127.0.0.1) : `LocalBindPort`.
Consul's JSON shapes are this module's alone: config.py holds the value the
data path reads, config_flags.py the other source. The agent checks a
registration's keys with it (`check_keys`) so that a bad one is
refused when registered. Every problem is a `ConfigError` naming the key
(`Proxy.Upstreams[1].LocalBindPort`), raised by the checks of config_fields.py;
an address the proxy binds or dials must be an IP literal or a host name, so
`"bind_address": "not an address"` exits 2 at start (and a change to it is
logged and skipped) rather than failing in the resolver.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gossamer.proxy import config_fields as fields
from gossamer.proxy import protocol as proto
from gossamer.proxy.config import (
    DEFAULT_BIND,
    DEFAULT_INBOUND_BIND,
    DRAIN_TIMEOUT_S,
    HANDSHAKE_TIMEOUT_S,
    LOCAL_CONNECT_TIMEOUT_S,
    UPSTREAM_CONNECT_TIMEOUT_S,
    ProxyConfig,
    Timeouts,
    Upstream,
    distinct,
)
from gossamer.proxy.config_error import ConfigError
from gossamer.proxy.config_metrics import metrics_addr_of, metrics_apart, metrics_key


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
    datacenter = body.get("Datacenter") or ""
    upstreams = tuple(_upstream(u, f"Proxy.Upstreams[{i}]", client_idle, datacenter)
                      for i, u in enumerate(raw_upstreams))  # fmt: skip
    bind_address = (
        fields.address(options.get("bind_address"), "Proxy.Config.bind_address")
        or fields.address(body.get("Address"), "Address")  # (only when it is bound)
        or DEFAULT_INBOUND_BIND
    )
    bind_port = fields.port(options.get("bind_port", body.get("Port")), port_key)
    config = ProxyConfig(
        service=service,
        proxy_id=proxy_id,
        bind_address=bind_address,
        bind_port=bind_port,
        local_address=fields.address(proxy.get("LocalServiceAddress"), "Proxy.LocalServiceAddress")
        or "127.0.0.1",
        local_port=local_port,
        upstreams=distinct(upstreams, (bind_address, bind_port)),
        timeouts=_timeouts(options),
        **proto.l7_fields(options),
        metrics_addr=metrics_addr_of(options),
        metrics=fields.flag(options, "gossamer_metrics", "Proxy.Config"),
    )
    config = metrics_apart(config, metrics_key(options))
    if (proxy.get("Expose") or {}).get("Paths"):  # (else expose*.py is never imported)
        from gossamer.proxy.expose_config import expose_paths, with_expose

        config = with_expose(config, expose_paths(proxy))
    return config


def check_keys(proxy: Mapping[str, Any], where: str) -> None:
    """Check the `Config` keys a registration's `Proxy` (at `where`) gives the built-in proxy, so
    a bad one is refused at registration (ConfigError naming it) instead of by the proxy later:
    the same checks the proxy makes, so the two never disagree. Only these keys: the rest of
    `Config` stays free-form, as in Consul."""
    at = f"{where}.Config"
    options = fields.mapping(proxy.get("Config") or {}, at)  # (a string: refused as Consul does)
    proto.l7_fields(options, at)
    _timeouts(options, at)
    fields.address(options.get("bind_address"), f"{at}.bind_address")
    if "bind_port" in options:
        fields.port(options["bind_port"], f"{at}.bind_port")
    metrics_addr_of(options, at)
    fields.flag(options, "gossamer_metrics", at)
    for i, u in enumerate(proxy.get("Upstreams") or []):
        if isinstance(u, Mapping) and (raw := u.get("Config")):
            at = f"{where}.Upstreams[{i}].Config"
            _upstream_options(fields.mapping(raw, at), at)


def _upstream(raw: object, where: str, client_idle_s: float, datacenter: str) -> Upstream:
    u = fields.mapping(raw, where)
    kind = u.get("DestinationType", "service") or "service"
    if kind != "service":
        raise ConfigError(f"{where}.DestinationType", f"{kind!r} is not supported by the proxy")
    _here(u, where, datacenter)
    options, at = fields.mapping(u.get("Config", {}), f"{where}.Config"), f"{where}.Config"
    return Upstream(
        name=fields.service_name(u.get("DestinationName"), f"{where}.DestinationName"),
        bind_port=fields.port(u.get("LocalBindPort"), f"{where}.LocalBindPort"),
        bind_address=fields.address(u.get("LocalBindAddress"), f"{where}.LocalBindAddress")
        or DEFAULT_BIND,
        **_upstream_options(options, at),
        client_idle_s=client_idle_s,
    )


# Where else Consul may send an upstream, and what names here: the proxy reaches its own
# agent's datacenter, with no peers, namespaces or partitions. An upstream naming another
# place was served by the local service of that name (traffic meant for dc2's `db` went to
# this datacenter's): refused instead, as an unsupported DestinationType is.
_ELSEWHERE = (("DestinationPeer", ""), ("DestinationNamespace", "default"),
              ("DestinationPartition", "default"))  # fmt: skip


def _here(u: Mapping[str, Any], where: str, datacenter: str) -> None:
    """ConfigError unless upstream `u` is in this agent's `datacenter`, with no peer, in the
    default namespace and partition (Consul's registrations may name the defaults)."""
    dc = fields.text(u.get("Datacenter"), f"{where}.Datacenter")
    if dc and dc != datacenter:
        raise ConfigError(f"{where}.Datacenter", f"{dc!r}: the proxy reaches only its agent's "
                          f"datacenter {datacenter!r}")  # fmt: skip
    for key, default in _ELSEWHERE:
        value = fields.text(u.get(key), f"{where}.{key}")
        if value not in ("", default):
            raise ConfigError(f"{where}.{key}", f"{value!r} is not supported by the proxy")


def _upstream_options(options: Mapping[str, Any], at: str) -> dict[str, Any]:
    """The `Upstream` fields an upstream's `Config` (at `at`) gives."""
    return {
        "connect_timeout_s": fields.positive_millis(
            options, "connect_timeout_ms", UPSTREAM_CONNECT_TIMEOUT_S, at
        ),
        "connect_timeout_set": options.get("connect_timeout_ms") is not None,
        **proto.upstream_fields(options, at),
        "remote_clients": fields.flag(options, "gossamer_remote_clients", at, default=False),
        "balance_calls": fields.flag(options, "gossamer_balance_calls", at, default=True),
    }


def _timeouts(options: Mapping[str, Any], where: str = "Proxy.Config") -> Timeouts:
    drain: Any = fields.whole(options.get("drain_timeout_s", DRAIN_TIMEOUT_S))  # ("30", Consul)
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
