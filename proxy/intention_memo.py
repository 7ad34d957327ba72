"""The intentions of a match answer as an `IntentionSet`, parsing only what changed. Pure.

A sidecar gets every intention of its service again on each change (the
agent's `/v1/connect/intentions/match` answer), and reading one costs far
more than deciding with it: validation, and for L7 permissions a RE2
compile per regex. Done afresh for each answer, 3,000 L7 intentions held
the sidecar's event loop ~0.4 s per change (5,000: over 2 s), every open
connection stalled and a deny late past its second. So rows are kept,
compiled, by their text: an answer reuses the rule of each row seen word
for word before, and parses and compiles only the others.

A row's rule is kept while a set built here holds it (a weak reference),
so memory follows the sets in use, and one memo serves every sidecar of a
process (runtime.py): `--node`'s sidecars share the rows their answers have
in common (`* => *`, a `web => *`) instead of each holding its own copy.
A row that does not parse makes the whole answer unusable (IntentionError,
a ValueError), as before: the memo is then left as it was.
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

    def build(self, rows: Sequence[object]) -> IntentionSet:
        """The set of `rows` (a match answer's list); IntentionError for a bad row."""
        compiler = RuleCompiler()
        fresh: dict[str, Rule] = {}  # (held here until the set holds them)
        rules: list[Rule] = []
        for row in rows:
            key = json.dumps(row, separators=(",", ":"))  # (the agent's order: stable)
            rule = self._rules.get(key) or fresh.get(key)
            if rule is None:
                rule = fresh[key] = compiler.compile(intention_from_json(row))
                self.compiled += 1
            rules.append(rule)
        if compiler.problems:
            raise IntentionError(compiler.problems)
        built = IntentionSet((), rules=rules)
        self._rules.update(fresh)
        return built

    def __len__(self) -> int:
        """The rows kept (those of the sets in use)."""
        return len(self._rules)
