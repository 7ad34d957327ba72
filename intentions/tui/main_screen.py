"""The main screen: the live intentions list, its filter and sort, and the check panel.

A shell: rows.py arranges, matrix.py decides, the app's workers keep the
data live. The screen redraws when the app's `generation` moves, marking
the rows that changed; the cursor stays on its row. Writes go through
form_screen.py (create, edit) and a confirmation (delete), each in a worker
so the screen keeps answering keys while the agent works.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.events import Resize
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.widgets import Footer, Input, Static

from gossamer.intentions.tui.check_panel import CheckPanel
from gossamer.intentions.tui.client import AgentDown, ApiRefused, BadAnswer
from gossamer.intentions.tui.form import Draft
from gossamer.intentions.tui.grid import Grid
from gossamer.intentions.tui.rows import (
    COLUMNS,
    Pair,
    Row,
    RowFilter,
    SortOrder,
    arrange,
    parse_filter,
)
from gossamer.intentions.tui.table import IntentionsTable

if TYPE_CHECKING:
    from gossamer.intentions.tui.app import IntentionsApp


class MainScreen(Screen[None]):
    BINDINGS = [
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("s", "sort_next", "Sort"),
        Binding("r", "sort_reverse", "Reverse", show=False),
        Binding("n", "create", "New"),
        Binding("e", "edit", "Edit"),
        Binding("d", "delete", "Delete"),
        Binding("c", "check", "Check"),
        Binding("m", "matrix", "Matrix"),
        Binding("a", "apply_file", "Apply file", show=False),
        Binding("h", "history", "History", show=False),
        Binding("x", "denials", "Denials", show=False),
        Binding("escape", "close", "Close", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.order = SortOrder()
        self.keep: RowFilter = parse_filter("")
        self.pending: Pair | None = None  # select this row once the agent lists it
        self._rows: list[Row] = []
        self._rows_of = -1  # the app generation `_rows` were made for

    @property
    def gossamer(self) -> IntentionsApp:
        return cast("IntentionsApp", self.app)

    def compose(self) -> ComposeResult:
        yield Static("", id="status")
        yield Static("", id="banner")
        with Horizontal(id="filter-bar"):
            yield Input(
                placeholder="filter: text or regex, !inverts, src: dst: action: desc:", id="filter"
            )
            yield Static("", id="filter-note")
        yield IntentionsTable(id="intentions")
        yield CheckPanel(id="check")
        yield Static("", id="too-small")
        yield Footer()

    def on_mount(self) -> None:
        self.watch(self.app, "generation", self.redraw, init=False)
        self.watch(self.app, "down", self.show_banner)
        self.query_one("#filter-bar").display = False
        self.query_one("#check").display = False
        self.redraw()
        self.table.focus()

    @property
    def table(self) -> IntentionsTable:
        return self.query_one(IntentionsTable)

    # -- drawing --------------------------------------------------------------------------

    def all_rows(self) -> list[Row]:
        """Rows of every intention, made once per change of the data (filters reuse them)."""
        app = self.gossamer
        if self._rows_of != app.generation:
            self._rows = [Row(i) for i in app.intentions.values()]
            self._rows_of = app.generation
            self.table.fit(self._rows)
        return self._rows

    def redraw(self) -> None:
        app = self.gossamer
        rows = arrange(self.all_rows(), self.keep, self.order)
        self.table.show(rows)
        self.table.mark(p for p in app.last_changes.touched if p in app.intentions)
        if self.pending is not None and self.table.select_pair(self.pending):
            self.pending = None
        app.last_changes = type(app.last_changes)(frozenset(), frozenset())
        self.show_status()
        names = [*app.services, "*"]
        for field in ("#check-source", "#check-destination"):
            self.query_one(field, Input).suggester = SuggestFromList(names, case_sensitive=True)

    def show_status(self) -> None:
        app = self.gossamer
        state = "reconnecting" if app.down else ("live" if app.loaded else "connecting")
        shown, total = len(self.table.shown), len(app.intentions)
        mode = "read-only · " if app.read_only else ""
        self.query_one("#status", Static).update(
            f"{mode}{app.base_url} · {state} · index {app.index} · {total} intentions"
            + (f" ({shown} shown)" if shown != total else "")
            + f" · sort {self.order.title(self.order.column)}"
        )

    def show_banner(self, reason: str) -> None:
        banner = self.query_one("#banner", Static)
        banner.display = bool(reason)
        if reason:
            banner.update(
                f"⚠ The agent is not answering ({reason}). Retrying; what you typed is kept."
            )
        self.show_status()

    def on_resize(self, event: Resize) -> None:
        small = event.size.width < 60 or event.size.height < 15
        note = self.query_one("#too-small", Static)
        note.display = small
        note.update(
            f"This terminal is {event.size.width}x{event.size.height}; "
            "the intentions UI needs at least 60x15."
        )

    # -- filter and sort ------------------------------------------------------------------

    def action_filter(self) -> None:
        self.query_one("#filter-bar").display = True
        self.query_one("#filter", Input).focus()

    @on(Input.Changed, "#filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.keep = parse_filter(event.value)
        self.query_one("#filter-note", Static).update(self.keep.note)
        self.redraw()

    @on(Input.Submitted, "#filter")
    def filter_done(self) -> None:
        self.table.focus()

    def action_close(self) -> None:
        if self.query_one("#check").display:
            self.query_one("#check").display = False
        elif self.query_one("#filter-bar").display:
            self.query_one("#filter", Input).value = ""
            self.query_one("#filter-bar").display = False
        self.table.focus()

    def action_sort_next(self) -> None:
        self.set_order(self.order.next_column())

    def action_sort_reverse(self) -> None:
        self.set_order(self.order.pressed(self.order.column))

    @on(Grid.HeaderClicked, "#intentions")
    def header_clicked(self, event: Grid.HeaderClicked) -> None:
        self.set_order(self.order.pressed(COLUMNS[event.column]))

    def set_order(self, order: SortOrder) -> None:
        self.order = self.table.order = order
        self.redraw()

    # -- navigation -----------------------------------------------------------------------

    def selected(self) -> Pair | None:
        pair = self.table.cursor_pair
        if pair is None:
            self.notify("No intention selected.", severity="warning")
        return pair

    @on(Grid.Chosen, "#intentions")
    def row_chosen(self) -> None:
        pair = self.table.cursor_pair
        if pair is not None and pair in self.gossamer.intentions:
            from gossamer.intentions.tui.detail_screen import DetailScreen

            self.app.push_screen(DetailScreen(self.gossamer.intentions[pair]))

    def action_matrix(self) -> None:
        from gossamer.intentions.tui.matrix_screen import MatrixScreen

        self.app.push_screen(MatrixScreen(), self.select_rule)

    def action_history(self) -> None:
        from gossamer.intentions.tui.history_screen import HistoryScreen

        self.app.push_screen(HistoryScreen())

    def action_denials(self) -> None:
        from gossamer.intentions.tui.denials_screen import DenialsScreen

        self.app.push_screen(DenialsScreen(), self.denial_chosen)

    def denial_chosen(self, chosen: Pair | Draft | None) -> None:
        """A denial's row leads to its rule, or to a form that would allow the pair."""
        if isinstance(chosen, Draft):
            from gossamer.intentions.tui.form_screen import FormScreen

            self.app.push_screen(FormScreen(None, draft=chosen), self.select_rule)
        else:
            self.select_rule(chosen)

    def select_rule(self, pair: Pair | None) -> None:
        """Put the cursor on a pair's row; one just written is selected when it arrives."""
        if pair is None:
            return
        if pair not in self.gossamer.intentions:
            self.pending = pair
        elif self.table.select_pair(pair):
            self.table.mark([pair])
        else:
            self.notify(f"{pair[0]} => {pair[1]} is hidden by the filter")

    # -- writes ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.app.check_action(action, parameters)

    def action_create(self) -> None:
        from gossamer.intentions.tui.form_screen import FormScreen

        self.app.push_screen(FormScreen(None), self.select_rule)

    def action_edit(self) -> None:
        from gossamer.intentions.tui.form_screen import FormScreen

        pair = self.selected()
        if pair is not None:
            self.app.push_screen(FormScreen(self.gossamer.intentions[pair]), self.select_rule)

    def action_delete(self) -> None:
        from gossamer.intentions.tui.confirm import ConfirmScreen

        pair = self.selected()
        if pair is None:
            return
        ixn = self.gossamer.intentions[pair]
        question = f"Delete the intention {ixn.summary()}?"
        self.app.push_screen(ConfirmScreen(question, "Delete"), partial(self.delete_if, pair))

    def delete_if(self, pair: Pair, yes: bool | None) -> None:
        if yes:
            self.delete(pair)

    @work(group="write")
    async def delete(self, pair: Pair) -> None:
        try:
            await self.gossamer.api.delete(*pair)
        except (AgentDown, ApiRefused, BadAnswer) as exc:
            self.notify(f"Not deleted: {exc}", severity="error", timeout=8)
        else:
            self.notify(f"Deleted {pair[0]} => {pair[1]}")

    def action_apply_file(self) -> None:
        from gossamer.intentions.tui.apply_screen import ApplyScreen

        self.app.push_screen(ApplyScreen())

    # -- check ----------------------------------------------------------------------------

    def action_check(self, source: str = "", destination: str = "") -> None:
        self.query_one(CheckPanel).open(source, destination)

    @on(CheckPanel.RuleFound)
    def rule_found(self, event: CheckPanel.RuleFound) -> None:
        self.select_rule(event.pair)
