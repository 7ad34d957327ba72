"""The create/edit form and its L7 permission editor: widgets around form.py.

Nothing is sent while form.py finds a problem; problems (ours or the
agent's 400) are shown under the field they name and the form stays open
with what was typed. The write runs in a worker; an agent that is down or
refuses leaves the form as it was. Editing locks the pair (the intention's
identity). Switching an L7 intention to allow/deny asks before dropping
its permissions.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.suggester import SuggestFromList
from textual.widgets import Button, DataTable, Footer, Input, Label, Select, Static, TextArea

from gossamer.intentions.model import Intention
from gossamer.intentions.tui.client import AgentDown, ApiRefused, BadAnswer
from gossamer.intentions.tui.confirm import ConfirmScreen
from gossamer.intentions.tui.form import (
    SLOTS,
    Draft,
    Kind,
    PermissionDraft,
    api_problems,
    by_slot,
    draft_of,
    drops_permissions,
    moved,
    problems,
    to_intention,
)
from gossamer.intentions.tui.permission_screen import PermissionScreen
from gossamer.intentions.tui.rows import Pair
from gossamer.intentions.validate import Problem

if TYPE_CHECKING:
    from gossamer.intentions.tui.app import IntentionsApp

KINDS: list[tuple[str, Kind]] = [("allow", "allow"), ("deny", "deny"), ("L7 permissions", "l7")]


class FormScreen(Screen[Pair | None]):
    """Create (`existing` None) or edit an intention; dismissed with the pair written."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Save"),
        Binding("escape", "cancel", "Cancel"),
        Binding("a", "add_permission", "Add perm"),
        Binding("x", "remove_permission", "Remove perm"),
        Binding("ctrl+up", "move(-1)", "Move up"),
        Binding("ctrl+down", "move(1)", "Move down"),
    ]

    def __init__(self, existing: Intention | None, *, draft: Draft | None = None) -> None:
        """`draft` fills a create form (the denials pane's "allow this pair")."""
        super().__init__()
        self.existing = existing
        self.draft = draft_of(existing) if existing else (draft or Draft())
        self.permissions = self.draft.permissions

    @property
    def gossamer(self) -> IntentionsApp:
        return cast("IntentionsApp", self.app)

    def compose(self) -> ComposeResult:
        d = self.draft
        title = f"Edit {d.source} => {d.destination}" if self.existing else "New intention"
        names = SuggestFromList([*self.gossamer.services, "*"], case_sensitive=True)
        with VerticalScroll(id="form"):
            yield Static(f"[b]{title}[/]  ctrl+s saves, escape cancels", id="form-title")
            with Horizontal(classes="pair"):
                yield Input(
                    d.source,
                    placeholder="source service or *",
                    id="source",
                    suggester=names,
                    disabled=self.existing is not None,
                )
                yield Input(
                    d.destination,
                    placeholder="destination service or *",
                    id="destination",
                    suggester=names,
                    disabled=self.existing is not None,
                )
            yield Static("", id="source-error", classes="error")
            yield Static("", id="destination-error", classes="error")
            yield Select(KINDS, value=d.kind, allow_blank=False, id="kind")
            yield Static("", id="action-error", classes="error")
            yield Input(d.description, placeholder="description", id="description")
            yield Static("", id="description-error", classes="error")
            yield Label(
                "Permissions (first match decides): a add, enter edit, x remove, ctrl+up/down move",
                id="permissions-label",
            )
            yield DataTable(id="permissions", cursor_type="row")
            yield Static("", id="permissions-error", classes="error")
            yield Static("", id="general-error", classes="error")
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Save", id="save", variant="primary")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#permissions", DataTable)
        table.add_columns("#", "Action", "Path", "Methods", "Headers")
        self.show_permissions()
        self.query_one("#description" if self.existing else "#source", Input).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("add_permission", "remove_permission", "move"):
            return self.kind() == "l7" and not isinstance(self.focused, Input | TextArea)
        return True

    def kind(self) -> Kind:
        return cast("Kind", self.query_one("#kind", Select).value)

    # -- permissions ----------------------------------------------------------------------

    def show_permissions(self, cursor: int | None = None) -> None:
        l7 = self.kind() == "l7"
        for name in ("#permissions", "#permissions-label"):
            self.query_one(name).display = l7
        table = self.query_one("#permissions", DataTable)
        table.clear()
        for i, p in enumerate(self.permissions, start=1):
            headers = len([h for h in p.headers.splitlines() if h.strip()])
            table.add_row(
                str(i),
                p.action,
                f"{p.path_kind} {p.path}" if p.path else "",
                p.methods or "any",
                str(headers) if headers else "",
            )
        if cursor is not None and self.permissions:
            table.move_cursor(row=cursor)
        self.refresh_bindings()

    @on(Select.Changed, "#kind")
    def kind_changed(self, event: Select.Changed) -> None:
        kind = cast("Kind", event.value)
        before = replace(self.draft, kind="l7", permissions=self.permissions)
        if drops_permissions(before, kind):
            n = len(self.permissions)

            def answered(yes: bool | None) -> None:
                if yes:
                    self.permissions = ()
                else:
                    self.query_one("#kind", Select).value = "l7"
                self.show_permissions()

            self.app.push_screen(
                ConfirmScreen(
                    f"Switching to {kind} drops the {n} L7 permission(s). Drop them?", "Drop"
                ),
                answered,
            )
        self.show_permissions()

    def action_add_permission(self) -> None:
        self.app.push_screen(
            PermissionScreen(PermissionDraft()),
            lambda p: self.put_permission(len(self.permissions), p),
        )

    @on(DataTable.RowSelected, "#permissions")
    def edit_permission(self, event: DataTable.RowSelected) -> None:
        i = event.cursor_row
        if 0 <= i < len(self.permissions):
            self.app.push_screen(
                PermissionScreen(self.permissions[i]), lambda p: self.put_permission(i, p)
            )

    def put_permission(self, index: int, perm: PermissionDraft | None) -> None:
        if perm is None:
            return
        items = list(self.permissions)
        items[index : index + 1] = [perm]
        self.permissions = tuple(items)
        self.show_permissions(index)

    def action_remove_permission(self) -> None:
        i = self.query_one("#permissions", DataTable).cursor_row
        if 0 <= i < len(self.permissions):
            self.permissions = self.permissions[:i] + self.permissions[i + 1 :]
            self.show_permissions(max(0, i - 1))

    def action_move(self, delta: int) -> None:
        i = self.query_one("#permissions", DataTable).cursor_row
        at, self.permissions = moved(self.permissions, i, delta)
        self.show_permissions(at)

    # -- saving ---------------------------------------------------------------------------

    def typed(self) -> Draft:
        def value(name: str) -> str:
            return self.query_one(f"#{name}", Input).value

        return replace(
            self.draft,
            source=value("source"),
            destination=value("destination"),
            kind=self.kind(),
            description=value("description"),
            permissions=self.permissions,
        )

    def show_problems(self, found: list[Problem]) -> None:
        slots = by_slot(found)
        for slot in SLOTS:
            lines = slots.get(slot, [])
            error = self.query_one(f"#{slot}-error", Static)
            error.update("\n".join(f"⚠ {line}" for line in lines))
            error.display = bool(lines)

    @on(Button.Pressed, "#save")
    def action_save(self) -> None:
        draft = self.typed()
        found = problems(draft)
        if not self.existing and (draft.source.strip(), draft.destination.strip()) in (
            self.gossamer.intentions
        ):
            found.append(
                Problem(
                    "SourceName",
                    "this pair has an intention already; escape, then e on its row, edits it",
                )
            )
        self.show_problems(found)
        if not found:
            self.write(to_intention(draft)[0])

    @work(exclusive=True, group="write")
    async def write(self, ixn: Intention) -> None:
        self.query_one("#general-error", Static).update("saving…")
        self.query_one("#general-error").display = True
        try:
            await self.gossamer.api.put(ixn)
        except ApiRefused as exc:
            self.show_problems(
                api_problems(exc.text)
                if exc.status == 400
                else [Problem("", f"the agent refused: {exc}")]
            )
        except (AgentDown, BadAnswer) as exc:
            self.show_problems([Problem("", f"{exc}. Nothing lost: ctrl+s tries again.")])
        else:
            self.notify(f"Saved {ixn.source} => {ixn.destination}")
            self.dismiss(ixn.pair)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
