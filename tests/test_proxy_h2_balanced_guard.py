"""A balanced connection's client answered on the calling side (proxy/h2_balanced_guard.py,
and the core's header block limits: h2_split_peer.py, h2_split.py). Pure: raw frames in,
the splitter's commands out; the client's frames read back with h2_frames.parse_head.
The same cases through a mesh: tests/test_proxy_h2_adversarial.py, MODES "-balanced"."""

from __future__ import annotations

from hpack import Decoder, Encoder

from gossamer.proxy.h2_balanced_guard import GuardedSplitter
from gossamer.proxy.h2_calls import RAPID_CALLS
from gossamer.proxy.h2_frames import (
    CANCEL,
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    GOAWAY,
    HEADERS,
    PREFACE,
    PROTOCOL_ERROR,
    RST_STREAM,
    SETTINGS,
    frame,
    header_frames,
    literal_block,
    rst_stream,
    window_update,
)
from gossamer.proxy.h2_split_calls import Command, Open, ToClient, ToUpstream
from tests.h2_raw import BOTH, CALL, START, Frames, frames_of

INTERNAL_ERROR = 0x2


class _Rig:
    """One client connection's splitter, one instance ("a"), a clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0
        self.split: GuardedSplitter[str] = GuardedSplitter(
            lambda exclude: "a", clock=lambda: self.now, done=lambda *outcome: None
        )
        self.to_client = bytearray()
        self.to_up = bytearray()
        self.opens = 0
        self.run(self.split.start())

    def run(self, commands: list[Command[str]]) -> None:
        for command in commands:
            if isinstance(command, ToClient):
                self.to_client += command.data
            elif isinstance(command, ToUpstream):
                self.to_up += command.data
            elif isinstance(command, Open):
                self.opens += 1

    def client(self, data: bytes) -> None:
        self.run(self.split.from_client(data))

    def upstream(self, data: bytes) -> None:
        self.run(self.split.from_upstream("a", data))

    def frames(self) -> Frames:
        return frames_of(bytes(self.to_client))

    def goaways(self) -> list[tuple[int, int]]:
        return [(int.from_bytes(p[:4], "big"), int.from_bytes(p[4:8], "big"))
                for k, _, _, p in self.frames() if k == GOAWAY]  # fmt: skip


def _opened() -> _Rig:
    """A rig whose connection to "a" is up (its SETTINGS came)."""
    rig = _Rig()
    rig.client(START)
    rig.client(frame(HEADERS, BOTH, 1, literal_block(CALL)))
    rig.run(rig.split.opened("a"))
    rig.upstream(frame(SETTINGS, 0, 0))
    return rig


def test_a_rapid_reset_flood_gets_goaway_enhance_your_calm() -> None:
    """CVE-2023-44487: calls opened and reset at once. The far gates see only what reaches
    them, on the proxy's own connections: the splitter counts the client's resets itself,
    as the gate does, and ends the connection past RAPID_CALLS. (It reset each call and
    went on reading, for ever.)"""
    rig = _Rig()
    flood = b"".join(frame(HEADERS, END_HEADERS, s, literal_block(CALL)) + rst_stream(s, CANCEL)
                     for s in range(1, 4 * RAPID_CALLS, 2))  # fmt: skip
    rig.client(START + flood)
    # (over half its calls and over half of RAPID_CALLS: the 251st call's reset)
    assert rig.goaways() == [(RAPID_CALLS + 1, ENHANCE_YOUR_CALM)]


def test_resets_of_calls_answered_first_are_no_flood() -> None:
    """A client that cancels calls whose answers began (a stream it no longer needs) is no
    attacker: as many resets, no GOAWAY."""
    rig = _opened()
    rig.upstream(frame(HEADERS, END_HEADERS, 1, literal_block([(b":status", b"200")])))
    for stream in range(3, 4 * RAPID_CALLS, 2):
        rig.client(frame(HEADERS, BOTH, stream, literal_block(CALL)))
        rig.upstream(frame(HEADERS, END_HEADERS, stream, literal_block([(b":status", b"200")])))
        rig.client(rst_stream(stream, CANCEL))
    assert rig.goaways() == []


def test_calls_the_client_makes_the_proxy_reset_count_as_its_resets() -> None:
    """MadeYouReset (CVE-2025-8671): a WINDOW_UPDATE of 0 on each call is a stream error,
    and the splitter resets the call at its instance: the client's doing, counted."""
    rig = _opened()
    for stream in range(3, 4 * RAPID_CALLS, 2):
        rig.client(frame(HEADERS, BOTH, stream, literal_block(CALL)) + window_update(stream, 0))
        if rig.goaways():
            break
    assert [code for _, code in rig.goaways()] == [ENHANCE_YOUR_CALM]


