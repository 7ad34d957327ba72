"""Consul's config entries that gossamer holds: reading and checking a body. Pure.

A config entry is cluster-wide state named by `(Kind, Name)`, written with
`PUT /v1/config` and replicated to every agent (agent/replicated/
config_entry_store.py). gossamer holds four kinds, each read into a typed
value that the agent stores and the proxy obeys, so both read one definition:
- `service-defaults`: `Protocol` (`tcp`, `http`, `http2`, `grpc`), the
  fallback for a sidecar whose own `Proxy.Config.protocol` is not set.
- `service-splitter`: `Splits`, each `{Weight, Service}`; a request (or, at
  L4, a connection) to the entry's service goes to one split's `Service`,
  chosen by weight (proxy/split.py). An empty `Service` is the entry's own
  `Name`, as in Consul. A split's `ServiceSubset` names a subset that the
  target service's `service-resolver` defines; such a split is kept as the
  target key `service/subset` (resolver_chain.py), never split further.
- `service-resolver`: subsets, default subset, redirect, failover and
  timeouts (config_resolver.py reads it, resolver_chain.py follows it).
- `service-router`: L7 routes by path, header, query and method to another
  service or subset (config_router.py reads and checks it).

Rules this module keeps (Consul's `Validate` of each kind, and its decoder):
- Keys match as Consul's decoder matches them (registration_fields.Fields:
  CamelCase or snake_case, any case); unknown keys are refused.
- Weights are 0-100 with 0.01 precision and must sum to 100: each is scaled
  to hundredths (`round(w * 100)`) and the scaled sum must be 10,000, as
  Consul's `scaleWeight` does. A service may appear once only.
- What gossamer cannot honour is refused with a 400 saying why, never stored
  and silently ignored: request/response header edits, other kinds.
- A write or delete that would leave a chain unresolvable (a split to a
  subset its resolver lacks, a redirect loop) is refused, as Consul's
  compile of the discovery chain refuses it (`check_graph`); chains broken
  before the change (entries replicated in meanwhile) do not block it.
- Every problem of a body is reported at once (`RegistrationError.problems`),
  each naming its field path (`Splits[1].Weight`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gossamer.catalog.names import meta_count_problem, meta_pair_problem
from gossamer.catalog.registration_fields import (
    Fields,
    Problems,
    RegistrationError,
    item,
    shown,
)

SERVICE_DEFAULTS, SERVICE_SPLITTER = "service-defaults", "service-splitter"
SERVICE_RESOLVER, SERVICE_ROUTER = "service-resolver", "service-router"
KINDS = (SERVICE_DEFAULTS, SERVICE_SPLITTER, SERVICE_RESOLVER, SERVICE_ROUTER)
SERVICE_PROTOCOLS = ("tcp", "http", "http2", "grpc")  # proxy/protocol.py reads this list
WEIGHT_SCALE = 100  # hundredths: Consul's 0.01 precision
WEIGHT_TOTAL = 100 * WEIGHT_SCALE
_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,254}[A-Za-z0-9])?")
_ALWAYS = ("Kind", "Name", "Meta", "Namespace", "Partition", "CreateIndex", "ModifyIndex", "Hash")
RESOLVER_FIELDS = ("DefaultSubset", "Subsets", "Redirect", "Failover", "ConnectTimeout",
                   "RequestTimeout", "LoadBalancer", "PrioritizeByLocality")  # fmt: skip
_FIELDS = {SERVICE_DEFAULTS: ("Protocol",), SERVICE_SPLITTER: ("Splits",),
           SERVICE_RESOLVER: RESOLVER_FIELDS, SERVICE_ROUTER: ("Routes",)}  # fmt: skip
SUBSET_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")  # Consul's: a DNS label
SUBSET_SEP = "/"  # in a target key `service/subset`: in neither name
_SPLIT_FIELDS = ("Weight", "Service", "ServiceSubset", "Namespace", "Partition",
                 "RequestHeaders", "ResponseHeaders")  # fmt: skip
_NOT_HELD: dict[str, str] = {  # kinds Consul has that gossamer refuses, and why
    # (service-intentions: held as intentions, agent/http/config_intentions.py, never here)
}


class ConfigEntryError(RegistrationError):
    """A config entry body that cannot be stored; `problems` names every field at fault."""


class ConfigEntryNotFound(LookupError):
    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"Config entry not found for {kind!r} / {name!r}")


@dataclass(frozen=True)
class Split:
    """One share of a splitter: `weight` in hundredths of a percent, to `service` (a target
    key: the service, or `service/subset` for a split with a ServiceSubset)."""

    weight: int
    service: str


def read_entry(body: object) -> dict[str, Any]:
    """A body checked and normalised to the stored shape (Kind, Name, kind fields, Meta).

    ConfigEntryError naming every problem; indexes and `Hash` in the body are ignored.
    """
    if not isinstance(body, dict):
        raise ConfigEntryError("body", f"must be a JSON object, got {shown(body)}")
    kind = kind_of(body)
    try:
        f = Fields(body, "", _ALWAYS + _FIELDS[kind])
    except RegistrationError as exc:
        raise ConfigEntryError(exc.field, exc.message) from None
    problems = Problems()
    name = problems.read("", entry_name, f.values.get("Name"), "Name")
    no_meta: dict[str, str] = {}
    meta = problems.read(no_meta, _meta, f)
    for field in ("Namespace", "Partition"):
        problems.read(None, _default_only, f, field)
    entry: dict[str, Any] = {"Kind": kind, "Name": name}
    if kind == SERVICE_DEFAULTS:
        entry["Protocol"] = problems.read("", _protocol, f)
    elif kind == SERVICE_RESOLVER:  # (imported here: a proxy with no resolver never needs it)
        from gossamer.catalog.config_resolver import read_resolver

        no_fields: dict[str, Any] = {}
        entry.update(problems.read(no_fields, read_resolver, f, name, entry_name))
    elif kind == SERVICE_ROUTER:  # (imported here too: only a proxy with a router needs it)
        from gossamer.catalog.config_router import read_router

        no_routes: dict[str, Any] = {}
        entry.update(problems.read(no_routes, read_router, f, name, entry_name))
    else:
        no_splits: tuple[Split, ...] = ()
        splits = problems.read(no_splits, _splits, f, name)
        entry["Splits"] = [split_json(s) for s in splits]
    if meta:
        entry["Meta"] = meta
    try:
        problems.raise_any()
    except RegistrationError as exc:
        raise ConfigEntryError(exc.field, exc.message, more=exc.problems[1:]) from None
    return entry


def kind_of(body: Mapping[str, Any]) -> str:
    """The body's `Kind` (any key case, as Consul decodes), one gossamer holds."""
    raw = next((v for k, v in body.items() if isinstance(k, str) and k.lower() == "kind"), None)
    return kind_param(raw, "Kind")


