"""Check kinds: which one a check body selects, and each kind's own fields. Pure.

The registration parser (registration_check.py) reads the fields every kind
shares into `CommonFields`, then takes the first entry of `KINDS` whose
`chosen` holds — Consul's dispatch order (agent.go addCheck): TTL, HTTP, TCP,
UDP, gRPC, Docker, OS service, script, H2PING, alias. That kind's parser
reads its own fields, appending every problem, and returns what it adds to
the `CheckDefinition`. gossamer runs http, tcp, grpc, ttl, script and alias;
the other kinds are chosen as Consul would and then refused, naming their
field. A probing kind (http, tcp, grpc, script) has a default timeout: 10s,
30s for scripts (Consul's agent/checks defaults).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gossamer.catalog.check_definition import GrpcTarget, HttpRequest
from gossamer.catalog.registration_fields import Fields, Problems, RegistrationError, item, shown
from gossamer.gossip.addresses import AddressError, split_host_port

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_SCRIPT_TIMEOUT_S = 30.0
_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@dataclass(frozen=True)
class CommonFields:
    """The fields every kind shares, type-checked (targets are "" when absent)."""

    check_id: str
    status: str
    args: tuple[str, ...]
    targets: dict[str, str]
    alias_node: str
    alias_service: str
    interval: float
    timeout: float
    ttl: float
    deregister: float  # raised to Consul's 1m minimum; 0 when unset
    counts: dict[str, int]  # FailuresBeforeWarning already defaulted
    output_max: int
    name: str
    notes: str


KindParser = Callable[[Fields, CommonFields, Problems], dict[str, Any]]


@dataclass(frozen=True)
class Kind:
    """One check kind: when the agent picks it, and the parser of its own fields.

    `default_timeout_s` > 0 marks a probing kind: its interval is raised to
    1s and its timeout defaults to this (Consul: 10s, 30s for scripts).
    """

    name: str
    chosen: Callable[[CommonFields], bool]
    parse: KindParser
    default_timeout_s: float = 0.0


def _unsupported(field: str, label: str) -> KindParser:
    def parse(f: Fields, c: CommonFields, p: Problems) -> dict[str, Any]:
        p.add(f.error(field, f"{label} checks are not supported by gossamer"))
        return {}

    return parse


def _http(f: Fields, c: CommonFields, p: Problems) -> dict[str, Any]:
    url = c.targets["HTTP"]
    try:
        parts = urlsplit(url)
        valid = url.isprintable() and parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        valid = False
    if not valid:
        p.add(f.error("HTTP", f"must be an http:// or https:// URL, got {shown(url)}"))
    method = p.read("", f.str_, "Method") or "GET"
    if not _METHOD.fullmatch(method):
        p.add(f.error("Method", f"not an HTTP method, got {shown(method)}"))
    request = HttpRequest(
        url=url,
        method=method,
        header=p.read({}, _header, f),
        body=p.read("", f.str_, "Body"),
        disable_redirects=p.read(False, f.bool_, "DisableRedirects"),
        tls_server_name=p.read("", f.str_, "TLSServerName"),
        tls_skip_verify=p.read(False, f.bool_, "TLSSkipVerify"),
    )
    return {"http": request}


def _header(f: Fields) -> dict[str, tuple[str, ...]]:
    raw = f.values.get("Header", {})
    if not isinstance(raw, dict):
        raise f.error("Header", f"must be an object of string lists, got {shown(raw)}")
    header: dict[str, tuple[str, ...]] = {}
    for key, values in raw.items():
        if not isinstance(key, str):
            raise RegistrationError(item(f.at("Header"), key), "header names must be strings")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise RegistrationError(
                item(f.at("Header"), key), f"must be a list of strings, got {shown(values)}"
            )
        header[key] = tuple(values)
    return header


def _need_port(f: Fields, p: Problems, key: str, address: str, form: str) -> None:
    """`address` must be host:port; else a problem at `key` saying it must be `form`."""
    try:
        host, port = split_host_port(address)
    except AddressError as err:
        p.add(f.error(key, f"must be {form}, {err}{_brackets_hint(address)}"))
    else:
        if port is None:
            p.add(f.error(key, f"must be {form}, got {shown(address)} (no port)"
                          f"{_brackets_hint(host)}"))  # fmt: skip


def _brackets_hint(address: str) -> str:
    """For an IPv6 address and port written without brackets (`fd00::2:80`, read as one address
    or as none): how to write them."""
    if address.startswith("[") or address.count(":") < 2:
        return ""
    host, _, port = address.rpartition(":")
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return ""
    return f"; an IPv6 address and a port are written [{host}]:{port}" if port.isdigit() else ""


def _tcp(f: Fields, c: CommonFields, p: Problems) -> dict[str, Any]:
    target = c.targets["TCP"]
    _need_port(f, p, "TCP", target, "host:port")
    return {"tcp": target}


def _grpc(f: Fields, c: CommonFields, p: Problems) -> dict[str, Any]:
    """`GRPC` is host:port, optionally followed by /service (Consul's form)."""
    address, _, service = c.targets["GRPC"].partition("/")
    _need_port(f, p, "GRPC", address, "host:port[/service]")
    target = GrpcTarget(
        address=address,
        service=service,
        use_tls=p.read(False, f.bool_, "GRPCUseTLS"),
        tls_server_name=p.read("", f.str_, "TLSServerName"),
        tls_skip_verify=p.read(False, f.bool_, "TLSSkipVerify"),
    )
    return {"grpc": target}


def _ttl(f: Fields, c: CommonFields, p: Problems) -> dict[str, Any]:
    return {}


def _script(f: Fields, c: CommonFields, p: Problems) -> dict[str, Any]:
    return {"args": c.args}


def _alias(f: Fields, c: CommonFields, p: Problems) -> dict[str, Any]:
    return {"alias_node": c.alias_node, "alias_service": c.alias_service}


# Consul's dispatch order (agent.go addCheck): the first kind chosen is the one that runs.
KINDS: tuple[Kind, ...] = (
    Kind("ttl", lambda c: bool(c.ttl), _ttl),
    Kind("http", lambda c: bool(c.targets["HTTP"]), _http, DEFAULT_TIMEOUT_S),
    Kind("tcp", lambda c: bool(c.targets["TCP"]), _tcp, DEFAULT_TIMEOUT_S),
    Kind("udp", lambda c: bool(c.targets["UDP"]), _unsupported("UDP", "UDP")),
    Kind("grpc", lambda c: bool(c.targets["GRPC"]), _grpc, DEFAULT_TIMEOUT_S),
    Kind(
        "docker",
        lambda c: bool(c.args and c.targets["DockerContainerID"]),
        _unsupported("DockerContainerID", "Docker"),
    ),
    Kind(
        "os_service",
        lambda c: bool(c.targets["OSService"]),
        _unsupported("OSService", "OS service"),
    ),
    Kind("script", lambda c: bool(c.args), _script, DEFAULT_SCRIPT_TIMEOUT_S),
    Kind("h2ping", lambda c: bool(c.targets["H2PING"]), _unsupported("H2PING", "H2PING")),
    Kind("alias", lambda c: True, _alias),  # round two made sure an alias is set by now
)
