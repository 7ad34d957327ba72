"""A policy file's plan as the apply screen shows it. Pure.

The plan itself is intentions/plan.py's, the same `gossamer intention apply`
prints. A file with problems is `PolicyProblems`: every problem with its
place in the file, and nothing is applied.
"""

from __future__ import annotations

from collections.abc import Sequence

from gossamer.intentions.plan import SYMBOLS, Plan, action_label

STYLES = {"create": "green", "update": "yellow", "delete": "red"}


class PolicyProblems(ValueError):
    """A file that cannot be applied; `lines` are `file: where pair: field: message`."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = tuple(lines)


def plan_lines(plan: Plan) -> list[tuple[str, str]]:
    """(style, text) per line: the steps, the pairs kept, and the totals."""
    out: list[tuple[str, str]] = []
    for step in plan.steps:
        ixn = step.intention
        what = "; ".join(step.changes) if step.op == "update" else action_label(ixn)
        out.append(
            (STYLES[step.op], f"{SYMBOLS[step.op]} {ixn.source} => {ixn.destination}  {what}")
        )
    for ixn in plan.kept:
        out.append(
            (
                "dim",
                f"  {ixn.source} => {ixn.destination}  not in the file, kept "
                "(--prune would delete it)",
            )
        )
    out.append(
        (
            "bold",
            f"{plan.count('create')} to create, {plan.count('update')} to update, "
            f"{plan.count('delete')} to delete, {len(plan.unchanged)} unchanged",
        )
    )
    return out
