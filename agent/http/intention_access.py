"""What the intention handlers share: the store, the default policy, parameters and errors.

The integrator sets ``app[INTENTIONS_KEY]``; without it the intention routes
answer 500, saying so. Bad input is a 400 whose plain-text body names the
parameter or field, every problem of an intention at once, one per line.

Names in query parameters may be written Consul's way with a namespace,
``default/web``; gossamer is the open-source shape, so any other namespace
is refused rather than silently read as ``default``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from aiohttp import web

from gossamer.agent.config import AgentConfig
from gossamer.agent.http.errors import BadRequest, Conflict, NotFound, ServerError
from gossamer.agent.replicated.intention_store import (
    DuplicateIntention,
    IntentionNotFound,
    IntentionStore,
)
from gossamer.catalog.store import StoreError
from gossamer.intentions.model import Intention
from gossamer.intentions.validate import IntentionError, Problem, validate

T = TypeVar("T")


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


def intentions_of(request: web.Request) -> IntentionsAccess:
    access = request.app.get(INTENTIONS_KEY)
    if access is None:
        raise ServerError("intentions are not available on this agent")
    return access


def problems_text(what: str, problems: Sequence[Problem], rename: dict[str, str]) -> str:
    """`Invalid intention:` then one `  field: message` line per problem."""
    lines = [f"  {rename.get(p.field, p.field)}: {p.message}" for p in problems]
    return "\n".join([f"Invalid {what}:", *lines])


def bad_intention(exc: IntentionError, rename: dict[str, str] | None = None) -> BadRequest:
    return BadRequest(problems_text("intention", exc.problems, rename or {}))


def required(request: web.Request, name: str) -> str:
    """A query parameter that must be given exactly once and not empty (400 naming it)."""
    values = request.query.getall(name, [])
    if not values or not values[0]:
        raise BadRequest(f"required query parameter '{name}' not set")
    if len(values) > 1:
        raise BadRequest(f"query parameter '{name}' given more than once")
    return values[0]


def parse_name(value: str) -> str:
    """`web`, `*` or `default/web` -> the service name; ValueError saying what is wrong."""
    namespace, slash, name = value.rpartition("/")
    if slash and namespace != "default":
        raise ValueError(
            f"namespace {namespace!r} is not supported (namespaces are Enterprise; "
            f"only 'default/' may be written), got {value!r}"
        )
    for problem in validate(Intention(name, "x", action="allow")):
        if problem.field == "SourceName":
            raise ValueError(problem.message)
    return name


def service_name(param: str, value: str) -> str:
    """`parse_name` for a query parameter: BadRequest naming `param`."""
    try:
        return parse_name(value)
    except ValueError as exc:
        raise BadRequest(f"{param}: {exc}") from None


def pair_query(request: web.Request) -> tuple[str, str]:
    """The `source` and `destination` query parameters, both required and valid."""
    return (
        service_name("source", required(request, "source")),
        service_name("destination", required(request, "destination")),
    )


def write(fn: Callable[[], T], rename: dict[str, str] | None = None) -> T:
    """Run a store write, turning its failures into HTTP answers.

    A pair that already has an intention is 409 with Consul's words
    ("duplicate intention found: ...", where Consul itself answers 500).
    """
    try:
        return fn()
    except IntentionError as exc:
        raise bad_intention(exc, rename) from None
    except DuplicateIntention as exc:
        raise Conflict(str(exc)) from None
    except IntentionNotFound as exc:
        raise NotFound(str(exc)) from None
    except StoreError as exc:
        raise ServerError(f"intention not written: {exc}") from None


def found(ixn: Intention | None, what: str) -> Intention:
    if ixn is None:
        raise NotFound(f"Intention not found: {what}")
    return ixn
