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
from collections.abc import Iterable, Iterator, Mapping
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
            by_pair.setdefault(rule.pair, []).append(rule)
        for ixn in intentions:
            by_pair.setdefault(ixn.pair, []).append(compiler.compile(ixn))
        if compiler.problems:
            raise IntentionError(compiler.problems)
        twice = [pair for pair, group in by_pair.items() if len(group) > 1]
        self._by_pair = _decision_order({p: tuple(g) for p, g in by_pair.items()}, twice)
        self._listed: _Listing | None = None

    @classmethod
    def of_pairs(
        cls, by_pair: dict[tuple[str, str], tuple[Rule, ...]], twice: Iterable[tuple[str, str]]
    ) -> IntentionSet:
        """The set of rules compiled and grouped by pair already, `twice` the pairs of more
        than one rule (a caller that gathers them as it reads an answer, a few at a time:
        intention_memo.py); `by_pair` is taken, not copied."""
        iset = cls.__new__(cls)
        iset._by_pair = _decision_order(by_pair, twice)
        iset._listed = None
        return iset

    def __len__(self) -> int:
        return len(self._listing()[0])

    def __iter__(self) -> Iterator[Intention]:
        """All intentions in evaluation order (precedence descending)."""
        return iter(self._listing()[0])

    def rules_for(self, source: str, destination: str) -> tuple[Rule, ...]:
        """The highest-precedence rules matching the pair, ties in decision order."""
        for key in ((source, destination), (WILDCARD, destination),
                    (source, WILDCARD), (WILDCARD, WILDCARD)):  # fmt: skip
            rules = self._by_pair.get(key)
            if rules:
                return rules
        return ()

    def by_pair(self) -> Mapping[tuple[str, str], tuple[Rule, ...]]:
        """Each pair's rules in decision order; read only (a builder of the next set takes the
        groups that did not change: intention_memo.py)."""
        return self._by_pair

    def matching(self, by: Literal["source", "destination"], name: str) -> list[Intention]:
        """See `match`."""
        if by == "destination":
            index = self._listing()[1]
        elif by == "source":
            index = self._listing()[2]
        else:
            raise ValueError(f'by must be "source" or "destination", got {by!r}')
        exact = index.get(name, [])
        wild = [] if name == WILDCARD else index.get(WILDCARD, [])
        return [ixn for _, ixn in heapq.merge(exact, wild, key=lambda k: k[0])]

    def _listing(self) -> _Listing:
        """The intentions in evaluation order, and by destination and by source: made on first
        use. Deciding needs none of it, so a sidecar (which only decides) never pays for it,
        and a set built from thousands of rows is ready as soon as its pairs are grouped."""
        if self._listed is None:
            self._listed = _listing(self._by_pair)
        return self._listed


_Keyed = list[tuple[_OrderKey, Intention]]
_Listing = tuple[tuple[Intention, ...], dict[str, _Keyed], dict[str, _Keyed]]


def _decision_order(
    by_pair: dict[tuple[str, str], tuple[Rule, ...]], twice: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], tuple[Rule, ...]]:
    """`by_pair`, the rules of each pair held more than once put in decision order (explicit
    denies first); a pair of one rule has no order to keep."""
    for pair in twice:  # content breaks ties only between duplicates of a pair
        by_pair[pair] = tuple(
            sorted(by_pair[pair], key=lambda r: _tie_key(r.intention, _canonical(r.intention)))
        )
    return by_pair


def _listing(by_pair: dict[tuple[str, str], tuple[Rule, ...]]) -> _Listing:
    keyed: _Keyed = []
    for rules in by_pair.values():
        if len(rules) > 1:
            keyed += [(_order_key(r.intention, _canonical(r.intention)), r.intention)
                      for r in rules]  # fmt: skip
        else:
            keyed.append((_order_key(rules[0].intention, ""), rules[0].intention))
    keyed.sort(key=lambda k: k[0])
    by_destination: dict[str, _Keyed] = {}
    by_source: dict[str, _Keyed] = {}
    for item in keyed:  # each list stays in evaluation order
        by_destination.setdefault(item[1].destination, []).append(item)
        by_source.setdefault(item[1].source, []).append(item)
    return tuple(ixn for _, ixn in keyed), by_destination, by_source


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
