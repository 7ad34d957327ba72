"""The one table that turns an exception into an HTTP status and a plain-text body.

Handlers parse, call and return; they do not catch a domain error to convert
it (Consul's HTTP wrapper works the same way: an endpoint returns
`(object, error)` and one function picks the status). `answer` looks the
exception's class up in `ERRORS`, most specific class first, so a subclass
(`RegistrationConflict`) wins over its base (`RegistrationError`).

Rules this module keeps:
- One status per kind of error, whatever route raised it: 400 the request
  is wrong, 404 it names an id nothing here has, 409 it is valid but
  collides with what is held, 500 the agent (or its serf) failed.
- The body is what a Consul client prints as the reason, so it says what
  was wrong in the request's own terms (the field, the id), never a
  traceback. A handler may name what it was doing with `failing_as`; the
  answer is then `"<what>: <reason>"` (Go's `fmt.Errorf("%s: %w")`).
- `KeyError`, `ValueError` and other bare built-ins have no row: one that
  reaches the edge is a bug, answered 500 and logged with its traceback.
- The `HttpError` classes are for what only the HTTP layer can judge (a
  query parameter's syntax, a missing header); they carry their status.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from gossamer.agent.acl.api_bodies import AclBodyError
from gossamer.agent.acl.resolve import AclDisabled, AclNotFound, PermissionDenied, TooManyGuesses
from gossamer.agent.checks.runner import NotTTLCheck
from gossamer.agent.config import ConfigError
from gossamer.agent.identity.mesh_identity import IdentityNotReady, ServiceNotHere
from gossamer.agent.local.registry import UnknownId
from gossamer.agent.replicated.intention_store import DuplicateIntention, IntentionNotFound
from gossamer.catalog.blocking import QueryParamError
from gossamer.catalog.config_entries import ConfigEntryNotFound
from gossamer.catalog.filter import FilterError
from gossamer.catalog.registration import (
    RegistrationConflict,
    RegistrationError,
    ServiceNotRegistered,
)
from gossamer.catalog.store import StoreError
from gossamer.gossip.addresses import AddressError
from gossamer.gossip.errors import SerfConnectionError, SerfRpcError
from gossamer.gossip.keyring import InvalidKeyError
from gossamer.gossip.rpc import KeyResponse
from gossamer.intentions.validate import IntentionError, Problem
from gossamer.proxy.ca.errors import CaConfigError, LeafRequestError


class HttpError(Exception):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(HttpError):
    status = 400


class NotFound(HttpError):
    status = 404


class ServerError(HttpError):
    status = 500


def problems_text(what: str, problems: Sequence[Problem], rename: dict[str, str]) -> str:
    """`Invalid <what>:` then one `  field: message` line per problem."""
    lines = [f"  {rename.get(p.field, p.field)}: {p.message}" for p in problems]
    return "\n".join([f"Invalid {what}:", *lines])


def _said(exc: BaseException) -> str:
    return str(exc)


def _http(exc: Any) -> str:
    message: str = exc.message
    return message


def _serf_refused(exc: Any) -> str:
    """serf's per-node reasons ("node2: key is primary ...") make a key error actionable."""
    body = exc.body
    if not isinstance(body, KeyResponse) or not body.messages:
        return str(exc)
    return str(exc) + "".join(f"\n  {node}: {msg}" for node, msg in sorted(body.messages.items()))


@dataclass(frozen=True)
class Row:
    status: int
    word: Callable[[Any], str]


