"""The Textual application: the agent's state as the screens see it, kept live by workers.

The app owns what every screen reads: the intentions by pair, the catalog's
service names, and whether the agent answers. Two workers follow the agent
with blocking queries (intentions, services); each change bumps
`generation`, which screens watch to redraw. When the agent does not answer,
`down` holds why (the banner shows it) and the worker retries with a short
backoff, starting over from index 0, until the agent is back.

`read_only` hides every write: `check_action` refuses the write actions on
every screen, so the keys are neither shown nor run, and no screen that
writes can be opened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from functools import partial

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen

from gossamer.intentions.decide import IntentionSet
from gossamer.intentions.model import Intention
from gossamer.intentions.tui.client import AgentApi, AgentDown, ApiRefused, BadAnswer, next_index
from gossamer.intentions.tui.rows import Changes, Pair, by_pair, changes

WRITE_ACTIONS = frozenset({"create", "edit", "delete", "apply_file"})
MIN_SIZE = (60, 15)
PolicyLoader = Callable[[str], list[Intention]]


def backoff_s(failures: int) -> float:
    """Seconds before retry number `failures` (1, 2, ...): 0.25, 0.5, 1, then every 2."""
    return float(min(0.25 * 2 ** max(failures - 1, 0), 2.0))


class IntentionsApp(App[None]):
    """`gossamer tui`: intentions of the agent at `base_url`."""

    TITLE = "gossamer intentions"
    CSS_PATH = "tui.tcss"
    BINDINGS = [
        Binding("question_mark", "help", "Keys", key_display="?"),
        Binding("colon", "command_palette", "Palette", show=False, key_display=":"),
        Binding("q", "quit", "Quit"),
    ]
    generation: reactive[int] = reactive(0)
    down: reactive[str] = reactive("")

    def __init__(
        self,
        base_url: str,
        *,
        read_only: bool = False,
        load_policy: PolicyLoader | None = None,
        api: AgentApi | None = None,
        token: str = "",
    ) -> None:
        """`api` replaces the HTTP client (snapshot tests give one with fixed answers);
        `token` is the ACL token every call sends."""
        super().__init__()
        self.base_url = base_url
        self.read_only = read_only
        self.load_policy = load_policy
        self.api = api or AgentApi(base_url, token)
        self.intentions: dict[Pair, Intention] = {}
        self.services: list[str] = []
        self.index = 0
        self.loaded = False  # the first list arrived
        self.last_changes = Changes(frozenset(), frozenset())
        self.default_allow: bool | None = None
        self._rules: tuple[int, IntentionSet] = (-1, IntentionSet(()))

    def on_mount(self) -> None:
        from gossamer.intentions.tui.main_screen import MainScreen

        self.push_screen(MainScreen())
        self.follow_intentions()
        self.follow_services()

    async def on_unmount(self) -> None:
        await self.api.close()

    # -- following the agent ------------------------------------------------------------------

    @work(exclusive=True, group="intentions", exit_on_error=False)
    async def follow_intentions(self) -> None:
        index, failures = 0, 0
        while True:
            try:
                items, got = await self.api.intentions(index)
            except (AgentDown, ApiRefused, BadAnswer) as exc:
                failures += 1
                self.down = str(exc)
                index = 0
                await asyncio.sleep(backoff_s(failures))
                continue
            failures, self.down = 0, ""
            index = next_index(index, got)
            self.index = got
            self.absorb(items)

    @work(exclusive=True, group="services", exit_on_error=False)
    async def follow_services(self) -> None:
        index, failures = 0, 0
        while True:
            try:
                names, got = await self.api.services(index)
            except (AgentDown, ApiRefused, BadAnswer):
                failures += 1
                index = 0
                await asyncio.sleep(backoff_s(failures))
                continue
            failures, index = 0, next_index(index, got)
            if names != self.services:
                self.services = names
                self.generation += 1

    def absorb(self, items: Iterable[Intention]) -> None:
        """Take a fresh list from the agent; bump `generation` if anything changed."""
        fresh = by_pair(items)
        found = changes(self.intentions, fresh)
        first = not self.loaded
        self.loaded = True
        if found.touched or found.gone or first:
            self.last_changes = Changes(frozenset(), frozenset()) if first else found
            self.intentions = fresh
            self.generation += 1

    def rules(self) -> IntentionSet:
        """The intentions as the decision index, built once per change of the data.

        Building it is O(n) (a few hundred ms at 10,000): callers on the
        event loop should call it from a thread worker.
        """
        generation, built = self._rules
        if generation != self.generation:
            built = IntentionSet(self.intentions.values())
            self._rules = (self.generation, built)
        return built

    # -- actions ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Read-only mode: write actions are neither shown nor run."""
        return not (self.read_only and action in WRITE_ACTIONS)

    def action_help(self) -> None:
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """The palette reaches every action the current screen's keys reach."""
        yield from super().get_system_commands(screen)
        for binding in screen.BINDINGS:
            if not isinstance(binding, Binding) or not binding.description:
                continue
            if screen.check_action(binding.action, ()) is False:
                continue
            yield SystemCommand(
                binding.description,
                f"key {binding.key_display or binding.key}",
                partial(self.run_action, binding.action, screen),
            )
