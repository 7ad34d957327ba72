"""Health-check definitions: Consul's check bodies parsed and validated, no I/O.

One parser serves `PUT /v1/agent/check/register`, the `Check`/`Checks` of a
service registration and config files. It also holds the key-matching reader
the service parser shares (`Fields`) and the error every parser raises.

Consul's decoding rules, as followed here (agent/structs check_definition.go,
check_type.go, lib/json.go; agent/agent.go addCheck):
- Keys: Go's encoding/json matches a key to a field ignoring case, and the
  structs declare snake_case aliases (`tls_skip_verify`, `script_args`,
  `deregister_critical_service_after`, ...). Consul does *not* strip
  underscores in general, so `Tls_SkipVerify` is unknown to it. Accepted
  here: the CamelCase name or its snake_case form, in any case.
- Unknown keys are refused (Consul decodes with DisallowUnknownFields and
  answers 400 "Request decode failed"). `null` counts as absent, as in Go.
- Durations are Go duration strings or numbers of nanoseconds.
- Several check kinds in one body are allowed; the agent runs the first of
  TTL, HTTP, TCP, UDP, GRPC, Docker, OSService, script, H2PING, alias.
  gossamer runs http, tcp, ttl, script and alias; choosing another kind is
  refused, naming the field.
- `Args` anywhere is refused unless script checks are enabled, even when
  another kind wins (Consul checks this before running anything).
- Intervals below 1s are raised to 1s and DeregisterCriticalServiceAfter
  below 1m to 1m (Consul logs a warning and does the same).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from gossamer.catalog.blocking import parse_duration
from gossamer.catalog.model import Check, Service
from gossamer.gossip.addresses import AddressError, split_host_port

MIN_INTERVAL_S = 1.0
MIN_DEREGISTER_AFTER_S = 60.0
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_SCRIPT_TIMEOUT_S = 30.0
DEFAULT_OUTPUT_MAX_SIZE = 4096
MAX_DURATION_S = (2**63 - 1) / 1e9  # Go's time.Duration is int64 nanoseconds
MAX_COUNT = 2**31 - 1
CHECK_STATUSES = ("passing", "warning", "critical")
SCRIPT_DISABLED = (
    "script checks are disabled on this agent; enable them with enable_script_checks "
    "(API and config files) or enable_local_script_checks (config files only)"
)


class RegistrationError(ValueError):
    """A registration body is invalid; `field` is the path of the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class ServiceNotRegistered(RegistrationError):
    """A check's `ServiceID` names no service registered on this agent (an unknown id)."""


class RegistrationConflict(RegistrationError):
    """The body is valid but collides with what is held: a name another agent owns, an ID in use."""


# --- reading bodies ---------------------------------------------------------------------


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def shown(value: object, limit: int = 60) -> str:
    """A value as it appeared in the JSON body, cut short."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def item(path: str, key: object) -> str:
    """The path of a map entry: `Meta["some key"]` (keys quoted whole unless huge)."""
    return f"{path}[{shown(key, 200)}]"


def snake(name: str) -> str:
    """`EnableTagOverride` -> `enable_tag_override`, `TLSSkipVerify` -> `tls_skip_verify`."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


