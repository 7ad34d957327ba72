"""The asking side of peer sync as sans-IO conversations: requests out, replies in, effects out.

One object per conversation with one peer. Whoever moves the bytes (the
agent's client over TCP, the tests and the simulation against
`sync_answer.answer`) drives it the same way:

    request = conversation.first_request()
    while request is not None:
        step = conversation.receive(reply_to(request))
        apply(step.effects)          # before the next request goes out
        request = step.request       # None: the conversation is over

Applying each step's effects before sending the next request means that
what a round brought stays applied if the conversation breaks off later.

Rules this module keeps:
- Every reply is checked before it is used: an error reply, a reply of
  another type than the request expects, or bad content in it (records of
  another datacenter, a malformed tombstone or `lww` part, too many names)
  is an ExchangeError naming the request, and nothing of that reply is
  applied. The conversation is then over.
- An anti-entropy round pushes only when the push carries something:
  records or tombstones the peer lacks, or LWW entries it lacks or wants.
- The LWW maps take part only when the asking agent holds some.
"""

from __future__ import annotations

from dataclasses import dataclass

from gossamer.catalog.lww_sync import (
    Entries,
    LwwSyncError,
    Snapshots,
    offer,
    plan,
    push_part,
    receive_ok,
)
from gossamer.catalog.merge import CatalogState
from gossamer.catalog.model import NodeRecord
from gossamer.catalog.range_sums import (
    differing,
    parse_buckets,
    parse_sums,
    ranged_digest,
    state_sums,
    sums_request,
)
from gossamer.catalog.sync_protocol import (
    NO_EFFECTS,
    Effects,
    Message,
    RequestError,
    digest_request,
    parse_names,
    parse_records,
    parse_tombstones,
    pull_request,
    push_request,
)
from gossamer.catalog.wire import RecordError, record_to_wire


class ExchangeError(ValueError):
    """The peer's reply cannot be used: it refused, answered out of turn, or sent bad content."""


@dataclass(frozen=True)
class Step:
    """What one reply brought, and the next request to send (None: the conversation is over)."""

    effects: Effects = NO_EFFECTS
    request: Message | None = None


class Conversation:
    """One request/reply conversation; subclasses say what to send and how to read replies."""

    def __init__(self) -> None:
        self._sent: Message | None = None
        self._expect: tuple[str, ...] = ()

    def first_request(self) -> Message:
        raise NotImplementedError

    def receive(self, reply: Message) -> Step:
        """The step a reply leads to; ExchangeError if the reply cannot be used."""
        sent = self._sent
        if sent is None:
            raise ExchangeError("no request is waiting for a reply")
        self._sent = None
        kind = reply.get("t")
        if kind == "error":
            fallback = self._on_refusal(sent)
            if fallback is None:
                raise ExchangeError(f"peer refused {sent['t']}: {reply.get('msg')}")
            return fallback
        if kind not in self._expect:
            expected = " or ".join(repr(e) for e in self._expect)
            raise ExchangeError(f"expected {expected} in reply to {sent['t']!r}, got {kind!r}")
        try:
            return self._on_reply(reply)
        except (RequestError, RecordError, LwwSyncError) as exc:
            raise ExchangeError(f"{kind}: {exc}") from exc

    def _send(self, request: Message, *expect: str) -> Message:
        self._sent, self._expect = request, expect
        return request

    def _on_reply(self, reply: Message) -> Step:
        raise NotImplementedError

    def _on_refusal(self, sent: Message) -> Step | None:
        """A step that goes on after the peer refused `sent`; None: the refusal ends it."""
        return None


