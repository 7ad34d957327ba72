"""How bad each health status is, and what the agent's health endpoint answers for it. Pure.

One table for every place that ranks statuses (the check core's worst-of,
alias checks, `/v1/agent/health/service`, DNS filtering, the CLI), so they
cannot disagree. Rules this module keeps:
- passing < warning < critical: the worst of a set of checks is the one
  with the highest rank, and passing when there are none (Consul's
  aggregated status).
- "maintenance" is what a check in maintenance mode reports through the
  agent; it ranks above critical, so it is never masked by a lesser status.
  Callers that meet a status outside this table decide themselves how to
  rank it (all of them today treat it as critical).
- The agent health endpoint answers 200 for passing, 429 for warning and 503
  for critical or maintenance, as Consul does.
"""

from __future__ import annotations

from typing import Final

SEVERITY: Final[dict[str, int]] = {"passing": 0, "warning": 1, "critical": 2}
"""The three check statuses by rank."""

HEALTH_SEVERITY: Final[dict[str, int]] = SEVERITY | {"maintenance": 3}
"""Every status a check on the agent can report, maintenance included, by rank."""

HEALTH_HTTP: Final[dict[str, int]] = {
    "passing": 200,
    "warning": 429,
    "critical": 503,
    "maintenance": 503,
}
"""The HTTP status of `/v1/agent/health/service/...` for the worst status found."""
