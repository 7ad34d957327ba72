"""The intentions table without a terminal: rows, the `/` filter, the sort, what changed.

Rules this module keeps:
- A row is keyed by its pair (`source`, `destination`): at most one
  intention per pair exists, so the key survives updates, sorts and filters.
- The filter is typed as a regex and searched case-insensitively in the
  row's text (source, action, destination, description; `^` and `$` mark
  the edges of each column, `.` never crosses one); text that is not a
  valid regex is matched literally, so typing `web(` never errors. A leading
  `!` inverts; `src:`, `dst:`, `action:`, `desc:` narrow to one column.
- The sort column and direction are a value; pressing the key for the
  column already sorted flips its direction. Ties always fall back to
  evaluation order (precedence descending, then source, destination), so
  two renders of the same rows are the same.
- `changes` compares two snapshots by pair and ModifyIndex (and content,
  for agents that send no indexes): a row is marked when it is new or
  modified, never because it moved.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from gossamer.intentions.model import Intention
from gossamer.intentions.plan import action_label

Column = Literal["precedence", "source", "action", "destination", "description", "updated"]
COLUMNS: tuple[Column, ...] = (
    "precedence",
    "source",
    "action",
    "destination",
    "description",
    "updated",
)
TITLES: dict[Column, str] = {
    "precedence": "Prec",
    "source": "Source",
    "action": "Action",
    "destination": "Destination",
    "description": "Description",
    "updated": "Updated",
}
FIELD_PREFIXES: dict[str, Column] = {
    "src": "source",
    "dst": "destination",
    "action": "action",
    "desc": "description",
}
Pair = tuple[str, str]


@dataclass(frozen=True)
class Row:
    """What one line of the table shows, in text, with the intention behind it."""

    intention: Intention

    @property
    def key(self) -> Pair:
        return self.intention.pair

    @cached_property
    def texts(self) -> dict[Column, str]:
        """Every column's text, made once per row (a filter reads them 10,000 times)."""
        ixn = self.intention
        return {
            "precedence": str(ixn.precedence),
            "source": ixn.source,
            "action": action_label(ixn),
            "destination": ixn.destination,
            "description": ixn.description,
            "updated": _short_time(ixn.updated_at),
        }

    @cached_property
    def folded(self) -> dict[Column, str]:
        """The texts in lower case: what sorting by a column compares."""
        return {column: text.lower() for column, text in self.texts.items()}

    @cached_property
    def haystack(self) -> str:
        """The searched columns, one per line: with re.MULTILINE, `^` and `$` still mark the
        edges of each column, and one search replaces four."""
        t = self.texts
        return "\n".join((t["source"], t["action"], t["destination"], t["description"]))

    @cached_property
    def order_key(self) -> tuple[int, str, str]:
        """Evaluation order: precedence descending, then source, destination."""
        ixn = self.intention
        return (-ixn.precedence, ixn.source, ixn.destination)

    def cell(self, column: Column) -> str:
        return self.texts[column]

    def cells(self) -> tuple[str, ...]:
        return tuple(self.texts[c] for c in COLUMNS)


def _short_time(stamp: str) -> str:
    """`2026-12-03 21:05:09` from RFC 3339 text (UTC as the agent wrote it)."""
    return stamp[:19].replace("T", " ") if stamp else ""


@dataclass(frozen=True)
class RowFilter:
    """A parsed `/` filter; `note` says how the text was read (shown beside the input)."""

    pattern: re.Pattern[str] | None
    column: Column | None = None
    inverted: bool = False
    note: str = ""

    def keeps(self, row: Row) -> bool:
        if self.pattern is None:
            return True
        text = row.cell(self.column) if self.column else row.haystack
        return (self.pattern.search(text) is not None) != self.inverted


def parse_filter(text: str) -> RowFilter:
    """The filter for what was typed after `/` (see the module rules)."""
    inverted = text.startswith("!")
    body = text[1:] if inverted else text
    column: Column | None = None
    head, colon, rest = body.partition(":")
    if colon and head.strip().lower() in FIELD_PREFIXES:
        column, body = FIELD_PREFIXES[head.strip().lower()], rest
    body = body.strip()
    if not body:
        return RowFilter(None, note="")
    try:
        pattern, note = re.compile(body, re.IGNORECASE | re.MULTILINE), "regex"
    except re.error as exc:
        pattern, note = re.compile(re.escape(body), re.IGNORECASE), f"as text ({exc.msg})"
    where = f" in {TITLES[column]}" if column else ""
    return RowFilter(pattern, column, inverted, ("not " if inverted else "") + note + where)


@dataclass(frozen=True)
class SortOrder:
    column: Column = "precedence"
    descending: bool = True

    def pressed(self, column: Column) -> SortOrder:
        """The order after choosing `column`: the same column flips, another starts fresh."""
        if column == self.column:
            return SortOrder(column, not self.descending)
        return SortOrder(column, column in ("precedence", "updated"))

    def next_column(self) -> SortOrder:
        """The order after the cycle key: the next column, in its natural direction."""
        nxt = COLUMNS[(COLUMNS.index(self.column) + 1) % len(COLUMNS)]
        return SortOrder(nxt, nxt in ("precedence", "updated"))

    def title(self, column: Column) -> str:
        """A column's header, with ▲ or ▼ on the sorted one."""
        arrow = (" ▼" if self.descending else " ▲") if column == self.column else ""
        return TITLES[column] + arrow


def _evaluation_key(row: Row) -> tuple[int, str, str]:
    return row.order_key


def arrange(rows: Iterable[Row], keep: RowFilter, order: SortOrder) -> list[Row]:
    """The rows the table shows: filtered, then sorted with evaluation order breaking ties."""
    kept = [r for r in rows if keep.keeps(r)] if keep.pattern else list(rows)
    kept.sort(key=_evaluation_key)  # linear when already in evaluation order (the API's)
    if order.column == "precedence":
        return kept if order.descending else kept[::-1]
    column = order.column
    # stable: ties stay in evaluation order
    return sorted(kept, key=lambda row: row.folded[column], reverse=order.descending)


@dataclass(frozen=True)
class Changes:
    """Pairs new or modified since the last snapshot, and pairs gone."""

    touched: frozenset[Pair]
    gone: frozenset[Pair]


def changes(before: Mapping[Pair, Intention], after: Mapping[Pair, Intention]) -> Changes:
    touched = frozenset(p for p, ixn in after.items() if _modified(before.get(p), ixn))
    return Changes(touched, frozenset(p for p in before if p not in after))


def _modified(old: Intention | None, new: Intention) -> bool:
    if old is None:
        return True
    if old.modify_index or new.modify_index:
        return old.modify_index != new.modify_index
    return old != new


def by_pair(intentions: Iterable[Intention]) -> dict[Pair, Intention]:
    return {i.pair: i for i in intentions}


def position_after(shown: Sequence[Row], cursor_key: Pair | None, old_row: int) -> int:
    """Where the cursor goes after a refresh: on its row if still shown, else the same line."""
    if cursor_key is not None:
        for i, row in enumerate(shown):
            if row.key == cursor_key:
                return i
    return max(0, min(old_row, len(shown) - 1))
