"""A scrolled grid that draws only the lines on screen: the intentions list and the matrix.

Textual's DataTable builds and measures every cell when rows are added,
which at 10,000 intentions (or 200 x 200 matrix cells) costs seconds per
sort or filter keystroke. This grid uses Textual's line API instead: the
owner gives column titles, widths, a row count and a `cell(row, column)`
function, and `render_line` asks only for the cells of the lines on screen,
so a keypress costs the same at 10 rows or 10,000.

Rules it keeps:
- Line 0 is the header and never scrolls away; the first `fixed` columns
  never scroll sideways (the matrix's source names).
- The cursor is a row (`cell_mode` False) or a cell; moving it scrolls it
  into view and posts `Moved`; Enter or a double click posts `Chosen`; a
  click on the header posts `HeaderClicked` with the column's index.
- A cell's style is a rich style string; the cursor's style is laid on top.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from rich.cells import set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.events import Click
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

CellFn = Callable[[int, int], tuple[str, str]]  # (row, column) -> (text, rich style)


@lru_cache(maxsize=256)
def _parsed(style: str) -> Style:
    return Style.parse(style) if style else Style()


class Grid(ScrollView, can_focus=True):
    COMPONENT_CLASSES = {"grid--header", "grid--cursor", "grid--zebra"}
    DEFAULT_CSS = """
    Grid { background: $surface; }
    Grid > .grid--header { text-style: bold; background: $panel; color: $foreground; }
    Grid > .grid--cursor { background: $block-cursor-background;
                           color: $block-cursor-foreground; text-style: bold; }
    Grid > .grid--zebra { background: $surface-lighten-1; }
    """
    BINDINGS = [
        Binding("up", "move(-1, 0)", show=False),
        Binding("down", "move(1, 0)", show=False),
        Binding("left", "move(0, -1)", show=False),
        Binding("right", "move(0, 1)", show=False),
        Binding("pageup", "page(-1)", show=False),
        Binding("pagedown", "page(1)", show=False),
        Binding("home", "jump(0)", show=False),
        Binding("end", "jump(1)", show=False),
        Binding("enter", "choose", show=False),
    ]

    class Moved(Message):
        def __init__(self, grid: Grid, row: int, column: int) -> None:
            super().__init__()
            self.grid, self.row, self.column = grid, row, column

        @property
        def control(self) -> Grid:
            return self.grid

    class Chosen(Moved):
        pass

    class HeaderClicked(Message):
        def __init__(self, grid: Grid, column: int) -> None:
            super().__init__()
            self.grid, self.column = grid, column

        @property
        def control(self) -> Grid:
            return self.grid

    def __init__(self, *, cell_mode: bool = False, fixed: int = 0, id: str | None = None) -> None:
        super().__init__(id=id)
        self.cell_mode, self.fixed = cell_mode, fixed
        self.titles: list[str] = []
        self.widths: list[int] = []
        self.rows = 0
        self.cursor_row, self.cursor_column = 0, fixed
        self._cell: CellFn = lambda r, c: ("", "")

    def set_grid(self, titles: list[str], widths: list[int], rows: int, cell: CellFn) -> None:
        """New content; the cursor keeps its place, clamped to the new size."""
        self.titles, self.widths, self.rows, self._cell = titles, widths, rows, cell
        self.virtual_size = Size(sum(widths) + len(widths), rows + 1)
        self.cursor_row = max(0, min(self.cursor_row, rows - 1))
        self.cursor_column = max(self.fixed, min(self.cursor_column, len(widths) - 1))
        self.refresh()

    # -- moving -------------------------------------------------------------------------------

    def move_to(self, row: int, column: int | None = None) -> None:
        if self.rows == 0:
            return
        before = (self.cursor_row, self.cursor_column, self.scroll_offset)
        self.cursor_row = max(0, min(row, self.rows - 1))
        if column is not None and self.cell_mode:
            self.cursor_column = max(self.fixed, min(column, len(self.widths) - 1))
        self._into_view()
        if self.scroll_offset != before[2]:
            self.refresh()
        else:  # only the two lines the cursor left and reached
            self.refresh_line(before[0] + 1)
            self.refresh_line(self.cursor_row + 1)
        self.post_message(self.Moved(self, self.cursor_row, self.cursor_column))

    def _into_view(self) -> None:
        top, seen = int(self.scroll_y), max(1, self.size.height - 1)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False, immediate=True)
        elif self.cursor_row >= top + seen:
            self.scroll_to(y=self.cursor_row - seen + 1, animate=False, immediate=True)
        if not self.cell_mode:
            return
        fixed_w = self._span(0, self.fixed)
        left = self._span(self.fixed, self.cursor_column)
        right = left + self.widths[self.cursor_column] + 1
        view = max(1, self.size.width - fixed_w)
        if left < self.scroll_x:
            self.scroll_to(x=left, animate=False, immediate=True)
        elif right > self.scroll_x + view:
            self.scroll_to(x=right - view, animate=False, immediate=True)

    def _span(self, start: int, end: int) -> int:
        return sum(w + 1 for w in self.widths[start:end])

    def action_move(self, rows: int, columns: int) -> None:
        self.move_to(self.cursor_row + rows, self.cursor_column + columns)

    def action_page(self, direction: int) -> None:
        self.move_to(self.cursor_row + direction * max(1, self.size.height - 2))

    def action_jump(self, end: int) -> None:
        self.move_to(self.rows - 1 if end else 0)

    def action_choose(self) -> None:
        if self.rows:
            self.post_message(self.Chosen(self, self.cursor_row, self.cursor_column))

    def on_click(self, event: Click) -> None:
        column = self._column_at(event.x)
        if event.y == 0:
            if column is not None:
                self.post_message(self.HeaderClicked(self, column))
            return
        self.move_to(int(self.scroll_y) + event.y - 1, column)
        if event.chain >= 2:
            self.action_choose()

    def _column_at(self, x: int) -> int | None:
        fixed_w = self._span(0, self.fixed)
        at = x if x < fixed_w else x - fixed_w + int(self.scroll_x) + fixed_w
        edge = 0
        for i, w in enumerate(self.widths):
            edge += w + 1
            if at < edge:
                return i
        return None

    # -- drawing ------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        columns, skip = self._visible(width)
        if y == 0:
            base = self.get_component_rich_style("grid--header")
            return self._strip([(self.titles[c], "") for c in columns], columns, skip, base, None)
        row = int(self.scroll_y) + y - 1
        if row >= self.rows:
            return Strip.blank(width, self.rich_style)
        base = self.get_component_rich_style("grid--zebra") if row % 2 else self.rich_style
        cells = [self._cell(row, c) for c in columns]
        cursor = None
        if row == self.cursor_row:
            cursor = self.cursor_column if self.cell_mode else -1
        return self._strip(cells, columns, skip, base, cursor)

    def _visible(self, width: int) -> tuple[list[int], int]:
        """The columns on screen (fixed ones first), and how far the first scrolled one is cut."""
        columns = list(range(min(self.fixed, len(self.widths))))
        start, end = int(self.scroll_x), int(self.scroll_x) + width - self._span(0, self.fixed)
        x, skip = 0, 0
        for i in range(self.fixed, len(self.widths)):
            w = self.widths[i] + 1
            if x + w > start and x < end:
                if len(columns) == self.fixed:  # the first scrolled column on screen
                    skip = start - x
                columns.append(i)
            x += w
        return columns, skip

    def _strip(
        self,
        cells: list[tuple[str, str]],
        columns: list[int],
        skip: int,
        base: Style,
        cursor: int | None,
    ) -> Strip:
        """One line: fixed columns, then the scrolled ones; `cursor` -1 is the whole row."""
        on_cursor = self.get_component_rich_style("grid--cursor")
        fixed: list[Segment] = []
        moving: list[Segment] = []
        for (text, style), c in zip(cells, columns, strict=True):
            look = base + _parsed(style)
            if cursor == -1 or cursor == c:
                look += on_cursor
            (fixed if c < self.fixed else moving).append(
                Segment(set_cell_size(text, self.widths[c]) + " ", look)
            )
        width = self.size.width
        fixed_w = self._span(0, self.fixed)
        scrolled = Strip(moving).crop(skip, skip + max(0, width - fixed_w))
        return Strip.join([Strip(fixed), scrolled]).extend_cell_length(width, base)
