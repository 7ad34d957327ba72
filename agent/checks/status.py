"""The pure core of health checking: what a check reports, given its results.

No I/O, no clock, no asyncio: every function takes the time it needs as an
argument, so the rules below are tested with tables and Hypothesis.

Rules kept (Consul's, agent/checks/check.go `StatusHandler`):

* A probe result is a success when it is passing *or warning*; only
  critical counts as a failure. A success resets the failure streak and a
  failure resets the success streak.
* A success is reported once the success streak reaches
  `success_before_passing`; a failure is reported as critical once the
  failure streak reaches `failures_before_critical`, and as warning (with
  the failing output) once it reaches `failures_before_warning` (which
  defaults to `failures_before_critical`, so it only matters when lower).
  Until a threshold is reached nothing changes, output included.
* The streaks start *primed* at their thresholds, so the very first result
  is reported at once, as Consul does: a freshly registered (or restarted)
  check does not sit in its initial status for N intervals.
* TTL updates (`/v1/agent/check/pass|warn|fail|update`) bypass the
  thresholds, as in Consul: the application states its health directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal, get_args

from gossamer.catalog import registration_check
from gossamer.catalog.check_definition import DEFAULT_OUTPUT_MAX_SIZE
from gossamer.catalog.severity import SEVERITY

Status = Literal["passing", "warning", "critical"]
STATUSES: Final[tuple[Status, ...]] = get_args(Status)

# Consul's DefaultBufSize: captured output is limited to 4 KB.
DEFAULT_OUTPUT_MAX: Final = DEFAULT_OUTPUT_MAX_SIZE

# Consul raises DeregisterCriticalServiceAfter to one minute: a shorter
# value would reap services that merely flapped during a deploy.
MIN_DEREGISTER_AFTER_S: Final = registration_check.MIN_DEREGISTER_AFTER_S


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one probe run, before thresholds are applied."""

    status: Status
    output: str


@dataclass(frozen=True)
class Thresholds:
    """Consecutive results needed before a change is reported (0 = at once)."""

    success_before_passing: int = 0
    failures_before_critical: int = 0
    failures_before_warning: int | None = None

    @property
    def successes(self) -> int:
        return max(self.success_before_passing, 0)

    @property
    def critical_after(self) -> int:
        return max(self.failures_before_critical, 0)

    @property
    def warning_after(self) -> int:
        if self.failures_before_warning is None:
            return self.critical_after
        return max(self.failures_before_warning, 0)


@dataclass(frozen=True)
class CheckState:
    """What a check reports now, plus the streaks that decide the next report.

    The streaks are capped at their thresholds: only "reached or not"
    matters, and a capped value keeps persisted state small.
    """

    status: Status
    output: str
    successes: int
    failures: int

    @classmethod
    def initial(cls, status: Status, thresholds: Thresholds, output: str = "") -> CheckState:
        """The state at registration: primed, so the first result reports at once."""
        return cls(
            status,
            output,
            thresholds.successes,
            max(thresholds.critical_after, thresholds.warning_after),
        )


def apply_result(state: CheckState, result: ProbeResult, thresholds: Thresholds) -> CheckState:
    """The state after one probe result (see the module rules)."""
    if result.status != "critical":
        successes = min(state.successes + 1, thresholds.successes)
        if successes >= thresholds.successes:
            return CheckState(result.status, result.output, successes, 0)
        return CheckState(state.status, state.output, successes, 0)
    failures = min(state.failures + 1, max(thresholds.critical_after, thresholds.warning_after))
    if failures >= thresholds.critical_after:
        return CheckState("critical", result.output, 0, failures)
    if failures >= thresholds.warning_after:
        return CheckState("warning", result.output, 0, failures)
    return CheckState(state.status, state.output, 0, failures)


