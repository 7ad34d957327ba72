"""Services x services from the catalog, each cell what the current rules decide.

A shell over matrix.py. Moving the cursor names the deciding rule (or the
default policy); Enter goes back to the list with that rule selected. The
matrix is rebuilt whenever the app's data moves, so it is live. The default
policy is asked of the agent once (`/check` on a pair no rule names).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static

from gossamer.intentions.tui.client import AgentDown, ApiRefused, BadAnswer
from gossamer.intentions.tui.grid import Grid
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
        yield Grid(id="matrix", cell_mode=True, fixed=1)
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

    @property
    def grid(self) -> Grid:
        return self.query_one("#matrix", Grid)

    def rebuild(self) -> None:
        self.build(self.gossamer.services, bool(self.gossamer.default_allow))

    @work(exclusive=True, thread=True, group="matrix")
    def build(self, services: list[str], default_allow: bool) -> None:
        """Index the rules off the event loop (O(n)); cells are decided when drawn."""
        built = matrix(services, self.gossamer.rules(), default_allow)
        self.app.call_from_thread(self.show, built)

    def show(self, current: Matrix) -> None:
        self.current = current
        names = current.services
        corner = "source \\ dest"
        widths = [max([len(corner), *(len(n) for n in names)]), *(max(3, len(n)) for n in names)]

        def text(row: int, column: int) -> tuple[str, str]:
            if column == 0:
                return names[row], "bold"
            return cell_text(current.at(row, column - 1), widths[column])

        self.grid.set_grid([corner, *names], widths, len(names), text)
        self.describe()

    def selected(self) -> tuple[str, str, Cell] | None:
        row, column = self.grid.cursor_row, self.grid.cursor_column
        if self.current is None or column < 1 or not 0 <= row < len(self.current.services):
            return None
        names = self.current.services
        return names[row], names[column - 1], self.current.at(row, column - 1)

    @on(Grid.Moved, "#matrix")
    def moved(self) -> None:
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

    @on(Grid.Chosen, "#matrix")
    def action_pick(self) -> None:
        picked = self.selected()
        if picked is not None and picked[2].intention is not None:
            self.dismiss(picked[2].intention.pair)

    def action_back(self) -> None:
        self.dismiss(None)


def cell_text(cell: Cell, width: int) -> tuple[str, str]:
    """A cell's symbol, centred, and its style (a default cell coloured by the policy)."""
    style = STYLES[cell.kind]
    if cell.kind == "default":
        style += " green" if cell.allowed else " red"
    return cell.symbol.center(width), style
