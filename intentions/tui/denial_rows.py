"""The denials pane's rows and where each leads. Pure.

A row shows source, destination, the rule that denied, the count and how
long ago it was last seen (`ago`, from a clock the screen passes in). A row
leads to the rule that denied: the pair of the intention with its ID, when
the list still holds it; otherwise (the default policy, intentions not yet
known, or an intention deleted since) to a new intention that would allow
the pair (`allow_draft`).
"""

from __future__ import annotations

from collections.abc import Mapping

from gossamer.intentions.denials import Denial
from gossamer.intentions.model import Intention
from gossamer.intentions.tui.form import Draft
from gossamer.intentions.tui.rows import Pair

COLUMNS = ("Source", "Destination", "Rule", "Count", "Last seen")


def ago(then_ms: int, now_ms: int) -> str:
    """`5s ago`, `3m ago`, `2h ago`; a time ahead of the clock is `now`."""
    seconds = max(now_ms - then_ms, 0) // 1000
    if seconds < 60:
        return f"{seconds}s ago" if seconds else "now"
    if seconds < 3600:
        return f"{seconds // 60}m ago"
    return f"{seconds // 3600}h ago"


def cells(denial: Denial, now_ms: int) -> tuple[str, str, str, str, str]:
    return (denial.source, denial.destination, denial.rule, str(denial.count),
            ago(denial.last_ms, now_ms))  # fmt: skip


def rule_pair(denial: Denial, intentions: Mapping[Pair, Intention]) -> Pair | None:
    """The pair of the intention that denied, if the list holds it (found by ID)."""
    if not denial.intention_id:
        return None
    for pair, ixn in intentions.items():
        if ixn.id == denial.intention_id:
            return pair
    return None


def allow_draft(denial: Denial) -> Draft:
    """A new intention that would let the denied pair through."""
    return Draft(denial.source, denial.destination, "allow",
                 f"allows what {denial.rule} denied")  # fmt: skip
