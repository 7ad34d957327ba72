"""Consul's ACL rule language: the rules of one policy, read from HCL or JSON.

Rules this module keeps (Consul's `acl/policy.go`):
1. Segment rules name a resource: `service "web" {...}` is exact,
   `service_prefix "we" {...}` covers every name starting with "we"; the
   empty prefix covers everything. `policy` is `read`, `write` or `deny`
   (`list` too for keys); service rules may add `intentions`.
2. Scalar rules (`operator`, `acl`, `mesh`, `keyring`, `peering`) are a
   policy word alone: `operator = "read"`.
3. Every problem is reported, with its position; unknown rule types and
   fields are problems, not silently dropped, so a typo cannot widen or
   narrow access unnoticed.
Rule types Consul has but gossamer does not serve (`key`, `session`,
`event`, `query`) are accepted so Consul policies paste unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from gossamer.agent.acl.hcl_reader import Item, read_hcl
from gossamer.agent.acl.problems import RuleProblem, RulesInvalid


class Access(IntEnum):
    """A policy word; higher grants more (`write` implies `read`)."""

    DENY = 0
    LIST = 1
    READ = 2
    WRITE = 3


WORDS = {"deny": Access.DENY, "list": Access.LIST, "read": Access.READ, "write": Access.WRITE}
SEGMENT_KINDS = frozenset(("service", "node", "agent", "key", "session", "event", "query"))
SCALAR_KINDS = frozenset(("operator", "acl", "mesh", "keyring", "peering"))
_FIELDS = {"service": frozenset(("policy", "intentions"))}
_PLAIN_FIELDS = frozenset(("policy",))
Field = tuple[str, object, str, str]  # name, value, its position, the value's position


@dataclass(frozen=True)
class Rule:
    """One segment rule: `kind` on `segment`, exact or as a prefix."""

    kind: str
    segment: str
    prefix: bool
    policy: Access | None
    intentions: Access | None = None


@dataclass(frozen=True)
class Rules:
    """The parsed rules of one policy."""

    segments: tuple[Rule, ...] = ()
    scalars: tuple[tuple[str, Access], ...] = ()


def parse_rules(text: str) -> Rules:
    """Rules from HCL or JSON text (JSON if it starts with `{`); raises RulesInvalid."""
    if text.lstrip().startswith("{"):
        return _from_json(text)
    items, problems = read_hcl(text)
    rules = _from_items(items, problems)
    if problems:
        raise RulesInvalid(problems)
    return rules


def _word(value: object, kind: str, position: str, problems: list[RuleProblem]) -> Access | None:
    if isinstance(value, str) and value in WORDS and (value != "list" or kind == "key"):
        return WORDS[value]
    allowed = '"read", "write" or "deny"' + (' or "list"' if kind == "key" else "")
    problems.append(RuleProblem(position, f"{json.dumps(value)} is not a policy; use {allowed}"))
    return None


def _kind_of(name: str) -> tuple[str, bool] | None:
    kind, prefix = (name[: -len("_prefix")], True) if name.endswith("_prefix") else (name, False)
    return (kind, prefix) if kind in SEGMENT_KINDS else None


class _Collector:
    """Gathers rules and problems; duplicates are problems (which one would win?)."""

    def __init__(self, problems: list[RuleProblem]) -> None:
        self.problems = problems
        self.syntax_problems = len(problems)  # a block emptied by a typo is not "no policy"
        self.segments: dict[tuple[str, str, bool], Rule] = {}
        self.scalars: dict[str, Access] = {}

    def scalar(self, name: str, value: object, position: str) -> None:
        if name in self.scalars:
            self.problems.append(RuleProblem(position, f"{name} is set twice"))
        word = _word(value, name, position, self.problems)
        if word is not None:
            self.scalars[name] = word

    def segment(self, name: str, label: str, fields: Iterable[Field], at: str) -> None:
        kind, prefix = _kind_of(name) or (name, False)
        known = _FIELDS.get(kind, _PLAIN_FIELDS)
        words: dict[str, Access | None] = {}
        seen = False
        for field_name, value, position, value_position in fields:
            seen = True
            if field_name not in known:
                listed = ", ".join(sorted(known))
                self.problems.append(
                    RuleProblem(position, f"{name} has no field {field_name!r} (fields: {listed})")
                )
                continue
            words[field_name] = _word(value, kind, value_position, self.problems)
        if not seen and not self.syntax_problems:
            self.problems.append(RuleProblem(at, f'{name} "{label}" sets no policy'))
        key = (kind, label, prefix)
        if key in self.segments:
            self.problems.append(RuleProblem(at, f'{name} "{label}" is set twice'))
        self.segments[key] = Rule(kind, label, prefix, words.get("policy"), words.get("intentions"))

    def rules(self) -> Rules:
        segments = tuple(
            sorted(self.segments.values(), key=lambda r: (r.kind, r.segment, r.prefix))
        )
        return Rules(segments, tuple(sorted(self.scalars.items())))


def _unknown(name: str, position: str) -> RuleProblem:
    known = ", ".join(sorted([*SEGMENT_KINDS, *(k + "_prefix" for k in SEGMENT_KINDS)]))
    return RuleProblem(
        position,
        f"unknown rule type {name!r} (known: {known}, and scalars "
        f"{', '.join(sorted(SCALAR_KINDS))})",
    )


def _from_items(items: list[Item], problems: list[RuleProblem]) -> Rules:
    out = _Collector(problems)
    for item in items:
        if item.name in SCALAR_KINDS and item.value is not None:
            out.scalar(item.name, item.value, item.value_position)
        elif _kind_of(item.name) is None:
            problems.append(_unknown(item.name, item.position))
        elif item.body is None or len(item.labels) != 1:
            problems.append(
                RuleProblem(
                    item.position, f'{item.name} needs one name: {item.name} "NAME" {{...}}'
                )
            )
        else:
            fields = [
                (f.name, f.value if f.value is not None else {}, f.position, f.value_position)
                for f in item.body
            ]
            out.segment(item.name, item.labels[0], fields, item.position)
    return out.rules()


def _from_json(text: str) -> Rules:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RulesInvalid(
            [RuleProblem(f"line {exc.lineno}, column {exc.colno}", exc.msg)]
        ) from exc
    problems: list[RuleProblem] = []
    out = _Collector(problems)
    if not isinstance(document, dict):
        raise RulesInvalid([RuleProblem("(top)", "rules must be a JSON object")])
    for name, value in document.items():
        if name in SCALAR_KINDS:
            out.scalar(name, value, name)
        elif _kind_of(name) is None:
            problems.append(_unknown(name, name))
        elif not isinstance(value, dict):
            problems.append(RuleProblem(name, 'must be an object: {"NAME": {"policy": ...}}'))
        else:
            for label, body in value.items():
                at = f"{name}.{label}"
                if not isinstance(body, dict):
                    problems.append(RuleProblem(at, 'must be an object: {"policy": ...}'))
                    continue
                fields = [(k, v, f"{at}.{k}", f"{at}.{k}") for k, v in body.items()]
                out.segment(name, label, fields, at)
    if problems:
        raise RulesInvalid(problems)
    return out.rules()
