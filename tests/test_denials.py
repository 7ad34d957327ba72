"""Denial rows: the pure aggregation as tables, and the agent's endpoint over a real socket.

The proxy's reporter is tested against the endpoint here too; the
end-to-end path (a real proxy denying a real connection and the row
showing up at its agent) is in test_proxy_agents.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gossamer.agent.http.app import error_middleware
from gossamer.agent.http.catalog_access import CATALOG_KEY
from gossamer.agent.http.denial_routes import PATH, add_denial_routes
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.store import CatalogStore
from gossamer.intentions.denials import (
    MAX_REPORT,
    Denial,
    DenialError,
    DenialTable,
    denial_of,
    denial_to_json,
    denials_from_json,
    merged,
    not_known,
    rfc3339_ms,
)
from gossamer.intentions.model import Decision, Intention
from gossamer.intentions.tui.denial_rows import (
    ago,
    allow_draft,
    cells,
    edge_denials,
    rule_pair,
    unread,
)
from gossamer.intentions.tui.form import problems
from gossamer.proxy.agent_http import AgentHttp
from gossamer.proxy.denial_report import DenialReporter, batch_table
from tests.harness.cluster import free_port
from tests.harness.http_app import serving
from tests.harness.poll import eventually_async
from tests.harness.tui import sample_figures

T0 = 1_790_000_000_000  # ms
DEFAULT = "default policy (deny)"


def row(src: str = "web", dst: str = "db", ixn: str = "", count: int = 1, first: int = T0,
        last: int | None = None, rule: str = "default policy (deny)") -> Denial:  # fmt: skip
    return Denial(src, dst, ixn, 9 if ixn else 0, rule, "why", count, first,
                  first if last is None else last)  # fmt: skip


# --- rows from decisions --------------------------------------------------------------------------

DENY = Intention(source="web", destination="db", action="deny", id="i-1")


@pytest.mark.parametrize(
    ("decision", "ixn_id", "precedence", "rule"),
    [
        (Decision(False, "default deny"), "", 0, "default policy (deny)"),
        (Decision(False, "matched deny", DENY), "i-1", 9, "web => db (deny)"),
        (
            Decision(False, "matched", replace(DENY, source="*", id="i-2")),
            "i-2",
            8,
            "* => db (deny)",
        ),
    ],
)
def test_a_denial_names_the_rule_that_decided(
    decision: Decision, ixn_id: str, precedence: int, rule: str
) -> None:
    d = denial_of(decision, "web", "db", T0)
    assert (d.intention_id, d.precedence, d.rule, d.reason) == (
        ixn_id, precedence, rule, decision.reason)  # fmt: skip
    assert (d.count, d.first_ms, d.last_ms, d.by_default) == (1, T0, T0, not ixn_id)


def test_unknown_intentions_are_a_rule_of_their_own() -> None:
    assert not_known("web", "db", T0).key == ("web", "db", "intentions not known yet")
    assert not_known("web", "db", T0).key != row().key


# --- merging and bounds ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "count", "first", "last", "reason"),
    [
        (row(count=2, first=T0), replace(row(first=T0 + 5), reason="new"), 3, T0, T0 + 5, "new"),
        (replace(row(first=T0 + 9), reason="late"), row(first=T0), 2, T0, T0 + 9, "late"),
        (row(first=T0, last=T0 + 3), row(first=T0 - 1, last=T0 + 1), 2, T0 - 1, T0 + 3, "why"),
    ],
)
def test_merging_adds_counts_and_widens_the_time_span(
    old: Denial, new: Denial, count: int, first: int, last: int, reason: str
) -> None:
    m = merged(old, new)
    assert (m.count, m.first_ms, m.last_ms, m.reason) == (count, first, last, reason)


@pytest.mark.parametrize(
    ("adds", "keys"),
    [
        ([row(), row(first=T0 + 1)], [("web", "db", "default policy (deny)")]),
        ([row(), row(ixn="i-1", rule="x")], [("web", "db", DEFAULT), ("web", "db", "i-1")]),
        ([row(src="a"), row(src="b", first=T0 + 1)], [("b", "db", "default policy (deny)"),
                                                       ("a", "db", "default policy (deny)")]),
    ],
)  # fmt: skip
def test_rows_are_keyed_by_pair_and_rule_newest_first(
    adds: list[Denial], keys: list[tuple[str, str, str]]
) -> None:
    table = DenialTable()
    table.add_all(adds)
    assert [d.key for d in table.rows()] == keys
    assert sum(d.count for d in table.rows()) == len(adds)


def test_beyond_the_cap_the_row_seen_longest_ago_goes() -> None:
    table = DenialTable(max_rows=3)
    table.add_all(row(src=f"s{i}", first=T0 + i) for i in (5, 1, 7, 3))
    assert sorted(d.source for d in table.rows()) == ["s3", "s5", "s7"]


@pytest.mark.parametrize(("now", "left"), [(T0 + 999, ["a", "b"]), (T0 + 1001, ["b"]),
                                           (T0 + 5000, [])])  # fmt: skip
def test_rows_older_than_the_window_expire(now: int, left: list[str]) -> None:
    table = DenialTable(window_ms=1000)
    table.add_all([row(src="a", first=T0), row(src="b", first=T0 + 500)])
    assert table.expire(now) == (len(left) < 2)
    assert sorted(d.source for d in table.rows()) == left


def test_take_empties_the_batch_oldest_first() -> None:
    table = DenialTable()
    table.add_all([row(src="late", first=T0 + 1), row(src="early")])
    assert [d.source for d in table.take()] == ["early", "late"]
    assert len(table) == 0


# --- the wire form --------------------------------------------------------------------------------


def test_json_round_trips_with_millisecond_times() -> None:
    d = row(ixn="i-1", rule="web => db (deny)", count=4, first=T0 + 7, last=T0 + 1234)
    assert denials_from_json([denial_to_json(d)]) == [d]
    assert rfc3339_ms(T0 + 7).endswith(".007Z")


GOOD = denial_to_json(row())


@pytest.mark.parametrize(
    ("body", "problems"),
    [
        ({"Source": "web"}, ["the body must be a JSON list of denials"]),
        ([GOOD] * (MAX_REPORT + 1), [f"a report carries at most {MAX_REPORT} rows, not 1001"]),
        ([GOOD, 3], ["[1].Row: must be an object"]),
        ([GOOD | {"Count": 0}], ["[0].Count: must be a positive integer"]),
        ([GOOD | {"Count": True, "Source": ""}],
         ["[0].Source: must not be empty", "[0].Count: must be a positive integer"]),
        ([GOOD | {"Precedence": -1, "Rule": 5}],
         ["[0].Rule: must be a string", "[0].Precedence: must be a non-negative integer"]),
        ([GOOD | {"LastSeen": "yesterday"}],
         ["[0].LastSeen: must be an RFC 3339 time, like 2026-12-03T21:05:09.123Z"]),
        ([GOOD | {"FirstSeen": "2026-12-03T21:05:09"}],
         ["[0].FirstSeen: must name its time zone (Z for UTC)"]),
        ([GOOD | {"FirstSeen": rfc3339_ms(T0 + 1)}], ["[0].FirstSeen: must not be after LastSeen"]),
    ],
)  # fmt: skip
def test_a_bad_report_lists_every_problem_by_row_and_field(body: Any, problems: list[str]) -> None:
    with pytest.raises(DenialError) as caught:
        denials_from_json(body)
    assert caught.value.problems == problems


# --- the agent's endpoint over a real socket ------------------------------------------------------


CATALOGS: dict[str, LiveCatalog] = {}  # base URL -> the served app's catalog (its watchers)


@pytest.fixture
async def base(tmp_path: Path) -> AsyncIterator[str]:
    db = CatalogStore.open(tmp_path / "c.db")
    app = web.Application(middlewares=[error_middleware])
    app[CATALOG_KEY] = catalog = LiveCatalog("dc1", db, wall_ms=lambda: 1_000)
    add_denial_routes(app)
    try:
        async with serving(app) as where:
            CATALOGS[where.base + PATH] = catalog
            yield where.base + PATH
    finally:
        db.close()


async def call(method: str, url: str, body: Any = None) -> tuple[int, Any, str]:
    async with aiohttp.ClientSession() as http, http.request(method, url, json=body) as r:
        data = await r.json() if r.content_type == "application/json" else await r.text()
        return r.status, data, r.headers.get("X-Consul-Index", "")


def fresh(**fields: Any) -> dict[str, Any]:
    """A row seen just now (the agent forgets rows older than its window)."""
    return denial_to_json(row(first=time.time_ns() // 1_000_000, **fields))


async def test_reports_are_merged_and_listed_newest_first(base: str) -> None:
    assert (await call("PUT", base, [fresh(src="web"), fresh(src="api")]))[:2] == (200, True)
    assert (await call("PUT", base, [fresh(src="web")]))[:2] == (200, True)
    status, rows, _ = await call("GET", base)
    assert status == 200
    assert {r["Source"]: r["Count"] for r in rows} == {"web": 2, "api": 1}
    status, rows, _ = await call("GET", base + "?source=api&destination=db")
    assert [r["Source"] for r in rows] == ["api"]


async def test_a_blocking_read_returns_when_a_proxy_reports(base: str) -> None:
    _, _, index = await call("GET", base)
    waiting = asyncio.create_task(call("GET", f"{base}?index={index}&wait=20s"))
    await eventually_async(lambda: CATALOGS[base].watchers == 1)
    assert not waiting.done()
    await call("PUT", base, [fresh(src="late")])
    status, rows, after = await asyncio.wait_for(waiting, 10)
    assert status == 200 and [r["Source"] for r in rows] == ["late"]
    assert int(after) > int(index)


@pytest.mark.parametrize(
    ("method", "query", "body", "says"),
    [
        ("GET", "?index=soon", None, "index"),
        ("GET", "?sauce=web", None, "unknown query parameter(s) 'sauce'"),
        ("GET", "?source=", None, "query parameter 'source': must not be empty"),
        ("PUT", "", {"not": "a list"}, "the body must be a JSON list of denials"),
        ("PUT", "", [{"Source": "web"}], "[0].Destination: must not be empty"),
    ],
)
async def test_bad_input_is_a_400_naming_it_and_keeps_nothing(
    base: str, method: str, query: str, body: Any, says: str
) -> None:
    status, text, _ = await call(method, base + query, body)
    assert status == 400 and says in text, text
    assert (await call("GET", base))[1] == []


# --- the terminal UI's rows -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("then", "now", "shown"),
    [(T0, T0 + 999, "now"), (T0, T0 + 59_999, "59s ago"), (T0, T0 + 60_000, "1m ago"),
     (T0, T0 + 3_599_999, "59m ago"), (T0, T0 + 7_200_000, "2h ago"), (T0 + 5, T0, "now")],
)  # fmt: skip
def test_last_seen_is_an_age(then: int, now: int, shown: str) -> None:
    assert ago(then, now) == shown


def test_a_row_shows_pair_rule_count_and_age() -> None:
    d = row(ixn="i-1", rule="web => db (deny)", count=12, first=T0, last=T0 + 1000)
    assert cells(d, T0 + 4000) == ("web", "db", "web => db (deny)", "12", "3s ago")


RULES = {("web", "db"): Intention(source="web", destination="db", action="deny", id="i-1")}


@pytest.mark.parametrize(
    ("denial", "pair"),
    [
        (row(ixn="i-1", rule="web => db (deny)"), ("web", "db")),
        (row(ixn="i-gone", rule="web => db (deny)"), None),  # deleted since: allow it instead
        (row(), None),
    ],
)
def test_a_row_leads_to_the_rule_that_denied(denial: Denial, pair: tuple[str, str] | None) -> None:
    assert rule_pair(denial, RULES) == pair


def test_a_default_policy_row_leads_to_an_allowing_draft() -> None:
    draft = allow_draft(row(src="api"))
    assert (draft.source, draft.destination, draft.kind) == ("api", "db", "allow")
    assert problems(draft) == []


# --- the proxy's reporter against a real endpoint -------------------------------------------------


async def test_the_reporter_keeps_rows_while_the_agent_is_away_then_delivers(base: str) -> None:
    down = AgentHttp(f"http://127.0.0.1:{free_port('127.0.0.1')}")
    reporter = DenialReporter(down, batch_table())
    reporter.table.add_all([row(src="web", first=time.time_ns() // 1_000_000)] * 3)
    await reporter.flush()  # nobody listens: kept, merged back
    assert [(d.source, d.count) for d in reporter.table.rows()] == [("web", 3)]
    reporter.agent = AgentHttp(base.removesuffix(PATH))
    await reporter.flush()
    assert (len(reporter.table), reporter.sent) == (0, 1)
    assert [(r["Source"], r["Count"]) for r in (await call("GET", base))[1]] == [("web", 3)]
    index = CATALOGS[base].index(["intention-denials"])
    await reporter.flush()  # nothing new: nothing sent
    assert CATALOGS[base].index(["intention-denials"]) == index


async def test_a_report_the_agent_refuses_is_dropped_not_retried(serve_app: Any) -> None:
    where = await serve_app(web.Application())  # an agent without the endpoint: 404
    reporter = DenialReporter(AgentHttp(where.base), batch_table())
    reporter.table.add(row())
    await reporter.flush()
    assert (len(reporter.table), reporter.sent) == (0, 0)


def test_a_batch_beyond_the_cap_keeps_the_newest_rows() -> None:
    table = DenialTable(max_rows=2)
    table.add(row(src="old", first=T0))
    table.add_all([row(src=f"s{i}", first=T0 + i) for i in (3, 1, 2)])
    assert [d.source for d in table.rows()] == ["s3", "s2"]


def test_edge_denials_come_from_the_figures_and_odd_shapes_are_skipped() -> None:
    odd = [{"ProxyID": "x", "Stats": {"Proxies": [{"Edges": [
        {"Direction": "inbound", "Source": "a", "Destination": "b", "Denied": "lots"}]}]}},
        "garbage", None, {"ProxyID": "y", "Stats": []}]  # fmt: skip
    answer = sample_figures() + odd
    assert [r.cells() for r in edge_denials(answer)] == [
        ("batch", "db", "14", "1", "db-sidecar-proxy"),
        ("web", "billing", "3", "0", "billing-sidecar-proxy"),
    ]  # inbound only, most denied first; the outbound edge and the quiet one are left out
    assert unread(answer) == ["web-sidecar-proxy (127.0.0.1:21902: connection refused)"]
    assert edge_denials({"not": "a list"}) == [] and unread(None) == []