def kind_param(raw: object, field: str) -> str:
    """A kind named in a body or a URL; ConfigEntryError naming `field` when not one held."""
    if not isinstance(raw, str) or not raw:
        raise ConfigEntryError(field, f"must name a config entry kind, got {shown(raw)}")
    kind = raw.lower()
    if kind in KINDS:
        return kind
    why = _NOT_HELD.get(kind, "not a config entry kind gossamer holds")
    raise ConfigEntryError(field, f"{raw!r}: {why} (held: {', '.join(KINDS)})")


def entry_name(raw: object, field: str = "Name") -> str:
    """A service name as an entry's `Name` (or a split's `Service`)."""
    if not isinstance(raw, str) or not raw:
        raise ConfigEntryError(field, f"is required: the service it is for, got {shown(raw)}")
    if raw == "*" or not _NAME.fullmatch(raw):
        raise ConfigEntryError(
            field, f"must be a service name (letters, digits, '-', '_', '.'), got {shown(raw)}"
        )
    return raw


def _meta(f: Fields) -> dict[str, str]:
    raw = f.values.get("Meta", {})
    if not isinstance(raw, dict):
        raise f.error("Meta", f"must be an object of strings, got {shown(raw)}")
    if problem := meta_count_problem(raw):
        raise f.error("Meta", problem)
    for key, value in raw.items():
        if problem := meta_pair_problem(key, value):
            raise RegistrationError(item(f.at("Meta"), key), problem)
    return dict(raw)


