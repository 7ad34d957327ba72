"""Which path a sidecar's inbound traffic takes: its protocol, and the HTTP limits. Pure.

Consul's spelling: `Proxy.Config.protocol` is `tcp` (the default), `http`,
`http2` or `grpc`. With `http` each HTTP/1.1 request is parsed (httptools),
decided with the intentions' L7 permissions and forwarded on its own
(http1.py). With `http2` and `grpc` an h2c connection goes through a gate
that reads only header blocks and decides each stream (h2_gate.py: a full
HTTP/2 codec in Python, `h2`, costs ~385 µs a request, more than the whole
L4 path); h2 inside the apps' own TLS is decided once per connection.

`request_headers_timeout_ms` (10000): how long a client may take to send a
request's line and headers (slowloris) before it gets `408` and is closed;
`max_request_header_bytes` (65536): a longer line plus headers gets `431`.

Timeouts of the HTTP path (milliseconds, `0` turns one off; http_deadlines.py
keeps them): a request to the local app may take `local_request_timeout_ms`
(15000, Envoy's route timeout, which Consul's key of that name overrides) and
stay silent both ways for `local_idle_timeout_ms` (300000, Envoy's stream idle
timeout); an HTTP upstream's `Config.request_timeout_ms` and
`Config.request_idle_timeout_ms` are the same for its requests (its
`idle_timeout_ms` is the pool's). `Proxy.Config.idle_timeout_ms` (3600000,
Envoy's connection idle timeout) closes a client connection with no request
in flight, on the inbound port and every HTTP upstream listener.

An HTTP upstream's retry budget (retry_budget.py) is Linkerd's, with its
defaults: `Config.retry_ratio` (0.2: retries may add a fifth of the last
10 s of requests) and `Config.retry_min_per_second` (10, so a quiet
upstream can still retry); `0` and `0` turn retries off.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from gossamer.catalog.config_entries import SERVICE_PROTOCOLS
from gossamer.proxy.config_error import ConfigError
from gossamer.proxy.config_fields import MAX_MS, shown, whole
from gossamer.proxy.retry_budget import MIN_PER_S, RATIO

# Annotated one by one: a tuple assignment's types are inferred late, and mypyc's build
# (which reaches this module through an import cycle) failed to type config.py's uses.
TCP: Final = "tcp"
HTTP: Final = "http"
HTTP2: Final = "http2"
GRPC: Final = "grpc"
PROTOCOLS = SERVICE_PROTOCOLS  # one list: service-defaults' Protocol takes the same
HEADERS_TIMEOUT_S = 10.0
MAX_HEADER_BYTES = 64 * 1024
POOL_IDLE = 256  # idle mTLS connections kept per instance (above the usual concurrency)
POOL_IDLE_TIMEOUT_S = 10.0  # an idle pooled connection is closed after this
REQUEST_TIMEOUT_S = 15.0  # Envoy's route timeout (what Consul's local_request_timeout_ms sets)
REQUEST_IDLE_S = 300.0  # Envoy's stream_idle_timeout (what local_idle_timeout_ms sets)
CLIENT_IDLE_S = 3600.0  # Envoy's HTTP connection idle_timeout
MAX_RETRY_RATIO = 100.0  # past this a ratio is a typo (a percentage written as a ratio)
MAX_RETRY_MIN = 100_000  # retries a second a quiet upstream may make, at most


def protocol_of(options: Mapping[str, Any], where: str = "Proxy.Config") -> str:
    """The service's protocol from `Proxy.Config` (`tcp` when unset); case as Consul ignores it."""
    value = options.get("protocol", TCP)
    if not isinstance(value, str) or value.lower() not in PROTOCOLS:
        raise ConfigError(f"{where}.protocol", f"must be one of {', '.join(PROTOCOLS)}, "
                            f"got {value!r}")  # fmt: skip
    return value.lower()


def l7_fields(options: Mapping[str, Any], where: str = "Proxy.Config") -> dict[str, Any]:
    """The `ProxyConfig` fields `Proxy.Config` gives for the HTTP path."""
    return {"protocol": protocol_of(options, where),
            "headers_timeout_s": headers_timeout_of(options, where),
            "max_header_bytes": max_header_bytes_of(options, where),
            "request_timeout_s": _millis(options, "local_request_timeout_ms", REQUEST_TIMEOUT_S,
                                         where),
            "request_idle_s": _millis(options, "local_idle_timeout_ms", REQUEST_IDLE_S, where),
            "client_idle_s": client_idle_of(options, where)}  # fmt: skip


