"""`gossamer agent` flags: argparse registration and conversion to config entries.

Flags are the top config layer, so a flag the user did not give must leave
no trace: every flag defaults to argparse.SUPPRESS (None is treated the same,
for Namespaces built by hand). argparse converts nothing; values stay as
typed and go through the same validators as file values, so `--http-port
99999` gets the file's message with source "flag --http-port". The only
conversion is digits to int, because on a command line everything is text.

A flag may set a key of a section, named with a dot (`--domain` sets
`dns.domain`); it then becomes the entry a file would give, `("dns",
{"domain": value})`, so it is checked and merged like `dns: {domain: ...}`.
Its argparse dest is the key with "_" for the dot (`dns_domain`).

`--config-file` and `--config-dir` share one list, `config_paths`, of
("file" | "dir", path) in command-line order, so files and directories are
merged in the order they were given, as Consul does.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import Any

CONFIG_PATHS_DEST = "config_paths"

# flag -> (config key, kind, help); kind is "str", "int", "list" or "bool".
# A key with a dot is a section's key.
FLAGS: dict[str, tuple[str, str, str]] = {
    "--node": ("node", "str", "node name (default: the host name)"),
    "--datacenter": ("datacenter", "str", "datacenter name (default: dc1)"),
    "--bind": ("bind", "str", "gossip and agent RPC address (default: 0.0.0.0)"),
    "--advertise": ("advertise", "str", "address peers dial (default: bind, or a private IP)"),
    "--client": ("client", "str", "HTTP and DNS address (default: 127.0.0.1)"),
    "--http-port": ("http_port", "int", "HTTP API port (default: 8500)"),
    "--dns-port": ("dns_port", "int", "DNS port (default: 8600)"),
    "--serf-port": ("serf_port", "int", "Serf LAN gossip port (default: 8301)"),
    "--rpc-port": ("rpc_port", "int", "agent RPC port (default: 8300)"),
    "--data-dir": ("data_dir", "str", "directory for agent state (required unless --dev)"),
    "--join": ("join", "list", "address to join at start, host[:port] (repeatable)"),
    "--retry-join": ("retry_join", "list", "address to join, retried (repeatable)"),
    "--retry-interval": ("retry_interval", "str", "longest wait between retries (default: 30s)"),
    "--retry-max": ("retry_max", "int", "retry-join attempts, 0 for no limit (default: 0)"),
    "--encrypt": ("encrypt", "str", "gossip encryption key, base64 of 32 bytes"),
    "--log-level": ("log_level", "str", "trace, debug, info, warn or error (default: info)"),
    "--log-json": ("log_json", "bool", "log one JSON object per line"),
    "--dev": ("dev", "bool", "development mode: local addresses, temporary data, no join"),
    "--domain": ("dns.domain", "str", "DNS domain the agent answers for (default: consul.)"),
    "--alt-domain": ("dns.alt_domain", "str", "a second DNS domain, answered like --domain"),
    "--recursor": ("dns.recursors", "list", "upstream DNS server, ip[:port] (repeatable)"),
    "--default-intention-policy": (
        "intentions.default_policy",
        "str",
        "allow or deny when no intention matches (default: allow with --dev, else deny)",
    ),
}


class _ConfigPathAction(argparse.Action):
    """Append (kind, path) to one shared list so the command-line order is kept."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        paths = list(getattr(namespace, self.dest, None) or [])
        paths.append((self.const, values))
        setattr(namespace, self.dest, paths)


def add_agent_flags(parser: argparse.ArgumentParser) -> None:
    """Register the agent's config flags on `parser` (a `gossamer agent` subparser)."""
    group = parser.add_argument_group("agent configuration")
    for flag, kind, metavar, what in (
        ("--config-file", "file", "FILE", "YAML config file (repeatable, read in order)"),
        ("--config-dir", "dir", "DIR", "directory of *.yaml/*.yml files read in name order"),
    ):
        group.add_argument(
            flag, action=_ConfigPathAction, const=kind, dest=CONFIG_PATHS_DEST,
            default=None, metavar=metavar, help=what,
        )  # fmt: skip
    for flag, (key, kind, what) in FLAGS.items():
        if kind == "bool":
            group.add_argument(
                flag, dest=_dest(key), action="store_true", default=argparse.SUPPRESS, help=what
            )
        else:
            action = "append" if kind == "list" else "store"
            group.add_argument(
                flag,
                dest=_dest(key),
                action=action,
                default=argparse.SUPPRESS,
                metavar=flag.removeprefix("--").replace("-", "_").upper(),
                help=what,
            )


def _dest(key: str) -> str:
    return key.replace(".", "_")


def flag_entries(args: argparse.Namespace) -> list[tuple[str, object, str]]:
    """(key, value, "flag --x") for each flag the user gave, in FLAGS order.

    A section's key gives (section, {sub_key: value}, "flag --x").
    """
    entries: list[tuple[str, object, str]] = []
    for flag, (key, kind, _) in FLAGS.items():
        value = getattr(args, _dest(key), None)
        if value is None or value is False:  # absent (store_true gives only True)
            continue
        if kind == "int" and isinstance(value, str):
            value = _to_int(value)
        top_key, _, sub = key.partition(".")  # top_key is key when there is no dot
        entries.append((top_key, {sub: value} if sub else value, f"flag {flag}"))
    return entries


def _to_int(text: str) -> int | str:
    """Digits become an int; anything else stays text so the validator shows it."""
    return int(text) if re.fullmatch(r"-?[0-9]+", text.strip()) else text
