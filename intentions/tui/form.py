"""The create/edit form without a terminal: what was typed, as an intention, and its problems.

Rules this module keeps:
- What was typed is a `Draft` of plain text; `to_intention` turns it into
  an `Intention` and `problems` validates it with the API's own rules
  (intentions/validate.py), so nothing that the agent would refuse is sent.
- Every problem lands on one slot of the form (`slot_of`): the field it
  names in Consul's JSON (`SourceName` -> source, `Permissions[1].HTTP...`
  -> permissions, with "permission 2:" in front). The agent's own 400 text
  (`Invalid intention:` then `  Field: message` lines) is read back the same
  way, so an API refusal shows next to the field it names; text it cannot
  place goes to the `general` slot.
- A permission's headers are typed one per line: `[!]Name KIND [value]`,
  KIND one of present, exact, prefix, suffix, contains, regex; `!` inverts
  and a KIND ending in `/i` ignores case (Consul's IgnoreCase: `x-env
  exact/i prod`; on present or regex it is typed as given and validation
  refuses it, as Consul does, so no stored flag is ever dropped). Methods
  are typed comma- or space-separated. A line that does not parse is a
  problem of the permissions slot, never dropped.
- The pair is the intention's identity: editing keeps it (the form locks
  both names), so an edit never turns into a create of another pair.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from gossamer.intentions.model import HeaderMatch, HTTPMatch, Intention, Permission
from gossamer.intentions.validate import Problem, validate

Kind = Literal["allow", "deny", "l7"]
PathKind = Literal["exact", "prefix", "regex"]
SLOTS = ("source", "destination", "action", "description", "permissions", "general")
HEADER_KINDS = ("present", "exact", "prefix", "suffix", "contains", "regex")
IGNORE_CASE = "/i"  # after a KIND: compare without case (IgnoreCase)
_SLOT_FIELDS = {
    "SourceName": "source",
    "DestinationName": "destination",
    "Action": "action",
    "Description": "description",
    "Permissions": "permissions",
}
_PERMISSION = re.compile(r"Permissions\[(\d+)\]\.?(.*)")


@dataclass(frozen=True)
class PermissionDraft:
    """One L7 permission as typed."""

    action: Literal["allow", "deny"] = "allow"
    path_kind: PathKind = "prefix"
    path: str = ""
    methods: str = ""
    headers: str = ""  # one `[!]Name KIND [value]` per line


@dataclass(frozen=True)
class Draft:
    source: str = ""
    destination: str = ""
    kind: Kind = "allow"
    description: str = ""
    permissions: tuple[PermissionDraft, ...] = ()
    meta: tuple[tuple[str, str], ...] = field(default=())  # kept as it was, not edited here


def draft_of(ixn: Intention) -> Draft:
    """The form filled from a stored intention."""
    kind: Kind = "l7" if ixn.permissions else ("deny" if ixn.action == "deny" else "allow")
    perms = tuple(_permission_draft(p) for p in ixn.permissions)
    return Draft(
        ixn.source, ixn.destination, kind, ixn.description, perms, tuple(sorted(ixn.meta.items()))
    )


def _permission_draft(perm: Permission) -> PermissionDraft:
    http = perm.http or HTTPMatch()
    kind: PathKind = "prefix"
    path = http.path_prefix
    if http.path_exact:
        kind, path = "exact", http.path_exact
    elif http.path_regex:
        kind, path = "regex", http.path_regex
    action: Literal["allow", "deny"] = "deny" if perm.action == "deny" else "allow"
    lines = "\n".join(header_line(h) for h in http.headers)
    return PermissionDraft(action, kind, path, ", ".join(http.methods), lines)


def header_line(h: HeaderMatch) -> str:
    """A header condition as the form types it: `!x-env exact prod`."""
    kind, value = next(
        (
            (k, v)
            for k, v in (
                ("exact", h.exact),
                ("prefix", h.prefix),
                ("suffix", h.suffix),
                ("contains", h.contains),
                ("regex", h.regex),
            )
            if v
        ),
        ("present", ""),
    )
    kind += IGNORE_CASE * h.ignore_case
    return " ".join(x for x in ("!" * h.invert + h.name, kind, value) if x)


def parse_methods(text: str) -> tuple[str, ...]:
    """`get, POST` -> ("GET", "POST"); validation says which are not methods."""
    return tuple(m.upper() for m in re.split(r"[\s,]+", text.strip()) if m)


def parse_headers(text: str) -> tuple[tuple[HeaderMatch, ...], list[str]]:
    """The header lines of a permission, and a message for each line that does not parse."""
    out: list[HeaderMatch] = []
    bad: list[str] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = line.split(None, 2)
        name, invert = parts[0].removeprefix("!"), parts[0].startswith("!")
        kind = parts[1].lower() if len(parts) > 1 else ""
        ignore_case = kind.endswith(IGNORE_CASE)
        kind = kind.removesuffix(IGNORE_CASE)
        value = parts[2] if len(parts) > 2 else ""
        if kind not in HEADER_KINDS:
            bad.append(
                f"header line {n}: expected `Name KIND [value]`, KIND one of "
                f"{', '.join(HEADER_KINDS)} (`/i` after it ignores case); got {line!r}"
            )
        elif (kind == "present") != (value == ""):
            need = "takes no value" if kind == "present" else "needs a value"
            bad.append(f"header line {n}: {kind} {need}")
        else:
            out.append(
                HeaderMatch(
                    name,
                    present=kind == "present",
                    invert=invert,
                    ignore_case=ignore_case,
                    **({kind: value} if kind != "present" else {}),
                )
            )
    return tuple(out), bad


def to_permission(p: PermissionDraft) -> tuple[Permission, list[str]]:
    headers, bad = parse_headers(p.headers)
    path = p.path.strip()
    http = HTTPMatch(
        path_exact=path if p.path_kind == "exact" else "",
        path_prefix=path if p.path_kind == "prefix" else "",
        path_regex=path if p.path_kind == "regex" else "",
        methods=parse_methods(p.methods),
        headers=headers,
    )
    return Permission(p.action, http), bad


def to_intention(d: Draft) -> tuple[Intention, list[Problem]]:
    """The intention a draft describes, and problems of lines that did not parse."""
    perms: list[Permission] = []
    bad: list[Problem] = []
    for i, p in enumerate(d.permissions if d.kind == "l7" else ()):
        perm, lines = to_permission(p)
        perms.append(perm)
        bad += [Problem(f"Permissions[{i}]", line) for line in lines]
    action = None if d.kind == "l7" else d.kind
    ixn = Intention(
        d.source.strip(),
        d.destination.strip(),
        action,
        tuple(perms),
        description=d.description,
        meta=dict(d.meta),
    )
    return ixn, bad


def problems(d: Draft) -> list[Problem]:
    """Everything wrong with a draft, by the API's rules; [] when it may be written."""
    ixn, bad = to_intention(d)
    found = bad + validate(ixn)
    if d.kind == "l7" and not d.permissions:
        found = [p for p in found if p.field != "Action"]
        found.append(Problem("Permissions", "add at least one permission (a), or pick allow/deny"))
    return found


