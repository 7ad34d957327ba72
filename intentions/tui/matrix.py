"""Who may talk to whom: services x services under the current rules. Pure.

Rules this module keeps:
- A cell is decided by `decide()` (intentions/decide.py), the function the
  agent's `/check` uses, so the matrix and the API never disagree.
- Four kinds: `allow` and `deny` (an intention decided), `l7` (the
  deciding intention has permissions: the answer depends on the request),
  `default` (nothing matched; the default policy decides, and the cell says
  which way). A cell keeps the deciding intention so the screen can name it.
- Rows are sources, columns destinations, both sorted; a service talking to
  itself is a cell like any other.
- The default policy is not in the intentions; it is learnt from the agent
  (`default_from_reason`: the reason `/check` gives when nothing matched).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from gossamer.intentions.decide import IntentionSet, decide
from gossamer.intentions.model import Decision, HttpRequest, Intention

CellKind = Literal["allow", "deny", "l7", "default"]
SYMBOLS: dict[CellKind, str] = {"allow": "✔", "deny": "✘", "l7": "L7", "default": "·"}


@dataclass(frozen=True)
class Cell:
    kind: CellKind
    allowed: bool  # for `l7`: what a plain L4 check answers (deny)
    reason: str
    intention: Intention | None

    @property
    def symbol(self) -> str:
        return SYMBOLS[self.kind]


def cell_of(decision: Decision) -> Cell:
    ixn = decision.intention
    if ixn is None:
        return Cell("default", decision.allowed, decision.reason, None)
    if ixn.is_l7:
        return Cell("l7", decision.allowed, decision.reason, ixn)
    return Cell("allow" if decision.allowed else "deny", decision.allowed, decision.reason, ixn)


def cell(
    iset: IntentionSet,
    source: str,
    destination: str,
    default_allow: bool,
    request: HttpRequest | None = None,
) -> Cell:
    return cell_of(decide(iset, source, destination, request=request, default_allow=default_allow))


class Matrix:
    """Sources x destinations; a cell is decided when first read, then kept.

    200 services are 40,000 cells: deciding only those on screen keeps
    opening the matrix and moving in it as quick as at 5 services.
    """

    def __init__(self, services: tuple[str, ...], iset: IntentionSet, default_allow: bool) -> None:
        self.services = services
        self._iset, self._default_allow = iset, default_allow
        self._cells: dict[tuple[int, int], Cell] = {}

    def at(self, source_row: int, destination_col: int) -> Cell:
        key = (source_row, destination_col)
        found = self._cells.get(key)
        if found is None:
            src, dst = self.services[source_row], self.services[destination_col]
            found = self._cells[key] = cell(self._iset, src, dst, self._default_allow)
        return found


def matrix(services: Iterable[str], iset: IntentionSet, default_allow: bool) -> Matrix:
    """The matrix of the services given, sorted (the wildcard is no service)."""
    return Matrix(tuple(sorted({s for s in services if s != "*"})), iset, default_allow)


def default_from_reason(reason: str) -> bool | None:
    """True/False when a `/check` reason names the default policy; None when a rule decided."""
    head = "no intention matched; default policy is "
    return reason.removeprefix(head).startswith("allow") if reason.startswith(head) else None


def check_request(method: str, path: str, headers: str) -> tuple[HttpRequest | None, list[str]]:
    """The request the check panel describes (None: an L4 check), and what is wrong with it.

    Headers are typed `Name: value` separated by `;` or new lines. A method
    without a path checks `/`, a path without a method checks GET, as the
    agent's `/check` does.
    """
    bad: list[str] = []
    pairs: dict[str, str] = {}
    for part in (p.strip() for p in headers.replace("\n", ";").split(";")):
        if not part:
            continue
        name, colon, value = part.partition(":")
        if not colon or not name.strip():
            bad.append(f"header {part!r}: expected Name: value")
        else:
            pairs[name.strip()] = value.strip()
    method, path = method.strip(), path.strip()
    if path and not path.startswith("/"):
        bad.append(f"path must start with '/', got {path!r}")
    if not (method or path or pairs):
        return None, bad
    return HttpRequest((method or "GET").upper(), path or "/", pairs), bad
