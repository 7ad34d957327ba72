"""CheckRunner: runs the agent's checks on their intervals and reports changes.

One asyncio task per check. A probing check (http, tcp, script, alias)
first runs after a random stagger within its interval — Consul's
RandomStagger, so checks registered together (say, at boot) do not all fire
in the same instant — then every interval after the previous run ended, so
a slow probe never overlaps itself. A TCP check in its first minute
critical (a sidecar's listening check before its proxy starts) runs every
second instead (spec.next_delay). A TTL check has no probe: its task
sleeps until the deadline and reports critical if no update arrived.

Results go through status.apply_result (thresholds); `on_update(check_id,
status, output)` is called only when the reported status or output changed.
A removed or replaced check's late results are dropped, so a re-registered
check never receives updates from its predecessor.

The clock (monotonic seconds), the sleep and the random source are
injected: tests expire TTLs on a fake clock and pin the stagger.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from gossamer.agent.checks import spec
from gossamer.agent.checks.probes import AliasLookup, new_http_session, run_probe
from gossamer.agent.checks.status import (
    CheckState,
    ProbeResult,
    Status,
    apply_result,
    cap_output,
    parse_status,
    ttl_expired,
    ttl_expired_output,
)
from gossamer.catalog.check_definition import CheckDefinition

log = logging.getLogger(__name__)

UpdateCallback = Callable[[str, Status, str], None]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

# A TTL deadline is "now > last_update + ttl"; waking exactly at the
# deadline would find it not yet passed, so the watcher oversleeps a little.
_TTL_SLACK_S = 0.001


class UnknownCheck(KeyError):
    """No check with that id is registered (the HTTP layer answers 404)."""


class NotTTLCheck(ValueError):
    """pass/warn/fail/update was called on a check that is not a TTL check."""


@dataclass(frozen=True)
class CheckView:
    """A check's reported state; critical_since is on the runner's clock."""

    status: Status
    output: str
    critical_since: float | None


@dataclass(frozen=True)
class Restore:
    """State carried over a restart: the last report and, for TTL checks,
    how much of the TTL was left (persisted TTL status stays valid until
    the end of its TTL, as in Consul)."""

    status: Status
    output: str = ""
    ttl_remaining_s: float | None = None


class _Entry:
    """A registered check's mutable state; owned by the runner."""

    def __init__(self, check: CheckDefinition, start: Restore, now: float) -> None:
        self.check = check
        self.thresholds = spec.thresholds(check)
        self.state = CheckState.initial(start.status, self.thresholds, start.output)
        self.critical_since: float | None = now if start.status == "critical" else None
        self.last_update = now  # TTL only: when the application last reported
        self.last_ttl_output = ""  # TTL only: what it said then
        self.expired = False  # TTL only: expiry already reported
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


