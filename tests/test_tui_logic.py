"""The terminal UI's screen logic without a terminal: tables of input -> what the screen shows."""

from __future__ import annotations

import pytest

from gossamer.intentions.decide import IntentionSet
from gossamer.intentions.model import HeaderMatch, HTTPMatch, Intention, Permission
from gossamer.intentions.plan import plan
from gossamer.intentions.tui.app import backoff_s
from gossamer.intentions.tui.client import next_index
from gossamer.intentions.tui.form import (
    Draft,
    PermissionDraft,
    api_problems,
    by_slot,
    draft_of,
    drops_permissions,
    header_line,
    moved,
    parse_headers,
    problems,
    to_intention,
)
from gossamer.intentions.tui.history import history_line
from gossamer.intentions.tui.matrix import check_request, default_from_reason, matrix
from gossamer.intentions.tui.plan_view import plan_lines
from gossamer.intentions.tui.rows import (
    Row,
    SortOrder,
    arrange,
    by_pair,
    changes,
    parse_filter,
    position_after,
)

WEB_DB = Intention("web", "db", "allow", description="front to data", modify_index=5)
API_DB = Intention("api", "db", "deny", modify_index=6)
ANY_DB = Intention("*", "db", "deny", modify_index=7)
WEB_ANY = Intention("web", "*", "allow", description="web may call", modify_index=8)
L7 = Intention(
    "api",
    "web",
    permissions=(
        Permission("allow", HTTPMatch(path_prefix="/v1", methods=("GET",))),
        Permission("deny", HTTPMatch(headers=(HeaderMatch("x-debug", present=True),))),
    ),
    modify_index=9,
)
ALL = [WEB_DB, API_DB, ANY_DB, WEB_ANY, L7]
ROWS = [Row(i) for i in ALL]


def pairs(rows: list[Row]) -> list[str]:
    return [f"{r.key[0]}>{r.key[1]}" for r in rows]


# --- filter and sort ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("", ["api>db", "api>web", "web>db", "*>db", "web>*"]),
        ("web", ["api>web", "web>db", "web>*"]),
        ("!web", ["api>db", "*>db"]),
        ("src:web", ["web>db", "web>*"]),
        ("dst:^db$", ["api>db", "web>db", "*>db"]),
        ("action:deny", ["api>db", "*>db"]),
        ("action:permission", ["api>web"]),
        ("desc:FRONT", ["web>db"]),
        ("w.b", ["api>web", "web>db", "web>*"]),
        ("web(", []),  # not a regex: matched as text, nothing has it
        ("!src:web", ["api>db", "api>web", "*>db"]),
    ],
)
def test_the_filter_reads_text_regex_inversion_and_columns(typed: str, shown: list[str]) -> None:
    assert pairs(arrange(ROWS, parse_filter(typed), SortOrder())) == shown


def test_a_filter_that_is_no_regex_says_it_matches_as_text() -> None:
    assert parse_filter("web(").note.startswith("as text")
    assert parse_filter("!src:w.b").note == "not regex in Source"


@pytest.mark.parametrize(
    ("order", "shown"),
    [
        (SortOrder(), ["api>db", "api>web", "web>db", "*>db", "web>*"]),
        (SortOrder("precedence", False), ["web>*", "*>db", "web>db", "api>web", "api>db"]),
        (SortOrder("source", False), ["*>db", "api>db", "api>web", "web>db", "web>*"]),
        (SortOrder("destination", True), ["api>web", "api>db", "web>db", "*>db", "web>*"]),
        (SortOrder("action", False), ["api>web", "web>db", "web>*", "api>db", "*>db"]),
    ],
)
def test_sorting_breaks_ties_in_evaluation_order(order: SortOrder, shown: list[str]) -> None:
    assert pairs(arrange(ROWS, parse_filter(""), order)) == shown


def test_the_sort_key_flips_the_same_column_and_starts_another_fresh() -> None:
    order = SortOrder()
    assert order.title("precedence") == "Prec ▼" and order.title("source") == "Source"
    assert order.pressed("precedence") == SortOrder("precedence", False)
    assert order.pressed("source") == SortOrder("source", False)
    assert order.next_column() == SortOrder("source", False)
    assert SortOrder("updated", False).next_column() == SortOrder("precedence", True)


# --- what changed, and where the cursor goes -----------------------------------------------------


def test_changes_mark_new_and_modified_pairs_not_moved_ones() -> None:
    before = by_pair([WEB_DB, API_DB])
    after = by_pair([Intention("web", "db", "deny", modify_index=10), API_DB, ANY_DB])
    found = changes(before, after)
    assert found.touched == {("web", "db"), ("*", "db")}
    assert found.gone == frozenset()
    assert changes(after, by_pair([API_DB])).gone == {("web", "db"), ("*", "db")}


