"""The agent's record of intention changes, as lines for the history feed. Pure.

A record (`GET /v1/connect/intentions/history`) is `{Time, Node, Source,
Destination, Op, Before, After}`, Before/After being Consul intention JSON
or null. A line says when, which node wrote it, what and how:
`2026-12-03 21:05:09  node2  ~ web => db  allow → deny`. A record whose
intentions do not decode is still shown, with its raw op and pair.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gossamer.intentions.codec import intention_from_json
from gossamer.intentions.model import Intention
from gossamer.intentions.plan import SYMBOLS, action_label, differences
from gossamer.intentions.validate import IntentionError


def _decoded(raw: object) -> Intention | None:
    if not isinstance(raw, dict):
        return None
    try:
        return intention_from_json(raw)
    except IntentionError:
        return None


def what_changed(record: Mapping[str, Any]) -> str:
    before, after = _decoded(record.get("Before")), _decoded(record.get("After"))
    if before is not None and after is not None:
        return "; ".join(differences(before, after)) or "rewritten, same content"
    if after is not None:
        return action_label(after)
    if before is not None:
        return f"was {action_label(before)}"
    return ""


def history_line(record: Mapping[str, Any]) -> str:
    when = str(record.get("Time", ""))[:19].replace("T", " ")
    op = str(record.get("Op", "?"))
    pair = f"{record.get('Source', '?')} => {record.get('Destination', '?')}"
    return (
        f"{when}  {record.get('Node', '?')}  {SYMBOLS.get(op, '?')} {pair}  {what_changed(record)}"
    )


def history_lines(records: Iterable[Mapping[str, Any]]) -> list[str]:
    return [history_line(r) for r in records]