class DigestExchange(Conversation):
    """One anti-entropy round, ranged (range_sums.py) unless `ranged` is False:

        sums -> delta (roots equal), or sums -> sums, digest of the differing ranges -> delta
        digest -> delta (not ranged, or the peer refused `sums`: an agent that predates it)

    then, if there is anything to hand over, push -> ok. `state` and `maps`
    are this agent's catalog and LWW maps when the round starts; the push is
    built from them (the names it carries are ones the delta did not touch,
    so the delta's effects do not change it).
    """

    def __init__(
        self,
        state: CatalogState,
        datacenter: str,
        maps: Snapshots | None = None,
        *,
        digest: Message | None = None,
        ranged: bool = True,
    ) -> None:
        """`digest`: `digest_request(state, datacenter)` when the caller already built it
        (the simulation caches one per state); never the digest of another state."""
        super().__init__()
        self._state = state
        self._dc = datacenter
        self._maps: Snapshots = maps or {}
        self._digest = digest
        self._ranged = ranged
        self._lww_answer: object = None  # the lww part of a `sums` reply, for the push

    def first_request(self) -> Message:
        if self._ranged:
            return self._send(
                self._with_offer(sums_request(self._state, self._dc)), "delta", "sums"
            )
        return self._full_digest()

    def _full_digest(self) -> Message:
        request = self._digest or digest_request(self._state, self._dc)
        return self._send(self._with_offer(request), "delta")

    def _with_offer(self, request: Message) -> Message:
        request = dict(request)
        if self._maps:
            request["lww"] = offer(self._maps)
        return request

    def _on_refusal(self, sent: Message) -> Step | None:
        return Step(request=self._full_digest()) if sent["t"] == "sums" else None

    def _on_reply(self, reply: Message) -> Step:
        handler = {"delta": self._on_delta, "sums": self._on_sums, "ok": self._on_ok}
        return handler[reply["t"]](reply)

    def _on_sums(self, reply: Message) -> Step:
        buckets = parse_buckets(reply.get("buckets"))
        mine = state_sums(self._state, self._dc).bucket_sums(buckets)
        ranges = differing(mine, parse_sums(reply.get("sums"), buckets))
        self._lww_answer = reply.get("lww")
        if ranges:
            return Step(
                request=self._send(ranged_digest(self._state, self._dc, buckets, ranges), "delta")
            )
        return self._push(Effects(), [])

    def _on_delta(self, delta: Message) -> Step:
        records = parse_records(delta.get("records"), self._dc)
        tombstones = parse_tombstones(delta.get("tombstones"))
        if "lww" in delta:
            self._lww_answer = delta["lww"]
        effects = Effects(tuple(records), tuple(tombstones))
        return self._push(effects, parse_names(delta.get("want"), "want"))

    def _push(self, effects: Effects, want: list[str]) -> Step:
        """The step after the delta: a push if there is anything to hand over."""
        push = push_request(self._state, self._dc, want)
        lww_part = plan(self._maps, self._lww_answer) if self._maps else {}
        if lww_part:
            push["lww"] = lww_part
        if push["records"] or push["tombstones"] or lww_part:
            return Step(effects, self._send(push, "ok"))
        return Step(effects)

    def _on_ok(self, ok: Message) -> Step:
        if not self._maps:
            return Step()
        return Step(Effects(lww=receive_ok(self._maps, ok.get("lww"))))


class PullExchange(Conversation):
    """Fetch the records of named nodes: pull -> records."""

    def __init__(self, datacenter: str, nodes: list[str]) -> None:
        super().__init__()
        self._dc = datacenter
        self._nodes = nodes

    def first_request(self) -> Message:
        return self._send(pull_request(self._dc, self._nodes), "records")

    def _on_reply(self, reply: Message) -> Step:
        return Step(Effects(tuple(parse_records(reply.get("records"), self._dc))))


class HandOver(Conversation):
    """Hand fresh entries of one LWW map to a peer without waiting for a round: push -> ok."""

    def __init__(self, datacenter: str, name: str, entries: Entries) -> None:
        super().__init__()
        self._dc = datacenter
        self._name = name
        self._entries = entries

    def first_request(self) -> Message:
        message: Message = {"t": "push", "dc": self._dc, "records": [], "tombstones": []}
        message["lww"] = push_part(self._name, self._entries)
        return self._send(message, "ok")

    def _on_reply(self, reply: Message) -> Step:
        return Step()


class RecordPush(Conversation):
    """Push changed records to a peer without waiting for a round: push -> ok (record_news.py)."""

    def __init__(
        self,
        datacenter: str,
        records: list[NodeRecord],
        tombstones: list[tuple[str, int]] | None = None,
        told: list[str] | None = None,
    ) -> None:
        super().__init__()
        self._dc = datacenter
        self._records = records
        self._tombstones = tombstones or []
        self._told = told or []

    def first_request(self) -> Message:
        records = [record_to_wire(r) for r in self._records]
        tombstones = [[node, version] for node, version in self._tombstones]
        message: Message = {"t": "push", "dc": self._dc, "records": records}
        message["tombstones"] = tombstones
        if self._told:
            message["told"] = self._told
        return self._send(message, "ok")

    def _on_reply(self, reply: Message) -> Step:
        return Step()