def slot_of(problem: Problem) -> tuple[str, str]:
    """(form slot, message to show there) for a problem named in Consul's field terms."""
    if not problem.field:
        return "general", problem.message
    found = _PERMISSION.fullmatch(problem.field)
    if found:
        where = found.group(2)
        text = f"permission {int(found.group(1)) + 1}: " + (f"{where}: " if where else "")
        return "permissions", text + problem.message
    slot = _SLOT_FIELDS.get(problem.field.split(".")[0].split("[")[0])
    if slot is None:
        return "general", str(problem)
    return slot, problem.message


def by_slot(found: Sequence[Problem]) -> dict[str, list[str]]:
    """Messages grouped by form slot, in the order found."""
    out: dict[str, list[str]] = {}
    for p in found:
        slot, text = slot_of(p)
        out.setdefault(slot, []).append(text)
    return out


def api_problems(text: str) -> list[Problem]:
    """The problems in an agent's 400 body; one `general` problem if it lists none."""
    lines = text.strip().splitlines()
    if lines and lines[0].startswith("Invalid ") and lines[0].endswith(":"):
        out = []
        for line in lines[1:]:
            name, sep, message = line.strip().partition(": ")
            out.append(Problem(name, message) if sep else Problem("", line.strip()))
        if out:
            return out
    return [Problem("", text.strip() or "the agent refused the write")]


def moved(
    items: tuple[PermissionDraft, ...], index: int, delta: int
) -> tuple[int, tuple[PermissionDraft, ...]]:
    """Permissions with the one at `index` moved by `delta` (order decides); its new index."""
    target = index + delta
    if not (0 <= index < len(items) and 0 <= target < len(items)):
        return index, items
    lst = list(items)
    lst[index], lst[target] = lst[target], lst[index]
    return target, tuple(lst)


def with_kind(d: Draft, kind: Kind) -> Draft:
    return replace(d, kind=kind)


def drops_permissions(before: Draft, kind: Kind) -> bool:
    """Whether switching to `kind` would throw away typed permissions (ask first)."""
    return before.kind == "l7" and kind != "l7" and bool(before.permissions)
