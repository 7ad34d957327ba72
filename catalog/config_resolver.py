"""Consul's `service-resolver` config entry: reading and checking its fields. Pure.

A resolver says which instances of its service (`Name`) a sidecar sends to:
- `Subsets`: name -> `{Filter, OnlyPassing}`. `Filter` is Consul's filter
  language over a `/v1/health/connect/<service>` row (`Service.Meta.version
  == v2`, `Service.Tags contains canary`), checked here against that row's
  selectors (catalog/filter.py), so a typo is a 400, not a subset that
  matches nothing. `OnlyPassing: false` (Consul's default) lets instances
  whose checks warn take traffic; `true` takes passing ones only.
- `DefaultSubset`: the subset used when none is asked for.
- `Redirect` `{Service, ServiceSubset}`: resolve that instead.
- `Failover`, keyed by subset name or `*`: `{Service, ServiceSubset}` or
  `{Targets: [{Service, ServiceSubset}, ...]}`, tried in order when the
  chosen instances have no healthy one.
- `ConnectTimeout`, `RequestTimeout`: Go durations (`"5s"`), >= 0.

Rules kept from Consul's `ServiceResolverConfigEntry.Validate`: subset
names are DNS labels (lower case letters, digits, '-', at most 63);
`DefaultSubset`, a `Redirect.ServiceSubset` or failover `ServiceSubset` of
this same service must name one of `Subsets`; `Redirect` and `Failover`
cannot both be set; a `Redirect` must name something, and a subset only
with a `Service`; a `Failover` key is a subset or `*`; a failover gives
`Targets` or `Service`/`ServiceSubset`, not both, and at least one.

Refused with a 400 naming the field, because gossamer cannot honour them:
datacenters, peers, partitions and namespaces other than the default,
sameness groups, `LoadBalancer` (the sidecar's balancing is its own:
power of two choices, peak EWMA), `PrioritizeByLocality`, failover
`Policy`. Chains that loop, or name a subset a resolver lacks, are checked
across entries when written (resolver_chain.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gossamer.catalog.config_entries import SUBSET_NAME
from gossamer.catalog.durations import DurationError, format_ns, parse_ns, stored_seconds
from gossamer.catalog.filter import HEALTH_SERVICE, FilterError, parse
from gossamer.catalog.registration_fields import (
    Fields,
    Problems,
    RegistrationError,
    item,
    shown,
)

_SUBSET_FIELDS = ("Filter", "OnlyPassing")
_WHERE = ("Namespace", "Partition", "Datacenter", "Peer", "SamenessGroup")
_REDIRECT_FIELDS = ("Service", "ServiceSubset", *_WHERE)
_TARGET_FIELDS = ("Service", "ServiceSubset", *_WHERE)
_FAILOVER_FIELDS = ("Service", "ServiceSubset", "Targets", "Datacenters", "Policy", *_WHERE)
_ELSEWHERE = (
    "gossamer resolves services in its own datacenter, default partition and namespace only"
)
_NOT_HELD = {
    "LoadBalancer": "a sidecar balances by its own rule (power of two choices over peak EWMA "
    "latency, or open connections); a resolver's LoadBalancer is not supported",
    "PrioritizeByLocality": "gossamer has no locality-aware routing",
}


@dataclass(frozen=True)
class Subset:
    filter: str = ""
    only_passing: bool = False


@dataclass(frozen=True)
class Ref:
    """Where a redirect or a failover leads: `service` ("": the resolver's own) and `subset`."""

    service: str = ""
    subset: str = ""


@dataclass(frozen=True)
class Resolver:
    """One service-resolver entry, as the proxy and the chain checks read it."""

    name: str
    default_subset: str = ""
    subsets: Mapping[str, Subset] = field(default_factory=dict)
    redirect: Ref | None = None
    failover: Mapping[str, tuple[Ref, ...]] = field(default_factory=dict)
    connect_timeout_s: float = 0.0  # 0: not set
    request_timeout_s: float = 0.0


def read_resolver(f: Fields, name: str, check_name: Any) -> dict[str, Any]:
    """The resolver fields of body `f` for service `name`, normalised to the stored JSON shape;
    RegistrationError naming every problem. `check_name` checks a service name (Name's rule)."""
    problems = Problems()
    for refused, why in _NOT_HELD.items():
        if f.has(refused):
            problems.add(f.error(refused, why))
    out: dict[str, Any] = {}
    no_subsets: dict[str, Subset] = {}
    subsets = problems.read(no_subsets, _subsets, f)
    if subsets:
        out["Subsets"] = {  # (empty fields left out, as Consul's JSON does)
            k: {**({"Filter": s.filter} if s.filter else {}),
                **({"OnlyPassing": True} if s.only_passing else {})}
            for k, s in subsets.items()
        }  # fmt: skip
    default = problems.read("", f.str_, "DefaultSubset")
    if default:
        if default not in subsets:
            defined = ", ".join(map(repr, subsets)) or "none defined"
            problems.add(f.error("DefaultSubset", f"{default!r} is not one of Subsets ({defined})"))
        out["DefaultSubset"] = default
    if f.has("Redirect"):
        redirect = problems.read(None, _redirect, f, name, subsets, check_name)
        if redirect is not None:
            out["Redirect"] = redirect
        if f.has("Failover"):
            problems.add(f.error("Failover", "Redirect and Failover cannot both be set"))
    if f.has("Failover"):
        failover = problems.read(None, _failover, f, name, subsets, check_name)
        if failover:
            out["Failover"] = failover
    for key in ("ConnectTimeout", "RequestTimeout"):
        ns = problems.read(0, _duration, f, key)
        if ns:
            out[key] = format_ns(ns)
    problems.raise_any()
    return out


def resolver_of(entry: Mapping[str, Any]) -> Resolver:
    """The typed view of a stored (already checked) service-resolver entry."""
    subsets = {
        k: Subset(str(v.get("Filter", "")), bool(v.get("OnlyPassing", False)))
        for k, v in (entry.get("Subsets") or {}).items()
    }
    raw_redirect = entry.get("Redirect")
    redirect = None
    if raw_redirect:
        redirect = Ref(raw_redirect.get("Service", ""), raw_redirect.get("ServiceSubset", ""))
    failover = {key: _refs(raw) for key, raw in (entry.get("Failover") or {}).items()}
    return Resolver(
        name=entry["Name"],
        default_subset=entry.get("DefaultSubset", ""),
        subsets=subsets,
        redirect=redirect,
        failover=failover,
        connect_timeout_s=stored_seconds(entry.get("ConnectTimeout")),
        request_timeout_s=stored_seconds(entry.get("RequestTimeout")),
    )


def _refs(raw: Mapping[str, Any]) -> tuple[Ref, ...]:
    targets = raw.get("Targets")
    if targets:
        return tuple(Ref(t.get("Service", ""), t.get("ServiceSubset", "")) for t in targets)
    return (Ref(raw.get("Service", ""), raw.get("ServiceSubset", "")),)


def _subsets(f: Fields) -> dict[str, Subset]:
    raw = f.values.get("Subsets", {})
    if not isinstance(raw, dict):
        raise f.error("Subsets", f"must be an object of subset name -> {{Filter, OnlyPassing}}, "
                      f"got {shown(raw)}")  # fmt: skip
    problems = Problems()
    found: dict[str, Subset] = {}
    for key, value in raw.items():
        at = item(f.at("Subsets"), key)
        if not isinstance(key, str) or not SUBSET_NAME.fullmatch(key):
            problems.add(RegistrationError(at, "a subset name must be 1-63 lower case letters, "
                                           "digits or '-', beginning and ending with a letter "
                                           "or digit (it is a DNS label)"))  # fmt: skip
            continue
        subset = problems.read(None, _subset, value, at)
        if subset is not None:
            found[key] = subset
    problems.raise_any()
    return found


def _subset(raw: object, at: str) -> Subset:
    s = Fields(raw, at, _SUBSET_FIELDS)
    text = s.str_("Filter")
    if text.strip():
        try:
            parse(text, HEALTH_SERVICE)
        except FilterError as exc:
            rows = "/v1/health/connect rows: Service.*, Node.*, Checks.*"
            raise s.error("Filter", f"not a valid filter over a service instance ({rows}): "
                          f"{exc}") from None  # fmt: skip
    return Subset(text, s.bool_("OnlyPassing"))


def _elsewhere(s: Fields, keys: tuple[str, ...] = _WHERE) -> None:
    for key in keys:
        value = s.values.get(key, "")
        if key in ("Namespace", "Partition") and value in ("", "default"):
            continue
        if value not in ("", None, []):
            raise s.error(key, f"{shown(value)}: {_ELSEWHERE}")


def _redirect(f: Fields, name: str, subsets: Mapping[str, Subset],
              check_name: Any) -> dict[str, str]:  # fmt: skip
    r = Fields(f.values["Redirect"], f.at("Redirect"), _REDIRECT_FIELDS)
    _elsewhere(r)
    service, subset = r.str_("Service"), r.str_("ServiceSubset")
    if not service and not subset:
        raise f.error("Redirect", "is empty: give Service (and ServiceSubset if wanted)")
    if not service:
        raise r.error("ServiceSubset", "defined without Redirect.Service")
    check_name(service, r.at("Service"))
    if subset:
        _subset_name(r, subset)
        if service == name and subset not in subsets:
            raise r.error("ServiceSubset", f"{subset!r} is not a subset of {name!r}")
    if service == name and not subset:
        raise r.error("Service", f"redirects {name!r} to itself")
    return {"Service": service, **({"ServiceSubset": subset} if subset else {})}


def _subset_name(s: Fields, subset: str) -> None:
    if not SUBSET_NAME.fullmatch(subset):
        raise s.error("ServiceSubset", f"{subset!r} is not a subset name (a DNS label)")


def _failover(f: Fields, name: str, subsets: Mapping[str, Subset],
              check_name: Any) -> dict[str, Any]:  # fmt: skip
    raw = f.values["Failover"]
    if not isinstance(raw, dict):
        raise f.error("Failover", f"must be an object of subset name or '*' -> failover, "
                      f"got {shown(raw)}")  # fmt: skip
    problems = Problems()
    out: dict[str, Any] = {}
    for key, value in raw.items():
        at = item(f.at("Failover"), key)
        if key != "*" and key not in subsets:
            problems.add(RegistrationError(at, "a failover is keyed by one of Subsets or '*'"))
            continue
        one = problems.read(None, _one_failover, value, at, name, subsets, check_name)
        if one is not None:
            out[key] = one
    problems.raise_any()
    return out


def _one_failover(raw: object, at: str, name: str, subsets: Mapping[str, Subset],
                  check_name: Any) -> dict[str, Any]:  # fmt: skip
    s = Fields(raw, at, _FAILOVER_FIELDS)
    if s.has("Datacenters"):
        raise s.error("Datacenters", f"{_ELSEWHERE}: fail over to another service or subset "
                      "of this datacenter (Targets, Service, ServiceSubset)")  # fmt: skip
    if s.has("Policy"):
        raise s.error("Policy", "gossamer fails over in the listed order only")
    _elsewhere(s)
    if s.has("Targets"):
        for key in ("Service", "ServiceSubset"):
            if s.values.get(key):
                raise s.error("Targets", f"cannot be set with {key}")
        targets = s.values["Targets"]
        if not isinstance(targets, list) or not targets:
            raise s.error("Targets", f"must be a list of {{Service, ServiceSubset}}, got "
                          f"{shown(targets)}")  # fmt: skip
        return {"Targets": [_ref(t, f"{s.at('Targets')}[{i}]", name, subsets, check_name)
                            for i, t in enumerate(targets)]}  # fmt: skip
    ref = _ref(raw, at, name, subsets, check_name, _FAILOVER_FIELDS)
    if not ref:
        raise RegistrationError(at, "one of Service, ServiceSubset or Targets is required")
    return ref


def _ref(raw: object, at: str, name: str, subsets: Mapping[str, Subset], check_name: Any,
         names: tuple[str, ...] = _TARGET_FIELDS) -> dict[str, str]:  # fmt: skip
    s = Fields(raw, at, names)
    _elsewhere(s)
    service, subset = s.str_("Service"), s.str_("ServiceSubset")
    if service:
        check_name(service, s.at("Service"))
    if subset:
        _subset_name(s, subset)
        if service in ("", name) and subset not in subsets:
            raise s.error("ServiceSubset", f"{subset!r} is not a subset of {name!r}")
    return {**({"Service": service} if service else {}),
            **({"ServiceSubset": subset} if subset else {})}  # fmt: skip


def _duration(f: Fields, key: str) -> int:
    raw = f.values.get(key, "")
    if not isinstance(raw, str):
        raise f.error(key, f'must be a duration string such as "5s" or "500ms", got {shown(raw)}')
    if not raw:
        return 0
    try:
        ns = parse_ns(raw)
    except DurationError as exc:
        raise f.error(key, f"not a duration ({exc}), got {shown(raw)}") from None
    if ns < 0:
        raise f.error(key, f"must be >= 0, got {shown(raw)}")
    return ns