@pytest.mark.parametrize(
    ("key", "old_line", "want"),
    [(("web", "db"), 0, 2), (("gone", "x"), 3, 3), (None, 9, 4), (("gone", "x"), -1, 0)],
)
def test_the_cursor_stays_on_its_row_or_its_line(
    key: tuple[str, str] | None, old_line: int, want: int
) -> None:
    shown = arrange(ROWS, parse_filter(""), SortOrder())
    assert position_after(shown, key, old_line) == want


# --- the form -----------------------------------------------------------------------------------


def test_a_stored_intention_round_trips_through_the_form() -> None:
    draft = draft_of(L7)
    assert draft.kind == "l7"
    assert draft.permissions[0] == PermissionDraft("allow", "prefix", "/v1", "GET", "")
    assert draft.permissions[1].headers == "x-debug present"
    ixn, bad = to_intention(draft)
    assert bad == [] and ixn.permissions == L7.permissions and ixn.action is None


def test_ignore_case_and_contains_survive_an_edit_in_the_form() -> None:
    """A Consul user's rule opened in the form and saved unchanged stays what it was."""
    headers = (HeaderMatch("User-Agent", contains="bot", ignore_case=True, invert=True),
               HeaderMatch("X-Env", exact="Prod", ignore_case=True))  # fmt: skip
    stored = Intention("web", "db", None, (Permission("deny", HTTPMatch(headers=headers)),))
    draft = draft_of(stored)
    assert draft.permissions[0].headers == "!User-Agent contains/i bot\nX-Env exact/i Prod"
    ixn, bad = to_intention(draft)
    assert bad == [] and ixn == stored


@pytest.mark.parametrize(
    ("text", "headers", "bad"),
    [
        ("x-env exact prod", (HeaderMatch("x-env", exact="prod"),), 0),
        ("!x-debug present", (HeaderMatch("x-debug", present=True, invert=True),), 0),
        ("Host suffix .example.com\n\n", (HeaderMatch("Host", suffix=".example.com"),), 0),
        ("x-a regex ^a.*", (HeaderMatch("x-a", regex="^a.*"),), 0),
        ("user-agent contains bot", (HeaderMatch("user-agent", contains="bot"),), 0),
        # `/i`: IgnoreCase, kept through an edit (once, the form would have dropped it)
        (
            "!x-env exact/i Prod",
            (HeaderMatch("x-env", exact="Prod", invert=True, ignore_case=True),),
            0,
        ),
        ("ua CONTAINS/I Bot", (HeaderMatch("ua", contains="Bot", ignore_case=True),), 0),
        # typed as given; validation refuses it as Consul does (not the line parser)
        ("x-a regex/i a.*", (HeaderMatch("x-a", regex="a.*", ignore_case=True),), 0),
        ("x-env exactly/i prod", (), 1),
        ("x-env equals prod", (), 1),
        ("x-env exact", (), 1),
        ("x-env present yes", (), 1),
    ],
)
def test_header_lines(text: str, headers: tuple[HeaderMatch, ...], bad: int) -> None:
    got, problems_found = parse_headers(text)
    assert got == headers and len(problems_found) == bad
    for h in got:
        assert parse_headers(header_line(h))[0] == (h,)


@pytest.mark.parametrize(
    ("draft", "slots"),
    [
        (Draft("web", "db"), {}),
        (Draft("", "db"), {"source": ["is required"]}),
        (Draft("web", "d b"), {"destination": 1}),
        (Draft("web", "db", "l7"), {"permissions": 1}),
        (Draft("web", "*", "l7", permissions=(PermissionDraft(path="/a"),)), {"permissions": 1}),
        (Draft("web", "db", "l7", permissions=(PermissionDraft(path="a"),)), {"permissions": 1}),
        (
            Draft("web", "db", "l7", permissions=(PermissionDraft(methods="FETCH"),)),
            {"permissions": 1},
        ),
        (Draft("web", "db", description="x" * 600), {"description": 1}),
        (
            Draft("web", "db", "l7", permissions=(PermissionDraft(headers="x regex/i a.*"),)),
            {
                "permissions": [
                    "permission 1: HTTP.Header[0].IgnoreCase: applies only to Exact, "
                    "Prefix, Suffix or Contains, not to Regex"
                ]
            },
        ),
    ],
)
def test_problems_land_on_the_field_they_name(draft: Draft, slots: dict[str, object]) -> None:
    found = by_slot(problems(draft))
    assert set(found) == set(slots)
    for slot, want in slots.items():
        assert found[slot] == want if isinstance(want, list) else len(found[slot]) == want


