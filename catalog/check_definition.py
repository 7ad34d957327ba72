"""A validated health check: the one definition the parser fills and the prober reads. Pure.

The registration parser (registration_check.py) produces a `CheckDefinition`;
the agent's runner (agent/checks/) runs it, and the HTTP probe takes the
definition's `HttpRequest` whole. Rules this module keeps:
- Each kind's settings live in one place: an HTTP check's request is one
  `HttpRequest` value, so a field added to it (as `disable_redirects` once
  was not) reaches the probe without a hand-copied list in between.
- Durations are seconds, already effective (interval raised to 1s, timeout
  defaulted, deregister-after raised to 1m); 0 means unset.
- `definition()` is the HealthCheck `Definition` a Consul agent shows, and
  `to_check()` the catalog `Check` a check starts as; durations in both are
  Go's `Duration.String()` ("10s", "1m0s"), as Consul's API writes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gossamer.catalog.durations import format_seconds
from gossamer.catalog.model import Check, Service

DEFAULT_OUTPUT_MAX_SIZE = 4096  # Consul's DefaultBufSize


@dataclass(frozen=True)
class HttpRequest:
    """What an HTTP check sends, and how (Consul's field in brackets).

    url [HTTP]; method [Method]; header [Header] maps a name to its values;
    body [Body]; disable_redirects [DisableRedirects]: judge a 3xx answer
    itself instead of following it; tls_server_name [TLSServerName] and
    tls_skip_verify [TLSSkipVerify] for https.
    """

    url: str
    method: str = "GET"
    header: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    body: str = ""
    disable_redirects: bool = False
    tls_server_name: str = ""
    tls_skip_verify: bool = False

    def definition(self) -> dict[str, Any]:
        """The request's part of a HealthCheck `Definition` (empty fields left out)."""
        d: dict[str, Any] = {"HTTP": self.url, "Method": self.method}
        if self.header:
            d["Header"] = {k: list(v) for k, v in self.header.items()}
        if self.body:
            d["Body"] = self.body
        if self.tls_server_name:
            d["TLSServerName"] = self.tls_server_name
        if self.tls_skip_verify:
            d["TLSSkipVerify"] = True
        if self.disable_redirects:
            d["DisableRedirects"] = True
        return d


@dataclass(frozen=True)
class GrpcTarget:
    """What a gRPC check asks (Consul's field in brackets).

    address is host:port and service the name after the first "/" [GRPC]
    ("" asks for the server as a whole); use_tls [GRPCUseTLS];
    tls_server_name [TLSServerName] and tls_skip_verify [TLSSkipVerify].
    """

    address: str
    service: str = ""
    use_tls: bool = False
    tls_server_name: str = ""
    tls_skip_verify: bool = False

    @property
    def target(self) -> str:
        return f"{self.address}/{self.service}" if self.service else self.address

    def definition(self) -> dict[str, Any]:
        d: dict[str, Any] = {"GRPC": self.target}
        if self.use_tls:
            d["GRPCUseTLS"] = True
        if self.tls_server_name:
            d["TLSServerName"] = self.tls_server_name
        if self.tls_skip_verify:
            d["TLSSkipVerify"] = True
        return d


@dataclass(frozen=True)
class CheckDefinition:
    """A validated check: what the agent runs and the state it starts in.

    `kind` is "http" (with `http` set), "tcp" (`tcp` is host:port), "grpc"
    (`grpc` set), "ttl" (`ttl_s`), "script" (`args`) or "alias" (`alias_node`,
    `alias_service`).
    `output_max_size` is the check's own cap (the agent may lower it further).
    """

    check_id: str
    name: str
    kind: str  # "http" | "tcp" | "grpc" | "ttl" | "script" | "alias"
    service_id: str = ""
    status: str = "critical"
    notes: str = ""
    http: HttpRequest | None = None
    tcp: str = ""
    grpc: GrpcTarget | None = None
    args: tuple[str, ...] = ()
    alias_node: str = ""
    alias_service: str = ""
    interval_s: float = 0.0
    timeout_s: float = 0.0
    ttl_s: float = 0.0
    deregister_critical_service_after_s: float = 0.0
    success_before_passing: int = 0
    failures_before_warning: int = 0
    failures_before_critical: int = 0
    output_max_size: int = DEFAULT_OUTPUT_MAX_SIZE
    # `Expose.Checks`: the sidecar's listener the probe goes through (catalog/expose_checks.py)
    exposed_host: str = ""
    exposed_port: int = 0

    def definition(self) -> dict[str, Any]:
        """The HealthCheck `Definition` as a Consul agent sends it (empty fields left out)."""
        d: dict[str, Any] = self.http.definition() if self.http is not None else {}
        if self.grpc is not None:
            d.update(self.grpc.definition())
        if self.kind == "tcp":
            d["TCP"] = self.tcp
        elif self.kind == "script":
            d["ScriptArgs"] = list(self.args)
        elif self.kind == "alias":
            if self.alias_node:
                d["AliasNode"] = self.alias_node
            if self.alias_service:
                d["AliasService"] = self.alias_service
        elif self.kind == "ttl":
            d["TTL"] = format_seconds(self.ttl_s)
        for key, seconds in (
            ("Interval", self.interval_s),
            ("Timeout", self.timeout_s),
            ("DeregisterCriticalServiceAfter", self.deregister_critical_service_after_s),
        ):
            if seconds:
                d[key] = format_seconds(seconds)
        return d

    def to_check(self, service: Service | None = None) -> Check:
        """The check's initial state; pass the service it belongs to, if any."""
        if (service.id if service else "") != self.service_id:
            raise ValueError(f"check {self.check_id!r} belongs to service {self.service_id!r}")
        return Check(
            check_id=self.check_id,
            name=self.name,
            status=self.status,
            notes=self.notes,
            service_id=self.service_id,
            service_name=service.name if service else "",
            service_tags=service.tags if service else (),
            type=self.kind,
            definition=self.definition(),
            interval=format_seconds(self.interval_s) if self.interval_s else "",
            timeout=format_seconds(self.timeout_s) if self.timeout_s else "",
            exposed_port=self.exposed_port,
        )
