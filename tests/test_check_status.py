"""Check status core: thresholds (tables + Hypothesis), output caps, TTL, alias, reaper."""

from __future__ import annotations

from typing import Final

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossamer.agent.checks.status import (
    AliasedCheck,
    CheckState,
    CriticalCheck,
    NodeHealth,
    ProbeResult,
    Status,
    Thresholds,
    alias_result,
    apply_result,
    cap_output,
    captured_tail,
    parse_status,
    services_to_deregister,
    ttl_expired,
    ttl_expired_output,
    worst,
)

P: Final = "passing"
W: Final = "warning"
C: Final = "critical"


def run(
    results: list[Status], thresholds: Thresholds, initial: Status = "critical"
) -> list[Status]:
    """The reported status after each result."""
    state = CheckState.initial(initial, thresholds)
    seen = []
    for i, status in enumerate(results):
        state = apply_result(state, ProbeResult(status, f"out{i}"), thresholds)
        seen.append(state.status)
    return seen


@pytest.mark.parametrize(
    ("sbp", "fbc", "results", "expected"),
    [
        # No thresholds: every result is reported as is.
        (0, 0, [P, C, W, P], [P, C, W, P]),
        # The first result is reported at once even with thresholds (primed).
        (3, 3, [P], [P]),
        (3, 3, [C], [C]),
        # After that, three consecutive successes are needed to leave critical.
        (3, 0, [C, P, P, P], [C, C, C, P]),
        (3, 0, [C, P, P, C, P, P, P], [C, C, C, C, C, C, P]),
        # A warning result counts as a success and is reported as warning.
        (2, 0, [C, W, P], [C, C, P]),
        (2, 0, [C, P, W], [C, C, W]),
        # Two consecutive failures before critical; a success resets the streak.
        (0, 2, [P, C, P, C, C], [P, P, P, P, C]),
        # A warning resets the failure streak too.
        (0, 2, [P, C, W, C, C], [P, P, W, W, C]),
    ],
)
def test_threshold_table(sbp: int, fbc: int, results: list[Status], expected: list[Status]) -> None:
    assert run(results, Thresholds(sbp, fbc)) == expected


def test_failures_before_warning_reports_warning_first() -> None:
    t = Thresholds(0, failures_before_critical=3, failures_before_warning=1)
    assert run([P, C, C, C, P], t) == [P, W, W, C, P]


def test_output_only_changes_with_a_report() -> None:
    t = Thresholds(success_before_passing=2)
    state = apply_result(CheckState.initial(C, t), ProbeResult(C, "down"), t)
    held = apply_result(state, ProbeResult(P, "up once"), t)
    assert (held.status, held.output) == (C, "down")
    done = apply_result(held, ProbeResult(P, "up twice"), t)
    assert (done.status, done.output) == (P, "up twice")


def test_counters_stay_bounded() -> None:
    t = Thresholds(2, 3)
    state = CheckState.initial(C, t)
    for _ in range(1000):
        state = apply_result(state, ProbeResult(P, ""), t)
    assert state.successes <= 2 and state.failures == 0


results_st = st.lists(st.sampled_from([P, W, C]), min_size=1, max_size=40)


@given(
    results=results_st,
    sbp=st.integers(0, 5),
    fbc=st.integers(0, 5),
    initial=st.sampled_from([P, W, C]),
)
def test_status_changes_only_after_the_configured_streak(
    results: list[Status], sbp: int, fbc: int, initial: Status
) -> None:
    """After the first result, a change needs `threshold` consecutive results of its kind."""
    seen = run(results, Thresholds(sbp, fbc), initial)
    assert seen[0] == results[0]  # primed: the first result is reported at once
    for i in range(1, len(results)):
        if seen[i] == seen[i - 1]:
            continue
        if seen[i] == C:
            streak = results[max(0, i - max(fbc, 1) + 1) : i + 1]
            assert all(r == C for r in streak), (i, seen, results)
        else:
            assert seen[i] == results[i]
            streak = results[max(0, i - max(sbp, 1) + 1) : i + 1]
            assert all(r != C for r in streak), (i, seen, results)


@given(results=results_st, sbp=st.integers(0, 5), fbc=st.integers(0, 5))
def test_a_long_enough_streak_is_always_reported(results: list[Status], sbp: int, fbc: int) -> None:
    seen = run(results, Thresholds(sbp, fbc))
    last = results[-1]
    need = max(fbc if last == C else sbp, 1)
    tail = results[-need:]
    if len(results) >= need and all((r == C) == (last == C) for r in tail):
        assert seen[-1] == last


