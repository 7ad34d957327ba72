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
so a decision is four dict look-ups whatever the number of intentions; each
intention is compiled once into a rule (rules.py: matchers, regexes and its
possible decisions). A decision is a value (model.py's `Decision`): deny is
not an exception.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Iterator
from typing import Literal

from gossamer.intentions.codec import intention_to_json
from gossamer.intentions.model import DENY, WILDCARD, Decision, HttpRequest, Intention
from gossamer.intentions.rules import NO_MATCH, Rule, RuleCompiler, rule_outcome
from gossamer.intentions.validate import IntentionError

_OrderKey = tuple[int, str, str, int, str, str]


class IntentionSet:
    """An immutable, indexed collection of intentions; build once, decide often.

    Raises IntentionError if a regex does not compile: validation refuses
    those before they are stored, and a rule we cannot evaluate must not be
    skipped silently (skipping a deny would allow).
    """

    def __init__(self, intentions: Iterable[Intention], *, rules: Iterable[Rule] = ()) -> None:
        """`rules`: intentions compiled already (a caller that keeps them from one set to the
        next compiles only what changed: compiling is most of a build's cost)."""
        compiler = RuleCompiler()
        by_pair: dict[tuple[str, str], list[Rule]] = {}
        for rule in rules:
            by_pair.setdefault(rule.intention.pair, []).append(rule)
        for ixn in intentions:
            by_pair.setdefault(ixn.pair, []).append(compiler.compile(ixn))
        if compiler.problems:
            raise IntentionError(compiler.problems)
        self._by_pair: dict[tuple[str, str], tuple[Rule, ...]] = {}
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

    def rules_for(self, source: str, destination: str) -> tuple[Rule, ...]:
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
        return NO_MATCH[default_allow]
    best = rule_outcome(rules[0], request, default_allow)
    for rule in rules[1:]:  # ties: only when a set holds the same pair twice
        if best[0] == 0:
            break
        outcome = rule_outcome(rule, request, default_allow)
        if outcome[0] < best[0]:
            best = outcome
    return best[1]


def match(iset: IntentionSet, by: Literal["source", "destination"], name: str) -> list[Intention]:
    """Consul's `/v1/connect/intentions/match`: the intentions that apply to
    `name` as a source (or destination), by name or through `*`, in
    evaluation order (precedence descending, then source and destination)."""
    return iset.matching(by, name)