def _default_only(f: Fields, field: str) -> None:
    if f.values.get(field, "") not in ("", "default"):
        raise f.error(field, 'must be "default" or empty (namespaces, partitions: Enterprise)')


def _protocol(f: Fields) -> str:
    raw = f.values.get("Protocol", "tcp")
    if not isinstance(raw, str) or raw.lower() not in SERVICE_PROTOCOLS:
        shown_all = ", ".join(SERVICE_PROTOCOLS)
        raise f.error("Protocol", f"must be one of {shown_all}, got {shown(raw)}")
    return raw.lower()


def _splits(f: Fields, name: str) -> tuple[Split, ...]:
    raw = f.values.get("Splits")
    if not isinstance(raw, list) or not raw:
        raise f.error("Splits", f"must be a list of {{Weight, Service}}, got {shown(raw)}")
    problems = Problems()
    splits = [problems.read(None, _split, s, f"Splits[{i}]", name) for i, s in enumerate(raw)]
    problems.raise_any()
    found = [s for s in splits if s is not None]
    seen: set[str] = set()
    for i, split in enumerate(found):
        if split.service in seen:
            twice = f"{split.service!r} is split to more than once"
            problems.add(RegistrationError(f"Splits[{i}].Service", twice))
        seen.add(split.service)
    total = sum(s.weight for s in found)
    if total != WEIGHT_TOTAL:
        problems.add(f.error("Splits", f"weights must sum to 100, got {total / WEIGHT_SCALE:g}"))
    problems.raise_any()
    return tuple(found)


def _split(raw: object, path: str, name: str) -> Split:
    s = Fields(raw, path, _SPLIT_FIELDS)
    subset = s.str_("ServiceSubset")
    if subset and not SUBSET_NAME.fullmatch(subset):
        raise s.error("ServiceSubset", f"{subset!r} is not a subset name (a DNS label)")
    for field in ("RequestHeaders", "ResponseHeaders"):
        if s.has(field):
            raise s.error(field, "header changes on a split are not supported by gossamer")
    for field in ("Namespace", "Partition"):
        _default_only(s, field)
    weight = s.values.get("Weight", 0)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
        raise s.error("Weight", f"must be a number from 0 to 100, got {shown(weight)}")
    if not 0 <= weight <= 100:
        raise s.error("Weight", f"must be from 0 to 100, got {shown(weight)}")
    service = entry_name(s.str_("Service") or name, s.at("Service"))
    return Split(round(weight * WEIGHT_SCALE), key_of(service, subset))


def split_json(split: Split) -> dict[str, Any]:
    weight = split.weight / WEIGHT_SCALE
    service, subset = target_parts(split.service)
    shown_weight = int(weight) if weight.is_integer() else weight
    return {
        "Weight": shown_weight,
        "Service": service,
        **({"ServiceSubset": subset} if subset else {}),
    }


def splits_of(entry: Mapping[str, Any]) -> tuple[Split, ...]:
    """The splits of a stored or served service-splitter entry; ConfigEntryError if none."""
    checked = read_entry(dict(entry))
    return tuple(
        Split(round(s["Weight"] * WEIGHT_SCALE), key_of(s["Service"], s.get("ServiceSubset", "")))
        for s in checked.get("Splits", ())
    )


def related_services(body: object) -> list[str]:
    """The services other than its own that a splitter or resolver body sends traffic to
    (splits, Redirect, Failover), sorted; [] for other kinds or a body that does not read
    (its write is a 400 anyway). What a write needs service:read on, as in Consul."""
    try:
        entry = read_entry(body)
    except ConfigEntryError:
        return []
    found: set[str] = set()
    if entry["Kind"] == SERVICE_SPLITTER:
        found = {target_parts(s.service)[0] for s in splits_of(entry)}
    elif entry["Kind"] == SERVICE_RESOLVER:
        found = {entry.get("Redirect", {}).get("Service", "")}
        for failover in entry.get("Failover", {}).values():
            for one in failover.get("Targets", [failover]):
                found.add(one.get("Service", ""))
    elif entry["Kind"] == SERVICE_ROUTER:
        from gossamer.catalog.config_router import destinations

        found = {service for _, service, _ in destinations(entry)}
    return sorted(found - {"", entry["Name"]})


