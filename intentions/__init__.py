"""Intentions: who may talk to whom. Pure: imports nothing else of gossamer.

- model.py: the frozen values (`Intention`, `Permission`, `HTTPMatch`, `HeaderMatch`,
  the `HttpRequest` L7 rules look at, the `Decision` they give) and Consul's precedence;
- validate.py: `validate()` lists every problem, `IntentionError` carries them;
- codec.py: Consul's intention JSON, both ways;
- config_entry.py: the `service-intentions` config entry and policy files;
- rules.py: an intention compiled for evaluation (matchers, regexes, its decisions);
- decide.py: `IntentionSet`, `decide()` and `match()`.
"""

from gossamer.intentions.codec import intention_from_json, intention_to_json
from gossamer.intentions.config_entry import (
    config_entries_to_json,
    config_entry_from_json,
    config_entry_to_json,
    intentions_from_document,
)
from gossamer.intentions.decide import IntentionSet, decide, match
from gossamer.intentions.model import (
    WILDCARD,
    Decision,
    HeaderMatch,
    HTTPMatch,
    HttpRequest,
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
