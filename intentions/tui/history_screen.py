"""The history feed: every intention change the agent kept, live."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static

from gossamer.intentions.tui.client import AgentDown, ApiRefused, BadAnswer, next_index
from gossamer.intentions.tui.history import history_lines

if TYPE_CHECKING:
    from gossamer.intentions.tui.app import IntentionsApp


class HistoryScreen(Screen[None]):
    """Newest first; follows the agent with a blocking query while open."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def compose(self) -> ComposeResult:
        yield Static(
            "[b]History of intention changes[/] (kept by the agent, newest first)",
            id="history-title",
        )
        yield Static("loading…", id="history")
        yield Footer()

    def on_mount(self) -> None:
        self.follow()

    @work(exclusive=True, exit_on_error=False)
    async def follow(self) -> None:
        app = cast("IntentionsApp", self.app)
        out = self.query_one("#history", Static)
        index = 0
        while True:
            try:
                rows, got = await app.api.history(index)
            except ApiRefused as exc:
                out.update(f"This agent keeps no history ({exc}).")
                return
            except (AgentDown, BadAnswer) as exc:
                out.update(f"Cannot load the history ({exc}); retrying.")
                index = 0
                await asyncio.sleep(1.0)
                continue
            index = next_index(index, got)
            out.update("\n".join(history_lines(rows)) or "No changes kept yet.")