def test_a_permission_problem_names_the_permission() -> None:
    draft = Draft("web", "db", "l7", permissions=(PermissionDraft(), PermissionDraft(path="x")))
    messages = by_slot(problems(draft))["permissions"]
    assert messages[0].startswith("permission 1: HTTP: must match")
    assert messages[1].startswith("permission 2: HTTP.PathPrefix: must start with")


def test_the_agents_400_is_read_back_by_field() -> None:
    text = (
        "Invalid intention:\n  SourceName: is required\n"
        '  Permissions[0].HTTP.PathExact: must start with "/", got "x"'
    )
    assert by_slot(api_problems(text)) == {
        "source": ["is required"],
        "permissions": ['permission 1: HTTP.PathExact: must start with "/", got "x"'],
    }
    assert by_slot(api_problems("duplicate intention found: web => db (allow)")) == {
        "general": ["duplicate intention found: web => db (allow)"]
    }


def test_permissions_reorder_and_switching_away_from_l7_asks() -> None:
    a, b = PermissionDraft(path="/a"), PermissionDraft(path="/b")
    assert moved((a, b), 0, 1) == (1, (b, a))
    assert moved((a, b), 0, -1) == (0, (a, b))
    assert drops_permissions(Draft(kind="l7", permissions=(a,)), "allow")
    assert not drops_permissions(Draft(kind="l7"), "deny")
    assert not drops_permissions(Draft(kind="allow"), "deny")


# --- matrix and check ---------------------------------------------------------------------------


def test_matrix_cells_follow_decide() -> None:
    m = matrix(["web", "db", "api", "*"], IntentionSet(ALL), default_allow=False)
    assert m.services == ("api", "db", "web")
    kinds = {
        (s, d): m.at(i, j).kind for i, s in enumerate(m.services) for j, d in enumerate(m.services)
    }
    assert kinds[("web", "db")] == "allow"
    assert kinds[("api", "db")] == "deny"
    assert kinds[("api", "web")] == "l7"
    assert kinds[("db", "api")] == "default"
    assert kinds[("web", "api")] == "allow"  # web => * decides
    assert m.at(0, 1).intention == API_DB
    assert not m.at(1, 0).allowed
    assert matrix(["a"], IntentionSet([]), default_allow=True).at(0, 0).allowed


@pytest.mark.parametrize(
    ("reason", "default"),
    [
        ("no intention matched; default policy is deny", False),
        ("no intention matched; default policy is allow", True),
        ("matched intention web => db (allow)", None),
    ],
)
def test_the_default_policy_is_read_from_a_check_reason(reason: str, default: bool | None) -> None:
    assert default_from_reason(reason) is default


def test_check_request() -> None:
    assert check_request("", "", "") == (None, [])
    req, bad = check_request("post", "", "X-Env: prod; x-b: 1")
    assert bad == [] and req is not None
    assert (req.method, req.path, dict(req.headers)) == ("POST", "/", {"X-Env": "prod", "x-b": "1"})
    assert len(check_request("", "api", "nocolon")[1]) == 2


# --- plan, history, blocking index, backoff ----------------------------------------------------


def test_plan_lines_show_each_step_and_the_totals() -> None:
    wanted = [Intention("web", "db", "deny"), Intention("new", "db", "allow")]
    lines = plan_lines(plan(wanted, [WEB_DB, API_DB], prune=True))
    assert [text for _, text in lines] == [
        "+ new => db  allow",
        "~ web => db  allow → deny; description 'front to data' → ''",
        "- api => db  deny",
        "1 to create, 1 to update, 1 to delete, 0 unchanged",
    ]
    kept = plan_lines(plan([], [API_DB], prune=False))
    assert kept[0] == ("dim", "  api => db  not in the file, kept (--prune would delete it)")


def test_history_lines() -> None:
    record = {
        "Time": "2026-12-03T21:05:09.120Z",
        "Node": "node2",
        "Op": "update",
        "Source": "web",
        "Destination": "db",
        "Before": {"SourceName": "web", "DestinationName": "db", "Action": "allow"},
        "After": {"SourceName": "web", "DestinationName": "db", "Action": "deny"},
    }
    assert history_line(record) == "2026-12-03 21:05:09  node2  ~ web => db  allow → deny"
    gone = {**record, "Op": "delete", "After": None}
    assert history_line(gone).endswith("- web => db  was allow")
    assert history_line({"Op": "create", "After": {"bad": 1}}).endswith("+ ? => ?  ")


@pytest.mark.parametrize(
    ("sent", "got", "want"), [(0, 5, 5), (5, 5, 5), (5, 9, 9), (9, 3, 0), (0, 0, 0)]
)
def test_next_blocking_index(sent: int, got: int, want: int) -> None:
    assert next_index(sent, got) == want


def test_backoff_grows_then_holds() -> None:
    assert [backoff_s(n) for n in (1, 2, 3, 4, 9)] == [0.25, 0.5, 1.0, 2.0, 2.0]
