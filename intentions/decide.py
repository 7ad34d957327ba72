"""The decision: may `source` call `destination`? A pure function over an index.

Rules (Consul open-source, agent/consul/state IntentionMatch + Envoy RBAC):
- Precedence 9 (exact => exact), 8 (* => exact), 6 (exact => *), 5 (* => *):
  the highest-precedence intention that matches decides, and only it — an
  L7 intention whose permissions all miss gives the default policy, it does
  not fall through to lower-precedence intentions.
- Only one intention per (source, destination) pair can match at a given
  precedence, so ties happen only when a set holds the same pair twice (two
  writers, a policy file repeating itself). Then deny wins: an explicit deny
  beats an explicit allow, which beats an L7 miss; among equals the order is
  fixed by action, ID and content, never by insertion order.
- An L4 intention (`Action`) decides directly. An L7 one (`Permissions`)
  with no request is a deny, as Consul's `/intentions/check` and
  `/agent/connect/authorize` treat it; with a request its permissions are
  tried in order and the first match's action decides.
- No intention matches: the default policy.

`IntentionSet` indexes intentions once by exact (source, destination) pair,
so a decision is four dict look-ups whatever the number of intentions, and
compiles each regex once. A decision is a value: deny is not an exception.
"""

from __future__ import annotations

import heapq
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

from gossamer.intentions.codec import intention_to_json
from gossamer.intentions.model import ALLOW, DENY, WILDCARD, HeaderMatch, HTTPMatch, Intention
from gossamer.intentions.validate import IntentionError, Problem, compile_regex


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
    """The answer, why, and the intention that gave it (None: the default)."""

    allowed: bool
    reason: str
    intention: Intention | None = None


# (strength, decision): 0 an explicit deny, 1 an explicit allow, 2 an L7 miss.
# At equal precedence the lowest strength wins, so deny beats allow.
_Outcome = tuple[int, Decision]


@dataclass(frozen=True)
class _Header:
    name: str  # lower case
    match: HeaderMatch
    pattern: re.Pattern[str] | None

    def matches(self, request: HttpRequest) -> bool:
        value = request.header(self.name)
        m = self.match
        if value is None:
            # Envoy: a missing header matches nothing but "not present".
            return m.present and m.invert
        if m.present:
            hit = True
        elif m.exact:
            hit = value == m.exact
        elif m.prefix:
            hit = value.startswith(m.prefix)
        elif m.suffix:
            hit = value.endswith(m.suffix)
        else:
            hit = self.pattern is not None and self.pattern.fullmatch(value) is not None
        return hit != m.invert


@dataclass(frozen=True)
class _Permission:
    """A permission ready to evaluate: every condition given must hold."""

    index: int
    action: str
    exact: str
    prefix: str
    regex: re.Pattern[str] | None
    methods: frozenset[str]
    headers: tuple[_Header, ...]
    outcome: _Outcome  # what a match decides, made once: deciding formats no strings

    def matches(self, request: HttpRequest) -> bool:
        path = request.bare_path
        if self.exact and path != self.exact:
            return False
        if self.prefix and not path.startswith(self.prefix):
            return False
        if self.regex is not None and self.regex.fullmatch(path) is None:
            return False
        if self.methods and request.method.upper() not in self.methods:
            return False
        return all(h.matches(request) for h in self.headers)


@dataclass(frozen=True)
class _Rule:
    """An intention ready to evaluate, its possible decisions made in advance.

    `outcome` is an L4 intention's decision, or an L7 one's without a
    request; `miss` is an L7 miss, indexed by the default policy.
    """

    intention: Intention
    permissions: tuple[_Permission, ...]
    outcome: _Outcome
    miss: tuple[_Outcome, _Outcome]


_OrderKey = tuple[int, str, str, int, str, str]
_NO_MATCH = tuple(Decision(d, f"no intention matched; default policy is {ALLOW if d else DENY}")
                  for d in (False, True))  # fmt: skip


