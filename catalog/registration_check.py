"""Health-check bodies: Consul's check definitions parsed and validated, no I/O.

One parser serves `PUT /v1/agent/check/register`, the `Check`/`Checks` of a
service registration and config files; it fills a `CheckDefinition`
(check_definition.py). Keys are read as Consul reads them (registration_fields.py).

Consul's rules, as followed here (agent/structs check_definition.go,
check_type.go; agent/agent.go addCheck):
- Several check kinds in one body are allowed; the agent runs the first of
  TTL, HTTP, TCP, UDP, GRPC, Docker, OSService, script, H2PING, alias
  (check_kinds.KINDS, in that order). gossamer runs http, tcp, ttl, script
  and alias; choosing another kind is refused, naming the field.
- `Args` anywhere is refused unless script checks are enabled, even when
  another kind wins (Consul checks this before running anything).
- Intervals below 1s are raised to 1s and DeregisterCriticalServiceAfter
  below 1m to 1m (Consul logs a warning and does the same).
Problems are reported together, in three rounds: every field's type, then
the rules between fields (which kind, thresholds, scripts allowed), then the
chosen kind's own fields — a later round runs only when the earlier ones
found nothing that would make its findings noise.
"""

from __future__ import annotations

from gossamer.catalog.check_definition import DEFAULT_OUTPUT_MAX_SIZE, CheckDefinition
from gossamer.catalog.check_kinds import KINDS, CommonFields
from gossamer.catalog.names import id_problem
from gossamer.catalog.registration_fields import (
    Fields,
    Problems,
    RegistrationError,
    ServiceNotRegistered,
    shown,
)

