"""CheckRunner: real HTTP flips reported exactly on change; TTL expiry on a fake clock."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gossamer.agent.checks.runner import CheckRunner, NotTTLCheck, Restore, UnknownCheck
from gossamer.agent.checks.status import AliasedCheck, NodeHealth
from gossamer.catalog.check_definition import CheckDefinition, HttpRequest
from tests.harness.http_app import serving
from tests.harness.poll import eventually, eventually_async


def check(check_id: str, kind: str, *, interval_s: float = 10.0, **fields: Any) -> CheckDefinition:
    """A check as the runner gets it (named after its id; probes every 10 s unless told)."""
    return CheckDefinition(check_id, check_id, kind, interval_s=interval_s, **fields)


@dataclass
class Updates:
    calls: list[tuple[str, str, str]] = field(default_factory=list)

    def __call__(self, check_id: str, status: str, output: str) -> None:
        self.calls.append((check_id, status, output))

    def statuses(self) -> list[str]:
        return [status for _, status, _ in self.calls]

    def last_is(self, status: str) -> Callable[[], bool]:
        return lambda: self.statuses()[-1:] == [status]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def sleep_forever(_: float) -> None:
    await asyncio.Event().wait()


@dataclass
class Flipper:
    status: int = 200
    hits: int = 0

    def hit_again(self, n: int) -> Callable[[], bool]:
        """A condition: the server was asked n more times from now."""
        target = self.hits + n
        return lambda: self.hits >= target


@pytest.fixture
async def flipper() -> AsyncIterator[tuple[Flipper, str]]:
    state = Flipper()

    async def health(request: web.Request) -> web.Response:
        state.hits += 1
        return web.Response(status=state.status, text=f"answer {state.status}")

    app = web.Application()
    app.router.add_get("/health", health)
    async with serving(app) as where:
        yield state, where.base + "/health"


async def test_http_flips_are_reported_exactly_once_each(flipper: tuple[Flipper, str]) -> None:
    server, url = flipper
    updates = Updates()
    runner = CheckRunner(updates, rng=random.Random(1))
    runner.add(check("web", "http", interval_s=0.03, timeout_s=2, http=HttpRequest(url)))
    try:
        for code, status in [(200, "passing"), (500, "critical"), (200, "passing")]:
            server.status = code
            await eventually_async(updates.last_is(status), timeout=5)
            # Several more probes with the same answer must not be reported again.
            await eventually_async(server.hit_again(3), timeout=5)
        assert updates.statuses() == ["passing", "critical", "passing"]
        assert updates.calls[1] == (
            "web",
            "critical",
            f"HTTP GET {url}: 500 Internal Server Error Output: answer 500",
        )
        view = runner.get("web")
        assert view is not None and view.status == "passing" and view.critical_since is None
    finally:
        await runner.stop()


async def test_failures_before_critical_holds_passing(flipper: tuple[Flipper, str]) -> None:
    server, url = flipper
    updates = Updates()
    runner = CheckRunner(updates, rng=random.Random(2))
    runner.add(
        check("web", "http", interval_s=0.03, http=HttpRequest(url), failures_before_critical=3)
    )
    try:
        await eventually_async(lambda: updates.statuses() == ["passing"], timeout=5)
        server.status = 503
        seen = server.hits
        await eventually_async(lambda: updates.statuses() == ["passing", "critical"], timeout=5)
        assert server.hits >= seen + 3  # three failures before critical
    finally:
        await runner.stop()


async def test_first_run_is_staggered_within_the_interval() -> None:
    delays: list[float] = []

    async def record(delay: float) -> None:
        delays.append(delay)
        await asyncio.Event().wait()

    runner = CheckRunner(Updates(), sleep=record, rng=random.Random(7))
    runner.add(check("h", "http", interval_s=10.0, http=HttpRequest("http://127.0.0.1:1/")))
    try:
        await eventually_async(lambda: delays, timeout=2)
        assert delays == [random.Random(7).uniform(0, 10.0)]
    finally:
        await runner.stop()


def stepping(clock: FakeClock, delays: list[float], most: int) -> Callable[[float], Any]:
    """A sleep that moves the fake clock on by each delay it is given, recording them, and
    holds for ever after `most` of them."""

    async def step(delay: float) -> None:
        delays.append(delay)
        if len(delays) >= most:
            await asyncio.Event().wait()
        clock.now += delay

    return step


async def test_a_tcp_check_critical_is_probed_each_second_for_its_first_minute() -> None:
    """A sidecar's listening check, registered before its proxy listens: it passes about a
    second after the proxy starts, not up to an interval (10 s) later."""
    clock, delays = FakeClock(), list[float]()
    runner = CheckRunner(Updates(), clock=clock, sleep=stepping(clock, delays, 70),
                         rng=random.Random(7))  # fmt: skip
    runner.add(check("t", "tcp", interval_s=10.0, tcp="127.0.0.1:1"))  # refused: critical
    try:
        await eventually_async(lambda: len(delays) >= 70, timeout=10)
        assert delays[0] <= 1.0
        assert set(delays[1:60]) == {1.0}  # critical for under a minute
        assert set(delays[62:]) == {10.0}  # past it: its interval
    finally:
        await runner.stop()


async def test_a_tcp_check_that_passes_is_probed_at_its_interval() -> None:
    clock, delays = FakeClock(), list[float]()
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    where = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    updates = Updates()
    runner = CheckRunner(updates, clock=clock, sleep=stepping(clock, delays, 4),
                         rng=random.Random(7))  # fmt: skip
    runner.add(check("t", "tcp", interval_s=10.0, tcp=where))
    try:
        await eventually_async(lambda: len(delays) >= 4, timeout=10)
        assert updates.statuses() == ["passing"] and delays[1:] == [10.0, 10.0, 10.0]
    finally:
        await runner.stop()
        server.close()


# --- TTL ---------------------------------------------------------------------


async def test_ttl_expiry_on_a_fake_clock() -> None:
    clock, updates = FakeClock(), Updates()
    runner = CheckRunner(updates, clock=clock, sleep=sleep_forever)
    runner.add(check("t", "ttl", ttl_s=10.0))
    try:
        assert runner.ttl_update("t", "passing", "ok") == "ok"
        clock.now = 10.0
        assert runner.expire_ttls() == []  # not past the deadline yet
        clock.now = 10.5
        assert runner.expire_ttls() == ["t"]
        assert runner.expire_ttls() == []  # reported once
        assert updates.calls == [
            ("t", "passing", "ok"),
            ("t", "critical", "TTL expired (last output before timeout follows): ok"),
        ]
        assert runner.views()["t"].critical_since == 10.5
        runner.ttl_update("t", "warning", "slow")  # renews the TTL
        clock.now = 20.0
        assert runner.expire_ttls() == []
        clock.now = 20.6
        assert runner.expire_ttls() == ["t"]
    finally:
        await runner.stop()


async def test_ttl_watcher_expires_by_itself() -> None:
    clock, updates = FakeClock(), Updates()

    async def advance(delay: float) -> None:
        clock.now += delay
        await asyncio.sleep(0)

    runner = CheckRunner(updates, clock=clock, sleep=advance)
    runner.add(check("t", "ttl", ttl_s=30.0, status="passing"))
    try:
        await eventually_async(lambda: updates.statuses() == ["critical"], timeout=2)
        assert updates.calls[0][2] == "TTL expired"
        assert clock.now > 30.0
    finally:
        await runner.stop()


async def test_ttl_restore_keeps_the_remaining_ttl() -> None:
    clock, updates = FakeClock(), Updates()
    runner = CheckRunner(updates, clock=clock, sleep=sleep_forever)
    runner.add(check("t", "ttl", ttl_s=60.0), Restore("passing", "ok", ttl_remaining_s=5.0))
    try:
        assert runner.views()["t"].status == "passing"
        clock.now = 5.1
        assert runner.expire_ttls() == ["t"]
    finally:
        await runner.stop()


async def test_ttl_update_errors_and_output_cap() -> None:
    runner = CheckRunner(Updates(), sleep=sleep_forever)
    runner.add(check("t", "ttl", ttl_s=10.0, output_max_size=4))
    runner.add(check("h", "http", interval_s=60.0, http=HttpRequest("http://127.0.0.1:1/")))
    try:
        assert runner.ttl_update("t", "passing", "abcdefgh") == "abcd ... (captured 4 of 8 bytes)"
        with pytest.raises(UnknownCheck):
            runner.ttl_update("nope", "passing")
        with pytest.raises(NotTTLCheck):
            runner.ttl_update("h", "passing")
        with pytest.raises(ValueError, match="status must be one of"):
            runner.ttl_update("t", "fine")
    finally:
        await runner.stop()


# --- alias, removal, stop ----------------------------------------------------


async def test_alias_follows_refresh() -> None:
    health = {"": NodeHealth("n1", frozenset({"web"}), (AliasedCheck("h", "passing"),))}
    updates = Updates()
    runner = CheckRunner(updates, alias_lookup=health.get, sleep=sleep_forever)
    runner.add(check("a", "alias", interval_s=60.0, alias_service="web"))
    try:
        runner.refresh("a")
        await eventually_async(lambda: updates.statuses() == ["passing"], timeout=2)
        health[""] = NodeHealth("n1", frozenset({"web"}), (AliasedCheck("h", "critical", "x"),))
        runner.refresh("a")
        await eventually_async(lambda: updates.statuses() == ["passing", "critical"], timeout=2)
    finally:
        await runner.stop()


async def test_removed_check_reports_nothing(flipper: tuple[Flipper, str]) -> None:
    server, url = flipper
    updates = Updates()
    runner = CheckRunner(updates, rng=random.Random(3))
    runner.add(check("web", "http", interval_s=0.03, http=HttpRequest(url)))
    try:
        await eventually_async(lambda: updates.statuses() == ["passing"], timeout=5)
        assert runner.remove("web") and not runner.remove("web")
        assert runner.get("web") is None
        server.status = 500
        # Another check on the same server serves as the clock: once it has
        # been answered 500 (and reported), "web" would have been too.
        runner.add(check("other", "http", interval_s=0.03, http=HttpRequest(url)))
        await eventually_async(lambda: [c[0] for c in updates.calls] == ["web", "other"], timeout=5)
        await eventually_async(server.hit_again(3), timeout=5)
        assert [c[:2] for c in updates.calls] == [("web", "passing"), ("other", "critical")]
    finally:
        await runner.stop()


async def test_stop_kills_running_scripts(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"echo $$ > {pids}; exec sleep 30"
    runner = CheckRunner(Updates(), rng=random.Random(4))
    runner.add(check("s", "script", interval_s=0.01, timeout_s=30, args=("/bin/sh", "-c", script)))
    text = await asyncio.to_thread(eventually, lambda: _written(pids), 5)
    await runner.stop()
    assert _gone(int(text))


def _written(path: Path) -> str:
    return path.read_text().strip() if path.exists() else ""


def _gone(pid: int) -> bool:
    """Dead or a zombie (whose reaping is its new parent's business)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.parametrize(
    ("defn", "problem"),
    [
        (check("t", "ttl"), "needs ttl_s > 0"),
        (
            check("h", "http", interval_s=0, http=HttpRequest("http://x/")),
            "interval_s must be > 0",
        ),
        (check("s", "script"), "needs args"),
    ],
)
async def test_add_refuses_checks_it_cannot_run(defn: CheckDefinition, problem: str) -> None:
    runner = CheckRunner(Updates())
    with pytest.raises(ValueError, match=problem):
        runner.add(defn)
    assert runner.views() == {}