class IntentionSet:
    """An immutable, indexed collection of intentions; build once, decide often.

    Raises IntentionError if a regex does not compile: validation refuses
    those before they are stored, and a rule we cannot evaluate must not be
    skipped silently (skipping a deny would allow).
    """

    def __init__(self, intentions: Iterable[Intention]) -> None:
        self._regexes: dict[str, re.Pattern[str]] = {}
        problems: list[Problem] = []
        by_pair: dict[tuple[str, str], list[_Rule]] = {}
        for ixn in intentions:
            by_pair.setdefault(ixn.pair, []).append(self._compile(ixn, problems))
        if problems:
            raise IntentionError(problems)
        self._by_pair: dict[tuple[str, str], tuple[_Rule, ...]] = {}
        keyed: list[tuple[_OrderKey, Intention]] = []
        for pair, rules in by_pair.items():
            if len(rules) > 1:  # content breaks ties only between duplicates of a pair
                rules.sort(key=lambda r: _tie_key(r.intention, _canonical(r.intention)))
                keyed += [(_order_key(r.intention, _canonical(r.intention)), r.intention)
                          for r in rules]  # fmt: skip
            else:
                keyed.append((_order_key(rules[0].intention, ""), rules[0].intention))
            self._by_pair[pair] = tuple(rules)
        keyed.sort(key=lambda k: k[0])
        self._all = tuple(ixn for _, ixn in keyed)
        self._by_destination: dict[str, list[tuple[_OrderKey, Intention]]] = {}
        self._by_source: dict[str, list[tuple[_OrderKey, Intention]]] = {}
        for item in keyed:  # each list stays in evaluation order
            self._by_destination.setdefault(item[1].destination, []).append(item)
            self._by_source.setdefault(item[1].source, []).append(item)

    def __len__(self) -> int:
        return len(self._all)

    def __iter__(self) -> Iterator[Intention]:
        """All intentions in evaluation order (precedence descending)."""
        return iter(self._all)

    def rules_for(self, source: str, destination: str) -> tuple[_Rule, ...]:
        """The highest-precedence rules matching the pair, ties in decision order."""
        for key in ((source, destination), (WILDCARD, destination),
                    (source, WILDCARD), (WILDCARD, WILDCARD)):  # fmt: skip
            rules = self._by_pair.get(key)
            if rules:
                return rules
        return ()

    def matching(self, by: Literal["source", "destination"], name: str) -> list[Intention]:
        """See `match`."""
        if by == "destination":
            index = self._by_destination
        elif by == "source":
            index = self._by_source
        else:
            raise ValueError(f'by must be "source" or "destination", got {by!r}')
        exact = index.get(name, [])
        wild = [] if name == WILDCARD else index.get(WILDCARD, [])
        return [ixn for _, ixn in heapq.merge(exact, wild, key=lambda k: k[0])]

    def _regex(self, pattern: str, where: str, problems: list[Problem]) -> re.Pattern[str] | None:
        if not pattern:
            return None
        if pattern not in self._regexes:
            try:
                self._regexes[pattern] = compile_regex(pattern)
            except ValueError as exc:
                problems.append(Problem(where, str(exc)))
                return None
        return self._regexes[pattern]

    def _compile(self, ixn: Intention, problems: list[Problem]) -> _Rule:
        perms: list[_Permission] = []
        for i, perm in enumerate(ixn.permissions):
            http = perm.http or HTTPMatch()  # no conditions: matches any request
            where = f"{ixn.source} => {ixn.destination}: Permissions[{i}].HTTP"
            headers = tuple(
                _Header(h.name.lower(), h, None if h.present or h.exact or h.prefix or h.suffix
                        else self._regex(h.regex, f"{where}.Header[{k}].Regex", problems))
                for k, h in enumerate(http.headers)
            )  # fmt: skip
            regex = self._regex(http.path_regex, f"{where}.PathRegex", problems)
            methods = frozenset(m.upper() for m in http.methods)
            outcome = _decided(perm.action == ALLOW, f"Permissions[{i}] ({perm.action})", ixn)
            perms.append(_Permission(i, perm.action, http.path_exact, http.path_prefix, regex,
                                     methods, headers, outcome))  # fmt: skip
        name = f"{ixn.source} => {ixn.destination}"
        if not perms:
            return _Rule(ixn, (), _decided(ixn.action == ALLOW, f"({ixn.action})", ixn), _NO_MISS)
        n = len(perms)
        miss = tuple(
            (2, Decision(d, f"matched intention {name} but none of its {n} permission"
                            f"{'s' if n > 1 else ''} matched; {_policy(d)}", ixn))
            for d in (False, True)
        )  # fmt: skip
        l4_check = (
            f"matched intention {name}, which has L7 permissions: "
            "denied without an HTTP request to check them (as Consul's L4 check)"
        )
        return _Rule(ixn, tuple(perms), (0, Decision(False, l4_check, ixn)), (miss[0], miss[1]))


def _canonical(ixn: Intention) -> str:
    return json.dumps(intention_to_json(ixn), sort_keys=True)


def _rank(ixn: Intention) -> int:
    """Explicit denies first, then L7 rules, then allows."""
    return 1 if ixn.permissions else (0 if ixn.action == DENY else 2)


def _tie_key(ixn: Intention, canonical: str) -> tuple[int, str, str]:
    return (_rank(ixn), ixn.id, canonical)


def _order_key(ixn: Intention, canonical: str) -> _OrderKey:
    """Consul's IntentionPrecedenceSorter, completed so that any set sorts one way."""
    return (-ixn.precedence, ixn.source, ixn.destination, _rank(ixn), ixn.id, canonical)


def _policy(default_allow: bool) -> str:
    return f"default policy is {ALLOW if default_allow else DENY}"


def _decided(allowed: bool, what: str, ixn: Intention) -> _Outcome:
    name = f"{ixn.source} => {ixn.destination}"
    sep = " " if what.startswith("(") else ", "
    return (1 if allowed else 0), Decision(allowed, f"matched intention {name}{sep}{what}", ixn)


_NO_MISS: tuple[_Outcome, _Outcome] = ((2, _NO_MATCH[0]), (2, _NO_MATCH[1]))  # L4: never used


def _outcome(rule: _Rule, request: HttpRequest | None, default_allow: bool) -> _Outcome:
    if not rule.permissions or request is None:
        return rule.outcome
    for perm in rule.permissions:
        if perm.matches(request):
            return perm.outcome
    return rule.miss[default_allow]


def decide(
    iset: IntentionSet,
    source: str,
    destination: str,
    *,
    request: HttpRequest | None = None,
    default_allow: bool,
) -> Decision:
    """May `source` call `destination` (with `request`, for L7)? No I/O, O(1) in len(iset)."""
    rules = iset.rules_for(source, destination)
    if not rules:
        return _NO_MATCH[default_allow]
    best = _outcome(rules[0], request, default_allow)
    for rule in rules[1:]:  # ties: only when a set holds the same pair twice
        if best[0] == 0:
            break
        outcome = _outcome(rule, request, default_allow)
        if outcome[0] < best[0]:
            best = outcome
    return best[1]


def match(iset: IntentionSet, by: Literal["source", "destination"], name: str) -> list[Intention]:
    """Consul's `/v1/connect/intentions/match`: the intentions that apply to
    `name` as a source (or destination), by name or through `*`, in
    evaluation order (precedence descending, then source and destination)."""
    return iset.matching(by, name)
