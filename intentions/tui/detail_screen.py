"""One intention in full: every field, its L7 permissions in order, its Consul JSON, its history."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, cast

from rich.syntax import Syntax
from rich.table import Table
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from gossamer.intentions.codec import intention_to_json
from gossamer.intentions.model import Intention
from gossamer.intentions.plan import action_label
from gossamer.intentions.tui.client import AgentDown, ApiRefused, BadAnswer
from gossamer.intentions.tui.form import header_line
from gossamer.intentions.tui.history import history_lines

if TYPE_CHECKING:
    from gossamer.intentions.tui.app import IntentionsApp


def fields_table(ixn: Intention) -> Table:
    table = Table.grid(padding=(0, 2))
    for name, value in (
        ("Source", ixn.source),
        ("Destination", ixn.destination),
        ("Action", action_label(ixn)),
        ("Precedence", str(ixn.precedence)),
        ("Description", ixn.description),
        ("ID", ixn.id),
        ("Created", ixn.created_at),
        ("Updated", ixn.updated_at),
        ("Indexes", f"create {ixn.create_index}, modify {ixn.modify_index}"),
        ("Meta", ", ".join(f"{k}={v}" for k, v in sorted(ixn.meta.items()))),
    ):
        table.add_row(f"[b]{name}[/]", value)
    return table


def permissions_table(ixn: Intention) -> Table:
    table = Table("#", "Action", "Path", "Methods", "Headers", title="L7 permissions, in order")
    for i, perm in enumerate(ixn.permissions, start=1):
        http = perm.http
        path = ""
        if http is not None:
            path = next(
                (
                    f"{k} {v}"
                    for k, v in (
                        ("exact", http.path_exact),
                        ("prefix", http.path_prefix),
                        ("regex", http.path_regex),
                    )
                    if v
                ),
                "",
            )
        methods = ", ".join(http.methods) if http and http.methods else "any"
        headers = "\n".join(header_line(h) for h in http.headers) if http else ""
        table.add_row(str(i), perm.action, path, methods, headers)
    return table


class DetailScreen(Screen[None]):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, ixn: Intention) -> None:
        super().__init__()
        self.intention = ixn

    def compose(self) -> ComposeResult:
        ixn = self.intention
        with VerticalScroll(id="detail"):
            yield Static(f"[b]{ixn.summary()}[/]", id="detail-title")
            yield Static(fields_table(ixn))
            if ixn.permissions:
                yield Static(permissions_table(ixn))
            text = json.dumps(intention_to_json(ixn), indent=2, sort_keys=True)
            yield Static(Syntax(text, "json", theme="ansi_dark"), id="detail-json")
            yield Static("History: loading…", id="detail-history")
        yield Footer()

    def on_mount(self) -> None:
        self.load_history()

    @work(exclusive=True)
    async def load_history(self) -> None:
        app = cast("IntentionsApp", self.app)
        out = self.query_one("#detail-history", Static)
        try:
            rows, _ = await app.api.history(0, *self.intention.pair)
        except ApiRefused as exc:
            out.update(f"History: this agent keeps none ({exc})")
            return
        except (AgentDown, BadAnswer) as exc:
            out.update(f"History: cannot load ({exc})")
            return
        lines = history_lines(rows)
        out.update("[b]History[/] (newest first)\n" + ("\n".join(lines) or "no changes kept"))
