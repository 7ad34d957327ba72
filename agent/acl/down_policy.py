"""`acl.down_policy`: what an agent cut off from every peer does with tokens.

Without a server tier every agent already holds every token, so being cut
off never makes a token unknown; what it changes is that revocations made
elsewhere cannot arrive. The policy says how much to trust the last copy:
- `extend-cache` and `async-cache` (Consul's default): keep deciding from
  it, as if connected;
- `deny`: refuse everything but the locally configured initial management
  token (so an operator can still get in);
- `allow`: allow everything but ACL management (Consul's allow-all).
"Cut off" is the agent's own member table: at least one other member, and
none of them alive (serf marks peers failed within seconds of a partition).
"""

from __future__ import annotations

from collections.abc import Iterable

from gossamer.agent.acl.authorize import Authorizer
from gossamer.agent.acl.resolve import Identity


def cut_off(self_name: str, statuses: Iterable[tuple[str, str]]) -> bool:
    """Whether no other member is alive, when there are others at all."""
    others = [status for name, status in statuses if name != self_name and status != "left"]
    return bool(others) and "alive" not in others


def while_cut_off(identity: Identity, down_policy: str, management_hash: str | None) -> Identity:
    """The identity to use while cut off from every peer."""
    if down_policy == "deny":
        if identity.token is not None and identity.token.secret_hash == management_hash:
            return identity
        return Identity(identity.accessor, Authorizer([], default_allow=False), identity.token)
    if down_policy == "allow":
        return Identity(identity.accessor, Authorizer([], default_allow=True), identity.token)
    return identity
