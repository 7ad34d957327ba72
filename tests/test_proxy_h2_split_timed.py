"""The balanced connection's call timeouts and its answer to a refused connection
(proxy/h2_split_timed.py), between python-hyper's `h2` client and servers
(tests/h2_split_rig.py)."""

from __future__ import annotations

from typing import Any

import pytest

from gossamer.proxy.h2_frames import CANCEL
from gossamer.proxy.h2_split_timed import TimedSplitter
from gossamer.proxy.http_limits import IDLE_TIMEOUT, REQUEST_TIMEOUT, Limits
from tests import h2_split_rig
from tests.h2_split_rig import Rig

TIMED_OUT = [(b":status", b"200"), (b"content-type", b"application/grpc"),
             (b"grpc-status", b"4"), (b"grpc-message", b"upstream request timeout")]  # fmt: skip


def _rig(monkeypatch: pytest.MonkeyPatch, limits: Limits, **kw: Any) -> Rig:
    def made(choose: Any, **given: Any) -> TimedSplitter[str]:
        return TimedSplitter(choose, limits=limits, **given)

    monkeypatch.setattr(h2_split_rig, "H2Splitter", made)
    return Rig(**kw)


def _timed(rig: Rig) -> tuple[list[str], float]:
    split = rig.split
    assert isinstance(split, TimedSplitter)
    commands, names, soonest = split.time_out()
    rig.run(commands)
    rig.pump()
    return names, soonest


def test_a_call_unanswered_past_the_request_timeout_gets_deadline_exceeded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = _rig(monkeypatch, Limits(1.0, 0.0, 0.0))
    stream = rig.call(b"ask")
    rig.pump()
    key = rig.where(stream)
    rig.now = 0.5
    assert _timed(rig) == ([], 1.0)  # not yet: look again at its due time
    rig.now = 1.0
    assert _timed(rig) == ([REQUEST_TIMEOUT], float("inf"))
    seen = rig.client_streams[stream]
    assert seen.headers == [TIMED_OUT] and seen.ended
    assert rig.servers[key].streams[stream].reset == CANCEL
    assert rig.done == [(key, 504, 1.0)]
    assert rig.split.open_calls == 0


def test_a_grpc_answer_under_way_that_goes_idle_ends_with_deadline_exceeded_trailers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = _rig(monkeypatch, Limits(0.0, 1.0, 0.0))
    stream = rig.call(b"ask")
    rig.pump()
    key = rig.where(stream)
    conn = rig.servers[key].conn
    conn.send_headers(stream, [(b":status", b"200"), (b"content-type", b"application/grpc")])
    conn.send_data(stream, b"part")
    rig.pump()
    rig.now = 0.9
    assert _timed(rig)[0] == []
    rig.now = 2.0
    assert _timed(rig)[0] == [IDLE_TIMEOUT]
    seen = rig.client_streams[stream]
    assert bytes(seen.body) == b"part" and seen.ended
    assert seen.headers[-1] == TIMED_OUT[2:]  # (trailers: no :status, no content-type)
    assert rig.servers[key].streams[stream].reset == CANCEL


def test_calls_on_a_refused_connection_get_permission_denied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An instance's sidecar refused the connection (intentions): its calls are answered
    PERMISSION_DENIED, not sent to another instance."""
    rig = _rig(monkeypatch, Limits(0.0, 0.0, 0.0), keys=("a",))
    rig.hold_open.add("a")
    stream = rig.call(b"ask")
    rig.pump()
    assert rig.dialing == ["a"]
    split = rig.split
    assert isinstance(split, TimedSplitter)
    rig.dialing.remove("a")
    rig.run(split.open_denied("a"))
    rig.pump()
    seen = rig.client_streams[stream]
    assert seen.headers[0][2:] == [
        (b"grpc-status", b"7"),
        (b"grpc-message", b"RBAC: access denied"),
    ]
    assert seen.ended
    assert rig.done == [("a", 403, 0.0)] and split.open_calls == 0
    assert rig.closed == []  # (never opened: nothing to close)
