"""An intentions match answer read into a set a few rows at a time, the loop serving between.

The answer about a service with 5,000 L7 intentions is ~2.6 MB of JSON.
Read in one step (`json.loads`, then every row looked up by its re-encoded
text, then the whole set indexed and sorted), one change, anyone's, held
the sidecar's event loop 66-120 ms (CPU; 235-875 ms of wall time on a busy
2-core host), every connection and request of the sidecar waiting, and a
deny applied only after it (bench/policy_apply.py). Here rows are decoded
one at a time (json_items.member_items) and keyed by their text as it
came; a row seen before is a look-up, its decoded value dropped at once
(so the cycle collector has no decoded answer to walk), the loop is given
back every `STEP_S`, and the set in force keeps deciding until the new one
is whole, which then replaces it in one step: 2-4 ms of CPU at a time,
the new set deciding ~30 ms after the answer came.
"""

from __future__ import annotations

import asyncio
import time

from gossamer.intentions.decide import IntentionSet
from gossamer.proxy.intention_memo import IntentionMemo
from gossamer.proxy.json_items import member_items

STEP_S = 0.002  # rows read in one turn of the loop, at most about this long


async def read_intentions(
    body: bytes, service: str, memo: IntentionMemo, before: IntentionSet | None = None
) -> IntentionSet:
    """The set of the match answer `body` (`{service: [rows]}`), `before` the one in force.
    NoSuchArray for good JSON without `service`'s rows, IntentionError for a row that is no
    intention, another ValueError for bad JSON."""
    build = memo.start(before)
    due = time.monotonic() + STEP_S
    for text, row in member_items(body.decode(), service):
        build.add(text, row)
        if time.monotonic() >= due:
            await asyncio.sleep(0)
            due = time.monotonic() + STEP_S
    return build.finish()


async def let_go(replaced: list[IntentionSet]) -> None:
    """Drop the set `replaced` holds (its only reference: taken from the list) a few rules
    at a time. A change of every row (an agent that lost its data, a pipeline that rewrote
    every intention) frees 5,000 compiled rules with it: ~40 ms in one piece."""
    groups = list(replaced.pop().by_pair().values())  # (the set itself goes now: cheap)
    due = time.monotonic() + STEP_S
    while groups:
        groups.pop()  # a rule the new set does not hold goes with its group
        if time.monotonic() >= due:
            await asyncio.sleep(0)
            due = time.monotonic() + STEP_S
