"""How the runner reads a CheckDefinition: the few settings it derives, nothing copied.

The registration parser (catalog/registration_check.py) produces the one
`CheckDefinition`; the runner and the probes read it directly, so a field
added to it reaches the probe without a second field list in between (a
hand-copied list once dropped DisableRedirects). What lives here is only
what the runner derives from a definition, as small pure functions:
- the effective timeout (Consul's per-kind default when Timeout is unset),
- the probe interval (an alias check without Interval polls every ALIAS_POLL_S),
  and the delay to the next probe (a TCP check just critical is probed sooner),
- the output cap (OutputMaxSize < 1 means the 4096 default),
- the thresholds and the starting status, typed for status.py,
- `validate`, which refuses what the runner cannot run.
Durations are float seconds, already parsed, 0 meaning unset; Consul's
rules (the 1 s minimum interval, script checks being allowed at all) are
applied at registration, so the runner trusts what it is given — tests
rely on that to use 50 ms intervals.
"""

from __future__ import annotations

from gossamer.agent.checks.status import (
    DEFAULT_OUTPUT_MAX,
    STATUSES,
    Status,
    Thresholds,
    parse_status,
)
from gossamer.catalog.check_definition import CheckDefinition
from gossamer.catalog.check_kinds import DEFAULT_SCRIPT_TIMEOUT_S
from gossamer.catalog.check_kinds import DEFAULT_TIMEOUT_S as NETWORK_TIMEOUT_S

# Consul's per-kind timeouts when `Timeout` is unset: 10 s for network
# probes, 30 s for scripts (agent/checks/check.go). The keys are the kinds
# the runner knows.
DEFAULT_TIMEOUT_S: dict[str, float] = {
    "http": NETWORK_TIMEOUT_S,
    "tcp": NETWORK_TIMEOUT_S,
    "grpc": NETWORK_TIMEOUT_S,
    "script": DEFAULT_SCRIPT_TIMEOUT_S,
    "ttl": 0.0,
    "alias": NETWORK_TIMEOUT_S,
}

ALIAS_POLL_S = 1.0  # Consul's alias checks watch; ours poll the local state this often
EAGER_S = 1.0  # a TCP check not passing yet is probed this often (`next_delay`)...
EAGER_WINDOW_S = 60.0  # ...during its first minute critical


def timeout(check: CheckDefinition) -> float:
    """The effective timeout: the configured one, else the kind's default."""
    return check.timeout_s if check.timeout_s > 0 else DEFAULT_TIMEOUT_S[check.kind]


def interval(check: CheckDefinition) -> float:
    """Seconds between probe runs (unused by ttl); an alias without Interval polls."""
    return check.interval_s or (ALIAS_POLL_S if check.kind == "alias" else 0.0)


def next_delay(check: CheckDefinition, critical_for: float | None) -> float:
    """Seconds until the next probe. A TCP check critical for less than EAGER_WINDOW_S (one
    just registered starts critical) is probed every EAGER_S: a sidecar's "Connect Sidecar
    Listening" check passes about a second after its proxy listens, not up to an interval
    (10 s) later, and a sidecar restarted is back as soon. Consul waits for the interval;
    a TCP connect a second, for a minute, costs nothing. Otherwise: the interval."""
    every = interval(check)
    if check.kind == "tcp" and critical_for is not None and critical_for < EAGER_WINDOW_S:
        return min(every, EAGER_S)
    return every


def max_output(check: CheckDefinition) -> int:
    """Consul treats OutputMaxSize < 1 as "use the default"."""
    return check.output_max_size if check.output_max_size >= 1 else DEFAULT_OUTPUT_MAX


def thresholds(check: CheckDefinition) -> Thresholds:
    """The consecutive-result thresholds; FailuresBeforeWarning 0 follows the critical one."""
    return Thresholds(
        check.success_before_passing,
        check.failures_before_critical,
        check.failures_before_warning or None,
    )


def initial_status(check: CheckDefinition) -> Status:
    """What the check reports until its first result (Consul: critical)."""
    return parse_status(check.status)


def validate(check: CheckDefinition) -> None:
    """Refuse what the runner cannot run (registration should have caught it).

    Raises ValueError naming the check and the field.
    """
    where = f"check {check.check_id!r}"
    if check.kind not in DEFAULT_TIMEOUT_S:
        raise ValueError(f"{where}: unknown kind {check.kind!r}")
    if check.kind == "ttl":
        if check.ttl_s <= 0:
            raise ValueError(f"{where}: a TTL check needs ttl_s > 0")
    elif interval(check) <= 0:
        raise ValueError(f"{where}: interval_s must be > 0")
    if check.kind == "http" and check.http is None:
        raise ValueError(f"{where}: an http check needs http")
    if check.kind == "grpc" and check.grpc is None:
        raise ValueError(f"{where}: a grpc check needs grpc")
    if check.kind == "script" and not check.args:
        raise ValueError(f"{where}: a script check needs args")
    if check.status not in STATUSES:
        raise ValueError(f"{where}: bad initial_status {check.status!r}")
