"""Snapshots of the terminal UI's main screens at 80x24, so layout regressions are seen.

The app runs against fixed answers (tests/harness/tui.py: no ports, clocks
or indexes in the picture). After a deliberate layout change, look at the
report, then rerun with `--snapshot-update`.
"""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from gossamer.intentions.tui.app import IntentionsApp
from gossamer.intentions.tui.denials_screen import DenialsScreen
from gossamer.intentions.tui.matrix_screen import MatrixScreen
from tests.harness.tui import FixedApi, sample_intentions

SIZE = (80, 24)
SERVICES = ["api", "batch", "billing", "db", "web"]


def app(read_only: bool = False) -> IntentionsApp:
    api = FixedApi(sample_intentions(), SERVICES)
    return IntentionsApp(api.base_url, read_only=read_only, api=api)


async def loaded(pilot: Pilot[Any]) -> None:
    for _ in range(200):
        if isinstance(pilot.app, IntentionsApp) and pilot.app.loaded and pilot.app.services:
            break
        await pilot.pause(0.01)
    await pilot.pause()


def test_the_list(snap_compare: Any) -> None:
    assert snap_compare(app(), terminal_size=SIZE, run_before=loaded)


def test_the_list_read_only_filtered_and_sorted(snap_compare: Any) -> None:
    keys = ["slash", *"!src:\\*", "enter", "s"]
    assert snap_compare(app(read_only=True), press=keys, terminal_size=SIZE, run_before=loaded)


def test_the_form_with_l7_permissions(snap_compare: Any) -> None:
    keys = ["slash", *"billing", "enter", "e"]
    assert snap_compare(app(), press=keys, terminal_size=SIZE, run_before=loaded)


def test_the_delete_confirmation(snap_compare: Any) -> None:
    assert snap_compare(app(), press=["d"], terminal_size=SIZE, run_before=loaded)


async def matrix_shown(pilot: Pilot[Any]) -> None:
    await loaded(pilot)
    await pilot.press("m")
    for _ in range(200):
        screen = pilot.app.screen
        if isinstance(screen, MatrixScreen) and screen.current is not None:
            break
        await pilot.pause(0.01)
    await pilot.pause()


def test_the_matrix(snap_compare: Any) -> None:
    keys = ["right", "down"]
    assert snap_compare(app(), press=keys, terminal_size=SIZE, run_before=matrix_shown)


def test_the_detail_view(snap_compare: Any) -> None:
    keys = ["slash", *"billing", "enter", "enter"]
    assert snap_compare(app(), press=keys, terminal_size=SIZE, run_before=loaded)


async def denials_shown(pilot: Pilot[Any]) -> None:
    await loaded(pilot)
    await pilot.press("x")
    for _ in range(200):
        screen = pilot.app.screen
        if isinstance(screen, DenialsScreen) and screen.rows and screen.edges:
            break
        await pilot.pause(0.01)
    await pilot.pause()


def test_the_denials_pane(snap_compare: Any) -> None:
    assert snap_compare(app(), terminal_size=SIZE, run_before=denials_shown)
