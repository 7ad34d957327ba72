"""What the intention handlers share: the store, the default policy, parameters and errors.

The integrator sets ``app[INTENTIONS_KEY]``; without it the intention routes
answer 500, saying so. Bad input is a 400 whose plain-text body names the
parameter or field, every problem of an intention at once, one per line;
the store's errors are answered by the error table (agent/http/errors.py).

Names in query parameters may be written Consul's way with a namespace,
``default/web``; gossamer is the open-source shape, so any other namespace
is refused rather than silently read as ``default``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from aiohttp import web

from gossamer.agent.config import AgentConfig
from gossamer.agent.http.errors import BadRequest
from gossamer.agent.http.render import app_part
from gossamer.agent.replicated.intention_store import (
    INTENTIONS,
    IntentionNotFound,
    IntentionStore,
)
from gossamer.intentions.model import Intention
from gossamer.intentions.validate import IntentionError, validate

# A pair taken from the query: problems about it name the query parameter.
QUERY_NAMES = {"SourceName": "source", "DestinationName": "destination"}


@dataclass(frozen=True)
class IntentionsAccess:
    """The store, and the default policy read from the live config at each decision."""

    store: IntentionStore
    default_allow: Callable[[], bool]


INTENTIONS_KEY: web.AppKey[IntentionsAccess] = web.AppKey("intentions", IntentionsAccess)


def default_allow(config: AgentConfig) -> bool:
    """`intentions.default_policy`: allow in --dev, deny otherwise, unless configured.

    Loading always resolves it; the fallback only covers a config built in code.
    """
    policy = config.intentions.default_policy or ("allow" if config.dev else "deny")
    return policy == "allow"


def wake_on_new_default(
    touch: Callable[[set[str]], int], old: AgentConfig, new: AgentConfig
) -> None:
    """After a reload: a new default policy wakes the intentions watchers.

    The match answer carries the default (intention_check_routes.py), so a
    proxy blocked on it applies the new default at once.
    """
    if default_allow(old) != default_allow(new):
        touch({INTENTIONS})


def intentions_of(request: web.Request) -> IntentionsAccess:
    return app_part(request, INTENTIONS_KEY, "intentions are")


def required(request: web.Request, name: str) -> str:
    """A query parameter that must be given exactly once and not empty (400 naming it)."""
    values = request.query.getall(name, [])
    if not values or not values[0]:
        raise BadRequest(f"required query parameter '{name}' not set")
    if len(values) > 1:
        raise BadRequest(f"query parameter '{name}' given more than once")
    return values[0]


class BadServiceName(ValueError):
    """A service name in a query parameter or field that is not one (or names a namespace)."""


def parse_name(value: str) -> str:
    """`web`, `*` or `default/web` -> the service name; BadServiceName saying what is wrong."""
    namespace, slash, name = value.rpartition("/")
    if slash and namespace != "default":
        raise BadServiceName(
            f"namespace {namespace!r} is not supported (namespaces are Enterprise; "
            f"only 'default/' may be written), got {value!r}"
        )
    for problem in validate(Intention(name, "x", action="allow")):
        if problem.field == "SourceName":
            raise BadServiceName(problem.message)
    return name


def service_name(param: str, value: str) -> str:
    """`parse_name` for a query parameter: BadRequest naming `param`."""
    try:
        return parse_name(value)
    except BadServiceName as exc:  # query syntax: only this layer knows the parameter's name
        raise BadRequest(f"{param}: {exc}") from None


def pair_query(request: web.Request) -> tuple[str, str]:
    """The `source` and `destination` query parameters, both required and valid."""
    return (
        service_name("source", required(request, "source")),
        service_name("destination", required(request, "destination")),
    )


@contextmanager
def fields_named_by_query() -> Iterator[None]:
    """IntentionErrors raised inside name the pair's fields as the query parameters that gave them.

    `PUT /exact?source=&destination=` takes the pair from the query, so a
    problem with `SourceName` is reported as `source`.
    """
    try:
        yield
    except IntentionError as exc:
        problems = (replace(p, field=QUERY_NAMES.get(p.field, p.field)) for p in exc.problems)
        raise IntentionError(problems) from None


def found(ixn: Intention | None, what: str) -> Intention:
    if ixn is None:
        raise IntentionNotFound(what)
    return ixn
