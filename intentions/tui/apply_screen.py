"""Apply a policy file: read it, show its plan, confirm, write the steps in a worker.

The file is read by the loader the CLI gives the app (the same reader as
`gossamer intention apply`); a file with problems lists them with their
place and nothing is applied. Steps are written in plan order; one the
agent refuses stops the run and says how many went before it.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Input, Static

from gossamer.intentions.plan import Plan, plan
from gossamer.intentions.tui.client import AgentDown, ApiRefused, BadAnswer
from gossamer.intentions.tui.confirm import ConfirmScreen
from gossamer.intentions.tui.plan_view import PolicyProblems, plan_lines

if TYPE_CHECKING:
    from gossamer.intentions.tui.app import IntentionsApp


class ApplyScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.planned: Plan | None = None

    @property
    def gossamer(self) -> IntentionsApp:
        return cast("IntentionsApp", self.app)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="apply"):
            yield Static("[b]Apply a policy file[/] (YAML or JSON, as `gossamer intention apply`)")
            with Horizontal(classes="pair"):
                yield Input(placeholder="path/to/policy.yaml, Enter shows the plan", id="path")
                yield Checkbox("--prune", id="prune")
            yield Static("", id="plan")
            with Horizontal(id="buttons"):
                yield Button("Apply", id="apply-go", variant="warning", disabled=True)

    def on_mount(self) -> None:
        self.query_one("#path", Input).focus()

    @on(Input.Submitted, "#path")
    @on(Checkbox.Changed, "#prune")
    def show_plan(self) -> None:
        self.make_plan(
            self.query_one("#path", Input).value.strip(), self.query_one("#prune", Checkbox).value
        )

    @work(exclusive=True, group="plan")
    async def make_plan(self, path: str, prune: bool) -> None:
        out, go = self.query_one("#plan", Static), self.query_one("#apply-go", Button)
        self.planned, go.disabled = None, True
        loader = self.gossamer.load_policy
        if loader is None or not path:
            out.update("Type the path of a policy file." if loader else "No file reader.")
            return
        try:
            wanted = await asyncio.to_thread(loader, path)
        except PolicyProblems as exc:
            out.update(
                Text(
                    "\n".join(
                        [f"{len(exc.lines)} problem(s), nothing will be applied:", *exc.lines]
                    ),
                    style="red",
                )
            )
            return
        self.planned = plan(wanted, self.gossamer.intentions.values(), prune=prune)
        text = Text()
        for style, line in plan_lines(self.planned):
            text.append(line + "\n", style=style)
        out.update(text)
        go.disabled = not self.planned.steps

    @on(Button.Pressed, "#apply-go")
    def confirm(self) -> None:
        planned = self.planned
        if planned is None or not planned.steps:
            return
        question = f"Apply {len(planned.steps)} change(s) to the agent's intentions?"
        self.app.push_screen(ConfirmScreen(question, "Apply"), partial(self.apply_if, planned))

    def apply_if(self, planned: Plan, yes: bool | None) -> None:
        if yes:
            self.apply(planned)

    @work(exclusive=True, group="write")
    async def apply(self, planned: Plan) -> None:
        out, api = self.query_one("#plan", Static), self.gossamer.api
        for done, step in enumerate(planned.steps):
            try:
                if step.op == "delete":
                    await api.delete(*step.intention.pair)
                else:
                    await api.put(step.intention)
            except (AgentDown, ApiRefused, BadAnswer) as exc:
                out.update(
                    Text(
                        f"Stopped at {step.intention.summary()}: {exc}; {done} of "
                        f"{len(planned.steps)} applied before it.",
                        style="red",
                    )
                )
                return
        out.update(Text(f"Applied {len(planned.steps)} change(s).", style="green"))
        self.query_one("#apply-go", Button).disabled = True
