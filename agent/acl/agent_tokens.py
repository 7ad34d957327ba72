"""The agent's own tokens, as `PUT /v1/agent/token/<type>` sets them at runtime. Pure.

Consul's types, with the names older Consul versions and clients still send:

    default                            requests without a token, and DNS
    agent                              this agent's own calls
    agent_recovery (agent_master)      Consul's break-glass token for agent endpoints
    replication                        Consul servers' ACL replication
    config_file_service_registration   services defined in config files

`default` and `agent` are also config keys (`acl.tokens.*`). A token set
through the API wins over the config's until it is set again (an empty
secret clears it, and the config's value applies once more), as Consul's
runtime tokens do; with `acl.enable_token_persistence` they are kept in
`<data_dir>/acl-tokens.json` across restarts. gossamer has no server tier,
so `replication` is accepted and kept but changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

TYPES = ("default", "agent", "agent_recovery", "replication", "config_file_service_registration")
LEGACY = {
    "agent_master": "agent_recovery",
    "acl_token": "default",
    "acl_agent_token": "agent",
    "acl_agent_master_token": "agent_recovery",
    "acl_replication_token": "replication",
}


def token_type(name: str) -> str | None:
    """The canonical type for a path segment, or None when Consul knows no such token."""
    return name if name in TYPES else LEGACY.get(name)


def effective(kind: str, set_by_api: Mapping[str, str], configured: Mapping[str, object]) -> str:
    """The secret in use for `kind`: the API's if one was set, else the config's ("" for none)."""
    if kind in set_by_api:
        return set_by_api[kind]
    value = configured.get(kind)
    return value if isinstance(value, str) else ""


def with_token(set_by_api: Mapping[str, str], kind: str, secret: str) -> dict[str, str]:
    """The API's tokens after setting `kind`; an empty secret clears it back to the config's."""
    tokens = dict(set_by_api)
    if secret:
        tokens[kind] = secret
    else:
        tokens.pop(kind, None)
    return tokens


def persisted(raw: object) -> dict[str, str]:
    """The tokens of a persisted file's JSON, ignoring what is not a known type and a string."""
    if not isinstance(raw, dict):
        return {}
    return {k: v for k, v in raw.items() if k in TYPES and isinstance(v, str) and v}
