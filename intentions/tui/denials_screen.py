"""The denials pane: what the proxies of this agent denied lately, live.

A shell over denial_rows.py. A worker follows `GET
/v1/connect/intentions/denials` with blocking queries, so a denial shows
within about a second of happening (proxies report once a second); the
ages in "Last seen" are redrawn every second. Enter on a row goes back to
the list with the intention that denied selected, or, when no intention
did (the default policy), opens the create form filled with an intention
that would allow the pair (not in read-only mode). An agent that does not
answer is said in the title line and asked again, from index 0.

Below, the edge figures (denial_rows.py `edge_denials`): another worker asks
`GET /v1/agent/metrics/proxies` every `FIGURES_S` and shows each inbound
edge's deny counts since its proxy started, and which proxies could not be
read. That table is for reading only; the list above leads to the rules.
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
from gossamer.intentions.tui.denial_rows import (
    COLUMNS,
    EDGE_COLUMNS,
    EdgeDenials,
    allow_draft,
    cells,
    edge_denials,
    rule_pair,
    unread,
)
from gossamer.intentions.tui.form import Draft
from gossamer.intentions.tui.rows import Pair

if TYPE_CHECKING:
    from gossamer.intentions.tui.app import IntentionsApp

TITLE = "[b]Denials[/] by this agent's proxies, last 10 min · enter: the rule, or allow it"
RETRY_S = 1.0
FIGURES_S = 2.0  # the figures are not a blocking query: asked again this often
EDGE_TITLE = "[b]Per edge[/], as the proxies counted since they started (requests or connections)"


class DenialsScreen(Screen[Pair | Draft | None]):
    """Dismissed with the pair of the rule that denied, a draft that would allow, or None."""

    BINDINGS = [Binding("escape", "back", "Back")]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[Denial] = []
        self.trouble = ""
        self.edges: list[EdgeDenials] = []
        self.edges_note = "loading…"

    @property
    def gossamer(self) -> IntentionsApp:
        return cast("IntentionsApp", self.app)

    def compose(self) -> ComposeResult:
        yield Static(TITLE, id="denials-title")
        yield DataTable(id="denials", cursor_type="row", zebra_stripes=True)
        yield Static("loading…", id="denials-note")
        yield Static(EDGE_TITLE, id="edge-denials-title")
        yield DataTable(id="edge-denials", cursor_type="none", zebra_stripes=True)
        yield Static("loading…", id="edge-denials-note")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#denials", DataTable).add_columns(*COLUMNS)
        self.query_one("#edge-denials", DataTable).add_columns(*EDGE_COLUMNS)
        self.set_interval(1.0, self.show)
        self.follow()
        self.figures()

    @work(group="figures", exclusive=True, exit_on_error=False)
    async def figures(self) -> None:
        while True:
            try:
                answer = await self.gossamer.api.proxy_figures()
            except ApiRefused as exc:
                self.edges, self.edges_note = [], f"This agent serves no proxy figures ({exc})."
                self.show_edges()
                return
            except (AgentDown, BadAnswer) as exc:
                self.edges_note = f"Cannot load the proxy figures ({exc}); retrying."
            else:
                self.edges = edge_denials(answer)
                missing = unread(answer)
                quiet = "" if self.edges else "No edge has denied anything."
                self.edges_note = "Not read: " + ", ".join(missing) if missing else quiet
            self.show_edges()
            await asyncio.sleep(FIGURES_S)

    def show_edges(self) -> None:
        table = self.query_one("#edge-denials", DataTable)
        table.clear()
        for row in self.edges:
            table.add_row(*row.cells())
        self.query_one("#edge-denials-note", Static).update(self.edges_note)

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