class Fields:
    """One JSON object of a body with its keys resolved to canonical names.

    `names` are the canonical (CamelCase) field names; `aliases` adds extra
    spellings. A key matches its name or the name's snake_case, in any case.
    Two keys for one field, or a key that matches nothing, are errors.
    """

    def __init__(
        self,
        raw: object,
        path: str,
        names: Iterable[str],
        aliases: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        if not isinstance(raw, dict):
            raise RegistrationError(path or "body", f"must be a JSON object, got {shown(raw)}")
        spellings: dict[str, str] = {}
        for name in names:
            for spelling in (name.lower(), snake(name), *(aliases or {}).get(name, ())):
                spellings[spelling] = name
        self.path = path
        self.values: dict[str, Any] = {}
        seen: dict[str, str] = {}
        unknown: list[str] = []
        for key, value in raw.items():
            found = spellings.get(key.lower()) if isinstance(key, str) else None
            if found is None:
                unknown.append(str(key))
                continue
            name = found
            if name in seen:
                raise RegistrationError(
                    join(path, name), f"given twice (as {seen[name]!r} and {key!r})"
                )
            seen[name] = key
            if value is not None:  # Go's decoder leaves a field alone on null
                self.values[name] = value
        if unknown:
            more = f" (also unknown: {', '.join(map(repr, unknown[1:]))})" if unknown[1:] else ""
            raise RegistrationError(join(path, unknown[0]), f"unknown field{more}")

    def at(self, name: str) -> str:
        return join(self.path, name)

    def has(self, name: str) -> bool:
        return name in self.values

    def error(self, name: str, message: str) -> RegistrationError:
        return RegistrationError(self.at(name), message)

    def str_(self, name: str, default: str = "") -> str:
        value = self.values.get(name, default)
        if not isinstance(value, str):
            raise self.error(name, f"must be a string, got {shown(value)}")
        return value

    def bool_(self, name: str) -> bool:
        value = self.values.get(name, False)
        if not isinstance(value, bool):
            raise self.error(name, f"must be true or false, got {shown(value)}")
        return value

    def int_(self, name: str, low: int, high: int, default: int = 0, what: str = "") -> int:
        value = self.values.get(name, default)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise self.error(
                name, f"must be an integer {what or f'{low}-{high}'}, got {shown(value)}"
            )
        return value

    def str_list(self, name: str) -> tuple[str, ...]:
        value = self.values.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(name, f"must be a list of strings, got {shown(value)}")
        return tuple(value)

    def duration(self, name: str) -> float:
        """Seconds; 0 when absent. Strings are Go durations, numbers nanoseconds."""
        value = self.values.get(name)
        if value is None:
            return 0.0
        hint = 'must be a duration like "10s", "1m30s" or "500ms"'
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.error(name, f"{hint}, got {shown(value)}")
        if isinstance(value, str):
            try:
                seconds = parse_duration(value)
            except ValueError:
                raise self.error(name, f"{hint}, got {shown(value)}") from None
        else:
            seconds = value / 1e9
        if not math.isfinite(seconds) or abs(seconds) > MAX_DURATION_S:
            raise self.error(name, f"duration out of range, got {shown(value)}")
        if seconds < 0:
            raise self.error(name, f"must not be negative, got {shown(value)}")
        return seconds


def format_duration(seconds: float) -> str:
    """A duration as Go's time.Duration.String() writes it: "10s", "1m30s", "500ms", "1h0m0s"."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_decimal(ns, 1_000)}µs"
    if ns < 1_000_000_000:
        return f"{sign}{_decimal(ns, 1_000_000)}ms"
    hours, rest = divmod(ns, 3_600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    secs = f"{_decimal(rest, 10**9)}s"
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}"
    return f"{sign}{minutes}m{secs}" if minutes else f"{sign}{secs}"


def _decimal(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = str(frac).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


# --- check definitions ------------------------------------------------------------------


@dataclass(frozen=True)
class CheckDefinition:
    """A validated check: what the agent runs and the state it starts in.

    Durations are seconds and already effective: interval raised to 1s,
    timeout defaulted (10s, 30s for scripts), deregister-after raised to 1m;
    0 means unset. `output_max_size` is the check's own cap (the agent may
    lower it further with its own limit).
    """

    check_id: str
    name: str
    kind: str  # "http" | "tcp" | "ttl" | "script" | "alias"
    service_id: str = ""
    status: str = "critical"
    notes: str = ""
    http: str = ""
    method: str = "GET"
    header: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    body: str = ""
    disable_redirects: bool = False
    tls_server_name: str = ""
    tls_skip_verify: bool = False
    tcp: str = ""
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

    def definition(self) -> dict[str, Any]:
        """The HealthCheck `Definition` as a Consul agent sends it (empty fields left out)."""
        d: dict[str, Any] = {}
        if self.kind == "http":
            d |= {"HTTP": self.http, "Method": self.method}
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
        elif self.kind == "tcp":
            d["TCP"] = self.tcp
        elif self.kind == "script":
            d["ScriptArgs"] = list(self.args)
        elif self.kind == "alias":
            if self.alias_node:
                d["AliasNode"] = self.alias_node
            if self.alias_service:
                d["AliasService"] = self.alias_service
        elif self.kind == "ttl":
            d["TTL"] = format_duration(self.ttl_s)
        for key, seconds in (
            ("Interval", self.interval_s),
            ("Timeout", self.timeout_s),
            ("DeregisterCriticalServiceAfter", self.deregister_critical_service_after_s),
        ):
            if seconds:
                d[key] = format_duration(seconds)
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
            interval=format_duration(self.interval_s) if self.interval_s else "",
            timeout=format_duration(self.timeout_s) if self.timeout_s else "",
        )


CHECK_FIELDS = (
    "ID", "CheckID", "Name", "Notes", "ServiceID", "Token", "Status", "Namespace", "Partition",
    "Args", "Script", "HTTP", "Header", "Method", "Body", "DisableRedirects", "TLSServerName",
    "TLSSkipVerify", "TCP", "TCPUseTLS", "UDP", "GRPC", "GRPCUseTLS", "H2PING", "H2PingUseTLS",
    "DockerContainerID", "Shell", "OSService", "AliasNode", "AliasService", "Interval", "Timeout",
    "TTL", "DeregisterCriticalServiceAfter", "SuccessBeforePassing", "FailuresBeforeWarning",
    "FailuresBeforeCritical", "OutputMaxSize",
)  # fmt: skip
CHECK_ALIASES = {"Args": ("scriptargs", "script_args")}
_UNSUPPORTED = (("UDP", "UDP"), ("GRPC", "gRPC"), ("OSService", "OS service"), ("H2PING", "H2PING"))
_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def check_fields(raw: object, path: str) -> Fields:
    return Fields(raw, path, CHECK_FIELDS, CHECK_ALIASES)


def is_empty_check(f: Fields) -> bool:
    """Consul skips a service `Check` whose fields are all zero values."""
    return not any(v not in ("", 0, False) and v != [] and v != {} for v in f.values.values())


def parse_check_registration(
    body: object, *, service_ids: set[str], allow_script: bool
) -> CheckDefinition:
    """A `PUT /v1/agent/check/register` body (or a `checks:` entry of a config file).

    `service_ids` are the services registered on this agent; a `ServiceID`
    outside them is refused with ServiceNotRegistered (404 at the HTTP edge).
    """
    f = check_fields(body, "")
    name = f.str_("Name")
    if not name:
        raise RegistrationError("Name", "missing required field")
    service_id = f.str_("ServiceID")
    if service_id and service_id not in service_ids:
        raise ServiceNotRegistered(
            "ServiceID", f"service {shown(service_id)} is not registered on this agent"
        )
    return build_check(f, allow_script=allow_script, service_id=service_id, default_id=name)


def build_check(
    f: Fields,
    *,
    allow_script: bool,
    service_id: str,
    default_id: str,
    default_name: str = "",
) -> CheckDefinition:
    """Validate one check object; the caller has settled its service and default id/name."""
    check_id = _check_id(f) or default_id
    if "/" in check_id:
        raise f.error("ID", f"must not contain '/', got {shown(check_id)}")
    status = f.str_("Status") or "critical"
    if status not in CHECK_STATUSES:
        raise f.error("Status", f"must be passing, warning or critical, got {shown(status)}")
    for name in ("Namespace", "Partition"):
        if f.str_(name) not in ("", "default"):
            raise f.error(name, "namespaces and partitions are not supported by gossamer")
    if f.has("Script"):
        raise f.error("Script", "removed in Consul 1.1; use Args (a list of strings)")
    f.str_("Token")  # ACL tokens are accepted and ignored: gossamer has no ACLs
    args = f.str_list("Args")
    http, tcp = f.str_("HTTP"), f.str_("TCP")
    alias_node, alias_service = f.str_("AliasNode"), f.str_("AliasService")
    interval, ttl = f.duration("Interval"), f.duration("TTL")
    timeout = f.duration("Timeout")
    deregister = f.duration("DeregisterCriticalServiceAfter")
    others = {n: f.str_(n) for n in ("UDP", "GRPC", "OSService", "H2PING", "DockerContainerID")}
    for n in ("Shell",):
        f.str_(n)
    for n in ("TCPUseTLS", "GRPCUseTLS", "H2PingUseTLS"):
        f.bool_(n)
    counts = {
        n: f.int_(n, 0, MAX_COUNT)
        for n in ("SuccessBeforePassing", "FailuresBeforeWarning", "FailuresBeforeCritical")
    }
    output_max = f.int_("OutputMaxSize", 0, MAX_COUNT) or DEFAULT_OUTPUT_MAX_SIZE

    interval_kind = next(
        (n for n, v in (("Args", args), ("HTTP", http), ("TCP", tcp)) if v), None
    ) or next((n for n in ("UDP", "GRPC", "H2PING", "OSService") if others[n]), None)
    alias_field = "AliasService" if alias_service else "AliasNode" if alias_node else None
    if interval and ttl:
        raise f.error("TTL", "Interval and TTL cannot both be specified")
    if interval_kind and not interval:
        raise f.error("Interval", f"missing required field for {interval_kind} checks")
    if interval_kind and alias_field:
        raise f.error(alias_field, f"an alias check cannot also set {interval_kind}")
    if alias_field and ttl:
        raise f.error(alias_field, "an alias check cannot also set TTL")
    if not (interval_kind or alias_field or ttl):
        if f.has("TTL"):
            raise f.error("TTL", "must be greater than 0")
        raise RegistrationError(
            f.path or "body",
            "no check kind given: set HTTP, TCP or Args (with Interval), TTL, or AliasService",
        )
    if counts["FailuresBeforeWarning"] > counts["FailuresBeforeCritical"]:
        raise f.error("FailuresBeforeWarning", "can't be higher than FailuresBeforeCritical")
    if args and not allow_script:
        raise f.error("Args", SCRIPT_DISABLED)

    # The kind the agent runs: Consul's dispatch order.
    if ttl:
        kind = "ttl"
    elif http:
        kind = "http"
    elif tcp:
        kind = "tcp"
    else:
        kind = ""
        for key, label in _UNSUPPORTED[:2]:
            if others[key]:
                raise f.error(key, f"{label} checks are not supported by gossamer")
        if args and others["DockerContainerID"]:
            raise f.error("DockerContainerID", "Docker checks are not supported by gossamer")
        if others["OSService"]:
            raise f.error("OSService", "OS service checks are not supported by gossamer")
        if args:
            kind = "script"
        elif others["H2PING"]:
            raise f.error("H2PING", "H2PING checks are not supported by gossamer")
        else:
            kind = "alias"

    extra: dict[str, Any] = {}
    if kind == "http":
        extra = _http_fields(f, http)
    elif kind == "tcp":
        _check_tcp(f, tcp)
    if kind in ("http", "tcp", "script"):
        interval = max(interval, MIN_INTERVAL_S)
        timeout = timeout or (DEFAULT_SCRIPT_TIMEOUT_S if kind == "script" else DEFAULT_TIMEOUT_S)
    else:
        interval = timeout = 0.0
    return CheckDefinition(
        check_id=check_id,
        name=f.str_("Name") or default_name,
        kind=kind,
        service_id=service_id,
        status=status,
        notes=f.str_("Notes"),
        http=http if kind == "http" else "",
        tcp=tcp if kind == "tcp" else "",
        args=args if kind == "script" else (),
        alias_node=alias_node if kind == "alias" else "",
        alias_service=alias_service if kind == "alias" else "",
        interval_s=interval,
        timeout_s=timeout,
        ttl_s=ttl,
        deregister_critical_service_after_s=max(deregister, MIN_DEREGISTER_AFTER_S)
        if deregister
        else 0.0,
        success_before_passing=counts["SuccessBeforePassing"],
        failures_before_warning=counts["FailuresBeforeWarning"] or counts["FailuresBeforeCritical"],
        failures_before_critical=counts["FailuresBeforeCritical"],
        output_max_size=output_max,
        **extra,
    )


def _check_id(f: Fields) -> str:
    given = {n: f.str_(n) for n in ("ID", "CheckID") if f.str_(n)}
    if len(set(given.values())) > 1:
        raise f.error("CheckID", f"differs from ID ({shown(given['ID'])})")
    return next(iter(given.values()), "")


def _http_fields(f: Fields, url: str) -> dict[str, Any]:
    try:
        parts = urlsplit(url)
        valid = url.isprintable() and parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        valid = False
    if not valid:
        raise f.error("HTTP", f"must be an http:// or https:// URL, got {shown(url)}")
    method = f.str_("Method") or "GET"
    if not _METHOD.fullmatch(method):
        raise f.error("Method", f"not an HTTP method, got {shown(method)}")
    raw_header = f.values.get("Header", {})
    if not isinstance(raw_header, dict):
        raise f.error("Header", f"must be an object of string lists, got {shown(raw_header)}")
    header: dict[str, tuple[str, ...]] = {}
    for key, values in raw_header.items():
        if not isinstance(key, str):
            raise RegistrationError(item(f.at("Header"), key), "header names must be strings")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise RegistrationError(
                item(f.at("Header"), key), f"must be a list of strings, got {shown(values)}"
            )
        header[key] = tuple(values)
    return {
        "method": method,
        "header": header,
        "body": f.str_("Body"),
        "disable_redirects": f.bool_("DisableRedirects"),
        "tls_server_name": f.str_("TLSServerName"),
        "tls_skip_verify": f.bool_("TLSSkipVerify"),
    }


def _check_tcp(f: Fields, target: str) -> None:
    try:
        _, port = split_host_port(target)
    except AddressError as err:
        raise f.error("TCP", f"must be host:port, {err}") from None
    if port is None:
        raise f.error("TCP", f"must be host:port, got {shown(target)} (no port)")