def key_of(service: str, subset: str = "") -> str:
    """The target key of a service, or of one subset of it."""
    return f"{service}{SUBSET_SEP}{subset}" if subset else service


def target_parts(key: str) -> tuple[str, str]:
    """`(service, subset)` of a target key."""
    service, _, subset = key.partition(SUBSET_SEP)
    return service, subset


def entry_key(kind: str, name: str) -> str:
    """The replicated map's key of an entry."""
    return f"{kind}/{name}"


def split_key(key: str) -> tuple[str, str] | None:
    """`(kind, name)` of a map key, or None when it is not one this map holds."""
    kind, slash, name = key.partition("/")
    if not slash or kind not in KINDS or not _NAME.fullmatch(name):
        return None
    return kind, name


def check_graph(held: Mapping[tuple[str, str], Mapping[str, Any]], kind: str, name: str,
                entry: Mapping[str, Any] | None) -> None:  # fmt: skip
    """ConfigEntryError when writing `entry` (None: deleting `kind`/`name`) over the `held`
    entries (`(kind, name)` -> checked entry) would leave a chain unresolvable that was not
    before: a split to a subset its resolver lacks, a redirect loop (resolver_chain.py), a router
    whose service or destinations do not speak an L7 protocol or lack the subset it names
    (config_router.router_problems)."""
    if kind == SERVICE_DEFAULTS and not any(k == SERVICE_ROUTER for k, _ in held):
        return  # (a protocol matters to routers only)
    after = {k: v for k, v in held.items() if k != (kind, name)}
    if entry is not None:
        after[(kind, name)] = entry
    before = _problems(held)
    new = {k: v for k, v in _problems(after).items() if before.get(k) != v}
    if not new:
        return
    own = f"{kind}/{name}"
    errors: list[RegistrationError] = []
    for where, why in sorted(new.items(), key=lambda p: not p[0].startswith(own)):
        entry_of, _, split = where.partition(".")
        looped = "redirect" in why
        if entry_of == own and kind == SERVICE_SPLITTER:
            errors.append(ConfigEntryError(f"{split}.ServiceSubset", why))
        elif entry_of == own and kind == SERVICE_ROUTER:
            errors.append(ConfigEntryError(split or "Name", why))
        elif entry_of == own:
            errors.append(ConfigEntryError("Redirect" if looped else "Failover", why))
        else:  # another entry's chain would break: say which
            at = ("name" if entry is None else "Protocol" if kind == SERVICE_DEFAULTS else
                  "Redirect" if looped else "Subsets")  # fmt: skip
            errors.append(ConfigEntryError(at, f"{where} would no longer resolve: {why}"))
    joined = RegistrationError.joined(errors)
    raise ConfigEntryError(joined.field, joined.message, more=joined.problems[1:])


def _problems(entries: Mapping[tuple[str, str], Mapping[str, Any]]) -> dict[str, str]:
    from gossamer.catalog.config_resolver import resolver_of
    from gossamer.catalog.resolver_chain import chain_problems

    splits = {n: [s.service for s in splits_of(e)] for (k, n), e in entries.items()
              if k == SERVICE_SPLITTER}  # fmt: skip
    resolvers = {n: resolver_of(e) for (k, n), e in entries.items() if k == SERVICE_RESOLVER}
    found = chain_problems(splits, resolvers)
    routers = {n: e for (k, n), e in entries.items() if k == SERVICE_ROUTER}
    if routers:
        from gossamer.catalog.config_router import router_problems
        from gossamer.catalog.resolver_chain import resolve

        protocols = {n: str(e.get("Protocol", "tcp")) for (k, n), e in entries.items()
                     if k == SERVICE_DEFAULTS}  # fmt: skip

        def resolve_one(service: str, subset: str) -> object:
            return resolve(service, subset, resolvers)

        found.update(router_problems(routers, protocols, resolve_one))
    return found
