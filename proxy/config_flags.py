"""A sidecar proxy's config from flags: an ad-hoc one, and what flags pin over a registration. Pure.

An ad-hoc proxy is `--service NAME`, `--upstream NAME:PORT` or
`NAME:ADDR:PORT` (repeatable, as Consul's `-upstream`), with no inbound
listener unless `--listen` gives one. `--drain-timeout` and the metrics
flags (config_metrics.py) pin what they set, so a changed registration
keeps it (`keep_pinned`). `--workers` is checked here too, for the CLI and
the Kubernetes annotation that sets it. Every problem is a `ConfigError`
naming the flag, so the CLI can exit 2 with it. Apart from
config_registration.py: flags are text the CLI checks once, before the
proxy starts; a registration is JSON the proxy reads again on each change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from gossamer.proxy import config_fields as fields
from gossamer.proxy.config import (
    DEFAULT_BIND,
    DEFAULT_INBOUND_BIND,
    DRAIN_TIMEOUT_S,
    ProxyConfig,
    Timeouts,
    Upstream,
    distinct,
)
from gossamer.proxy.config_error import ConfigError
from gossamer.proxy.config_metrics import metrics_apart

MAX_WORKERS = 64  # `--workers`: processes serving one proxy (workers.py)


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
        upstreams=distinct(parsed, (bind_address or DEFAULT_INBOUND_BIND, bind_port)),
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


def keep_pinned(new: ProxyConfig, old: ProxyConfig) -> ProxyConfig:
    """A changed registration's config, with what the flags pinned on `old` kept."""
    if old.metrics_pinned:  # (the changed listeners checked against it: ConfigError)
        new = replace(new, metrics_addr=old.metrics_addr, metrics=old.metrics, metrics_pinned=True)
        new = metrics_apart(new, "--metrics-addr")
    if old.drain_pinned:
        timeouts = replace(new.timeouts, drain_s=old.timeouts.drain_s)
        new = replace(new, timeouts=timeouts, drain_pinned=True)
    return new
