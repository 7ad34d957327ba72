"""Blocking watches of the agent's HTTP API, with backoff: how the proxy hears of changes.

`Watch` GETs a path as a Consul blocking query, by index (`?index=&wait=`,
`X-Consul-Index`) or by content hash (`?hash=&wait=`, `X-Consul-ContentHash`),
and calls `on_change(body)` each time the answer changes — at once, so an
intention change reaches the proxy as soon as it reaches its agent. An index
that goes backwards (an agent restarted) starts over from 0, as Consul's
clients do. Errors (5xx, a bad body) are retried with exponential backoff
(0.1 s doubling to 10 s, jittered) and logged once per streak of failures,
with the streak's end logged too; so is an answer that `on_change` raised on
(logged with its traceback): the watch asks for it again instead of
ending or skipping that answer. An agent that cannot be reached
(down, restarting), a 404 (a sidecar deregistered, to be registered
again) and a 403 (a leaf asked for before its service is registered, as a
Nomad task's sidecar does) are asked again within `UNREACHABLE_MAX_S` at
most: they cost the agent nothing, and an agent back from a restart must
not wait out a 10 s backoff before its proxies hear of an intention change
(a deny cuts open connections within a second of reaching the agent). A
404 is passed to `on_missing` first. After any failure the watch asks afresh
(without an index) once the agent answers again, and the answer is delivered
even if it is the one it had: an agent back from a restart may count its
indexes from scratch (a new data dir), and blocking on an index from its
former life could hold new data as "nothing new" for good. Readers ignore
an answer they already had.
A 403 `ACL not found` is the exception: the token itself is unknown to the
agent (deleted, expired, mistyped), which asking again soon will not change,
and every such ask counts against the agent's guard on token guessing for
this host's address (agent/acl/guard.py): asked for every ≤0.75 s by each
watch of each worker, it emptied that guard within seconds, and every other
client on the host, sidecars and CLI with valid tokens, got 429s. It is
asked again after `TOKEN_MIN_S` doubling to `TOKEN_MAX_S`, logged naming
the token's sources (a rotated token reaches the proxy by a restart).
An answer must say where it stands (`X-Consul-Index`, a number; or
`X-Consul-ContentHash`), as Consul's client requires: one that does not is
a bad answer (backed off), not a change to apply and ask again about at
once. An index of 0 is asked from as 1, as Consul's clients do, so the next
ask blocks. An answer that is not news and came back at once (something on
the agent's port that does not hold blocking queries) is asked again after
a delay doubling from 0.1 s to 10 s, logged once while it lasts: without
both, a stand-in or broken agent answering at once had every watch ask
thousands of times a second, a core busy and a log line each time.
A watch made with `item` (an upstream's instances: health_rows.instance_of)
takes answers that are JSON arrays, and keeps of each element only what
`item` makes of it (None: left out), decoding `PIECE` elements at a time
(json_items.py) with the event loop serving between pieces. An answer about
20,000 instances is ~14 MB: decoded whole by `json.loads`, its ~1M objects
alive at once, it held the sidecar's loop for 0.2-0.5 s (most of it the
cyclic GC walking them), every connection of the sidecar waiting; element
by element, each row gone once read, it is ~60 ms in pieces of ~1 ms.
`headers` holds the headers of the answer being delivered (what an agent
says beside the body, such as the default intention policy).
A watch made with `raw` delivers the body as it came (bytes), for a reader
that decodes it its own way (intention_read.py: rows a few at a time). An
`on_change` may return an awaitable: the watch awaits it before it asks
again, and one that raises is a failed answer, asked for again.
A 400 to a list of config entries (`/v1/config/<kind>`) is how an agent
says it holds no such kind: one older than this proxy (a rolling upgrade,
or a rollback). It is delivered once as an empty list, so nothing of that
kind applies and what waits for the first answer goes on (a sidecar's
upstreams waited out their 10 s warm-up for a resolver answer that never
came), then asked again with the error backoff: once the agent is upgraded
its entries come.
A watch made with `settle_s` (an upstream's instances: `INSTANCES_SETTLE_S`)
waits that long after each change it delivered before it asks again, so the
changes of a burst come as one answer, as Consul's proxycfg coalesces for
200 ms: a change after a quiet spell still comes at once, and so does the
first one after the first answer (which ends no burst: a sidecar that
warmed on "no instances" hears of the first one at once). Asked again at
once instead, an upstream of 1,000 instances whose health flapped a few
times every 100 ms had the sidecar fetch and parse its 0.7 MB answer ~13
times a second, and the agent build it as often, for each such sidecar.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from gossamer.proxy.agent_http import AgentHttp, Answer, BadAnswer
from gossamer.proxy.json_items import items

log = logging.getLogger("gossamer.proxy")

WAIT = "55s"  # how long the agent may hold a blocking query
CLIENT_TIMEOUT_S = 75.0  # above WAIT plus the agent's jitter (WAIT / 16)
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 10.0
UNREACHABLE_MAX_S = 0.5  # the top for a refused connect, a 403 or 404 (0.25-0.75 s jittered)
TOKEN_MIN_S = 1.0  # a token the agent does not know: first asked again after this
TOKEN_MAX_S = 30.0  # ... doubling to this (jittered)
HELD_S = 1.0  # an answer that is not news sooner than this: the query was not held
INSTANCES_SETTLE_S = 0.2  # an upstream's instances: changes of a burst delivered together
PIECE = 250  # an array's elements decoded (with `item`) between two turns of the loop
CONFIG_KINDS = "/v1/config/"  # a kind's entries: a 400 is a kind the agent does not hold


class Missing(LookupError):
    """A 403 or 404: what the watch asks for is not there (yet), or not for us (yet)."""


class TokenRefused(LookupError):
    """A 403 `ACL not found`: the agent knows no such token."""


class KindUnknown(BadAnswer):
    """A 400 to `/v1/config/<kind>`: the agent holds no such kind (it is older)."""


class Watch:
    """One blocking query kept running until `stop()`."""

    def __init__(
        self,
        agent: AgentHttp,
        path: str,
        on_change: Callable[[Any], Awaitable[None] | None],
        *,
        by_hash: bool = False,
        on_missing: Callable[[], None] | None = None,
        rng: random.Random | None = None,
        settle_s: float = 0.0,
        item: Callable[[Any], Any] | None = None,
        raw: bool = False,
    ) -> None:
        self.path = path
        self._agent = agent
        self._on_change = on_change
        self._on_missing = on_missing
        self._by_hash = by_hash
        self._settle_s = settle_s  # after a change delivered, before asking again
        self._item = item  # what is kept of each element of an array answer
        self._raw = raw  # the body is delivered as it came (bytes), its reader decodes it
        self._rng = rng or random.Random()
        self._task: asyncio.Task[None] | None = None
        self.index = "0" if not by_hash else ""
        self.headers: dict[str, str] = {}  # of the last answer, names lower-cased
        self._kind_unknown = False  # an unknown config kind's 400 was delivered as no entries

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"watch {self.path}")

    def restart(self) -> None:
        """Ask again now (SIGHUP): the current answer is delivered afresh."""
        self.stop()
        self.index = "0" if not self._by_hash else ""
        self.start()

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        delay, failing = BACKOFF_MIN_S, False
        idle, unheld = BACKOFF_MIN_S, False  # answers that are not news, at once
        loop = asyncio.get_running_loop()
        while True:
            asked, afresh = loop.time(), self.index in ("", "0")  # (not blocking: a first ask)
            try:
                news = await self._once()
            except Exception as exc:  # any: a watch that ends is a proxy gone deaf
                if not failing and isinstance(exc, (OSError, TimeoutError, ValueError,
                                                    LookupError)):  # fmt: skip
                    log.warning("proxy: watching %s failed (%s); retrying", self.path,
                                _said(exc))  # fmt: skip
                elif not failing:  # an answer its reader could not take: asked for again
                    log.exception("proxy: watching %s: an answer could not be applied; "
                                  "retrying", self.path)  # fmt: skip
                failing = True
                # Asked afresh (not blocking) once it works again: the agent may be another
                # one by then, restarted on an empty data dir, whose indexes started over and
                # may match ours for other data (a new CA's roots under the old roots'
                # index were held as "nothing new" for good).
                self.index = "" if self._by_hash else "0"
                # (a streak of cheap failures leaves the doubling at their top, so an error
                # that follows, say from an agent back but not ready, backs off from there)
                top = UNREACHABLE_MAX_S if isinstance(exc, (OSError, Missing)) else BACKOFF_MAX_S
                if isinstance(exc, TokenRefused):
                    top, delay = TOKEN_MAX_S, max(delay, TOKEN_MIN_S)
                delay = min(delay, top)
                await asyncio.sleep(delay * (0.5 + self._rng.random()))
                delay = min(delay * 2, top)
                continue
            if failing:
                log.info("proxy: watching %s works again", self.path)
            delay, failing = BACKOFF_MIN_S, False
            if news or loop.time() - asked >= HELD_S:
                if unheld:
                    log.info("proxy: watching %s: the agent holds the query again", self.path)
                idle, unheld = BACKOFF_MIN_S, False
                if news and self._settle_s and not afresh:  # (a first answer ends no burst)
                    await asyncio.sleep(self._settle_s)  # what comes meanwhile: one answer
                continue
            if not unheld:
                log.warning("proxy: watching %s: the agent answered at once with nothing new "
                            "(%s %s): it does not hold blocking queries; asking less often",
                            self.path, "X-Consul-ContentHash" if self._by_hash else
                            "X-Consul-Index", self.index)  # fmt: skip
            unheld = True
            await asyncio.sleep(idle * (0.5 + self._rng.random()))
            idle = min(idle * 2, BACKOFF_MAX_S)

    async def _once(self) -> bool:
        """Ask once; whether the answer was news (delivered to `on_change`)."""
        sep = "&" if "?" in self.path else "?"
        key = "hash" if self._by_hash else "index"
        query = f"{sep}{key}={self.index}&wait={WAIT}" if self.index else ""
        answer = await self._agent.get(self.path + query, CLIENT_TIMEOUT_S)
        if answer.status == 404:
            if self._on_missing is not None:
                self._on_missing()
            raise Missing(f"404 {answer.text}")
        if answer.status == 403 and answer.text.startswith("ACL not found"):
            raise TokenRefused(f"403 {answer.text}: the agent knows no such token (deleted, "
                               "expired or mistyped? from --token, --token-file, "
                               "CONSUL_HTTP_TOKEN or CONSUL_HTTP_TOKEN_FILE); asking again "
                               f"at most every {TOKEN_MAX_S:g} s")  # fmt: skip
        if answer.status == 403:  # (not registered yet, or a token's rule not yet given)
            raise Missing(f"403 {answer.text}")
        if answer.status == 400 and self.path.startswith(CONFIG_KINDS):
            if not self._kind_unknown:  # (once: readers then ignore the same answer anyway)
                self._kind_unknown = True
                self._on_change([])
            raise KindUnknown(f"400 {answer.text.strip()[:200]}: an agent older than this "
                              "proxy; taken as no entries until it holds them")  # fmt: skip
        if answer.status != 200:
            raise BadAnswer(f"{answer.status} {answer.text}")
        self._kind_unknown = False
        found = self._where(answer)
        body: Any
        if self._raw:
            body = answer.body
        elif self._item is None:
            body = json.loads(answer.body)
        else:
            body = await _kept(answer.body, self._item)
        changed = found != self.index
        restarted = found.isdigit() and self.index.isdigit() and int(found) < int(self.index)
        if restarted and not self._by_hash:
            found = "0"  # the agent restarted: start over
        if changed:
            self.headers = answer.headers
            if inspect.isawaitable(applied := self._on_change(body)):
                await applied  # (the next ask waits for it: its answer is the latest then)
        self.index = found  # after: an answer whose reader raised is asked for again
        return changed

    def _where(self, answer: Answer) -> str:
        """The answer's index (at least 1) or content hash; BadAnswer when it has none."""
        if self._by_hash:
            found = answer.headers.get("x-consul-contenthash", "")
            if not found:
                raise BadAnswer("the answer has no X-Consul-ContentHash")
            return found
        found = answer.headers.get("x-consul-index", "")
        if not (found.isascii() and found.isdigit()):
            raise BadAnswer(f"the answer's X-Consul-Index is {found!r}, not a number")
        return str(max(int(found), 1))


async def _kept(body: bytes, item: Callable[[Any], Any]) -> list[Any]:
    """What `item` makes of each element of the JSON array `body` (None: left out), read
    piece by piece, other work running between; ValueError for anything but an array."""
    kept = []
    for n, element in enumerate(items(body.decode()), 1):
        if (value := item(element)) is not None:
            kept.append(value)
        if n % PIECE == 0:
            await asyncio.sleep(0)
    return kept


def _said(exc: BaseException) -> str:
    """An error for the log: a timeout's has no text of its own."""
    return str(exc) or type(exc).__name__
