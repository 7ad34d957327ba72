"""The per-call splitter (proxy/h2_split.py) under what may happen to its calls while bytes
flow: either end lowering or raising its initial window or its frame size, crediting its
streams but not the connection for a while, stalling a stream, resetting calls, an
instance saying GOAWAY. Driven by Hypothesis between python-hyper's `h2` client and
servers (tests/h2_split_rig.py): no byte of a call nobody reset may be lost, reordered or
left behind, no call may hold more than its bound, and a reset must reach the call's
other end."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from h2.connection import H2Connection
from h2.settings import SettingCodes
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.proxy.h2_frames import CANCEL, REFUSED_STREAM, goaway
from tests.h2_split_rig import SENDING, Rig, Stream, random_chunks, send_some

IWS = SettingCodes.INITIAL_WINDOW_SIZE
MAX_FRAME = SettingCodes.MAX_FRAME_SIZE
HEAD = [(b":status", b"200"), (b"content-type", b"application/grpc")]


@dataclass
class Flow:
    """One call as the test drives it."""

    up: bytes
    down: bytes
    ends: tuple[str, str]  # how each way ends: with its last byte, an empty frame, trailers
    up_rest: bytearray = field(default_factory=bytearray)
    down_rest: bytearray = field(default_factory=bytearray)
    server: Stream | None = None  # what its instance saw (kept past the connection's close)
    conn: H2Connection | None = None  # its instance's end
    answered: bool = False
    reset_by: str = ""  # "client", "server" or "both" once they reset it; "refused": after
    # the client's GOAWAY, the splitter refuses it


class FreshRig(Rig):
    """Round robin over three instances; one whose connection takes no new call (its GOAWAY
    came) gets a connection of its own for it under a new key, as the shell's chooser does
    (h2_balanced.py: the key's generation)."""

    def __init__(self, **kw: Any) -> None:
        self.generation = {"a": 0, "b": 0, "c": 0}
        super().__init__(("a", "b", "c"), **kw)

    def choose(self, exclude: set[str]) -> str | None:
        name = "abc"[self.turn % 3]
        self.turn += 1
        if f"{name}{self.generation[name]}" in exclude:
            self.generation[name] += 1
        return f"{name}{self.generation[name]}"


def _sending(conn: H2Connection, stream: int) -> bool:
    state = conn.streams.get(stream)
    return state is not None and state.state_machine.state.name in SENDING


def _flow(rng: random.Random, reset_by: str) -> Flow:
    ends = ("last", "empty", "trailers")
    flow = Flow(rng.randbytes(rng.randint(0, 40_000)), rng.randbytes(rng.randint(0, 40_000)),
                (rng.choice(ends), rng.choice(ends)), reset_by=reset_by)  # fmt: skip
    flow.up_rest, flow.down_rest = bytearray(flow.up), bytearray(flow.down)
    return flow


def _window(rng: random.Random) -> int:
    return rng.randint(16, 1024) if rng.random() < 0.2 else rng.randint(1024, 80_000)


def _frame_size(rng: random.Random) -> int:
    return rng.choice([16384, rng.randint(16384, 1 << 20), (1 << 24) - 1])


def _send(conn: H2Connection, stream: int, rest: bytearray, end: str, *, head: bool) -> None:
    """What windows allow of `rest`, then its end once all went (an empty body that was to
    end with its last byte ends with an empty frame)."""
    if not _sending(conn, stream):
        return
    send_some(conn, stream, rest, end=end == "last")
    if rest or not _sending(conn, stream):
        return
    if end == "trailers":
        trailers = [(b"grpc-status", b"0")] if head else [(b"x-sum", b"1")]
        conn.send_headers(stream, trailers, end_stream=True)
    else:
        conn.end_stream(stream)


def _move(rig: Rig, flows: dict[int, Flow]) -> None:
    """Each call not reset sends what windows allow, both ways."""
    for stream, flow in flows.items():
        if flow.reset_by:
            continue
        _send(rig.client, stream, flow.up_rest, flow.ends[0], head=False)
        if flow.conn is None:
            server = next((s for s in rig.servers.values() if stream in s.streams), None)
            if server is None:
                continue
            flow.conn, flow.server = server.conn, server.streams[stream]
        if not flow.answered and _sending(flow.conn, stream):
            flow.conn.send_headers(stream, HEAD)
            flow.answered = True
        _send(flow.conn, stream, flow.down_rest, flow.ends[1], head=True)


def _upset(rig: Rig, rng: random.Random, flows: dict[int, Flow]) -> bool:
    """Something happens, or nothing; True when it was the client's GOAWAY."""
    roll, live = rng.random(), [s for s, f in flows.items() if not f.reset_by]
    servers = [rig.servers[k] for k in sorted(rig.servers)]
    if roll < 0.15 and live:
        stream = rng.choice(live)
        if stream in rig.client_stalled:
            rig.unstall_client(stream)
        else:
            rig.client_stalled.add(stream)
    elif roll < 0.3 and servers:
        key = rng.choice(sorted(rig.servers))
        server = rig.servers[key]
        stream = rng.choice(sorted(server.streams)) if server.streams else 0
        if stream in server.stalled:
            rig.unstall(key, stream)
        elif stream:
            server.stalled.add(stream)
    elif roll < 0.4:
        rig.client.update_settings({IWS: _window(rng)})
    elif roll < 0.5 and servers:
        rng.choice(servers).conn.update_settings({IWS: _window(rng)})
    elif roll < 0.55:
        rig.client.update_settings({MAX_FRAME: _frame_size(rng)})
    elif roll < 0.6 and servers:
        rng.choice(servers).conn.update_settings({MAX_FRAME: _frame_size(rng)})
    elif roll < 0.75:
        conn = rng.choice([rig.client, *[s.conn for s in servers]])
        (rig.release if conn in rig.held else rig.hold)(conn)
    elif roll < 0.8 and live:
        _reset(rig, flows, rng.choice(live), rng)
    elif roll < 0.83 and servers:  # a graceful GOAWAY: the calls it has go on
        key = rng.choice(sorted(rig.servers))
        last = max(rig.servers[key].streams, default=0)
        rig.run(rig.split.from_upstream(key, goaway(last, 0)))
    elif 0.83 <= roll < 0.8303:  # the client's graceful GOAWAY: no new call, those it has go on
        rig.pump()  # (behind what it wrote before)
        rig.run(rig.split.from_client(goaway(0, 0)))
        return True
    return False


def _reset(rig: Rig, flows: dict[int, Flow], stream: int, rng: random.Random) -> None:
    """The instance, the client or both at once (their resets cross) reset a call."""
    flow, roll = flows[stream], rng.random()
    at_server = flow.conn.streams.get(stream) if flow.conn is not None else None
    at_client = rig.client.streams.get(stream)
    if roll < 0.6 and flow.conn is not None and at_server is not None and not at_server.closed:
        flow.conn.reset_stream(stream, CANCEL)
        flow.reset_by = "server"
    if roll > 0.3 and at_client is not None and not at_client.closed:
        rig.client.reset_stream(stream, CANCEL)
        flow.reset_by = "both" if flow.reset_by else "client"


def _finish(rig: Rig) -> None:
    """Every stall and hold ends; what is owed is credited."""
    for stream in list(rig.client_stalled):
        rig.unstall_client(stream)
    for key, server in list(rig.servers.items()):
        for stream in list(server.stalled):
            rig.unstall(key, stream)
    for conn in list(rig.held):
        rig.release(conn)


def _settled(rig: Rig, flows: dict[int, Flow]) -> bool:
    """Every call reset, or ended both ways at both ends."""
    return all(f.reset_by or (f.server is not None and f.server.ended
                              and rig.client_streams.get(s, Stream()).ended)
               for s, f in flows.items())  # fmt: skip


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32), ours=st.sampled_from([1024, 16384, 65535, 200_000]))
def test_calls_come_through_settings_resets_and_goaways(seed: int, ours: int) -> None:
    rng = random.Random(seed)
    rig = FreshRig(chunk=random_chunks(rng, 3000), stream_window=ours,
                   client_settings={IWS: _window(rng), MAX_FRAME: _frame_size(rng)},
                   server_settings={IWS: _window(rng), MAX_FRAME: _frame_size(rng)})  # fmt: skip
    bound = max(65535, ours)  # (h2_split.py's docstring: what a call may hold each way)

    def bounded() -> None:
        assert all(up <= bound and down <= bound for up, down in rig.split.buffered.values())

    rig.after = bounded
    flows: dict[int, Flow] = {}
    gone = False
    for _ in range(3000):
        if len(flows) < 5 and rng.random() < 0.05:
            flows[rig.call(end=False)] = _flow(rng, "refused" if gone else "")
        _move(rig, flows)
        gone = _upset(rig, rng, flows) or gone
        rig.pump()
        rig.check_windows()
        if len(flows) == 5 and _settled(rig, flows):
            break
    for _ in range(300):  # then nothing more happens: all must end
        _finish(rig)
        _move(rig, flows)
        rig.pump()
        if _settled(rig, flows):
            break
    for stream, flow in flows.items():
        seen = rig.client_streams.get(stream, Stream())
        if flow.reset_by == "client":
            assert flow.server is None or flow.server.reset == CANCEL or flow.server.ended
        elif flow.reset_by == "server":
            assert seen.reset == CANCEL or seen.ended
        elif flow.reset_by == "refused":
            assert seen.reset == REFUSED_STREAM and flow.server is None
        elif not flow.reset_by:
            assert flow.server is not None and bytes(flow.server.body) == flow.up
            assert flow.server.ended and seen.reset is None
            assert bytes(seen.body) == flow.down and seen.ended
    assert rig.split.open_calls == 0 and rig.split.buffered == {}