def test_worst() -> None:
    assert worst([]) == P
    assert worst([P, W, P]) == W
    assert worst([W, C, P]) == C


# --- output caps -------------------------------------------------------------


def test_cap_output_keeps_short_output() -> None:
    assert cap_output("ok", 4096) == "ok"
    assert cap_output("x" * 4096, 4096) == "x" * 4096


def test_cap_output_notes_truncation_like_consul_ttl() -> None:
    assert cap_output("abcdefghij", 4) == "abcd ... (captured 4 of 10 bytes)"


def test_cap_output_counts_bytes_and_never_splits_a_character() -> None:
    text = "é" * 10  # 20 bytes
    assert cap_output(text, 5) == "éé ... (captured 5 of 20 bytes)"


def test_captured_tail_like_consul_scripts() -> None:
    assert captured_tail(b"all", 3) == "all"
    assert captured_tail(b"tail", 10) == "Captured 4 of 10 bytes\n...\ntail"


# --- TTL ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expired"), [(100.0, False), (110.0, False), (110.001, True), (500.0, True)]
)
def test_ttl_expires_strictly_after_the_deadline(now: float, expired: bool) -> None:
    assert ttl_expired(last_update=100.0, ttl_s=10.0, now=now) is expired


def test_ttl_expired_output() -> None:
    assert ttl_expired_output("") == "TTL expired"
    assert ttl_expired_output("ok") == "TTL expired (last output before timeout follows): ok"


# --- alias -------------------------------------------------------------------


def node(*checks: AliasedCheck, services: tuple[str, ...] = ("web",)) -> NodeHealth:
    return NodeHealth("n1", frozenset(services), checks)


SERF = AliasedCheck("Serf Health Status", P)


@pytest.mark.parametrize(
    ("health", "service", "expected"),
    [
        (None, "web", ProbeResult(C, "Node n1 could not be found")),
        (node(SERF), "web", ProbeResult(P, "All checks passing.")),
        (node(services=()), "", ProbeResult(P, "No checks found.")),
        (
            node(SERF, services=()),
            "web",
            ProbeResult(C, "Service web could not be found on node n1"),
        ),
        (
            node(SERF, AliasedCheck("http", W, "slow", "web")),
            "web",
            ProbeResult(W, "Aliased check 'http' failing: slow"),
        ),
        # Worst wins; the node's own failed serfHealth fails its services.
        (
            node(AliasedCheck("Serf Health Status", C, "dead"), AliasedCheck("a", W, "", "web")),
            "web",
            ProbeResult(C, "Aliased check 'Serf Health Status' failing: dead"),
        ),
        # Another service's checks do not count.
        (
            node(SERF, AliasedCheck("db", C, "", "db"), services=("web", "db")),
            "web",
            ProbeResult(P, "All checks passing."),
        ),
        # Node alias: only node-level checks count.
        (
            node(SERF, AliasedCheck("web", C, "", "web")),
            "",
            ProbeResult(P, "All checks passing."),
        ),
    ],
)
def test_alias_result(health: NodeHealth | None, service: str, expected: ProbeResult) -> None:
    assert alias_result(health, "n1", service) == expected


# --- DeregisterCriticalServiceAfter -----------------------------------------


def test_services_to_deregister() -> None:
    checks = [
        CriticalCheck("a", "web", critical_since=0.0, deregister_after_s=90.0),
        CriticalCheck("b", "web", critical_since=0.0, deregister_after_s=90.0),
        CriticalCheck("c", "db", critical_since=50.0, deregister_after_s=90.0),
        CriticalCheck("d", "cache", critical_since=0.0, deregister_after_s=0.0),  # never
        CriticalCheck("e", "", critical_since=0.0, deregister_after_s=1.0),  # node check
        CriticalCheck("f", "api", critical_since=0.0, deregister_after_s=1.0),  # raised to 60
    ]
    assert services_to_deregister(checks, now=90.0) == ["api"]
    assert services_to_deregister(checks, now=90.5) == ["api", "web"]
    assert services_to_deregister(checks, now=141.0) == ["api", "db", "web"]
    assert services_to_deregister(checks, now=2.0, minimum_s=0.0) == ["api"]


def test_parse_status() -> None:
    assert parse_status("warning") == "warning"
    with pytest.raises(ValueError, match="status must be one of passing, warning, critical"):
        parse_status("ok")
