"""Printing results as `linkerd check` does: a heading per group, one line per check.

✔ passed, ‼ warning (does not fail the run), ✘ failed, - skipped; under
anything but ✔ the hint to fix it. `--json` prints the same results as one
object with the exit code's verdict.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from rich.markup import escape

from gossamer.agent.preflight.result import Result, Status, exit_code

MARKS = {
    Status.OK: "[green]✔[/]",
    Status.WARN: "[yellow]‼[/]",
    Status.FAIL: "[red]✘[/]",
    Status.SKIP: "[dim]-[/]",
}


def text_lines(results: Sequence[Result]) -> list[str]:
    """Rich markup lines; the caller prints them."""
    lines: list[str] = []
    group = None
    for r in results:
        if r.group != group:
            if group is not None:
                lines.append("")
            group = r.group
            lines += [f"[bold]{group}[/]", "-" * len(group)]
        detail = f": {escape(r.detail)}" if r.detail else ""
        lines.append(f"{MARKS[r.status]} {escape(r.name)}{detail}")
        if r.hint and r.status is not Status.OK:
            lines.append(f"    [dim]hint:[/] {escape(r.hint)}")
    failed = sum(r.status is Status.FAIL for r in results)
    verdict = (
        "[green]Status check results are ✔[/]"
        if not failed
        else f"[red]Status check results are ✘ ({failed} failed)[/]"
    )
    return [*lines, "", verdict]


def json_text(results: Sequence[Result]) -> str:
    return json.dumps(
        {"Success": exit_code(results) == 0, "Checks": [r.json() for r in results]}, indent=2
    )
