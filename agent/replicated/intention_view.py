"""What the replicated intentions map means: its entries decoded, by pair and by ID.

`IntentionView` is the read side of `IntentionStore`: it re-decodes only
the keys that changed, gives them the index of the change, and keeps the
decision index (`IntentionSet`) that `decide` reads. No I/O. Rules it keeps:
- A changed intention gets `ModifyIndex` = the change's index; it keeps its
  `CreateIndex` while its ID lives, even when it moved to another pair.
- A tombstone or a key that is no pair holds nothing; a value that does not
  decode holds a deny for its pair (intention_entries.decode), so an entry
  this agent cannot read never allows.
- `current` is rebuilt on its first read after a change: building it is
  O(n), so a burst of writes (an `intention apply`, a sync round) costs one
  build, not one each. Each intention is compiled (rules.py) when it is
  decoded and its rule kept while it lasts, so a build only indexes: compiled
  afresh each time, 5,000 L7 intentions took ~0.9 s a build, on the agent's
  loop and before any sidecar heard of the change (a deny is due on open
  connections within a second of reaching the agent).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace

from gossamer.agent.replicated.intention_entries import decode
from gossamer.catalog import lww
from gossamer.intentions.decide import IntentionSet
from gossamer.intentions.model import Intention
from gossamer.intentions.rules import Rule, RuleCompiler

log = logging.getLogger("gossamer.intentions")


class IntentionView:
    """The decoded intentions of one LWW map: by map key, by ID, and as an `IntentionSet`."""

    def __init__(self) -> None:
        self._decoded: dict[str, Intention] = {}
        self._rules: dict[str, Rule] = {}  # by map key: the intention compiled, when it compiles
        self._by_id: dict[str, str] = {}
        self._current: IntentionSet | None = None

    def get(self, key: str) -> Intention | None:
        """The intention held under a map key (`pair_key`), None when none."""
        return self._decoded.get(key)

    def at(self, key: str) -> Intention:
        """The intention held under a map key; KeyError when none."""
        return self._decoded[key]

    def key_of(self, intention_id: str) -> str | None:
        """The map key the intention with this ID is held under."""
        return self._by_id.get(intention_id)

    def refresh(self, entries: Mapping[str, lww.Entry], changed: list[str], index: int) -> None:
        """Re-decode the changed keys of `entries`, giving them `index`."""
        # An intention keeps its CreateIndex while its ID lives, even when it moved pairs.
        created_at_index = {
            ixn.id: ixn.create_index
            for key in changed
            if (ixn := self._decoded.get(key)) is not None and ixn.id
        }
        compiler = RuleCompiler()
        for key in changed:
            self._rules.pop(key, None)
            old = self._decoded.pop(key, None)
            if old is not None and self._by_id.get(old.id) == key:
                del self._by_id[old.id]
            entry = entries.get(key)
            if entry is None or entry.deleted:
                continue
            ixn, problem = decode(key, entry)
            if problem:
                log.warning("intention %s: %s", key, problem)
            if ixn is None:
                continue
            created = created_at_index.get(ixn.id, index) if ixn.id else index
            self._decoded[key] = replace(ixn, create_index=created, modify_index=index)
            problems = len(compiler.problems)
            rule = compiler.compile(self._decoded[key])
            if len(compiler.problems) == problems:  # (else `current` reports it, as before)
                self._rules[key] = rule
            if ixn.id:
                self._by_id[ixn.id] = key
        self._current = None

    @property
    def current(self) -> IntentionSet:
        """The decision index, rebuilt on the first read after a change."""
        if self._current is None:
            raw = (ixn for key, ixn in self._decoded.items() if key not in self._rules)
            self._current = IntentionSet(raw, rules=self._rules.values())
        return self._current
