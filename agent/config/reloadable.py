"""What a reload may change, and how a change is shown in the log.

RELOADABLE_KEYS are the keys a running agent takes on SIGHUP (the comment
below says why each can change live); every other key is logged as
"(needs restart)". `diff_configs` names each changed key, a section's
changed sub-keys one by one, and never shows the gossip key.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel

from gossamer.agent.config.schema import CONFIG_KEYS, SECTION_KEYS, AgentConfig
from gossamer.agent.config.sections import SECTIONS, format_duration

# Keys a running agent takes on SIGHUP; the agent swaps the whole config and
# applies these. Why each one can change live:
#   log_level, log_json: the log handler is replaced in place.
#   node_meta: re-sent as serf tags and to the catalog (Consul reloads it too).
#   join: the agent tries newly listed addresses once; membership lives in
#     gossip, so removing an address changes nothing.
#   retry_join, retry_interval, retry_max: the retry-join task is restarted.
#   leave_on_terminate: read when the terminate signal arrives.
#   services, checks: registered again; ones no longer listed are removed.
#   intentions: the default policy is read at each decision; a change wakes the
#     intentions match watchers, whose answer carries it (proxies apply it live).
# Everything else needs a restart: node and datacenter are the agent's
# identity in gossip and the catalog; bind, advertise, client and the ports
# are bound sockets and serf's arguments; data_dir holds open state; encrypt
# only seeds the keyring on first start (rotate keys with `gossamer keyring`);
# join_token and test_leaf_cert_ttl are read by the identity at start;
# rejoin_after_leave is read at start; dev changes every default; the dns
# server is set up at start.
RELOADABLE_KEYS: frozenset[str] = frozenset(
    {"log_level", "log_json", "node_meta", "join", "retry_join", "retry_interval",
     "retry_max", "leave_on_terminate", "services", "checks", "intentions"}
)  # fmt: skip


def diff_configs(old: AgentConfig, new: AgentConfig) -> list[str]:
    """One line per changed key, in schema order, for the SIGHUP log.

    A changed section shows each changed sub-key (`dns.only_passing: false ->
    true`). Keys outside RELOADABLE_KEYS end with "(needs restart)"; the
    encrypt key is never shown, only that it changed.
    """
    lines = []
    for key in CONFIG_KEYS:
        restart = "" if key in RELOADABLE_KEYS else " (needs restart)"
        for name, before, after in _changes(key, getattr(old, key), getattr(new, key)):
            lines.append(f"{name}: {_shown(name, before)} -> {_shown(name, after)}{restart}")
    return lines


def _changes(key: str, before: object, after: object) -> list[tuple[str, object, object]]:
    if key in SECTIONS and isinstance(before, BaseModel) and isinstance(after, BaseModel):
        pairs = ((sub, getattr(before, sub), getattr(after, sub)) for sub in SECTION_KEYS[key])
        return [(f"{key}.{sub}", b, a) for sub, b, a in pairs if b != a]
    return [(key, before, after)] if before != after else []


def _shown(key: str, value: object) -> str:
    if value is None:
        return "(unset)"
    if key in ("services", "checks") and isinstance(value, tuple):
        return f"{len(value)} definitions"
    if key in ("encrypt", "join_token", "acl.tokens") or key.startswith("connect."):
        return "(secret)"
    if isinstance(value, timedelta):
        return format_duration(value)
    return json.dumps(value, sort_keys=True, default=_plain)


def _plain(value: object) -> object:
    """JSON for what json.dumps does not know (tuples it shows as lists itself)."""
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot show a {type(value).__name__}")
