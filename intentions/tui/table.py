"""The intentions table widget: shows arranged rows, keeps the cursor, marks what changed.

A thin shell over rows.py: the rows, their order and what counts as a
change are decided there. Rules it keeps:
- Rows are keyed by pair, so after a refresh the cursor is on the row it
  was on (or on the same line if that row is gone) and the view does not
  scroll away.
- A row that changed is drawn highlighted for `MARK_S` seconds, then plainly.
- Headers show the sort column and direction; clicking a header sorts by it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

from rich.text import Text
from textual.widgets import DataTable

from gossamer.intentions.tui.rows import COLUMNS, Column, Pair, Row, SortOrder, position_after

MARK_S = 2.0
ACTION_STYLES = {"allow": "green", "deny": "red"}
MARK_STYLE = "bold reverse"


class IntentionsTable(DataTable[Text]):
    """DataTable of `Row`s; `show()` replaces the content, `mark()` flags changed pairs."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self.shown: list[Row] = []
        self._marked: dict[Pair, float] = {}  # pair -> monotonic time the mark ends

    def on_mount(self) -> None:
        self.set_order(SortOrder())

    def set_order(self, order: SortOrder) -> None:
        self.clear(columns=True)
        for column in COLUMNS:
            self.add_column(order.title(column), key=column)
        self.show(self.shown)

    @property
    def cursor_pair(self) -> Pair | None:
        if not self.shown or not 0 <= self.cursor_row < len(self.shown):
            return None
        return self.shown[self.cursor_row].key

    def mark(self, pairs: Iterable[Pair]) -> None:
        until = time.monotonic() + MARK_S
        fresh = [p for p in pairs]
        for pair in fresh:
            self._marked[pair] = until
        if fresh:
            self.set_timer(MARK_S + 0.05, self._unmark)

    def is_marked(self, pair: Pair) -> bool:
        return self._marked.get(pair, 0.0) > time.monotonic()

    def _unmark(self) -> None:
        now = time.monotonic()
        done = [p for p, t in self._marked.items() if t <= now]
        for pair in done:
            del self._marked[pair]
        for row in self.shown:
            if row.key in done:
                self._restyle(row)

    def _restyle(self, row: Row) -> None:
        for column in COLUMNS:
            self.update_cell(_row_key(row.key), column, self._text(row, column))

    def _text(self, row: Row, column: Column) -> Text:
        text = Text(row.cell(column))
        if column == "action":
            text.stylize(ACTION_STYLES.get(text.plain, "cyan"))
        if self.is_marked(row.key):
            text.stylize(MARK_STYLE)
        return text

    def show(self, rows: Sequence[Row]) -> None:
        """Replace the rows; the cursor stays on its row and the view where it was."""
        keep, line, scroll_y = self.cursor_pair, self.cursor_row, self.scroll_y
        self.clear()
        self.shown = list(rows)
        for row in self.shown:
            self.add_row(*(self._text(row, c) for c in COLUMNS), key=_row_key(row.key))
        if self.shown:
            self.call_after_refresh(self.scroll_to, y=scroll_y, animate=False, immediate=True)
            self.move_cursor(row=position_after(self.shown, keep, line))

    def select_pair(self, pair: Pair) -> bool:
        """Move the cursor to a pair's row; False when it is not shown."""
        for i, row in enumerate(self.shown):
            if row.key == pair:
                self.move_cursor(row=i)
                return True
        return False


def _row_key(pair: Pair) -> str:
    return f"{pair[0]} => {pair[1]}"
