"""Consul's one-dash spelling of long flags (`-http-addr`, `-dev`), read as ours (`--`).

Consul's CLI is Go's `flag` package: `consul agent -dev -http-port 8501`,
`consul intention check -http-addr=10.0.0.5:8500 web db`. argparse reads
`-http-addr` as `-h ttp-addr` and answers with an error about `--help`, which
tells a Consul user nothing. Before parsing, each token `-NAME` or
`-NAME=VALUE` for which the (sub)command being parsed has `--NAME` and no
option spelled `-NAME` of its own is written `--NAME`. Pure: no I/O.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def long_spelling(argv: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """`argv` with Consul's one-dash long flags written with two, for `parser` and the
    subcommands named in it. Everything after `--` is left as it is."""
    out: list[str] = []
    current = parser
    for i, token in enumerate(argv):
        if token == "--":
            out.extend(argv[i:])
            break
        sub = _subcommands(current)
        if token in sub:
            current = sub[token]
            out.append(token)
            continue
        out.append(_respelled(token, current))
    return out


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _respelled(token: str, parser: argparse.ArgumentParser) -> str:
    if not token.startswith("-") or token.startswith("--") or len(token) < 3:
        return token
    name, eq, value = token.partition("=")
    known = parser._option_string_actions
    if name in known or "-" + name not in known:
        return token
    return "-" + name + eq + value
