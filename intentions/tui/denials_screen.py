"""The denials pane: what the proxies of this agent denied lately, live.

A shell over denial_rows.py. A worker follows `GET
/v1/connect/intentions/denials` with blocking queries, so a denial shows
within about a second of happening (proxies report once a second); the
ages in "Last seen" are redrawn every second. Enter on a row goes back to
the list with the intention that denied selected, or, when no intention
did (the default policy), opens the create form filled with an intention
that would allow the pair (not in read-only mode). An agent that does not
answer is said in the title line and asked again, from index 0.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from gossamer.intentions.denials import Denial
from gossamer.intentions.tui.client import AgentDown, ApiRefused, BadAnswer, next_index
from gossamer.intentions.tui.denial_rows import COLUMNS, allow_draft, cells, rule_pair
from gossamer.intentions.tui.form import Draft
from gossamer.intentions.tui.rows import Pair

if TYPE_CHECKING:
    from gossamer.intentions.tui.app import IntentionsApp

TITLE = "[b]Denials[/] by this agent's proxies, last 10 min · enter: the rule, or allow it"
RETRY_S = 1.0


class DenialsScreen(Screen[Pair | Draft | None]):
    """Dismissed with the pair of the rule that denied, a draft that would allow, or None."""

    BINDINGS = [Binding("escape", "back", "Back")]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[Denial] = []
        self.trouble = ""

    @property
    def gossamer(self) -> IntentionsApp:
        return cast("IntentionsApp", self.app)

    def compose(self) -> ComposeResult:
        yield Static(TITLE, id="denials-title")
        yield DataTable(id="denials", cursor_type="row", zebra_stripes=True)
        yield Static("loading…", id="denials-note")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#denials", DataTable).add_columns(*COLUMNS)
        self.set_interval(1.0, self.show)
        self.follow()

    @work(exclusive=True, exit_on_error=False)
    async def follow(self) -> None:
        index = 0
        while True:
            try:
                self.rows, got = await self.gossamer.api.denials(index)
            except ApiRefused as exc:
                self.trouble = f"This agent serves no denials ({exc})."
                self.show()
                return
            except (AgentDown, BadAnswer) as exc:
                self.trouble = f"Cannot load the denials ({exc}); retrying."
                self.show()
                index = 0
                await asyncio.sleep(RETRY_S)
                continue
            self.trouble = ""
            index = next_index(index, got)
            self.show()

    def show(self) -> None:
        """Redraw the rows (ages move with the clock); the cursor stays on its row number."""
        table = self.query_one("#denials", DataTable)
        cursor = table.cursor_row
        now_ms = time.time_ns() // 1_000_000
        table.clear()
        for denial in self.rows:
            table.add_row(*cells(denial, now_ms))
        if self.rows:
            table.move_cursor(row=min(cursor, len(self.rows) - 1))
        empty = "No connection denied lately." if not self.rows else ""
        self.query_one("#denials-note", Static).update(self.trouble or empty)

    @on(DataTable.RowSelected, "#denials")
    def chosen(self, event: DataTable.RowSelected) -> None:
        if not 0 <= event.cursor_row < len(self.rows):
            return
        denial = self.rows[event.cursor_row]
        pair = rule_pair(denial, self.gossamer.intentions)
        if pair is not None:
            self.dismiss(pair)
        elif self.gossamer.read_only:
            self.notify("Read-only: no intention can be written from here.", severity="warning")
        else:
            self.dismiss(allow_draft(denial))

    def action_back(self) -> None:
        self.dismiss(None)