class CheckRunner:
    """Runs registered checks until removed or stopped.

    add/remove/ttl_update/refresh are synchronous and must be called from
    the event loop thread; on_update is called from the loop, must not
    block, and an exception it raises is logged and ignored.
    """

    def __init__(
        self,
        on_update: UpdateCallback,
        *,
        alias_lookup: AliasLookup | None = None,
        session: aiohttp.ClientSession | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._on_update = on_update
        self._alias_lookup = alias_lookup
        self._session = session
        self._owns_session = session is None
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._entries: dict[str, _Entry] = {}
        self._retired: set[asyncio.Task[None]] = set()

    # --- registration -------------------------------------------------------

    def add(self, check: CheckDefinition, restore: Restore | None = None) -> None:
        """Start running `check`, replacing a check with the same id.

        The check reports its initial status with empty output (or the
        restored state) until its first result; that starting state is
        not announced through on_update — the caller registered it.
        ValueError (from spec.validate) for a check it cannot run.
        """
        spec.validate(check)
        self.remove(check.check_id)
        now = self._clock()
        start = restore or Restore(spec.initial_status(check))
        entry = _Entry(check, start, now)
        if check.kind == "ttl" and start.ttl_remaining_s is not None:
            entry.last_update = now - (check.ttl_s - start.ttl_remaining_s)
        self._entries[check.check_id] = entry
        loop = self._ttl_loop(entry) if check.kind == "ttl" else self._probe_loop(entry)
        entry.task = asyncio.get_running_loop().create_task(loop, name=f"check:{check.check_id}")

    def remove(self, check_id: str) -> bool:
        """Stop a check; False if there was none. Its pending results are dropped."""
        entry = self._entries.pop(check_id, None)
        if entry is None:
            return False
        if entry.task is not None:
            entry.task.cancel()
            self._retired.add(entry.task)
            entry.task.add_done_callback(self._retired.discard)
        return True

    def refresh(self, check_id: str) -> None:
        """Run a probing check now instead of at its next interval.

        For alias checks: the agent calls this when the aliased service's
        checks change, so the alias follows at once (Consul's alias is
        event-driven); the interval is only the fallback.
        """
        entry = self._entries.get(check_id)
        if entry is None:
            raise UnknownCheck(check_id)
        entry.wake.set()

    def ttl_update(self, check_id: str, status: str, output: str = "") -> str:
        """Set a TTL check's status (PUT /v1/agent/check/pass|warn|fail|update).

        Renews the TTL and bypasses the thresholds, as Consul does. Returns
        the stored output, capped at the check's output_max_size.
        """
        entry = self._entries.get(check_id)
        if entry is None:
            raise UnknownCheck(check_id)
        if entry.check.kind != "ttl":
            raise NotTTLCheck(f"check {check_id!r} does not have an associated TTL")
        new_status = parse_status(status)
        capped = cap_output(output, spec.max_output(entry.check))
        entry.last_update = self._clock()
        entry.last_ttl_output = capped
        entry.expired = False
        state = entry.state
        self._report(entry, CheckState(new_status, capped, state.successes, state.failures))
        entry.wake.set()
        return capped

    # --- inspection ---------------------------------------------------------

    def get(self, check_id: str) -> CheckView | None:
        entry = self._entries.get(check_id)
        if entry is None:
            return None
        return CheckView(entry.state.status, entry.state.output, entry.critical_since)

    def now(self) -> float:
        """The runner's clock, the one `critical_since` is measured on."""
        return self._clock()

    def views(self) -> dict[str, CheckView]:
        """Every check's reported state, by id (sorted), e.g. for the reaper."""
        return {cid: view for cid in sorted(self._entries) if (view := self.get(cid))}

    def expire_ttls(self) -> list[str]:
        """Report every TTL check whose deadline passed (on the injected clock).

        The TTL watchers call this for their own check; tests on a fake
        clock call it directly. Returns the ids that expired now.
        """
        return [cid for cid, e in sorted(self._entries.items()) if self._expire_if_due(e)]

    async def stop(self) -> None:
        """Cancel every check, wait for them (scripts are killed), close the session."""
        for check_id in list(self._entries):
            self.remove(check_id)
        if self._retired:
            await asyncio.gather(*self._retired, return_exceptions=True)
        if self._session is not None and self._owns_session:
            await self._session.close()
            self._session = None

    # --- loops --------------------------------------------------------------

    async def _probe_loop(self, entry: _Entry) -> None:
        delay = min(self._rng.uniform(0, spec.interval(entry.check)), self._next_delay(entry))
        while True:
            await self._wait(entry, delay)
            result = await self._probe(entry.check)
            self._report(entry, apply_result(entry.state, result, entry.thresholds))
            delay = self._next_delay(entry)

    def _next_delay(self, entry: _Entry) -> float:
        since = entry.critical_since
        return spec.next_delay(entry.check, None if since is None else self._clock() - since)

    async def _ttl_loop(self, entry: _Entry) -> None:
        while True:
            self._expire_if_due(entry)
            if entry.expired:
                await self._wait(entry, None)  # until the next ttl_update
            else:
                remaining = entry.last_update + entry.check.ttl_s - self._clock()
                await self._wait(entry, max(remaining, 0.0) + _TTL_SLACK_S)

    async def _wait(self, entry: _Entry, delay: float | None) -> None:
        """Sleep `delay` (None: forever) or until entry.wake is set."""
        pending: set[asyncio.Future[object]] = {asyncio.ensure_future(_wait_event(entry.wake))}
        if delay is not None:
            pending.add(asyncio.ensure_future(self._sleep(delay)))
        try:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in pending:
                fut.cancel()
        entry.wake.clear()

    def _expire_if_due(self, entry: _Entry) -> bool:
        if entry.check.kind != "ttl" or entry.expired:
            return False
        if not ttl_expired(entry.last_update, entry.check.ttl_s, self._clock()):
            return False
        entry.expired = True
        # Keep the application's last words: Consul's "TTL expired (last
        # output before timeout follows): ..." helps explain the silence.
        state = entry.state
        output = ttl_expired_output(entry.last_ttl_output)
        expired = CheckState("critical", output, state.successes, state.failures)
        self._report(entry, expired)
        return True

    async def _probe(self, check: CheckDefinition) -> ProbeResult:
        try:
            session = self._http_session() if check.kind == "http" else None
            return await run_probe(check, session, self._alias_lookup)
        except Exception as exc:  # a probe bug must not stop the check
            log.exception("check %s: probe failed", check.check_id)
            return ProbeResult("critical", f"check failed: {exc!r}")

    def _http_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = new_http_session()
        return self._session

    def _report(self, entry: _Entry, new: CheckState) -> None:
        if self._entries.get(entry.check.check_id) is not entry:
            return  # removed or replaced while its probe ran
        old, entry.state = entry.state, new
        if new.status != "critical":
            entry.critical_since = None
        elif old.status != "critical":
            entry.critical_since = self._clock()
        if (new.status, new.output) == (old.status, old.output):
            return
        try:
            self._on_update(entry.check.check_id, new.status, new.output)
        except Exception:
            log.exception("check %s: on_update failed", entry.check.check_id)


async def _wait_event(event: asyncio.Event) -> object:
    return await event.wait()
