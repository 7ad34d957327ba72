"""The proxy's report of denied connections to its agent: a timer around a DenialTable.

The inbound listener records each denial in the runtime's table (a dict
update, nothing more on the data path). About once a second, and only
when there is something new, the rows are taken and PUT to the agent's
`/v1/connect/intentions/denials`; the table then counts afresh. A report
that does not reach the agent is merged back and tried again next time
(the table is bounded, so an agent down for long costs nothing more); one
the agent refuses (an older agent without the endpoint, a 400) is dropped.
Failures are logged at most once a minute. `flush` runs once more at the
end of a drain, so denials just before a stop are not lost.
"""

from __future__ import annotations

import asyncio
import logging
import time

from gossamer.intentions.denials import MAX_REPORT, DenialTable, denial_to_json
from gossamer.proxy.agent_http import AgentHttp, BadAnswer
from gossamer.proxy.log_limit import LogLimiter

log = logging.getLogger("gossamer.proxy")

PATH = "/v1/connect/intentions/denials"
INTERVAL_S = 1.0  # how stale the agent's view may be; an idle proxy sends nothing
TIMEOUT_S = 5.0


def batch_table() -> DenialTable:
    """A proxy's batch: never more rows than one report may carry."""
    return DenialTable(max_rows=MAX_REPORT)


class DenialReporter:
    """Sends the rows of `table` to the agent every `interval_s` while there are any."""

    def __init__(self, agent: AgentHttp, table: DenialTable, interval_s: float = INTERVAL_S):
        self.agent = agent
        self.table = table
        self.interval_s = interval_s
        self.sent = 0  # rows the agent accepted, for the counters
        self._limiter = LogLimiter()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.flush()

    async def flush(self) -> None:
        """Send what is pending, if anything; keep it for the next try when the agent is away."""
        if not len(self.table):
            return
        rows = self.table.take()
        try:
            answer = await self.agent.put_json(PATH, [denial_to_json(d) for d in rows], TIMEOUT_S)
        except (OSError, TimeoutError, BadAnswer) as exc:
            self.table.add_all(rows)
            self._warn("unreachable", f"cannot report {len(rows)} denial row(s) to the agent: "
                       f"{exc or type(exc).__name__}; will retry")  # fmt: skip
            return
        if answer.status != 200:
            self._warn("refused", f"the agent refused a denial report ({answer.status}): "
                       f"{answer.text[:200]}; dropped")  # fmt: skip
            return
        self.sent += len(rows)

    def _warn(self, kind: str, message: str) -> None:
        if self._limiter.allow(kind, time.time_ns() // 1_000_000):
            log.warning("proxy: %s", message)
