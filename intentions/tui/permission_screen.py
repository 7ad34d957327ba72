"""One L7 permission in the form: action, path (prefix/exact/regex), methods, header lines.

Validated with the API's own rules before it is kept (form.py turns what
was typed into a `Permission`); problems are listed under the fields and
the screen stays open. Dismissed with the permission as typed, or None.
"""

from __future__ import annotations

from typing import cast

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Select, Static, TextArea

from gossamer.intentions.model import Intention
from gossamer.intentions.tui.form import PermissionDraft, to_permission
from gossamer.intentions.validate import validate


class PermissionScreen(ModalScreen[PermissionDraft | None]):
    """One L7 permission: action, path (exact/prefix/regex), methods, header lines."""

    BINDINGS = [Binding("ctrl+s", "save", "Save"), Binding("escape", "cancel", "Cancel")]

    def __init__(self, perm: PermissionDraft) -> None:
        super().__init__()
        self.perm = perm

    def compose(self) -> ComposeResult:
        p = self.perm
        with VerticalScroll(id="permission"):
            yield Static("[b]L7 permission[/]  ctrl+s keeps it, escape drops the changes")
            with Horizontal(classes="pair"):
                yield Select(
                    [("allow", "allow"), ("deny", "deny")],
                    value=p.action,
                    allow_blank=False,
                    id="perm-action",
                )
                yield Select(
                    [("path prefix", "prefix"), ("path exact", "exact"), ("path regex", "regex")],
                    value=p.path_kind,
                    allow_blank=False,
                    id="perm-path-kind",
                )
            yield Input(p.path, placeholder="/path (empty: any path)", id="perm-path")
            yield Input(
                p.methods, placeholder="methods, e.g. GET, POST (empty: any)", id="perm-methods"
            )
            yield Label(  # `\[`: else markup reads "[value]" as a style and drops it
                "Headers, one per line: [!]Name present|exact|prefix|suffix|contains|regex "
                "\\[value]; KIND/i ignores case"
            )
            yield TextArea(p.headers, id="perm-headers")
            yield Static("", id="perm-error", classes="error")

    def on_mount(self) -> None:
        self.query_one("#perm-path", Input).focus()

    def typed(self) -> PermissionDraft:
        return PermissionDraft(
            cast("str", self.query_one("#perm-action", Select).value),  # type: ignore[arg-type]
            cast("str", self.query_one("#perm-path-kind", Select).value),  # type: ignore[arg-type]
            self.query_one("#perm-path", Input).value,
            self.query_one("#perm-methods", Input).value,
            self.query_one("#perm-headers", TextArea).text,
        )

    def action_save(self) -> None:
        perm = self.typed()
        built, bad = to_permission(perm)
        probe = Intention("a", "b", permissions=(built,))
        found = bad + [
            f"{p.field.removeprefix('Permissions[0].')}: {p.message}" for p in validate(probe)
        ]
        error = self.query_one("#perm-error", Static)
        error.update("\n".join(f"⚠ {line}" for line in found))
        error.display = bool(found)
        if not found:
            self.dismiss(perm)

    def action_cancel(self) -> None:
        self.dismiss(None)