MIN_INTERVAL_S = 1.0
MIN_DEREGISTER_AFTER_S = 60.0
MAX_COUNT = 2**31 - 1
CHECK_STATUSES = ("passing", "warning", "critical")
SCRIPT_DISABLED = (
    "script checks are disabled on this agent; enable them with enable_script_checks "
    "(API and config files) or enable_local_script_checks (config files only)"
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
_TARGETS = ("HTTP", "TCP", "UDP", "GRPC", "OSService", "H2PING", "DockerContainerID")
_INTERVAL_TARGETS = ("Args", "HTTP", "TCP", "UDP", "GRPC", "H2PING", "OSService")
_DURATIONS = ("Interval", "TTL", "Timeout", "DeregisterCriticalServiceAfter")
_COUNTS = ("SuccessBeforePassing", "FailuresBeforeWarning", "FailuresBeforeCritical")


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
    outside them is refused with ServiceNotRegistered (404 at the HTTP edge), as Consul does.
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
    """Validate one check object; the caller has settled its service and default id/name.

    Raises one RegistrationError listing every problem found (see the module rules).
    """
    problems = Problems()
    c = _common(f, problems, default_id, default_name)
    problems.raise_any()
    if not _cross_field(f, c, allow_script, problems):
        problems.raise_any()
    kind = next(k for k in KINDS if k.chosen(c))
    extra = kind.parse(f, c, problems)
    problems.raise_any()
    if kind.default_timeout_s:  # a probing kind
        extra |= {
            "interval_s": max(c.interval, MIN_INTERVAL_S),
            "timeout_s": c.timeout or kind.default_timeout_s,
        }
    return CheckDefinition(
        check_id=c.check_id,
        name=c.name,
        kind=kind.name,
        service_id=service_id,
        status=c.status,
        notes=c.notes,
        ttl_s=c.ttl,
        deregister_critical_service_after_s=c.deregister,
        success_before_passing=c.counts["SuccessBeforePassing"],
        failures_before_warning=c.counts["FailuresBeforeWarning"],
        failures_before_critical=c.counts["FailuresBeforeCritical"],
        output_max_size=c.output_max,
        **extra,
    )


def _common(f: Fields, p: Problems, default_id: str, default_name: str) -> CommonFields:
    """Round one: every shared field read and type-checked, problems noted."""
    check_id = p.read("", _check_id, f) or default_id
    if problem := id_problem(check_id):
        p.add(f.error("ID", problem))
    status = p.read("", f.str_, "Status") or "critical"
    if status not in CHECK_STATUSES:
        p.add(f.error("Status", f"must be passing, warning or critical, got {shown(status)}"))
    for name in ("Namespace", "Partition"):
        if p.read("", f.str_, name) not in ("", "default"):
            p.add(f.error(name, "namespaces and partitions are not supported by gossamer"))
    if f.has("Script"):
        p.add(f.error("Script", "removed in Consul 1.1; use Args (a list of strings)"))
    p.read("", f.str_, "Token")  # ACL tokens are accepted and ignored: no ACLs
    args: tuple[str, ...] = p.read((), f.str_list, "Args")
    targets = {n: p.read("", f.str_, n) for n in ("HTTP", "TCP")}
    aliases = [p.read("", f.str_, n) for n in ("AliasNode", "AliasService")]
    durations = {n: p.read(0.0, f.duration, n) for n in _DURATIONS}
    targets |= {n: p.read("", f.str_, n) for n in _TARGETS if n not in targets}
    p.read("", f.str_, "Shell")
    for name in ("TCPUseTLS", "GRPCUseTLS", "H2PingUseTLS"):
        p.read(False, f.bool_, name)
    deregister = durations["DeregisterCriticalServiceAfter"]
    return CommonFields(
        check_id=check_id,
        status=status,
        args=args,
        targets=targets,
        alias_node=aliases[0],
        alias_service=aliases[1],
        interval=durations["Interval"],
        timeout=durations["Timeout"],
        ttl=durations["TTL"],
        deregister=deregister and max(deregister, MIN_DEREGISTER_AFTER_S),
        counts=_counts(f, p),
        output_max=p.read(0, f.int_, "OutputMaxSize", 0, MAX_COUNT) or DEFAULT_OUTPUT_MAX_SIZE,
        name=p.read("", f.str_, "Name") or default_name,
        notes=p.read("", f.str_, "Notes"),
    )


def _counts(f: Fields, p: Problems) -> dict[str, int]:
    """The thresholds; FailuresBeforeWarning defaults to FailuresBeforeCritical."""
    counts = {n: p.read(0, f.int_, n, 0, MAX_COUNT) for n in _COUNTS}
    counts["FailuresBeforeWarning"] = (
        counts["FailuresBeforeWarning"] or counts["FailuresBeforeCritical"]
    )
    return counts


def _check_id(f: Fields) -> str:
    given = {n: f.str_(n) for n in ("ID", "CheckID") if f.str_(n)}
    if len(set(given.values())) > 1:
        raise f.error("CheckID", f"differs from ID ({shown(given['ID'])})")
    return next(iter(given.values()), "")


def _cross_field(f: Fields, c: CommonFields, allow_script: bool, p: Problems) -> bool:
    """Round two: the rules between fields. False when no kind can be chosen."""
    set_ = {"Args": bool(c.args)} | {n: bool(v) for n, v in c.targets.items()}
    interval_kind = next((n for n in _INTERVAL_TARGETS if set_[n]), None)
    alias_field = "AliasService" if c.alias_service else "AliasNode" if c.alias_node else None
    ok = True
    if c.interval and c.ttl:
        p.add(f.error("TTL", "Interval and TTL cannot both be specified"))
        ok = False
    if interval_kind and not c.interval:
        p.add(f.error("Interval", f"missing required field for {interval_kind} checks"))
        ok = False
    if interval_kind and alias_field:
        p.add(f.error(alias_field, f"an alias check cannot also set {interval_kind}"))
        ok = False
    if alias_field and c.ttl:
        p.add(f.error(alias_field, "an alias check cannot also set TTL"))
        ok = False
    if not (interval_kind or alias_field or c.ttl):
        if f.has("TTL"):
            p.add(f.error("TTL", "must be greater than 0"))
        else:
            p.add(RegistrationError(f.path or "body", _NO_KIND))
        ok = False
    if c.counts["FailuresBeforeWarning"] > c.counts["FailuresBeforeCritical"]:
        p.add(f.error("FailuresBeforeWarning", "can't be higher than FailuresBeforeCritical"))
    if c.args and not allow_script:
        p.add(f.error("Args", SCRIPT_DISABLED))
    return ok


_NO_KIND = "no check kind given: set HTTP, TCP or Args (with Interval), TTL, or AliasService"
