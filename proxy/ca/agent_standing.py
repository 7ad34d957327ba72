"""Whether an agent of the mesh holds a valid RPC identity, as the CA map shows it. Pure.

Every agent publishes its current intermediate in the replicated CA map
(`agent/<node-id>`) and every revocation is there too (`revoked/<node-id>`),
so any agent can say, for each member, without asking it:
- `revoked`: an operator revoked it; its certificates are refused;
- `not-enrolled`: it has published no intermediate (not enrolled yet, or a
  gossamer without identity);
- `untrusted`: its intermediate was signed by a root that is no longer in
  the trust bundle (it has not re-enrolled since a rotation ended);
- `expired`: its intermediate's validity has ended (it stopped renewing);
- `valid`: none of these; `not_after` is when its intermediate ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from gossamer.proxy.ca import trust
from gossamer.proxy.ca.ca_entries import CaState

VALID, REVOKED, NOT_ENROLLED, UNTRUSTED, EXPIRED = (
    "valid",
    "revoked",
    "not-enrolled",
    "untrusted",
    "expired",
)


@dataclass(frozen=True)
class Standing:
    state: str
    not_after: datetime | None = None
    detail: str = ""


def agent_standing(state: CaState, node_id: str, now_ms: int) -> Standing:
    """The standing of the agent with `node_id` (see the module docstring)."""
    revoked = state.revoked.get(node_id)
    if revoked is not None:
        return Standing(REVOKED, detail=revoked.reason)
    cert = state.agents.get(node_id)
    if cert is None:
        return Standing(NOT_ENROLLED, detail="no intermediate published")
    not_after = cert.not_valid_after_utc
    trusted = {record.root_id for record in trust.bundle(state, now_ms)}
    if trust.signed_under(cert, state) not in trusted:
        return Standing(UNTRUSTED, not_after, "its intermediate is not under a trusted root")
    if datetime.fromtimestamp(now_ms / 1000, UTC) >= not_after:
        return Standing(EXPIRED, not_after, "its intermediate has expired")
    return Standing(VALID, not_after)
