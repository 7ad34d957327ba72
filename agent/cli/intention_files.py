"""Intention files: what `intention create --file` and `intention apply` read.

A file holds intentions in YAML or JSON: one intention in Consul's API shape,
one `service-intentions` config entry, or a list mixing both (what
`gossamer intention list --json` prints is a valid file). `read_policy` turns
the parsed document into intentions, each with its place in the file, and
lists every problem at once — also a pair defined twice, which the agent
could only store once. A problem names the file, the place and the pair:
`policy.yaml: [1].Sources[0] web => api: Permissions[0].HTTP: is required`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from gossamer.agent.cli.client import UsageError
from gossamer.agent.cli.services import read_document
from gossamer.intentions.config_entry import intentions_from_document
from gossamer.intentions.model import Intention
from gossamer.intentions.validate import IntentionError

_SOURCE = re.compile(r"Sources\[(\d+)\]")


class PolicyError(ValueError):
    """A policy file with problems; `lines` are `file: where pair: field: message`."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = tuple(lines)


@dataclass(frozen=True)
class Located:
    """An intention of a file and where it was written (`[2]`, `[0].Sources[1]`, "")."""

    intention: Intention
    where: str


def load_policy(path: str) -> list[Located]:
    """The intentions of a file; UsageError if unreadable, PolicyError if invalid."""
    # YAML reads an unquoted timestamp as a datetime: back to RFC 3339 text.
    document = read_document(path, _as_text)
    if document is None:
        raise UsageError(f"{path}: is empty; expected intentions or service-intentions entries")
    located, problems = read_policy(document)
    if problems:
        raise PolicyError([f"{path}: {p}" for p in problems])
    return located


def _as_text(value: object) -> str:
    return value.isoformat() if isinstance(value, date | datetime) else str(value)


def read_policy(document: object) -> tuple[list[Located], list[str]]:
    """Intentions of a parsed document with their places, and every problem found."""
    items = document if isinstance(document, list) else [document]
    in_list = isinstance(document, list)
    located: list[Located] = []
    problems: list[str] = []
    for i, item in enumerate(items):
        where = f"[{i}]" if in_list else ""
        entry = _is_entry(item)
        try:
            found = intentions_from_document(item)
        except IntentionError as exc:
            for p in exc.problems:
                field = "" if p.field == "body" else p.field
                problems.append(_problem(item, where, entry, field, p.message))
            continue
        for j, ixn in enumerate(found):
            place = _join(where, f"Sources[{j}]") if entry else where
            located.append(Located(ixn, place))
    first: dict[tuple[str, str], str] = {}
    for loc in located:
        if loc.intention.pair in first:
            pair = pair_text(*loc.intention.pair)
            at = first[loc.intention.pair] or "above"
            problems.append(f"{_label(loc.where, pair)}: defined more than once (also at {at})")
        first.setdefault(loc.intention.pair, loc.where)
    return located, problems


def _problem(item: object, where: str, entry: bool, field: str, message: str) -> str:
    """`[1].Sources[0] web => db: Permissions[0].Action: message`."""
    raw = item if isinstance(item, dict) else {}
    if entry:
        dest = _raw_name(raw, "name")
        found = _SOURCE.match(field)
        if found is None:
            label = _label(where, f"service-intentions {dest}")
        else:
            sources = _raw_get(raw, "sources")
            index = int(found.group(1))
            source = sources[index] if isinstance(sources, list) else None
            src_raw = source if isinstance(source, dict) else {}
            where = _join(where, found.group(0))
            label = _label(where, pair_text(_raw_name(src_raw, "name"), dest))
            field = field[found.end() :].lstrip(".")
    else:
        pair = pair_text(_raw_name(raw, "sourcename"), _raw_name(raw, "destinationname"))
        label = _label(where, pair if isinstance(item, dict) else "")
    return f"{label}: {field}: {message}" if field else f"{label}: {message}"


def _is_entry(item: object) -> bool:
    return isinstance(item, dict) and any(str(k).lower() == "kind" for k in item)


def _raw_get(raw: dict[Any, Any], norm: str) -> object:
    """A key of a raw object in any case or snake_case, as the codec reads it."""
    return next((v for k, v in raw.items() if str(k).replace("_", "").lower() == norm), None)


def _raw_name(raw: dict[Any, Any], norm: str) -> str:
    value = _raw_get(raw, norm)
    return value if isinstance(value, str) and value else "?"


def pair_text(source: str, destination: str) -> str:
    return f"{source} => {destination}"


def _join(where: str, part: str) -> str:
    return f"{where}.{part}" if where else part


def _label(where: str, what: str) -> str:
    return " ".join(x for x in (where, what) if x) or "document"


def print_policy_error(exc: PolicyError) -> None:
    n = len(exc.lines)
    print(f"Error: {n} problem{'' if n == 1 else 's'}, nothing changed:", file=sys.stderr)
    for line in exc.lines:
        print(f"  {line}", file=sys.stderr)
