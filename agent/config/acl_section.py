"""The config section `acl:` — Consul's ACL switches and the agent's own tokens.

    acl:
      enabled: true
      default_policy: deny        # what a token may do where no rule speaks
      down_policy: extend-cache   # what to do cut off from every peer
      tokens:
        initial_management: "<a UUID you keep secret>"
        default: "<secret used for requests without a token, and for DNS>"
        agent: "<secret this agent uses for its own calls>"
      enable_token_persistence: true   # keep tokens set by PUT /v1/agent/token/<type>

Off by default: with `enabled: false` the agent behaves as it always did
(every `/v1/acl/*` call answers 401 `ACL support disabled`, like Consul).
`default_policy` defaults to `allow`, as Consul's does, so turning ACLs on
does not lock a running cluster out; production sets `deny`. The token
values are secrets: the reload diff never shows them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from gossamer.agent.config.values import Flag


class AclTokens(BaseModel):
    """`acl.tokens:` — secrets this agent is given, not created through the API."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    initial_management: str | None = None
    default: str | None = None
    agent: str | None = None


class AclConfig(BaseModel):
    """`acl:` — whether tokens are checked, and what decides when no rule does."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    enabled: Flag = False
    default_policy: Literal["allow", "deny"] = "allow"
    down_policy: Literal["allow", "deny", "extend-cache", "async-cache"] = "extend-cache"
    tokens: AclTokens = AclTokens()
    # Tokens set through PUT /v1/agent/token/<type> survive a restart (acl-tokens.json).
    enable_token_persistence: Flag = False
