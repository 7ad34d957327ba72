"""A balanced call an instance refused unbegun, made again on another (h2_balanced_replay.py).
Pure: raw frames in, the splitter's commands out; three instances "a", "b", "c", the
chooser naming the first not excluded. Through a mesh, with grpcio:
tests/test_proxy_grpc.py test_a_call_an_instance_refuses_unprocessed_is_made_again."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

from gossamer.proxy.h2_balanced import Balanced
from gossamer.proxy.h2_balanced_replay import AGAIN_MAX, REPLAY_MAX, ReplayingSplitter
from gossamer.proxy.h2_frames import (
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    NO_ERROR,
    PREFACE,
    REFUSED_STREAM,
    RST_STREAM,
    SETTINGS,
    frame,
    goaway,
    literal_block,
    rst_stream,
)
from gossamer.proxy.h2_split_calls import Command, Open, ToClient, ToUpstream
from gossamer.proxy.outlier import Outliers
from tests.h2_raw import BOTH, CALL, START, Frames, frames_of

ANSWER = literal_block([(b":status", b"200"), (b"grpc-status", b"0")])


class _Rig:
    def __init__(self) -> None:
        self.split: ReplayingSplitter[str] = ReplayingSplitter(
            self._choose, clock=lambda: 100.0, done=lambda *outcome: None
        )
        self.to_client = bytearray()
        self.to_up: dict[str, bytearray] = {}
        self.run(self.split.start())
        self.client(START)

    @staticmethod
    def _choose(exclude: set[str]) -> str | None:
        return next((key for key in "abc" if key not in exclude), None)

    def run(self, commands: list[Command[str]]) -> None:
        for command in commands:
            if isinstance(command, ToClient):
                self.to_client += command.data
            elif isinstance(command, ToUpstream):
                self.to_up[command.key] += command.data
            elif isinstance(command, Open):  # (dialled at once: up, its SETTINGS come)
                self.to_up[command.key] = bytearray()
                self.run(self.split.opened(command.key))
                self.run(self.split.from_upstream(command.key, frame(SETTINGS, 0, 0)))

    def client(self, data: bytes) -> None:
        self.run(self.split.from_client(data))

    def upstream(self, key: str, data: bytes) -> None:
        self.run(self.split.from_upstream(key, data))

    def sent_to(self, key: str) -> Frames:
        """The frames of calls that went to `key` (its preface and SETTINGS aside)."""
        return [f for f in frames_of(bytes(self.to_up.get(key, b""))[len(PREFACE) :])
                if f[2]]  # fmt: skip

    def resets(self) -> list[tuple[int, int]]:
        return [(s, int.from_bytes(p, "big")) for k, _, s, p in frames_of(bytes(self.to_client))
                if k == RST_STREAM]  # fmt: skip


def _body(frames: Frames, stream: int) -> bytes:
    return b"".join(p for k, _, s, p in frames if k == DATA and s == stream)


def test_a_call_above_an_instances_goaway_goes_to_another_and_is_answered() -> None:
    """ "a" shuts down: GOAWAY, last stream 0. The whole call it never began goes to "b",
    head and body, and "b"'s answer reaches the client; no reset. (The client got RST_STREAM
    REFUSED_STREAM, which grpcio does not retry.)"""
    rig = _Rig()
    rig.client(frame(HEADERS, END_HEADERS, 1, literal_block(CALL)) + frame(DATA, 0, 1, b"q" * 10)
               + frame(DATA, END_STREAM, 1, b"r" * 10))  # fmt: skip
    assert _body(rig.sent_to("a"), 1) == b"q" * 10 + b"r" * 10
    rig.upstream("a", goaway(0, NO_ERROR))
    to_b = rig.sent_to("b")
    assert [k for k, _, _, _ in to_b] == [HEADERS, DATA] and _body(to_b, 1) == b"q" * 10 + b"r" * 10
    assert to_b[-1][1] & END_STREAM
    rig.upstream("b", frame(HEADERS, BOTH, 1, ANSWER))
    assert any(k == HEADERS and s == 1 and f & END_STREAM for k, f, s, _ in frames_of(
        bytes(rig.to_client)))  # fmt: skip
    assert rig.resets() == [] and rig.split.open_calls == 0


def test_a_call_refused_with_refused_stream_goes_to_another() -> None:
    """An instance at its limit of streams resets a call REFUSED_STREAM: it goes elsewhere."""
    rig = _Rig()
    rig.client(frame(HEADERS, BOTH, 1, literal_block(CALL)))
    rig.upstream("a", rst_stream(1, REFUSED_STREAM))
    assert [k for k, _, _, _ in rig.sent_to("b")] == [HEADERS]
    assert rig.resets() == []


def test_a_call_is_made_again_at_most_again_max_times() -> None:
    """Refused by each instance in turn: after AGAIN_MAX more tries, REFUSED_STREAM."""
    rig = _Rig()
    rig.client(frame(HEADERS, BOTH, 1, literal_block(CALL)))
    for key in "abc"[: AGAIN_MAX + 1]:
        assert rig.resets() == []
        rig.upstream(key, rst_stream(1, REFUSED_STREAM))
    assert rig.resets() == [(1, REFUSED_STREAM)]


def test_a_call_still_sending_or_too_large_is_not_made_again() -> None:
    """A call whose request has not ended (what it sends next would cross what is sent
    again), or whose request is over REPLAY_MAX, is refused to the client as before."""
    rig = _Rig()
    rig.client(frame(HEADERS, END_HEADERS, 1, literal_block(CALL)) + frame(DATA, 0, 1, b"q"))
    rig.client(frame(HEADERS, END_HEADERS, 3, literal_block(CALL)))
    for at in range(0, REPLAY_MAX + 1, 16384):
        rig.client(frame(DATA, 0, 3, b"x" * min(16384, REPLAY_MAX + 1 - at)))
    rig.client(frame(DATA, END_STREAM, 3, b""))
    rig.upstream("a", goaway(0, NO_ERROR))
    assert sorted(rig.resets()) == [(1, REFUSED_STREAM), (3, REFUSED_STREAM)]
    assert rig.sent_to("b") == []


def test_a_call_whose_answer_began_is_never_made_again() -> None:
    """Once its instance answered, a call is that instance's: a reset after it goes to the
    client (REFUSED_STREAM from an instance that had answered is its own business)."""
    rig = _Rig()
    rig.client(frame(HEADERS, BOTH, 1, literal_block(CALL)))
    rig.upstream("a", frame(HEADERS, END_HEADERS, 1, literal_block([(b":status", b"200")])))
    rig.upstream("a", rst_stream(1, REFUSED_STREAM))
    assert rig.resets() == [(1, REFUSED_STREAM)] and rig.sent_to("b") == []
    assert not [f for f in frames_of(bytes(rig.to_client)) if f[0] == GOAWAY]


class _Listener:
    """What Balanced._choose asks of its listener: one target, two instances."""

    def __init__(self, instances: list[str]) -> None:
        self.instances = instances
        self.outstanding: dict[str, int] = {}
        self.rng = random.Random(7)
        self.outliers = Outliers()

    def pick_target(self) -> str:
        return "db"

    def instances_for(self, target: str) -> list[str]:
        return self.instances


def _chooser(instances: list[str], going: set[str]) -> Any:
    """A Balanced with only what `_choose` reads: a live connection to each instance, those
    in `going` having said GOAWAY."""
    made: Any = object.__new__(Balanced)
    made.listener = _Listener(instances)
    made.generation = {}
    made.ups = {("db", i, 0): object() for i in instances}
    made.dials = {}
    made.split = SimpleNamespace(going_away={("db", i, 0): 1 for i in going})
    return made


def test_a_call_sent_again_goes_to_an_instance_that_did_not_say_goaway() -> None:
    """The chooser takes an instance whose connection said GOAWAY (it may be shutting down)
    last: a call it refused goes to another (it went to a new connection to it as readily as
    anywhere, and was refused again); with no other, a new connection to it."""
    balanced = _chooser(["i1", "i2", "i3"], {"i1"})
    picks = {balanced._choose({("db", "i1", 0)}) for _ in range(50)}
    assert picks == {("db", "i2", 0), ("db", "i3", 0)}
    alone = _chooser(["i1"], {"i1"})
    assert alone._choose({("db", "i1", 0)}) == ("db", "i1", 1)
