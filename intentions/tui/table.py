"""The intentions list widget: shows arranged rows, keeps the cursor, marks what changed.

A thin shell over rows.py (which rows, in which order, what counts as a
change) drawn by grid.py (only the lines on screen). Rules it keeps:
- Rows are keyed by pair, so after a refresh the cursor is on the row it
  was on (or on the same line if that row is gone).
- A row that changed is drawn highlighted for `MARK_S` seconds, then plainly.
- Headers show the sort column and direction; clicking a header sorts by it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from gossamer.intentions.tui.grid import Grid
from gossamer.intentions.tui.rows import (
    COLUMNS,
    TITLES,
    Column,
    Pair,
    Row,
    SortOrder,
    position_after,
)

MARK_S = 2.0
ACTION_STYLES = {"allow": "green", "deny": "red"}
MARK_STYLE = "bold reverse"
# Column widths: at least the title's, at most these (descriptions are cut, not wrapped).
MAX_WIDTHS: dict[Column, int] = {
    "precedence": 4,
    "source": 24,
    "action": 14,
    "destination": 24,
    "description": 36,
    "updated": 19,
}


class IntentionsTable(Grid):
    """The list; `show()` replaces the rows, `mark()` flags changed pairs."""

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.shown: list[Row] = []
        self.order = SortOrder()
        self._marked: dict[Pair, float] = {}  # pair -> monotonic time the mark ends
        self.widths = [len(TITLES[c]) + 2 for c in COLUMNS]

    def fit(self, rows: Sequence[Row]) -> None:
        """Size the columns for every row there is (not only those a filter shows)."""
        self.widths = [_width(c, rows) for c in COLUMNS]

    def column_at(self, index: int) -> Column:
        return COLUMNS[index]

    @property
    def cursor_pair(self) -> Pair | None:
        if not self.shown or not 0 <= self.cursor_row < len(self.shown):
            return None
        return self.shown[self.cursor_row].key

    def mark(self, pairs: Iterable[Pair]) -> None:
        until = time.monotonic() + MARK_S
        fresh = list(pairs)
        for pair in fresh:
            self._marked[pair] = until
        if fresh:
            self.set_timer(MARK_S + 0.05, self._unmark)
            self.refresh()

    def is_marked(self, pair: Pair) -> bool:
        return self._marked.get(pair, 0.0) > time.monotonic()

    def _unmark(self) -> None:
        now = time.monotonic()
        for pair in [p for p, t in self._marked.items() if t <= now]:
            del self._marked[pair]
        self.refresh()

    def _text_of(self, index: int, column: int) -> tuple[str, str]:
        row, name = self.shown[index], COLUMNS[column]
        text = row.cell(name)
        style = ACTION_STYLES.get(text, "cyan") if name == "action" else ""
        if self.is_marked(row.key):
            style += " " + MARK_STYLE
        return text, style

    def show(self, rows: Sequence[Row]) -> None:
        """Replace the rows; the cursor stays on its row."""
        keep, line = self.cursor_pair, self.cursor_row
        self.shown = list(rows)
        titles = [self.order.title(c) for c in COLUMNS]
        self.set_grid(titles, self.widths, len(self.shown), self._text_of)
        if self.shown:
            self.move_to(position_after(self.shown, keep, line))

    def select_pair(self, pair: Pair) -> bool:
        """Move the cursor to a pair's row; False when it is not shown."""
        for i, row in enumerate(self.shown):
            if row.key == pair:
                self.move_to(i)
                return True
        return False


def _width(column: Column, rows: Sequence[Row]) -> int:
    """The column's width: what its cells need, between its title (and arrow) and its maximum."""
    title = TITLES[column] + " ▲"
    limit = MAX_WIDTHS[column]
    if column in ("source", "destination"):
        need = max((len(getattr(r.intention, column)) for r in rows), default=0)
    elif column == "description":
        need = max((len(r.intention.description) for r in rows), default=0)
    else:
        need = limit
    return max(len(title), min(need, limit))
