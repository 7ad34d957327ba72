"""Blocking-query math: parameter parsing, index rules, per-key indexes and touched keys."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossamer.catalog.blocking import (
    CHECKS,
    DEFAULT_WAIT_S,
    MAX_WAIT_S,
    NODES,
    SERVICES,
    BlockingQuery,
    IndexTable,
    QueryParamError,
    changed_keys,
    connect_key,
    health_keys,
    jitter,
    node_key,
    parse_blocking,
    parse_duration,
    parse_index,
    parse_wait,
    response_index,
    service_key,
    should_block,
    timeout_for,
)
from gossamer.catalog.model import Check, NodeRecord, Service

# --- parsing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("100ms", 0.1),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("2us", 2e-6),
        ("2µs", 2e-6),
        ("1m0.5s", 60.5),
        ("+3s", 3.0),
        ("-3s", -3.0),
    ],
)
def test_parse_duration_accepts_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "30", "s", "5x", "1.2.3s", "--1s", "5 s", "1e3s", "\u0661s", "-"]
)
def test_parse_duration_refuses_the_rest(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        (None, DEFAULT_WAIT_S),
        ("", DEFAULT_WAIT_S),
        ("0", DEFAULT_WAIT_S),  # Consul: a non-positive wait means the default
        ("-5s", DEFAULT_WAIT_S),
        ("10s", 10.0),
        ("10m", MAX_WAIT_S),
        ("1h", MAX_WAIT_S),
    ],
)
def test_parse_wait_defaults_and_caps(raw: str | None, seconds: float) -> None:
    assert parse_wait(raw) == seconds


@pytest.mark.parametrize(("raw", "index"), [(None, 0), ("", 0), ("0", 0), ("42", 42)])
def test_parse_index(raw: str | None, index: int) -> None:
    assert parse_index(raw) == index


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"index": "abc"}, "index"),
        ({"index": "-1"}, "index"),
        ({"index": "+1"}, "index"),
        ({"index": "1.0"}, "index"),
        ({"index": "\u0663"}, "index"),  # a digit to str.isdigit, not to ParseUint
        ({"index": str(2**64)}, "index"),
        ({"wait": "30"}, "wait"),
        ({"wait": "soon"}, "wait"),
    ],
)
def test_bad_params_name_the_parameter(params: dict[str, str], param: str) -> None:
    with pytest.raises(QueryParamError, match=f"Invalid {param}") as info:
        parse_blocking(params)
    assert info.value.param == param


def test_parse_blocking() -> None:
    assert parse_blocking({"index": "7", "wait": "2s"}) == BlockingQuery(7, 2.0)
    assert not parse_blocking({}).is_blocking and parse_blocking({"index": "1"}).is_blocking


@given(st.floats(0, MAX_WAIT_S), st.integers())
def test_jitter_is_at_most_a_sixteenth_of_the_wait(wait: float, seed: int) -> None:
    extra = jitter(wait, random.Random(seed))
    assert 0 <= extra <= wait / 16
    assert timeout_for(BlockingQuery(1, wait), random.Random(seed)) == wait + extra


# --- index rules ------------------------------------------------------------------------


@pytest.mark.parametrize(("index", "answer"), [(0, 1), (1, 1), (9, 9)])
def test_response_index_is_never_zero(index: int, answer: int) -> None:
    assert response_index(index) == answer


@pytest.mark.parametrize(
    ("requested", "current", "block"),
    [
        (0, 5, False),  # not a blocking query
        (5, 5, True),  # client is up to date: wait for a change
        (4, 5, False),  # changed since the client looked
        (9, 5, False),  # our index went backwards: answer now so the client resets
        (1, 0, True),  # an untouched key is answered as 1, and 1 then blocks
    ],
)
def test_should_block(requested: int, current: int, block: bool) -> None:
    assert should_block(requested, current) is block


def test_index_table_keeps_keys_apart() -> None:
    table = IndexTable()
    a = table.bump([service_key("a"), SERVICES])
    b = table.bump([service_key("b")])
    assert (a, b, table.current) == (1, 2, 2)
    assert table.index_for(service_key("a")) == 1
    assert should_block(1, table.index_for(service_key("a")))  # B did not wake A
    assert table.index_for(service_key("never")) == 0
    assert table.index_for_any([service_key("a"), service_key("b")]) == 2
    assert table.bump([]) == 2


def test_index_table_resumes_above_a_start() -> None:
    table = IndexTable(start=1000)
    assert table.bump(["x"]) == 1001


@given(st.lists(st.lists(st.sampled_from("abcd"), max_size=3), max_size=20))
def test_index_table_indexes_grow_and_stay_within_current(batches: list[list[str]]) -> None:
    table, seen = IndexTable(), {k: 0 for k in "abcd"}
    for batch in batches:
        index = table.bump(batch)
        for k in "abcd":
            expected = index if k in batch else seen[k]
            assert table.index_for(k) == expected <= table.current
            seen[k] = expected


# --- touched keys -----------------------------------------------------------------------

WEB = Service(id="web-1", name="web", tags=("v1",))
DB = Service(id="db-1", name="db")
PROXY = Service(
    id="web-1-sidecar-proxy",
    name="web-sidecar-proxy",
    kind="connect-proxy",
    proxy={"DestinationServiceName": "web"},
)
NATIVE = Service(id="api", name="api", connect={"Native": True})
WEB_OK = Check("service:web-1", "web", status="passing", service_id="web-1")
NODE = NodeRecord("n1", "id", "dc1", "10.0.0.1", 1, "n1", services=(WEB, DB, PROXY))


# What a change to the node itself touches: every instance row on it.
ON_NODE = {
    node_key("n1"),
    service_key("web"),
    service_key("db"),
    service_key("web-sidecar-proxy"),
    connect_key("web"),
}


def changed(**fields: object) -> NodeRecord:
    return dataclasses.replace(NODE, version=2, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("new", "keys"),
    [
        (NODE, set()),
        (
            changed(checks=(WEB_OK,)),
            {node_key("n1"), CHECKS, service_key("web")},
        ),
        (
            changed(services=(dataclasses.replace(WEB, port=81), DB, PROXY)),
            {node_key("n1"), service_key("web")},
        ),
        (
            changed(services=(dataclasses.replace(WEB, tags=("v2",)), DB, PROXY)),
            {node_key("n1"), service_key("web"), SERVICES},
        ),
        (
            changed(services=(WEB, DB, dataclasses.replace(PROXY, port=21001))),
            {node_key("n1"), service_key("web-sidecar-proxy"), connect_key("web")},
        ),
        (
            changed(services=(WEB, DB, PROXY, NATIVE)),
            {node_key("n1"), service_key("api"), connect_key("api"), SERVICES},
        ),
        (changed(address="10.0.0.2"), ON_NODE | {NODES, SERVICES}),
        (changed(checks=(Check("mem", "memory", status="warning"),)), ON_NODE | {CHECKS}),
        (None, ON_NODE | {NODES, SERVICES}),
    ],
)
def test_changed_keys(new: NodeRecord | None, keys: set[str]) -> None:
    assert changed_keys(NODE, new) == keys


def test_a_new_node_touches_the_node_list() -> None:
    assert NODES in changed_keys(None, NODE) and changed_keys(None, None) == set()


def test_health_flip_touches_everything_on_the_node() -> None:
    assert health_keys(NODE) == ON_NODE | {CHECKS}