def upstream_fields(options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The `Upstream` fields an upstream's `Config` gives: its protocol (`http`: requests
    go over pooled mTLS connections), `max_idle_connections`, `idle_timeout_ms`, the
    request timeouts and the retry budget."""
    return {"protocol": protocol_of(options, where),
            "request_timeout_s": _millis(options, "request_timeout_ms", REQUEST_TIMEOUT_S, where),
            "request_timeout_set": options.get("request_timeout_ms") is not None,
            "request_idle_s": _millis(options, "request_idle_timeout_ms", REQUEST_IDLE_S, where),
            "pool_idle": int(_positive(options, "max_idle_connections", where, 1) or POOL_IDLE),
            "pool_idle_s": _positive(options, "idle_timeout_ms", where, 1000)
            or POOL_IDLE_TIMEOUT_S,
            "retry_ratio": _number(options, "retry_ratio", RATIO, MAX_RETRY_RATIO, where),
            "retry_min_per_s": _number(options, "retry_min_per_second", MIN_PER_S,
                                       MAX_RETRY_MIN, where)}  # fmt: skip


def is_l7(protocol: str) -> bool:
    """Does this protocol get the HTTP/1 per-request inbound path?"""
    return protocol == HTTP


def is_h2(protocol: str) -> bool:
    """Does this protocol's inbound path go through the h2c gate (h2_gate.py)?"""
    return protocol in (HTTP2, GRPC)


def headers_timeout_of(options: Mapping[str, Any], where: str = "Proxy.Config") -> float:
    """`request_headers_timeout_ms` in seconds."""
    return _positive(options, "request_headers_timeout_ms", where, 1000) or HEADERS_TIMEOUT_S


def max_header_bytes_of(options: Mapping[str, Any], where: str = "Proxy.Config") -> int:
    """`max_request_header_bytes`."""
    return int(_positive(options, "max_request_header_bytes", where, 1) or MAX_HEADER_BYTES)


def _positive(options: Mapping[str, Any], key: str, where: str, scale: int) -> float:
    value = whole(options.get(key))  # ("5000" and 5000.0 as Consul takes them)
    if value is None:
        return 0.0
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_MS:
        raise ConfigError(f"{where}.{key}", f"must be a positive integer up to {MAX_MS}, "
                          f"got {shown(value)}")  # fmt: skip
    return value / scale


def _number(options: Mapping[str, Any], key: str, default: float, most: float,
            where: str) -> float:  # fmt: skip
    """A number from 0 to `most`, fractions allowed (`"0.2"` too, as Consul's decoder takes
    it); `default` when unset."""
    value = _as_number(options.get(key))
    if value is None:
        return default
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= most:
        raise ConfigError(f"{where}.{key}", f"must be a number from 0 to {most:g}, "
                          f"got {shown(value)}")  # fmt: skip
    return float(value)


def _as_number(value: object) -> object:
    """Digits in a string as the number they say; anything else as it came."""
    if isinstance(value, str) and value.isascii():
        try:
            return float(value.strip())
        except ValueError:
            return value
    return value


def client_idle_of(options: Mapping[str, Any], where: str = "Proxy.Config") -> float:
    """`idle_timeout_ms` of `Proxy.Config`: how long a client connection may wait between
    requests (on the inbound port and on every HTTP upstream listener)."""
    return _millis(options, "idle_timeout_ms", CLIENT_IDLE_S, where)


def _millis(options: Mapping[str, Any], key: str, default_s: float,
            where: str = "Proxy.Config") -> float:  # fmt: skip
    """A timeout in ms as seconds: the default when unset, 0.0 (off) for `0`."""
    value = whole(options.get(key))  # ("5000" and 5000.0 as Consul takes them)
    if value is None:
        return default_s
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_MS:
        raise ConfigError(f"{where}.{key}", f"must be milliseconds 0-{MAX_MS} (0: none), "
                          f"got {shown(value)}")  # fmt: skip
    return value / 1000
