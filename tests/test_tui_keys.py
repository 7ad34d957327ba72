"""The terminal UI's habits without an agent: help, palette, mouse, small terminals.

Against fixed answers (tests/harness/tui.py); every flow that reads or
writes the agent is tested against real agents in test_tui_app.py.
"""

from __future__ import annotations

from textual.widgets import Static

from gossamer.intentions.tui.app import IntentionsApp
from gossamer.intentions.tui.main_screen import MainScreen
from gossamer.intentions.tui.matrix_screen import MatrixScreen
from tests.harness.tui import FixedApi, sample_intentions

SERVICES = ["api", "db", "web"]


def app() -> IntentionsApp:
    api = FixedApi(sample_intentions(), SERVICES)
    return IntentionsApp(api.base_url, api=api)


async def test_question_mark_shows_every_binding_and_hides_again() -> None:
    async with app().run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("question_mark")
        await pilot.pause()
        panel = pilot.app.screen.query("HelpPanel")
        assert panel
        actions = {b.action for _, b, _, _ in pilot.app.screen.active_bindings.values()}
        for hidden_from_footer in ("sort_reverse", "apply_file", "history", "denials"):
            assert hidden_from_footer in actions
        await pilot.press("question_mark")
        await pilot.pause()
        assert not pilot.app.screen.query("HelpPanel")


async def test_the_palette_reaches_the_screens_actions() -> None:
    async with app().run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("colon", *"Matrix")
        await pilot.pause(0.3)
        await pilot.press("enter")
        for _ in range(100):
            if isinstance(pilot.app.screen, MatrixScreen):
                break
            await pilot.pause(0.02)
        assert isinstance(pilot.app.screen, MatrixScreen)


async def test_clicking_a_header_sorts_by_it() -> None:
    async with app().run_test(size=(100, 24)) as pilot:
        for _ in range(100):
            if pilot.app.loaded:  # type: ignore[attr-defined]
                break
            await pilot.pause(0.02)
        screen = pilot.app.screen
        assert isinstance(screen, MainScreen)
        source_x = screen.table.widths[0] + 1  # the Prec column and its gap
        await pilot.click("#intentions", offset=(source_x + 1, 0))
        await pilot.pause()
        assert screen.order.column == "source"
        assert [r.key[0] for r in screen.table.shown][:2] == ["*", "*"]


async def test_a_terminal_too_small_says_how_big_it_must_be() -> None:
    async with app().run_test(size=(50, 12)) as pilot:
        await pilot.pause()
        note = pilot.app.screen.query_one("#too-small", Static)
        assert note.display
        assert "needs at least 60x15" in str(note.render())
    async with app().run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert not pilot.app.screen.query_one("#too-small", Static).display
