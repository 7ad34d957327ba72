"""`gossamer members` and `join` show an IPv6 address that begins with a letter.

Rich reads `[fd00::2]` as a style tag: the members table showed a node on
fd00::2 (the README's IPv6 example range) as `:8301`, and `gossamer join
[fd00::2]:8301` printed `joined :8301`. `[::1]` and `[2001:db8::1]` were
shown, since a tag must begin with a letter.
"""

from __future__ import annotations

import argparse
from typing import Any

from rich.console import Console

from gossamer.agent.cli.membership import join, members


class _Client:
    def __init__(self) -> None:
        self.put_paths: list[str] = []

    def get(self, path: str) -> Any:
        if path == "/v1/agent/members":
            return [
                {"Name": "k6", "Addr": "fd00::2", "Port": 8301, "Status": 1, "Tags": {}},
                {"Name": "k7", "Addr": "fe80::1", "Port": 8301, "Status": 1, "Tags": {}},
                {"Name": "k8", "Addr": "10.0.0.8", "Port": 8301, "Status": 1, "Tags": {}},
            ]
        return {}

    def put(self, path: str) -> Any:
        self.put_paths.append(path)
        return None


def _console() -> Console:
    return Console(record=True, width=200, highlight=False, force_terminal=False)


def test_members_table_shows_ipv6_addresses_in_brackets() -> None:
    console = _console()
    args = argparse.Namespace(status=None, json=False)
    assert members(args, _Client(), console) == 0  # type: ignore[arg-type]
    text = console.export_text()
    assert "[fd00::2]:8301" in text and "[fe80::1]:8301" in text and "10.0.0.8:8301" in text


def test_join_says_the_address_it_was_given() -> None:
    console = _console()
    client = _Client()
    args = argparse.Namespace(address=["[fd00::2]:8301"])
    assert join(args, client, console) == 0  # type: ignore[arg-type]
    assert console.export_text().strip() == "joined [fd00::2]:8301"
