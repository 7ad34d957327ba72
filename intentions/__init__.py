"""Intentions: who may talk to whom. Pure: imports nothing else of gossamer.

- model.py: the frozen values (`Intention`, `Permission`, `HTTPMatch`, `HeaderMatch`)
  and Consul's precedence;
- validate.py: `validate()` lists every problem, `IntentionError` carries them;
- codec.py: Consul's intention JSON, both ways;
- config_entry.py: the `service-intentions` config entry and policy files;
- decide.py: `IntentionSet`, `decide()` and `match()`.
"""

from gossamer.intentions.codec import intention_from_json, intention_to_json
from gossamer.intentions.config_entry import (
    config_entries_to_json,
    config_entry_from_json,
    config_entry_to_json,
    intentions_from_document,
)
from gossamer.intentions.decide import Decision, HttpRequest, IntentionSet, decide, match
from gossamer.intentions.model import (
    WILDCARD,
    HeaderMatch,
    HTTPMatch,
    Intention,
    Permission,
    precedence,
)
from gossamer.intentions.validate import IntentionError, Problem, validate

__all__ = [
    "WILDCARD",
    "Decision",
    "HTTPMatch",
    "HeaderMatch",
    "HttpRequest",
    "Intention",
    "IntentionError",
    "IntentionSet",
    "Permission",
    "Problem",
    "config_entries_to_json",
    "config_entry_from_json",
    "config_entry_to_json",
    "decide",
    "intention_from_json",
    "intention_to_json",
    "intentions_from_document",
    "match",
    "precedence",
    "validate",
]
