"""Loading the agent config: read files, check each layer, merge, resolve.

The steps live in their own modules, called here in order: files.py reads
files and directories, entries.py checks each entry alone and merges them,
resolve.py fills defaults that depend on other keys (advertise.py picks the
address to advertise) and runs the cross-key checks.

Layers, lowest first: schema defaults <- each `--config-file`/`--config-dir`
in command-line order (a directory gives its *.yaml and *.yml files sorted by
name) <- flags. Merging follows Consul: a later scalar replaces an earlier
one, lists (join, retry_join) are appended, node_meta maps are merged key by
key. A section (`dns:`, `intentions:`) is split into its sub-keys, named with
a dot (`dns.node_ttl`), which are checked, merged and reported like top-level
keys: a later file's `dns: {only_passing: true}` keeps an earlier `dns.domain`,
and `dns.recursors` append. Every layer is checked on its own first, so a bad
value is reported against the file or flag that holds it; cross-key checks
run on the merged result and are skipped for keys that already failed (no
follow-on noise).
All problems are collected and raised together as one ConfigError.
"""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import ValidationError

from gossamer.agent.config.entries import check_entries, merge_entries
from gossamer.agent.config.errors import MERGED, ConfigError, ConfigProblem
from gossamer.agent.config.files import read_config_paths
from gossamer.agent.config.flags import flag_entries
from gossamer.agent.config.resolve import resolve
from gossamer.agent.config.schema import SECTION_KEYS, AgentConfig


def load_agent_config(
    args: argparse.Namespace,
    *,
    hostname: str | None = None,
    host_addresses: list[str] | None = None,
) -> AgentConfig:
    """Build the agent config from the parsed flags and the files they name.

    `hostname` (default node name) and `host_addresses` (candidates for
    advertise) are looked up on the host only when not given and needed.
    Reads files; raises ConfigError listing every problem.
    """
    problems: list[ConfigProblem] = []
    entries, sources = read_config_paths(getattr(args, "config_paths", None) or [], problems)
    entries += check_entries(flag_entries(args), problems)
    values, origin = merge_entries(entries)
    failed = {problem.key for problem in problems}
    resolve(values, origin, failed, problems, hostname, host_addresses)
    if problems:
        raise ConfigError(problems)
    try:
        return AgentConfig.model_validate({**values, "sources": tuple(sources)})
    except ValidationError as exc:  # a default from the host itself may be unusable
        raise ConfigError(_problems_from(exc, lambda key: origin.get(key, MERGED))) from None


def _problems_from(exc: ValidationError, source_of: Any) -> list[ConfigProblem]:
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        key = ".".join(loc[:2] if loc and loc[0] in SECTION_KEYS else loc[:1])
        problems.append(ConfigProblem(source_of(key), key, error["msg"]))
    return problems
