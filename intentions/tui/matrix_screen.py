"""Services x services from the catalog, each cell what the current rules decide.

A shell over matrix.py. Moving the cursor names the deciding rule (or the
default policy); Enter goes back to the list with that rule selected. The
matrix is rebuilt whenever the app's data moves, so it is live. The default
policy is asked of the agent once (`/check` on a pair no rule names).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from gossamer.intentions.decide import IntentionSet
from gossamer.intentions.tui.client import AgentDown, ApiRefused, BadAnswer
from gossamer.intentions.tui.matrix import Cell, Matrix, default_from_reason, matrix
from gossamer.intentions.tui.rows import Pair

if TYPE_CHECKING:
    from gossamer.intentions.tui.app import IntentionsApp

STYLES = {"allow": "bold green", "deny": "bold red", "l7": "bold cyan", "default": "dim"}
PROBE = "gossamer-tui-probe"


class MatrixScreen(Screen[Pair | None]):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("enter", "pick", "Show rule"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.current: Matrix | None = None

    @property
    def gossamer(self) -> IntentionsApp:
        return cast("IntentionsApp", self.app)

    def compose(self) -> ComposeResult:
        yield Static(
            "[b]Who may talk to whom[/]  rows: source, columns: destination  "
            "✔ allow  ✘ deny  L7 depends on the request  · default",
            id="matrix-title",
        )
        yield DataTable(id="matrix", cursor_type="cell")
        yield Static("", id="cell")
        yield Footer()

    def on_mount(self) -> None:
        self.watch(self.app, "generation", self.rebuild, init=False)
        self.learn_default()
        self.rebuild()
        self.query_one("#matrix").focus()

    @work(exclusive=True, group="default-policy")
    async def learn_default(self) -> None:
        try:
            _, reason = await self.gossamer.api.check(PROBE, PROBE)
        except (AgentDown, ApiRefused, BadAnswer):
            return
        found = default_from_reason(reason)
        if found is not None and found != self.gossamer.default_allow:
            self.gossamer.default_allow = found
            self.rebuild()

    def rebuild(self) -> None:
        app = self.gossamer
        table = self.query_one("#matrix", DataTable)
        row, column = table.cursor_coordinate
        self.current = matrix(
            app.services, IntentionSet(app.intentions.values()), bool(app.default_allow)
        )
        table.clear(columns=True)
        table.add_column("source \\ dest", key="source")
        for name in self.current.services:
            table.add_column(name, key=name)
        for name, cells in zip(self.current.services, self.current.cells, strict=True):
            table.add_row(Text(name, style="bold"), *(self.cell_text(c) for c in cells), key=name)
        if self.current.services:
            table.move_cursor(row=row, column=max(column, 1))
        self.describe()

    def cell_text(self, cell: Cell) -> Text:
        style = STYLES[cell.kind]
        if cell.kind == "default":
            style += " green" if cell.allowed else " red"
        return Text(cell.symbol, style=style, justify="center")

    def selected(self) -> tuple[str, str, Cell] | None:
        table = self.query_one("#matrix", DataTable)
        row, column = table.cursor_coordinate
        if self.current is None or column < 1 or not 0 <= row < len(self.current.services):
            return None
        names = self.current.services
        return names[row], names[column - 1], self.current.at(row, column - 1)

    def on_data_table_cell_highlighted(self) -> None:
        self.describe()

    def describe(self) -> None:
        picked = self.selected()
        out = self.query_one("#cell", Static)
        if picked is None:
            out.update("No services in the catalog yet." if not self.gossamer.services else "")
            return
        src, dst, cell = picked
        policy = {None: "unknown", True: "allow", False: "deny"}[self.gossamer.default_allow]
        why = cell.reason if cell.intention else f"no intention matches; default policy ({policy})"
        out.update(f"{src} => {dst}: [b]{cell.kind}[/]  {why}")

    def action_pick(self) -> None:
        picked = self.selected()
        if picked is not None and picked[2].intention is not None:
            self.dismiss(picked[2].intention.pair)

    def on_data_table_cell_selected(self) -> None:
        self.action_pick()

    def action_back(self) -> None:
        self.dismiss(None)
