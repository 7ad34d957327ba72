"""CheckSpec: what the runner needs to run one check, nothing more.

The registration parser (catalog/registration.py) produces the full Consul
check definition (name, notes, service id, DeregisterCriticalServiceAfter,
...); the agent converts it to a CheckSpec for the runner. Durations are
float seconds, already parsed; validation (Consul's 1 s minimum interval,
script checks being allowed at all) happens at registration, so the runner
trusts what it is given — tests rely on that to use 50 ms intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gossamer.agent.checks.status import DEFAULT_OUTPUT_MAX, STATUSES, Status, Thresholds
from gossamer.catalog.check_definition import CheckDefinition, HttpRequest
from gossamer.catalog.check_kinds import DEFAULT_SCRIPT_TIMEOUT_S
from gossamer.catalog.check_kinds import DEFAULT_TIMEOUT_S as NETWORK_TIMEOUT_S

Kind = Literal["http", "tcp", "ttl", "script", "alias"]

# Consul's per-kind timeouts when `Timeout` is unset: 10 s for network
# probes, 30 s for scripts (agent/checks/check.go).
DEFAULT_TIMEOUT_S: dict[Kind, float] = {
    "http": NETWORK_TIMEOUT_S,
    "tcp": NETWORK_TIMEOUT_S,
    "script": DEFAULT_SCRIPT_TIMEOUT_S,
    "ttl": 0.0,
    "alias": NETWORK_TIMEOUT_S,
}


@dataclass(frozen=True)
class CheckSpec:
    """One check as the runner runs it (Consul field in brackets).

    check_id [CheckID]; kind picks the probe. interval_s [Interval] is the
    period between runs (unused by ttl). timeout_s [Timeout]: None takes the
    kind's Consul default. ttl_s [TTL] only for kind "ttl". http, method,
    header ({name: [values]}), body, tls_server_name, tls_skip_verify for
    kind "http"; tcp ("host:port") for kind "tcp"; args [Args] for kind
    "script"; alias_node ("" = this node) and alias_service ("" = the node
    itself) for kind "alias". success_before_passing,
    failures_before_critical and failures_before_warning (None: same as
    failures_before_critical) are Consul's consecutive-result thresholds.
    output_max_size [OutputMaxSize] caps the stored output in bytes (< 1
    means the 4096 default). initial_status [Status] is what the check
    reports until its first result (Consul: critical).
    """

    check_id: str
    kind: Kind
    interval_s: float = 10.0
    timeout_s: float | None = None
    ttl_s: float = 0.0
    http: HttpRequest | None = None
    tcp: str = ""
    args: tuple[str, ...] = ()
    alias_node: str = ""
    alias_service: str = ""
    success_before_passing: int = 0
    failures_before_critical: int = 0
    failures_before_warning: int | None = None
    output_max_size: int = DEFAULT_OUTPUT_MAX
    initial_status: Status = "critical"

    @property
    def timeout(self) -> float:
        """The effective timeout: the configured one, else the kind's default."""
        if self.timeout_s is not None and self.timeout_s > 0:
            return self.timeout_s
        return DEFAULT_TIMEOUT_S[self.kind]

    @property
    def max_output(self) -> int:
        """Consul treats OutputMaxSize < 1 as "use the default"."""
        return self.output_max_size if self.output_max_size >= 1 else DEFAULT_OUTPUT_MAX

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(
            self.success_before_passing,
            self.failures_before_critical,
            self.failures_before_warning,
        )

    def validate(self) -> None:
        """Refuse what the runner cannot run (registration should have caught it).

        Raises ValueError naming the check and the field.
        """
        where = f"check {self.check_id!r}"
        if self.kind == "ttl":
            if self.ttl_s <= 0:
                raise ValueError(f"{where}: a TTL check needs ttl_s > 0")
        elif self.interval_s <= 0:
            raise ValueError(f"{where}: interval_s must be > 0")
        if self.kind == "http" and self.http is None:
            raise ValueError(f"{where}: an http check needs http")
        if self.kind == "script" and not self.args:
            raise ValueError(f"{where}: a script check needs args")
        if self.initial_status not in STATUSES:
            raise ValueError(f"{where}: bad initial_status {self.initial_status!r}")


ALIAS_POLL_S = 1.0  # Consul's alias checks watch; ours poll the local state this often


def spec_from_definition(d: CheckDefinition) -> CheckSpec:
    """The runner's view of a registered check (the parser already applied Consul's rules).

    Raises ValueError when the runner could not run it, before anything is stored.
    """
    interval = d.interval_s or (ALIAS_POLL_S if d.kind == "alias" else 0.0)
    spec = CheckSpec(
        check_id=d.check_id,
        kind=d.kind,  # type: ignore[arg-type]  # the parser only produces these five kinds
        interval_s=interval,
        timeout_s=d.timeout_s or None,
        ttl_s=d.ttl_s,
        http=d.http,
        tcp=d.tcp,
        args=d.args,
        alias_node=d.alias_node,
        alias_service=d.alias_service,
        success_before_passing=d.success_before_passing,
        failures_before_critical=d.failures_before_critical,
        failures_before_warning=d.failures_before_warning or None,
        output_max_size=d.output_max_size,
        initial_status=d.status,  # type: ignore[arg-type]
    )
    spec.validate()
    return spec
