"""Where traffic for a service (and subset) goes, through service-resolver entries. Pure.

Consul's discovery chain compiler, for what gossamer holds: `resolve`
follows each `Redirect` (a redirect that leads back to a target already met
is a loop: `ChainError`), then fills in the `DefaultSubset` of the resolver
it ends at; the subset must exist (`service "api" does not have a subset
named "v3"`, Consul's words). Its failover targets, the first `Failover`
entry keyed by its subset, else `*`, each go through their own resolver's
redirects and default subset in turn (not their failovers: Consul's failover
is one level); a failover target that is the primary itself, or met before,
is dropped.

A target's `key` is how the proxy names it: the service, or
`service/subset` ('/' is in neither name), and a split to a subset is
written as that key (config_entries.Split.service).

`chain_problems` is the check made when an entry is written or deleted:
every chain the held entries start (each resolver's service, each split),
with the message of each that cannot be resolved. The store refuses a
change that adds one (catalog/config_entries.check_graph).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from gossamer.catalog.config_entries import key_of
from gossamer.catalog.config_entries import target_parts as split_key
from gossamer.catalog.config_resolver import Ref, Resolver

__all__ = ["ChainError", "Route", "Target", "chain_problems", "key_of", "resolve", "split_key"]
# What OnlyPassing false lets through besides passing: warning (a check at critical, or in
# maintenance, which is a critical check, keeps the instance out)
_NOT_CRITICAL = "not Checks.Status == critical"


class ChainError(ValueError):
    """A redirect loop, or a subset its resolver does not define."""


@dataclass(frozen=True)
class Target:
    """A set of instances: a service, or one subset of it (its filter and health rule)."""

    service: str
    subset: str = ""
    filter: str = ""
    only_passing: bool = False

    @property
    def key(self) -> str:
        return key_of(self.service, self.subset)

    def query(self) -> str:
        """The query string of the `/v1/health/connect/<service>` watch that finds them."""
        if not self.subset:
            return "passing"
        if self.only_passing:
            return f"passing&filter={quote(self.filter)}" if self.filter.strip() else "passing"
        both = f"({self.filter}) and {_NOT_CRITICAL}" if self.filter.strip() else _NOT_CRITICAL
        return f"filter={quote(both)}"


@dataclass(frozen=True)
class Route:
    """Where one service (or subset) resolves: `primary`, then `failover` in order."""

    primary: Target
    failover: tuple[Target, ...] = ()
    connect_timeout_s: float = 0.0  # the final resolver's; 0: it sets none
    request_timeout_s: float = 0.0

    @property
    def targets(self) -> tuple[Target, ...]:
        return (self.primary, *self.failover)


def resolve(service: str, subset: str, resolvers: Mapping[str, Resolver]) -> Route:
    """The route of `service` (`subset`, "" for its default); ChainError when it cannot be."""
    primary, resolver = _final(service, subset, resolvers)
    failover: list[Target] = []
    if resolver is not None and resolver.failover:
        refs = resolver.failover.get(primary.subset) or resolver.failover.get("*", ())
        seen = {primary.key}
        for ref in refs:
            to_service, to_subset = _rewrite(primary.service, primary.subset, ref)
            target, _ = _final(to_service, to_subset, resolvers)
            if target.key not in seen:
                seen.add(target.key)
                failover.append(target)
    timeouts = (resolver.connect_timeout_s, resolver.request_timeout_s) if resolver else (0, 0)
    return Route(primary, tuple(failover), *timeouts)


def _rewrite(service: str, subset: str, ref: Ref) -> tuple[str, str]:
    """Consul's rewriteTarget: another service drops the subset; a subset given replaces it."""
    if ref.service and ref.service != service:
        service, subset = ref.service, ""
    return service, ref.subset or subset


def _final(service: str, subset: str,
           resolvers: Mapping[str, Resolver]) -> tuple[Target, Resolver | None]:  # fmt: skip
    """The target `service`/`subset` ends at after redirects and the default subset."""
    met: list[str] = []
    while True:
        key = key_of(service, subset)
        if key in met:
            raise ChainError(f"circular resolver redirect: {' -> '.join((*met, key))}")
        met.append(key)
        resolver = resolvers.get(service)
        if resolver is not None and resolver.redirect is not None:
            moved = _rewrite(service, subset, resolver.redirect)
            if moved != (service, subset):
                service, subset = moved
                continue
        if not subset and resolver is not None and resolver.default_subset:
            subset = resolver.default_subset
            continue
        if not subset:
            return Target(service), resolver
        if resolver is None or subset not in resolver.subsets:
            has = (f"its service-resolver defines {', '.join(map(repr, resolver.subsets))}"
                   if resolver is not None and resolver.subsets else
                   "no service-resolver of it defines subsets")  # fmt: skip
            raise ChainError(f"service {service!r} does not have a subset named {subset!r} "
                             f"({has})")  # fmt: skip
        found = resolver.subsets[subset]
        return Target(service, subset, found.filter, found.only_passing), resolver


def chain_problems(splits: Mapping[str, Sequence[str]],
                   resolvers: Mapping[str, Resolver]) -> dict[str, str]:  # fmt: skip
    """`{where: why}` for every chain the entries start that cannot be resolved: `where` is
    `service-resolver/<name>` or `service-splitter/<name>.Splits[i]`. `splits`: each
    splitter's target keys, in order."""
    problems: dict[str, str] = {}
    for name in resolvers:
        try:
            resolve(name, "", resolvers)
        except ChainError as exc:
            problems[f"service-resolver/{name}"] = str(exc)
    for name, keys in splits.items():
        for i, key in enumerate(keys):
            try:
                resolve(*split_key(key), resolvers)
            except ChainError as exc:
                problems[f"service-splitter/{name}.Splits[{i}]"] = str(exc)
    return problems