def test_calls_an_instance_resets_for_the_clients_fault_count_as_its_resets() -> None:
    """An instance that resets each call PROTOCOL_ERROR before answering (the client made
    it) counts as the client's reset, as at the gate; INTERNAL_ERROR, the instance's own
    trouble, does not."""
    for code, flood in ((PROTOCOL_ERROR, True), (INTERNAL_ERROR, False)):
        rig = _opened()
        for stream in range(1, 4 * RAPID_CALLS, 2):
            if stream > 1:
                rig.client(frame(HEADERS, BOTH, stream, literal_block(CALL)))
            rig.upstream(rst_stream(stream, code))
        assert [c for _, c in rig.goaways()] == ([ENHANCE_YOUR_CALM] if flood else []), code


def test_a_request_on_a_stream_below_one_opened_gets_goaway_protocol_error() -> None:
    """RFC 9113 §5.1.1: a request on stream 3 after stream 5 is a connection error. (It
    was dropped unanswered.) Trailers on a stream that ended are still only dropped."""
    rig = _Rig()
    rig.client(START + frame(HEADERS, BOTH, 5, literal_block(CALL)))
    rig.client(frame(HEADERS, BOTH, 3, literal_block([(b"grpc-status", b"0")])))
    assert rig.goaways() == []
    rig.client(frame(HEADERS, BOTH, 3, literal_block(CALL)))
    assert rig.goaways() == [(5, PROTOCOL_ERROR)]


def test_a_continuation_flood_gets_goaway_enhance_your_calm() -> None:
    """CVE-2024-27316: a header block that never ends, in empty CONTINUATION frames. Its
    bytes never grow, so the block limit was never reached; frame heads count now."""
    rig = _Rig()
    empty = frame(CONTINUATION, 0, 1, b"")
    rig.client(START + frame(HEADERS, END_STREAM, 1, literal_block(CALL)) + empty * 100_000)
    assert rig.goaways() == [(0, ENHANCE_YOUR_CALM)]
    assert rig.opens == 0


def test_a_header_list_past_the_limit_is_answered_431_with_no_body() -> None:
    """A call whose metadata decodes past the list limit gets `431` and `content-length:
    0`, the gate's answer (h2_fields.answer), alone: the connection goes on."""
    rig = _Rig()
    metadata = [(f"x-meta-{i}".encode(), b"v" * 1000) for i in range(70)]
    block = literal_block(CALL) + Encoder().encode(metadata, huffman=True)
    rig.client(START + header_frames(1, block, end_stream=False))
    heads = [(f, s, p) for k, f, s, p in rig.frames() if k == HEADERS]
    assert len(heads) == 1 and heads[0][:2] == (BOTH, 1)
    assert Decoder().decode(heads[0][2], raw=True) == [(b":status", b"431"),
                                                       (b"content-length", b"0")]  # fmt: skip
    # (the request had not ended: the rest of it is not read, RFC 9113 §8.1)
    assert (RST_STREAM, 0, 1, bytes(4)) in rig.frames() and rig.goaways() == []


def test_a_data_frame_still_coming_goes_on_as_it_comes() -> None:
    """A client that sends one 12 KiB DATA frame 600 bytes at a time: each piece goes on to
    the instance as it comes (as DATA of its own, END_STREAM on the last), so neither side's
    idle limit takes the call for idle. (The frame went on only once whole.)"""
    rig = _Rig()
    rig.client(START + frame(HEADERS, END_HEADERS, 1, literal_block(CALL)))
    rig.run(rig.split.opened("a"))
    rig.upstream(frame(SETTINGS, 0, 0))
    body = bytes(range(256)) * 48
    whole = frame(DATA, END_STREAM, 1, body)
    for at in range(0, len(whole), 600):
        before = len(_data(rig.to_up))
        rig.client(whole[at : at + 600])
        assert len(_data(rig.to_up)) > before
    pieces = [(f, p) for k, f, s, p in frames_of(bytes(rig.to_up)[len(PREFACE) :]) if k == DATA]
    assert b"".join(p for _, p in pieces) == body
    assert [f & END_STREAM for f, _ in pieces] == [0] * (len(pieces) - 1) + [END_STREAM]


def _data(sent: bytearray) -> bytes:
    """The DATA bytes in what went to the instance."""
    return b"".join(p for k, _, _, p in frames_of(bytes(sent)[len(PREFACE) :]) if k == DATA)
