"""The check panel under the list: may this source call that destination, and which rule says so.

The agent answers (`/v1/connect/intentions/check`, with method, path and
headers when given): allowed or denied, and its reason, which names the
default policy when nothing matched. The deciding rule is found with the
same `decide()` the agent runs, over the rules the UI holds, and posted as
`RuleFound` so the list selects it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, Static

from gossamer.intentions.decide import decide
from gossamer.intentions.model import HttpRequest
from gossamer.intentions.tui.client import AgentDown, ApiRefused, BadAnswer
from gossamer.intentions.tui.matrix import check_request
from gossamer.intentions.tui.rows import Pair

if TYPE_CHECKING:
    from gossamer.intentions.tui.app import IntentionsApp

FIELDS = ("source", "destination", "method", "path", "headers")


class CheckPanel(Vertical):
    class RuleFound(Message):
        def __init__(self, pair: Pair) -> None:
            super().__init__()
            self.pair = pair

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Input(placeholder="source", id="check-source")
            yield Input(placeholder="destination", id="check-destination")
            yield Input(placeholder="method", id="check-method")
            yield Input(placeholder="/path", id="check-path")
        yield Input(placeholder="headers  Name: value; Name: value", id="check-headers")
        yield Static("Enter checks. The deciding rule is selected in the list.", id="check-result")

    def open(self, source: str = "", destination: str = "") -> None:
        self.display = True
        if source:
            self.query_one("#check-source", Input).value = source
            self.query_one("#check-destination", Input).value = destination
        self.query_one("#check-source", Input).focus()

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.run_check({n: self.query_one(f"#check-{n}", Input).value.strip() for n in FIELDS})

    @work(exclusive=True, group="check")
    async def run_check(self, value: dict[str, str]) -> None:
        result = self.query_one("#check-result", Static)
        request, bad = check_request(value["method"], value["path"], value["headers"])
        if not value["source"] or not value["destination"]:
            bad.insert(0, "source and destination are both needed")
        if bad:
            result.update("[red]" + "; ".join(bad) + "[/]")
            return
        app = cast("IntentionsApp", self.app)
        try:
            allowed, reason = await app.api.check(value["source"], value["destination"], request)
        except (AgentDown, ApiRefused, BadAnswer) as exc:
            result.update(f"[red]Cannot check: {exc}[/]")
            return
        verdict = "[b green]ALLOWED[/]" if allowed else "[b red]DENIED[/]"
        result.update(f"{verdict}  {reason}")
        rule = deciding_pair(app, value["source"], value["destination"], request)
        if rule is not None:
            self.post_message(self.RuleFound(rule))


def deciding_pair(
    app: IntentionsApp, source: str, destination: str, request: HttpRequest | None
) -> Pair | None:
    """The pair whose intention decides, by the rules the agent uses (the default policy
    cannot change which intention decides, only what no match gives)."""
    decision = decide(app.rules(), source, destination, request=request, default_allow=False)
    return None if decision.intention is None else decision.intention.pair
