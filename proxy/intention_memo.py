"""The intentions of a match answer as an `IntentionSet`, parsing only what changed. Pure.

A sidecar gets every intention of its service again on each change (the
agent's `/v1/connect/intentions/match` answer), and reading one costs far
more than deciding with it: validation, and for L7 permissions a RE2
compile per regex. Done afresh for each answer, 3,000 L7 intentions held
the sidecar's event loop ~0.4 s per change (5,000: over 2 s), every open
connection stalled and a deny late past its second. So rows are kept,
compiled, by their text: an answer reuses the rule of each row seen word
for word before, and parses and compiles only the others. An answer is
read a row at a time (`start`, `MemoBuild.add`), so its reader can let the
event loop serve between rows (intention_read.py), and the set it makes
replaces the one in force whole, once every row is in.

A row's rule is kept while a set built here holds it (a weak reference),
so memory follows the sets in use, and one memo serves every sidecar of a
process (runtime.py): `--node`'s sidecars share the rows their answers have
in common (`* => *`, a `web => *`) instead of each holding its own copy.
A row that does not parse makes the whole answer unusable (IntentionError,
a ValueError), as before: the rows it compiled are let go with it.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Sequence

from gossamer.intentions.codec import intention_from_json
from gossamer.intentions.decide import IntentionSet
from gossamer.intentions.rules import Rule, RuleCompiler
from gossamer.intentions.validate import IntentionError


class IntentionMemo:
    """Match answers' rows to `IntentionSet`s, each row compiled once while it is in use."""

    def __init__(self) -> None:
        # a row's JSON text: its rule, while a set built here holds it
        self._rules: weakref.WeakValueDictionary[str, Rule] = weakref.WeakValueDictionary()
        self.compiled = 0  # rows parsed and compiled so far (the rest were reused)

    def start(self, before: IntentionSet | None = None) -> MemoBuild:
        """A set to be built row by row (`add`), the caller free to pause between rows;
        `before`, the set in force, lends the groups that did not change."""
        return MemoBuild(self, before)

    def build(self, rows: Sequence[object]) -> IntentionSet:
        """The set of `rows` (a match answer's list, decoded) in one step; IntentionError for
        a bad row. Each row's text is its JSON as `json.dumps` writes it."""
        build = self.start()
        for row in rows:
            build.add(json.dumps(row), row)
        return build.finish()

    def __len__(self) -> int:
        """The rows kept (those of the sets in use)."""
        return len(self._rules)


class MemoBuild:
    """One answer's rows on their way to a set: the set in force decides until `finish`.

    A row is keyed by its text as the answer spelled it (the agent writes a row the
    same way each time), so one seen before costs a look-up, not a compile. The text
    is all of the row: one that differs by a byte (its ModifyIndex, a regex) is
    compiled afresh, and one spelled otherwise (spacing, key order) is only compiled
    again, never decided differently.
    """

    def __init__(self, memo: IntentionMemo, before: IntentionSet | None) -> None:
        self._memo = memo
        self._compiler = RuleCompiler()  # one regex cache for the answer's new rows
        self._by_pair: dict[tuple[str, str], tuple[Rule, ...]] = {}
        self._twice: list[tuple[str, str]] = []  # the pairs of more than one rule
        self._before = before.by_pair() if before is not None else {}

    def add(self, text: str, row: object) -> None:
        """One row of the answer: `text` its JSON, `row` its value. IntentionError for a row
        that is no intention; a regex RE2 refuses is one of `finish`'s problems."""
        rule = self._memo._rules.get(text)
        if rule is None:
            problems = len(self._compiler.problems)
            rule = self._compiler.compile(intention_from_json(row))
            self._memo.compiled += 1
            if len(self._compiler.problems) == problems:  # (never a rule missing a regex)
                self._memo._rules[text] = rule  # kept while this build or its set holds it
        pair = rule.pair
        group = self._by_pair.get(pair)
        if group is not None:
            if len(group) == 1:
                self._twice.append(pair)
            self._by_pair[pair] = (*group, rule)
            return
        # A row as it was keeps its group of one: the set is made of objects the set in
        # force holds already, not 5,000 new ones for the cycle collector to walk.
        group = self._before.get(pair)
        if group is None or len(group) != 1 or group[0] is not rule:
            group = (rule,)
        self._by_pair[pair] = group

    def finish(self) -> IntentionSet:
        """The set of the rows added; IntentionError naming every regex that did not compile
        (the memo then keeps nothing of this answer, once the build is let go)."""
        if self._compiler.problems:
            raise IntentionError(self._compiler.problems)
        return IntentionSet.of_pairs(self._by_pair, self._twice)
