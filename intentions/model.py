"""The intention model: plain frozen values, no parsing and no I/O.

An intention says whether `source` may call `destination` (service names;
either may be the wildcard `*`). It carries either an L4 `action` or an
ordered tuple of L7 `permissions` — never both (see validate.py). Values are
frozen so an `IntentionSet` can index them once and share them freely. An
`HttpRequest` is what L7 permissions are checked against, and a `Decision`
is what deciding gives back: a deny is a value, not an exception.

Namespaces and partitions are Consul Enterprise features; gossamer is the
open-source shape, so both are always `default` and are not stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

WILDCARD = "*"
ALLOW: Literal["allow"] = "allow"
DENY: Literal["deny"] = "deny"
ACTIONS = (ALLOW, DENY)
Action = Literal["allow", "deny"]

# Consul's precedence with namespaces fixed to "default" (structs.UpdatePrecedence):
# destination specificity outranks source specificity, so `* => db` (8) beats
# `web => *` (6).
PRECEDENCE = {
    (False, False): 9,  # exact => exact
    (True, False): 8,  # *     => exact
    (False, True): 6,  # exact => *
    (True, True): 5,  # *     => *
}


@dataclass(frozen=True)
class HeaderMatch:
    """One header condition of an L7 permission (Envoy's HeaderMatcher).

    Exactly one of `present` / `exact` / `prefix` / `suffix` / `contains` /
    `regex` is set; `invert` negates the result. Empty strings mean "not set",
    as in Consul. `ignore_case` (Consul's `IgnoreCase`, Envoy's StringMatcher
    `ignore_case`) compares exact/prefix/suffix/contains with ASCII letters
    folded; Consul refuses it beside `present` or `regex` (validate.py).
    """

    name: str
    present: bool = False
    exact: str = ""
    prefix: str = ""
    suffix: str = ""
    regex: str = ""
    invert: bool = False
    contains: str = ""
    ignore_case: bool = False


@dataclass(frozen=True)
class HTTPMatch:
    """The HTTP part of a permission: at most one path rule, methods, headers.

    Every given condition must hold; an empty `methods` means any method.
    """

    path_exact: str = ""
    path_prefix: str = ""
    path_regex: str = ""
    methods: tuple[str, ...] = ()
    headers: tuple[HeaderMatch, ...] = ()


@dataclass(frozen=True)
class Permission:
    """An L7 rule: if the request matches `http`, `action` decides."""

    action: str
    http: HTTPMatch | None = None


@dataclass(frozen=True)
class Intention:
    """source => destination with an L4 action or L7 permissions.

    `action` is typed `str | None` rather than `Action` so that a value read
    from the outside can be held and then reported by `validate()`, instead of
    failing somewhere less helpful. `created_at`/`updated_at` are RFC 3339
    strings as Consul prints them ("" when unknown); the indexes are the
    store's, carried so the API can echo them.
    """

    source: str
    destination: str
    action: str | None = None
    permissions: tuple[Permission, ...] = ()
    id: str = ""
    description: str = ""
    meta: Mapping[str, str] = field(default_factory=dict, hash=False)
    created_at: str = ""
    updated_at: str = ""
    create_index: int = 0
    modify_index: int = 0

    @property
    def precedence(self) -> int:
        """Consul's open-source precedence: 9, 8, 6 or 5 (see PRECEDENCE)."""
        return precedence(self.source, self.destination)

    @property
    def is_l7(self) -> bool:
        """True when permissions, not an action, decide."""
        return bool(self.permissions)

    @property
    def pair(self) -> tuple[str, str]:
        """The (source, destination) key: at most one intention per pair is stored."""
        return (self.source, self.destination)

    def summary(self) -> str:
        """`web => db (deny)` or `web => api (2 permissions)`, as `consul intention match`."""
        if self.permissions:
            n = len(self.permissions)
            what = f"{n} permission" + ("" if n == 1 else "s")
        else:
            what = str(self.action)
        return f"{self.source} => {self.destination} ({what})"


@dataclass(frozen=True)
class HttpRequest:
    """What an L7 permission looks at. Header names are matched in any case;
    a repeated header is given as one value joined with ",", as Envoy sees it.
    The path's query string is ignored, as Envoy's URL path matcher does."""

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        lower = {k.lower(): v for k, v in self.headers.items()}
        object.__setattr__(self, "_lower", lower)
        object.__setattr__(self, "_bare_path", self.path.split("?", 1)[0].split("#", 1)[0])

    def header(self, lower_name: str) -> str | None:
        """The value of a header by lower-case name, None when absent."""
        value: str | None = self.__dict__["_lower"].get(lower_name)
        return value

    @property
    def bare_path(self) -> str:
        """The path without its query string."""
        path: str = self.__dict__["_bare_path"]
        return path


@dataclass(frozen=True)
class Decision:
    """The answer, why, and the intention that gave it (None: the default); `route` names the
    L7 permission that decided (rules.py `route_name`), "" when none did."""

    allowed: bool
    reason: str
    intention: Intention | None = None
    route: str = field(default="", compare=False)  # a metrics label, not part of the answer


def precedence(source: str, destination: str) -> int:
    """The precedence of a source/destination pair of names."""
    return PRECEDENCE[(source == WILDCARD, destination == WILDCARD)]
