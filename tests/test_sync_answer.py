"""The answering side of peer sync (catalog.sync_answer): dispatch, effects and the caps."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.catalog import lww, merge, sync_protocol
from gossamer.catalog.hlc import Timestamp
from gossamer.catalog.lww_sync import Snapshot
from gossamer.catalog.sync_answer import Answer, Served, answer, respond
from gossamer.catalog.sync_protocol import (
    MAX_NODES_PER_REQUEST,
    NO_EFFECTS,
    Effects,
    FrameDecoder,
)
from gossamer.catalog.wire import record_to_wire
from tests.harness.replication import DC, node_record

TOO_MANY = MAX_NODES_PER_REQUEST + 1


def served(*versions: tuple[str, int], maps: dict[str, Snapshot] | None = None) -> Served:
    state = merge.apply_many(merge.CatalogState(), [node_record(n, v) for n, v in versions])[0]
    return Served(state, DC, maps or {})


def wire(node: str, version: int) -> dict[str, Any]:
    return record_to_wire(node_record(node, version))


@pytest.mark.parametrize(
    ("request_", "kind"),
    [
        ({"t": "digest", "dc": DC, "digest": {}}, "delta"),
        ({"t": "pull", "dc": DC, "nodes": []}, "records"),
        ({"t": "push", "dc": DC, "records": []}, "ok"),
        ({"t": "dance", "dc": DC}, "error"),
        ({"t": "pull", "dc": "dc2", "nodes": []}, "error"),
        ({"t": "dance", "dc": "dc2"}, "error"),
    ],
)
def test_each_request_type_gets_its_reply_type(request_: dict[str, Any], kind: str) -> None:
    assert answer(request_, served(("a", 1))).reply["t"] == kind


def test_a_digest_gets_what_the_peer_lacks_and_what_we_want() -> None:
    reply = answer(
        {"t": "digest", "dc": DC, "digest": {"a": [1, "id-a"], "b": [9, "id-b"]}},
        served(("a", 2), ("b", 3), ("c", 1)),
    ).reply
    assert [r["node"] for r in reply["records"]] == ["a", "c"] and reply["want"] == ["b"]


def test_a_push_brings_its_records_and_tombstones_as_effects() -> None:
    result = answer(
        {"t": "push", "dc": DC, "records": [wire("x", 2)], "tombstones": [["y", 4]]}, served()
    )
    assert result == Answer({"t": "ok", "applied": 1}, Effects((node_record("x", 2),), (("y", 4),)))


@pytest.mark.parametrize(
    ("request_", "needle"),
    [
        (
            {"t": "digest", "dc": DC, "digest": {f"n{i}": [1, "x"] for i in range(TOO_MANY)}},
            "digest",
        ),
        ({"t": "pull", "dc": DC, "nodes": ["n"] * TOO_MANY}, "nodes"),
        ({"t": "push", "dc": DC, "records": [{}] * TOO_MANY}, "records"),
        ({"t": "push", "dc": DC, "records": [], "tombstones": [["n", 1]] * TOO_MANY}, "tombstones"),
    ],
)
def test_every_list_of_nodes_is_capped(request_: dict[str, Any], needle: str) -> None:
    result = answer(request_, served())
    assert result.reply["t"] == "error"
    assert result.reply["msg"].startswith(f"{needle}: more than {MAX_NODES_PER_REQUEST}")
    assert result.effects == NO_EFFECTS


def test_exactly_the_cap_is_accepted() -> None:
    result = answer({"t": "pull", "dc": DC, "nodes": ["n"] * MAX_NODES_PER_REQUEST}, served())
    assert result.reply == {"t": "records", "records": []}


@pytest.mark.parametrize(
    "bad_part",
    [
        {"tombstones": [["y", "four"]]},
        {"lww": {"m": {"entries": [{"k": 1}]}}},
        {"lww": ["nope"]},
    ],
)
def test_a_push_with_any_bad_part_is_refused_whole(bad_part: dict[str, Any]) -> None:
    maps = {"m": Snapshot.of(lww.LwwMap())}
    push = {"t": "push", "dc": DC, "records": [wire("x", 2)], "tombstones": []} | bad_part
    result = answer(push, served(maps=maps))
    assert result.reply["t"] == "error" and result.effects == NO_EFFECTS


def test_lww_parts_are_read_only_when_we_hold_maps() -> None:
    stamp = Timestamp(5, 0, "w")
    entry = lww.entry_to_wire("k", lww.Entry(stamp, {"v": 1}))
    push = {"t": "push", "dc": DC, "records": [], "lww": {"m": {"entries": [entry], "want": []}}}
    assert answer(push, served()) == Answer({"t": "ok", "applied": 0}, Effects())
    with_map = answer(push, served(maps={"m": Snapshot.of(lww.LwwMap())}))
    assert with_map.effects.lww == {"m": [("k", lww.Entry(stamp, {"v": 1}))]}
    bad = {"t": "digest", "dc": DC, "digest": {}, "lww": ["nope"]}
    assert answer(bad, served()).reply["t"] == "delta"  # an older agent ignores it too


def test_a_reply_over_the_frame_limit_is_an_error_and_brings_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sync_protocol, "MAX_FRAME", 300)
    state = served(*((f"node-{i}", 1) for i in range(5)))
    frame, effects = respond(
        {"t": "pull", "dc": DC, "nodes": [f"node-{i}" for i in range(5)]}, state
    )
    (reply,) = FrameDecoder().feed(frame)
    assert reply["t"] == "error" and "too large" in reply["msg"]
    push = {"t": "push", "dc": DC, "records": [wire("x", 1)], "tombstones": []}
    frame, effects = respond(push, state)
    assert FrameDecoder().feed(frame) == [{"t": "ok", "applied": 1}] and effects.records


requests = st.fixed_dictionaries(
    {
        "t": st.sampled_from(["digest", "pull", "push", "ok", "x"]),
        "dc": st.sampled_from([DC, "dc2"]),
    },
    optional={
        "digest": st.dictionaries(
            st.text(max_size=3), st.lists(st.integers() | st.text(max_size=3))
        ),
        "nodes": st.lists(st.text(max_size=3)) | st.integers(),
        "records": st.lists(st.dictionaries(st.text(max_size=3), st.integers())) | st.text(),
        "tombstones": st.lists(st.lists(st.integers() | st.text(max_size=3))) | st.none(),
        "lww": st.dictionaries(st.text(max_size=3), st.integers() | st.text(max_size=3)),
    },
)


@settings(max_examples=300, deadline=None)
@given(requests)
def test_any_request_gets_a_reply_and_an_error_brings_nothing(request_: dict[str, Any]) -> None:
    result = answer(request_, served(("a", 1), maps={"m": Snapshot.of(lww.LwwMap())}))
    assert result.reply["t"] in ("delta", "records", "ok", "error")
    if result.reply["t"] == "error":
        assert result.effects == NO_EFFECTS