def parse_status(text: str) -> Status:
    """`text` as a Status; ValueError naming the allowed values otherwise."""
    for status in STATUSES:
        if text == status:
            return status
    raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {text!r}")


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe status (critical > warning > passing); passing if none."""
    return max(statuses, key=SEVERITY.__getitem__, default="passing")


# --- output caps ----------------------------------------------------------


def cap_output(text: str, max_bytes: int = DEFAULT_OUTPUT_MAX) -> str:
    """Keep the first `max_bytes` bytes of `text`, saying how much was cut.

    Consul's TTL wording: "<head> ... (captured 4096 of 9000 bytes)". Bytes,
    not characters, are counted (Consul's limit is on bytes); a multi-byte
    character cut in half is dropped rather than mangled.
    """
    data = text.encode("utf-8", "replace")
    if len(data) <= max_bytes:
        return text
    head = data[:max_bytes].decode("utf-8", "ignore")
    return f"{head} ... (captured {max_bytes} of {len(data)} bytes)"


def captured_tail(tail: bytes, total: int) -> str:
    """Script output as Consul reports it: the *last* bytes, with a note if cut.

    A script's verdict is usually at the end of its output, so the capture
    keeps the tail: "Captured 4096 of 9000 bytes\\n...\\n<tail>".
    """
    text = tail.decode("utf-8", "replace")
    if total > len(tail):
        return f"Captured {len(tail)} of {total} bytes\n...\n{text}"
    return text


# --- TTL --------------------------------------------------------------------


def ttl_expired(last_update: float, ttl_s: float, now: float) -> bool:
    """A TTL check has expired once `now` is past `last_update + ttl_s`."""
    return now > last_update + ttl_s


def ttl_expired_output(last_output: str) -> str:
    """Consul's output for an expired TTL, keeping the last reported output."""
    if not last_output:
        return "TTL expired"
    return f"TTL expired (last output before timeout follows): {last_output}"


# --- alias ------------------------------------------------------------------


@dataclass(frozen=True)
class AliasedCheck:
    """One check on the aliased node; service_id "" marks a node-level check."""

    name: str
    status: Status
    output: str = ""
    service_id: str = ""


@dataclass(frozen=True)
class NodeHealth:
    """What an alias check needs to know about a node: its services and checks."""

    node: str
    services: frozenset[str]
    checks: tuple[AliasedCheck, ...]


def alias_result(health: NodeHealth | None, node: str, service_id: str) -> ProbeResult:
    """Mirror the worst status of the aliased service's checks, as Consul does.

    The node's own checks count too (a failed node fails its services). With
    no service given the node itself is aliased. Consul takes the first bad
    check in map order; here the worst one wins, ties broken by name, so the
    output is stable. Unlike Consul, an unknown node is critical rather than
    "No checks found." (in gossamer every known node has serfHealth).
    """
    if health is None:
        return ProbeResult("critical", f"Node {node} could not be found")
    relevant = [c for c in health.checks if c.service_id in ("", service_id)]
    known = service_id in health.services or any(c.service_id == service_id for c in relevant)
    if service_id and not known:
        return ProbeResult(
            "critical", f"Service {service_id} could not be found on node {health.node}"
        )
    if not relevant:
        return ProbeResult("passing", "No checks found.")
    bad = sorted(relevant, key=lambda c: (-SEVERITY[c.status], c.name))[0]
    if bad.status == "passing":
        return ProbeResult("passing", "All checks passing.")
    return ProbeResult(bad.status, f"Aliased check {bad.name!r} failing: {bad.output}")


# --- DeregisterCriticalServiceAfter ----------------------------------------


@dataclass(frozen=True)
class CriticalCheck:
    """A check now critical, with the setting that may reap its service.

    critical_since is on the same clock as `now` in services_to_deregister;
    deregister_after_s <= 0 means the check never reaps its service.
    """

    check_id: str
    service_id: str
    critical_since: float
    deregister_after_s: float


def services_to_deregister(
    checks: Iterable[CriticalCheck], now: float, minimum_s: float = MIN_DEREGISTER_AFTER_S
) -> list[str]:
    """Service ids whose check has been critical longer than its setting (sorted).

    Consul's reaper rule: critical for strictly longer than the timeout,
    raised to `minimum_s`; node-level checks (no service) never reap.
    """
    reaped: set[str] = set()
    for check in checks:
        if not check.service_id or check.deregister_after_s <= 0:
            continue
        after = max(check.deregister_after_s, minimum_s)
        if now - check.critical_since > after:
            reaped.add(check.service_id)
    return sorted(reaped)