# exception type -> (status, wording). Order does not matter: the lookup walks the
# exception's class hierarchy, so the most specific row applies.
ERRORS: dict[type[BaseException], Row] = {
    # Judged by the handler itself; the class says the status.
    BadRequest: Row(400, _http),
    NotFound: Row(404, _http),
    ServerError: Row(500, _http),
    # ?index= / ?wait= that does not parse: the client's input.
    QueryParamError: Row(400, _said),
    # ?filter= that does not parse, or names a field the rows lack: the client's input.
    FilterError: Row(400, _said),
    # A registration body that is wrong; the message names the field path.
    RegistrationError: Row(400, _said),
    # A check bound to a ServiceID this agent does not hold: an unknown id, as in Consul.
    ServiceNotRegistered: Row(404, _said),
    # A valid body colliding with what is held (a node another agent owns, a node ID
    # in use, no sidecar port left): 409 on /v1/catalog/register and
    # /v1/agent/service/register alike (the agent route used to answer 400).
    RegistrationConflict: Row(409, _said),
    # A service or check id in the URL that this agent never registered.
    UnknownId: Row(404, _said),
    # pass/warn/fail/update on a check that is not a TTL check: the request is wrong.
    NotTTLCheck: Row(400, _said),
    # An intention with bad fields: every problem at once, one per line.
    IntentionError: Row(400, lambda exc: problems_text("intention", exc.problems, {})),
    # The pair already has an intention: a conflict (Consul answers 500 with these
    # words; the message still starts the same, so its clients read it alike).
    DuplicateIntention: Row(409, _said),
    # A config entry (kind and name) that nothing holds: Consul's 404 and words.
    ConfigEntryNotFound: Row(404, _said),
    # An intention ID (or pair) that nothing holds.
    IntentionNotFound: Row(404, _said),
    # A CA configuration, root or key that cannot be used (a TTL out of bounds, a key
    # that does not match its root, `ca init` once a root exists): every problem at once.
    CaConfigError: Row(400, _said),
    # A leaf that must not be signed (a bad service name, a CSR for another service).
    LeafRequestError: Row(400, _said),
    # A leaf asked of an agent where that service is not registered.
    ServiceNotHere: Row(403, _said),
    # No intermediate under the active root yet (no root, or no seal opens): try again.
    IdentityNotReady: Row(503, _said),
    # A join address that is not host[:port].
    AddressError: Row(400, _said),
    # A gossip key that is not base64 of 32 bytes; the body field is always `Key`.
    InvalidKeyError: Row(400, lambda exc: f"Key: {exc}"),
    # serf refused the operation (join, force-leave, a key change): the agent's side.
    SerfRpcError: Row(500, _serf_refused),
    # serf cannot be reached at all: the agent is not healthy.
    SerfConnectionError: Row(500, lambda exc: f"serf is not reachable: {exc}"),
    # The config files on disk are invalid (reload): the agent's, not the request's.
    ConfigError: Row(500, lambda exc: f"the new configuration is invalid:\n{exc}"),
    # The catalog database refused a write: the agent's fault; the message names the file.
    StoreError: Row(500, lambda exc: f"not stored: {exc}"),
    # ACLs (agent/acl/): Consul's statuses and words, which its clients key on
    # (py-consul raises ACLPermissionDenied on 403, ACLDisabled on 401).
    AclNotFound: Row(403, _said),
    PermissionDenied: Row(403, _said),
    TooManyGuesses: Row(429, _said),
    AclDisabled: Row(401, _said),
    AclBodyError: Row(400, lambda exc: "\n".join(exc.problems)),
}

_DOING = "answered as: "  # the note `failing_as` adds, read back by `answer`


def answer(exc: BaseException) -> tuple[int, str] | None:
    """(status, body) for an exception the table knows; None for a bug (answer 500, log it)."""
    row = next((ERRORS[cls] for cls in type(exc).__mro__ if cls in ERRORS), None)
    if row is None:
        return None
    text = row.word(exc)
    for note in getattr(exc, "__notes__", ()):  # innermost first, as they were added
        if isinstance(note, str) and note.startswith(_DOING):
            text = f"{note.removeprefix(_DOING)}: {text}"
    return row.status, text


@contextmanager
def failing_as(doing: str) -> Iterator[None]:
    """Errors raised inside answer `"<doing>: <reason>"`; the table still picks the status.

    Wrap only the call the prefix describes (one serf call, one reload).
    """
    try:
        yield
    except Exception as exc:
        exc.add_note(_DOING + doing)
        raise
