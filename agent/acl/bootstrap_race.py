"""At most one ACL bootstrap wins, cluster-wide, without a server tier. Pure.

Last-writer-wins alone lets two agents bootstrapped in the same instant
both succeed. So before an agent answers `PUT /v1/acl/bootstrap` it asks
every alive peer (the serf query `gossamer-acl-bootstrap`, the shell in
agent/lifecycle/bootstrap_query.py) with its claim: (its wall clock in ns,
its node name, the reset index it would write). Claims are ordered by
clock, then node name, so any two compare the same everywhere.

Rules this module keeps (`BootstrapLock`, one per agent):
1. A peer already bootstrapped at that reset index answers DONE.
2. Otherwise a peer answers NO when it knows a smaller claim (its own
   pending one, or one it already said OK to within PROMISE_S), and else
   OK, which it remembers as a promise for PROMISE_S.
3. A claim starts only if this agent holds no unexpired promise (it may
   have told another claimer it can win); it wins only if every alive peer
   answered OK and, while it waited, it promised no smaller claim.
   Anything else (a NO, a DONE, a peer that did not answer) loses, and the
   loser writes nothing.
Why two concurrent claimers cannot both win: each needs the other's OK.
If each saw the other's query while pending, the larger one got NO (rule
2). If one answered OK before its own claim began, that promise stops its
claim (rule 3); if during, it was a promise to a smaller claim (rule 3).
What remains (README, ACLs and HTTPS): peers cut off from each other by a
partition each count only the peers they see alive, so both sides can
bootstrap; and a claim that outlives PROMISE_S (a query far slower than
its timeout) is no longer protected by the promises it collected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum

QUERY = "gossamer-acl-bootstrap"
PROMISE_S = 10.0  # an OK binds its giver this long: far above a query's timeout (ASK_TIMEOUT_S)
ASK_TIMEOUT_S = 2.0  # a LAN answers in milliseconds; a peer silent this long makes the claim lose


@dataclass(frozen=True, order=True)
class Claim:
    at_ns: int
    node: str
    reset_index: int = field(default=1, compare=False)  # the ResetIndex the winner writes

    def encode(self) -> bytes:
        return json.dumps({"t": self.at_ns, "n": self.node, "r": self.reset_index}).encode()


def decode_claim(payload: bytes) -> Claim | None:
    try:
        raw = json.loads(payload)
        return Claim(int(raw["t"]), str(raw["n"]), int(raw["r"]))
    except (ValueError, KeyError, TypeError):
        return None


class Reply(StrEnum):
    OK = "ok"
    NO = "no"
    DONE = "done"


@dataclass(frozen=True)
class Answer:
    reply: Reply
    because: Claim | None = None  # the smaller claim behind a NO

    def encode(self) -> bytes:
        body = {"a": self.reply.value}
        if self.because is not None:
            body["by"] = self.because.node
        return json.dumps(body).encode()


def decode_answer(payload: bytes) -> Answer | None:
    try:
        raw = json.loads(payload)
        return Answer(Reply(raw["a"]))
    except (ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class Verdict:
    won: bool
    reason: str  # why it lost, for the 403 and the log


class BootstrapLock:
    """This agent's side of the protocol; times are monotonic seconds, passed in."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.pending: Claim | None = None
        self._promises: dict[Claim, float] = {}  # claim -> when the promise ends

    def _live_promises(self, now: float, done_index: int) -> list[Claim]:
        """Promises still binding: not run out, and for a bootstrap not already made
        (a claim at a reset index this agent knows bootstrapped is settled)."""
        self._promises = {
            c: end for c, end in self._promises.items() if end > now and c.reset_index > done_index
        }
        return sorted(self._promises)

    def answer(self, claim: Claim, bootstrapped_index: int, now: float) -> Answer:
        """A peer's claim, asked of this agent (rules 1 and 2)."""
        if claim.node == self.node:
            return Answer(Reply.OK)  # serf also delivers a query to its sender
        if bootstrapped_index >= claim.reset_index:
            return Answer(Reply.DONE)
        known = [c for c in self._live_promises(now, bootstrapped_index) if c != claim]
        if self.pending is not None:
            known.append(self.pending)
        smaller = min((c for c in known if c < claim), default=None)
        if smaller is not None:
            return Answer(Reply.NO, smaller)
        self._promises[claim] = now + PROMISE_S
        return Answer(Reply.OK)

    def begin(self, claim: Claim, now: float, bootstrapped_index: int = 0) -> Verdict | None:
        """Start a claim (rule 3); a losing Verdict when a promise stands in the way."""
        promised = self._live_promises(now, bootstrapped_index)
        if promised:
            return Verdict(False, f"node {promised[0].node} is bootstrapping ACLs")
        if self.pending is not None:
            return Verdict(False, "this agent is bootstrapping ACLs already")
        self.pending = claim
        return None

    def decide(self, answers: dict[str, Answer], alive_peers: set[str], now: float) -> Verdict:
        """Whether the pending claim won (rule 3). A loss ends the claim; a win keeps it
        pending (peers asking meanwhile get NO) until `end()`, after the winner wrote."""
        verdict = self._judge(answers, alive_peers, now)
        if not verdict.won:
            self.pending = None
        return verdict

    def end(self) -> None:
        self.pending = None

    def _judge(self, answers: dict[str, Answer], alive_peers: set[str], now: float) -> Verdict:
        claim = self.pending
        assert claim is not None, "decide() without begin()"
        for node, got in sorted(answers.items()):
            if got.reply is Reply.DONE:
                return Verdict(False, f"node {node} is bootstrapped already")
            if got.reply is Reply.NO:
                return Verdict(False, f"node {node} knows an earlier bootstrap")
        silent = sorted(alive_peers - answers.keys())
        if silent:
            return Verdict(False, f"no answer from {', '.join(silent)}")
        smaller = [c for c in self._live_promises(now, claim.reset_index - 1) if c < claim]
        if smaller:
            return Verdict(False, f"node {smaller[0].node} bootstraps first")
        return Verdict(True, "")
