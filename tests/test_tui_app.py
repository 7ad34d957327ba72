"""`gossamer tui` driven headless (Textual's Pilot) against real agents.

Two joined agents are shared by the module; each test uses its own service
names. What the UI did is checked through the agent's HTTP API, and what
another agent did is waited for in the UI with a deadline, never a sleep.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

from gossamer.agent.cli.tui import read_policy_file
from gossamer.intentions.denials import Denial, denial_to_json
from gossamer.intentions.tui.app import IntentionsApp
from gossamer.intentions.tui.confirm import ConfirmScreen
from gossamer.intentions.tui.denials_screen import DenialsScreen
from gossamer.intentions.tui.form_screen import FormScreen
from gossamer.intentions.tui.main_screen import MainScreen
from gossamer.intentions.tui.matrix_screen import MatrixScreen
from tests.harness.cli import ok
from tests.harness.cluster import AgentProc, Cluster, exact, put_exact
from tests.harness.poll import eventually
from tests.harness.tui import DEADLINE_S, until

SIZE = (100, 30)


@pytest.fixture(scope="module")
def duo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[AgentProc]]:
    c = Cluster(tmp_path_factory.mktemp("tui"))
    try:
        yield c.start(2)
    finally:
        leftovers = c.close()
    assert not leftovers, f"processes left behind: {leftovers}"


def main(app: IntentionsApp) -> MainScreen:
    screen = app.screen
    assert isinstance(screen, MainScreen), type(screen).__name__
    return screen


def text_of(app: IntentionsApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def started(pilot: Pilot[None]) -> IntentionsApp:
    app = pilot.app
    assert isinstance(app, IntentionsApp)
    await until(pilot, lambda: app.loaded and isinstance(app.screen, MainScreen), "first list")
    return app


async def filter_to(pilot: Pilot[None], text: str) -> None:
    await pilot.press("slash", *text, "enter")


# --- live list ----------------------------------------------------------------------------------


async def test_a_write_on_another_agent_appears_marked_without_a_keypress(
    duo: list[AgentProc],
) -> None:
    a, b = duo
    put_exact(a, "live-a", "live-db", {"Action": "allow"})
    put_exact(a, "live-b", "live-db", {"Action": "allow"})
    async with IntentionsApp(a.http).run_test(size=SIZE) as pilot:
        app = await started(pilot)
        await until(pilot, lambda: ("live-b", "live-db") in app.intentions, "live-b on a")
        await filter_to(pilot, "dst:live-db")
        table = main(app).table
        assert table.select_pair(("live-b", "live-db"))
        put_exact(b, "live-0", "live-db", {"Action": "deny"})  # sorts above the cursor's row
        await until(
            pilot,
            lambda: ("live-0", "live-db") in [r.key for r in table.shown],
            "the row written on the other agent",
        )
        assert table.is_marked(("live-0", "live-db"))
        assert table.cursor_pair == ("live-b", "live-db")
        assert [r.cell("action") for r in table.shown] == ["deny", "allow", "allow"]


async def test_filter_sort_and_detail(duo: list[AgentProc]) -> None:
    a, _ = duo
    put_exact(a, "fs-web", "fs-db", {"Action": "allow", "Description": "front"})
    put_exact(a, "*", "fs-db", {"Action": "deny"})
    perms = [{"Action": "allow", "HTTP": {"PathPrefix": "/v1", "Methods": ["GET"]}}]
    put_exact(a, "fs-api", "fs-web", {"Permissions": perms})
    async with IntentionsApp(a.http).run_test(size=SIZE) as pilot:
        app = await started(pilot)
        await filter_to(pilot, "fs-")
        table = main(app).table
        await until(pilot, lambda: len(table.shown) == 3, "three fs- rows")
        assert [r.key for r in table.shown] == [  # evaluation order
            ("fs-api", "fs-web"),
            ("fs-web", "fs-db"),
            ("*", "fs-db"),
        ]
        await pilot.press("s")  # sort by source, ascending
        assert [r.key[0] for r in table.shown] == ["*", "fs-api", "fs-web"]
        assert table.titles[1] == "Source ▲"
        await pilot.press("r")
        assert [r.key[0] for r in table.shown] == ["fs-web", "fs-api", "*"]
        await pilot.press("slash", "ctrl+a", "ctrl+k", *"!fs-", "enter")
        assert all("fs-" not in r.key[0] + r.key[1] for r in table.shown)
        await pilot.press("escape")
        await filter_to(pilot, "src:fs-api")
        await pilot.press("enter")
        await until(pilot, lambda: type(app.screen).__name__ == "DetailScreen", "detail")
        assert "fs-api => fs-web (1 permission)" in text_of(app, "#detail-title")


# --- create, edit, delete -----------------------------------------------------------------------


async def test_create_edit_and_delete_through_the_ui(duo: list[AgentProc]) -> None:
    a, b = duo
    async with IntentionsApp(a.http).run_test(size=SIZE) as pilot:
        app = await started(pilot)
        await pilot.press("n")
        assert isinstance(app.screen, FormScreen)
        await pilot.press(*"ced-web", "tab", *"ced-db", "tab")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: exact(a, "ced-web", "ced-db"), "the created intention")
        assert exact(a, "ced-web", "ced-db")["Action"] == "allow"  # type: ignore[index]
        await until(pilot, lambda: isinstance(app.screen, MainScreen), "the form to close")
        await until(pilot, lambda: main(app).table.cursor_pair == ("ced-web", "ced-db"), "cursor")
        # edit: L7 with one permission, added through the permission editor
        await pilot.press("e")
        form = app.screen
        assert isinstance(form, FormScreen)
        assert form.query_one("#source", Input).disabled  # the pair is the identity
        form.query_one("#kind").value = "l7"  # type: ignore[attr-defined]
        await pilot.pause()
        form.query_one("#permissions").focus()
        await pilot.press("a")
        await until(pilot, lambda: type(app.screen).__name__ == "PermissionScreen", "perm editor")
        await pilot.press(*"/api", "tab", *"get, post", "tab")
        await pilot.press(*"x-env exact prod", "ctrl+s")
        await until(pilot, lambda: app.screen is form, "the permission to be kept")
        await pilot.press("ctrl+s")
        body = await until(
            pilot,
            lambda: (exact(b, "ced-web", "ced-db") or {}).get("Permissions"),
            "the L7 edit to reach the other agent",
        )
        assert body == [
            {
                "Action": "allow",
                "HTTP": {
                    "PathPrefix": "/api",
                    "Methods": ["GET", "POST"],
                    "Header": [{"Name": "x-env", "Exact": "prod"}],
                },
            }
        ]
        # delete: asks, names the intention, Cancel keeps it
        await until(pilot, lambda: isinstance(app.screen, MainScreen), "the form to close")
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        assert "ced-web => ced-db (1 permission)" in text_of(app, "#question")
        await pilot.press("enter")  # Cancel has the focus
        assert exact(a, "ced-web", "ced-db") is not None
        await pilot.press("d")
        await pilot.click("#yes")
        await until(pilot, lambda: exact(a, "ced-web", "ced-db") is None, "the delete")


async def test_problems_show_next_to_their_field_and_nothing_is_written(
    duo: list[AgentProc],
) -> None:
    a, _ = duo
    async with IntentionsApp(a.http).run_test(size=SIZE) as pilot:
        app = await started(pilot)
        await pilot.press("n", *"bad name", "tab", *"err-db", "ctrl+s")
        form = app.screen
        assert isinstance(form, FormScreen)
        assert "SourceName" not in text_of(app, "#source-error")
        assert "must be" in text_of(app, "#source-error") or "valid" in text_of(
            app, "#source-error"
        )
        assert form.query_one("#source", Input).value == "bad name"  # what was typed is kept
        assert exact(a, "err-db", "err-db") is None
        assert not [p for p in app.intentions if p[1] == "err-db"]


# --- check, matrix, apply -------------------------------------------------------------------------


async def test_check_names_the_deciding_rule_or_the_default(duo: list[AgentProc]) -> None:
    a, _ = duo
    put_exact(a, "*", "chk-db", {"Action": "allow"})
    put_exact(a, "chk-bad", "chk-db", {"Action": "deny"})
    async with IntentionsApp(a.http).run_test(size=SIZE) as pilot:
        app = await started(pilot)
        await until(pilot, lambda: ("chk-bad", "chk-db") in app.intentions, "the rules")
        await pilot.press("c", *"chk-web", "tab", *"chk-db", "enter")
        await until(pilot, lambda: "ALLOWED" in text_of(app, "#check-result"), "the verdict")
        assert "* => chk-db" in text_of(app, "#check-result")
        assert main(app).table.cursor_pair == ("*", "chk-db")
        await pilot.press("shift+tab", "ctrl+a", "ctrl+k", *"chk-bad", "enter")
        await until(pilot, lambda: "DENIED" in text_of(app, "#check-result"), "the deny")
        assert main(app).table.cursor_pair == ("chk-bad", "chk-db")
        await pilot.press(
            "ctrl+a", "ctrl+k", *"chk-x", "tab", "ctrl+a", "ctrl+k", *"chk-none", "enter"
        )
        await until(
            pilot,
            lambda: "default policy is deny" in text_of(app, "#check-result"),
            "the default policy",
        )


async def test_the_matrix_follows_the_catalog_and_the_rules(duo: list[AgentProc]) -> None:
    a, b = duo
    for name in ("mx-web", "mx-db"):
        a.put("/v1/agent/service/register", {"Name": name, "Port": 8080})
    put_exact(a, "mx-web", "mx-db", {"Action": "allow"})
    async with IntentionsApp(a.http).run_test(size=(120, 30)) as pilot:
        app = await started(pilot)
        await until(pilot, lambda: {"mx-web", "mx-db"} <= set(app.services), "the services")
        await pilot.press("m")
        screen = app.screen
        assert isinstance(screen, MatrixScreen)
        await until(
            pilot,
            lambda: screen.current is not None and "mx-web" in screen.current.services,
            "the matrix",
        )
        web, db = (screen.current.services.index(n) for n in ("mx-web", "mx-db"))  # type: ignore[union-attr]
        assert screen.current.at(web, db).kind == "allow"  # type: ignore[union-attr]
        assert screen.current.at(db, web).kind == "default"  # type: ignore[union-attr]
        screen.grid.move_to(web, db + 1)
        await pilot.pause()
        assert "matched intention mx-web => mx-db" in text_of(app, "#cell")
        put_exact(b, "mx-db", "mx-web", {"Action": "deny"})  # on the other agent: live
        await until(pilot, lambda: screen.current.at(db, web).kind == "deny", "the live cell")  # type: ignore[union-attr]
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, MainScreen), "back to the list")
        assert main(app).table.cursor_pair == ("mx-web", "mx-db")


async def test_apply_a_file_shows_its_plan_then_applies(
    duo: list[AgentProc], tmp_path: Path
) -> None:
    a, _ = duo
    put_exact(a, "ap-old", "ap-db", {"Action": "allow"})
    good = tmp_path / "policy.yaml"
    good.write_text(
        "Kind: service-intentions\nName: ap-db\nSources:\n"
        "  - Name: ap-web\n    Action: allow\n  - Name: ap-old\n    Action: deny\n"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("Kind: service-intentions\nName: ap-db\nSources:\n  - Name: ap-x\n")
    async with IntentionsApp(a.http, load_policy=read_policy_file).run_test(size=SIZE) as pilot:
        app = await started(pilot)
        await until(pilot, lambda: ("ap-old", "ap-db") in app.intentions, "ap-old")
        await pilot.press("a", *str(bad), "enter")
        await until(pilot, lambda: "problem" in text_of(app, "#plan"), "the problems")
        assert "Sources[0] ap-x => ap-db" in text_of(app, "#plan")
        await pilot.press("ctrl+a", "ctrl+k", *str(good), "enter")
        await until(pilot, lambda: "+ ap-web => ap-db" in text_of(app, "#plan"), "the plan")
        assert "~ ap-old => ap-db  allow → deny" in text_of(app, "#plan")
        assert exact(a, "ap-web", "ap-db") is None  # a plan writes nothing
        await pilot.click("#apply-go")
        await pilot.click("#yes")
        await until(pilot, lambda: exact(a, "ap-web", "ap-db"), "the applied create")
        assert exact(a, "ap-old", "ap-db")["Action"] == "deny"  # type: ignore[index]


# --- read-only; agent down and back --------------------------------------------------------------


async def test_read_only_hides_and_refuses_every_write(duo: list[AgentProc]) -> None:
    a, _ = duo
    put_exact(a, "ro-web", "ro-db", {"Action": "allow"})
    async with IntentionsApp(a.http, read_only=True).run_test(size=SIZE) as pilot:
        app = await started(pilot)
        await filter_to(pilot, "ro-")
        await until(pilot, lambda: main(app).table.cursor_pair == ("ro-web", "ro-db"), "the row")
        for key in ("n", "e", "d", "a"):
            await pilot.press(key)
            assert isinstance(app.screen, MainScreen), f"{key} opened {app.screen}"
        shown = {b.binding.action for b in app.screen.active_bindings.values() if b.enabled}
        assert not shown & {"create", "edit", "delete", "apply_file"}
        assert "read-only" in text_of(app, "#status")
    assert exact(a, "ro-web", "ro-db") is not None


async def test_an_agent_down_shows_a_banner_keeps_the_form_and_reconnects(
    cluster: Cluster,
) -> None:
    (a,) = cluster.start(1)
    put_exact(a, "dn-web", "dn-db", {"Action": "allow"})
    async with IntentionsApp(a.http).run_test(size=SIZE) as pilot:
        app = await started(pilot)
        await pilot.press("n", *"dn-new", "tab", *"dn-db")
        a.stop()
        await pilot.press("ctrl+s")
        form = app.screen
        await until(pilot, lambda: "Nothing lost" in text_of(app, "#general-error"), "the error")
        assert form.query_one("#source", Input).value == "dn-new"
        await pilot.press("escape")
        await until(
            pilot, lambda: app.down and "not answering" in text_of(app, "#banner"), "the banner"
        )
        a.start()
        put_exact(a, "dn-after", "dn-db", {"Action": "deny"})
        await until(pilot, lambda: ("dn-after", "dn-db") in app.intentions, "the reconnect")
        assert not app.down
        assert not app.screen.query_one("#banner").display


# --- history ------------------------------------------------------------------------------------


async def test_history_of_a_change_on_another_agent_in_the_ui_the_api_and_the_cli(
    duo: list[AgentProc],
) -> None:
    a, b = duo
    put_exact(b, "hi-web", "hi-db", {"Action": "allow"})
    put_exact(b, "hi-web", "hi-db", {"Action": "deny", "Description": "closed"})
    query = "?source=hi-web&destination=hi-db"
    records = eventually(
        lambda: (
            len(a.get("/v1/connect/intentions/history" + query)) == 2
            and a.get("/v1/connect/intentions/history" + query)
        ),
        DEADLINE_S,
        what="both changes in a's history",
    )
    assert [(r["Op"], r["Node"]) for r in records] == [("update", b.name), ("create", b.name)]
    assert records[0]["Before"]["Action"] == "allow" and records[0]["After"]["Action"] == "deny"
    out = ok("intention", "history", "hi-web", "hi-db", "--http-addr", a.http)
    assert f"{b.name}  ~ hi-web => hi-db  allow → deny" in out
    assert f"{b.name}  + hi-web => hi-db  allow" in out
    async with IntentionsApp(a.http).run_test(size=SIZE) as pilot:
        app = await started(pilot)
        await pilot.press("h")
        await until(
            pilot, lambda: "hi-web => hi-db  allow → deny" in text_of(app, "#history"), "the feed"
        )
        put_exact(b, "hi-api", "hi-db", {"Action": "allow"})  # the feed is live
        await until(pilot, lambda: "+ hi-api => hi-db" in text_of(app, "#history"), "live feed")
        await pilot.press("escape", "slash", *"src:hi-web", "enter", "enter")
        await until(
            pilot,
            lambda: "~ hi-web" in str(app.screen.query_one("#detail-history", Static).render()),
            "the intention's own history",
        )


def report_denial(agent: AgentProc, source: str, ixn_id: str, rule: str, ago_ms: int) -> None:
    """What a proxy of `agent` sends when it denied `source` -> dn-db."""
    seen = time.time_ns() // 1_000_000 - ago_ms
    row = Denial(source, "dn-db", ixn_id, 9 if ixn_id else 0, rule, "why", 1, seen, seen)
    assert agent.put("/v1/connect/intentions/denials", [denial_to_json(row)]) is True


def denial_counts(app: IntentionsApp) -> dict[str, str]:
    table = app.screen.query_one("#denials", DataTable)
    return {
        str(table.get_row_at(i)[0]): str(table.get_row_at(i)[3]) for i in range(table.row_count)
    }


async def test_denials_show_live_and_lead_to_the_rule_or_a_form_that_allows(
    duo: list[AgentProc],
) -> None:
    a, _ = duo
    put_exact(a, "dn-bad", "dn-db", {"Action": "deny"})
    bad_id = exact(a, "dn-bad", "dn-db")["ID"]  # type: ignore[index]
    report_denial(a, "dn-bad", bad_id, "dn-bad => dn-db (deny)", 5000)
    report_denial(a, "dn-web", "", "default policy (deny)", 0)  # newest: the first row
    async with IntentionsApp(a.http).run_test(size=SIZE) as pilot:
        app = await started(pilot)
        await until(pilot, lambda: ("dn-bad", "dn-db") in app.intentions, "the rule")
        await pilot.press("x")
        assert isinstance(app.screen, DenialsScreen)
        await until(pilot, lambda: denial_counts(app).get("dn-bad") == "1", "the rows")
        report_denial(a, "dn-bad", bad_id, "dn-bad => dn-db (deny)", 0)  # live, no keypress
        await until(pilot, lambda: denial_counts(app).get("dn-bad") == "2", "the live count")
        assert str(app.screen.query_one("#denials", DataTable).get_row_at(0)[2]).startswith(
            "dn-bad => dn-db"
        )
        await pilot.press("enter")  # the cursor is on the first row: dn-bad, most recent now
        await until(pilot, lambda: isinstance(app.screen, MainScreen), "back to the list")
        assert main(app).table.cursor_pair == ("dn-bad", "dn-db")
        await pilot.press("x")
        await until(pilot, lambda: "dn-web" in denial_counts(app), "the default policy's row")
        await pilot.press("down", "enter")
        form = await until(pilot, lambda: isinstance(app.screen, FormScreen) and app.screen, "form")
        assert form.query_one("#source", Input).value == "dn-web"
        assert form.query_one("#destination", Input).value == "dn-db"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: exact(a, "dn-web", "dn-db"), "the allowing intention")
        assert exact(a, "dn-web", "dn-db")["Action"] == "allow"  # type: ignore[index]


# --- an agent that answers garbage; the CLI entry ------------------------------------------------


async def test_an_agent_answering_garbage_is_said_and_retried(serve_app: Any) -> None:
    async def garbage(request: web.Request) -> web.Response:
        return web.Response(text="<html>not an agent</html>", content_type="text/html")

    fake = web.Application()
    fake.router.add_get("/v1/connect/intentions", garbage)
    fake.router.add_get("/v1/catalog/services", garbage)
    where = await serve_app(fake)
    async with IntentionsApp(f"http://{where.host}:{where.port}").run_test(size=SIZE) as pilot:
        app = pilot.app
        assert isinstance(app, IntentionsApp)
        await until(pilot, lambda: "not JSON" in app.down, "the banner")
        assert "not JSON" in text_of(app, "#banner")
        assert "reconnecting" in text_of(app, "#status")
        assert not app.intentions


def test_the_cli_entry_takes_read_only() -> None:
    out = ok("tui", "--help")
    assert "--read-only" in out and "--http-addr" in out
