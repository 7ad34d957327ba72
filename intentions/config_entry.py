"""Consul's `service-intentions` config entry <-> intentions, and policy files.

Since Consul 1.9 intentions are stored as one config entry per destination:
`{Kind: service-intentions, Name: <destination>, Sources: [{Name, Action |
Permissions, Description, ...}], Meta}`. Policy files may hold that shape
or the flat intention shape, so `intentions_from_document` accepts either,
alone or in a list.

Mapping rules (Consul's `ToIntention` / `ToConfigEntry`): the entry's
`Meta` is every source's meta unless a source carries `LegacyMeta`;
`LegacyID`, `LegacyCreateTime` and `LegacyUpdateTime` carry an intention's
ID and timestamps; the entry's indexes apply to all its sources. Problems
are reported at the entry's own paths (`Sources[1].Permissions[0].Action`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from gossamer.intentions.codec import (
    DEFAULT_NS,
    SOURCE_TYPE,
    Fields,
    intention_from_json,
    join,
    merge_problems,
    permissions_from_json,
    permissions_to_json,
)
from gossamer.intentions.model import Intention
from gossamer.intentions.validate import IntentionError, Problem, shown, validate

KIND = "service-intentions"
ENTRY_FIELDS = ("Kind", "Name", "Sources", "Meta", "Namespace", "Partition", "JWT",
                "CreateIndex", "ModifyIndex", "Hash")  # fmt: skip
SOURCE_FIELDS = (
    "Name", "Action", "Permissions", "Precedence", "Type", "Description", "LegacyID",
    "LegacyMeta", "LegacyCreateTime", "LegacyUpdateTime", "Namespace", "Partition", "Peer",
    "SamenessGroup",
)  # fmt: skip
_NS_WHY = 'must be "default" (namespaces and partitions are Enterprise)'


def _renamed(problem: Problem, entry: str, src: str, legacy_meta: bool) -> Problem:
    """A validation problem of the flat shape, moved to its place in the entry."""
    head, sep, rest = problem.field.partition(".")
    base, bracket, index = head.partition("[")
    fields = {
        "SourceName": f"{src}.Name", "DestinationName": join(entry, "Name"),
        "Action": f"{src}.Action", "Permissions": f"{src}.Permissions",
        "Description": f"{src}.Description", "ID": f"{src}.LegacyID",
        "CreatedAt": f"{src}.LegacyCreateTime", "UpdatedAt": f"{src}.LegacyUpdateTime",
        "Meta": f"{src}.LegacyMeta" if legacy_meta else join(entry, "Meta"),
        "CreateIndex": join(entry, "CreateIndex"), "ModifyIndex": join(entry, "ModifyIndex"),
    }  # fmt: skip
    moved = fields.get(base, f"{src}.{base}") + bracket + index + sep + rest
    return Problem(moved, problem.message)


def config_entry_from_json(obj: object, path: str = "") -> tuple[Intention, ...]:
    """The intentions of one `service-intentions` entry, or IntentionError."""
    out: list[Problem] = []
    e = Fields(obj, path, ENTRY_FIELDS, out)
    kind = e.text("Kind")
    if kind.lower() != KIND:
        out.append(Problem(join(path, "Kind"), f'must be "{KIND}", got {shown(kind)}'))
    for ns in ("Namespace", "Partition"):
        e.only(ns, (DEFAULT_NS,), _NS_WHY)
    e.unsupported("JWT", "JWT requirements are not supported by gossamer")
    entry = Intention(
        source="", destination=e.text("Name"), meta=e.meta("Meta"),
        create_index=e.number("CreateIndex"), modify_index=e.number("ModifyIndex"),
    )  # fmt: skip
    if isinstance(obj, dict) and e.values.get("Sources") in (None, []):  # (Consul's rule)
        out.append(Problem(join(path, "Sources"), "at least one source is required"))
    checked: list[Problem] = []
    intentions: list[Intention] = []
    seen: set[str] = set()
    for i, raw in enumerate(e.array("Sources")):
        src = f"{join(path, 'Sources')}[{i}]"
        ixn, legacy_meta = _source_intention(Fields(raw, src, SOURCE_FIELDS, out), entry)
        if ixn.source and ixn.source in seen:
            out.append(Problem(f"{src}.Name", f"defines {shown(ixn.source)} more than once"))
        seen.add(ixn.source)
        checked += [_renamed(p, path, src, legacy_meta) for p in validate(ixn)]
        intentions.append(ixn)
    problems = merge_problems(out, list(dict.fromkeys(checked)))
    if problems:
        raise IntentionError(problems)
    return tuple(intentions)


def _source_intention(s: Fields, entry: Intention) -> tuple[Intention, bool]:
    """One source of an entry as an intention, and whether it carries its own `LegacyMeta`.

    `entry` holds what the entry gives every source: the destination, the
    shared meta and the indexes.
    """
    for ns in ("Namespace", "Partition"):
        s.only(ns, (DEFAULT_NS,), _NS_WHY)
    s.only("Type", (SOURCE_TYPE,), 'must be "consul"')
    s.unsupported("Peer", "cluster peering is not supported by gossamer")
    s.unsupported("SamenessGroup", "sameness groups are not supported by gossamer")
    s.number("Precedence")
    legacy_meta = s.has("LegacyMeta")
    ixn = Intention(
        source=s.text("Name"), destination=entry.destination, action=s.text("Action") or None,
        permissions=permissions_from_json(s, "Permissions"), id=s.text("LegacyID"),
        description=s.text("Description"),
        meta=s.meta("LegacyMeta") if legacy_meta else dict(entry.meta),
        created_at=s.timestamp("LegacyCreateTime"), updated_at=s.timestamp("LegacyUpdateTime"),
        create_index=entry.create_index, modify_index=entry.modify_index,
    )  # fmt: skip
    return ixn, legacy_meta


def is_config_entry(body: object) -> bool:
    """Whether a `/v1/config` body (or an entry file) is a `service-intentions` entry: its
    `Kind` in any spelling of the key (`Kind`, `kind`), the value in any case."""
    if not isinstance(body, dict):
        return False
    kind = next((v for k, v in body.items()
                 if isinstance(k, str) and k.replace("_", "").lower() == "kind"), None)  # fmt: skip
    return isinstance(kind, str) and kind.lower() == KIND


def config_entry_to_json(intentions: Sequence[Intention]) -> dict[str, Any]:
    """One `service-intentions` entry holding `intentions` (one destination, ≥ 1).

    Sources are sorted as Consul stores them: precedence descending, then by
    name. Meta shared by every source goes to the entry; otherwise each
    source with meta gets `LegacyMeta`, so nothing is lost.
    """
    if not intentions or len({i.destination for i in intentions}) != 1:
        raise ValueError("a config entry holds intentions of exactly one destination")
    metas = [dict(i.meta) for i in intentions]
    shared = all(m == metas[0] for m in metas)
    sources = []
    for ixn in sorted(intentions, key=lambda i: (-i.precedence, i.source)):
        src: dict[str, Any] = {"Name": ixn.source}
        if ixn.permissions:
            src["Permissions"] = permissions_to_json(ixn.permissions)
        else:
            src["Action"] = ixn.action or ""
        src["Precedence"] = ixn.precedence
        if ixn.id:
            src["LegacyID"] = ixn.id
        src["Type"] = SOURCE_TYPE
        if ixn.description:
            src["Description"] = ixn.description
        if not shared and ixn.meta:
            src["LegacyMeta"] = dict(ixn.meta)
        if ixn.created_at:
            src["LegacyCreateTime"] = ixn.created_at
        if ixn.updated_at:
            src["LegacyUpdateTime"] = ixn.updated_at
        sources.append(src)
    entry: dict[str, Any] = {"Kind": KIND, "Name": intentions[0].destination, "Sources": sources}
    if shared and metas[0]:
        entry["Meta"] = metas[0]
    entry["CreateIndex"] = min(i.create_index for i in intentions)
    entry["ModifyIndex"] = max(i.modify_index for i in intentions)
    return entry


def config_entries_to_json(intentions: Iterable[Intention]) -> list[dict[str, Any]]:
    """One entry per destination, sorted by destination name."""
    by_dest: dict[str, list[Intention]] = {}
    for ixn in intentions:
        by_dest.setdefault(ixn.destination, []).append(ixn)
    return [config_entry_to_json(by_dest[d]) for d in sorted(by_dest)]


def intentions_from_document(obj: object) -> tuple[Intention, ...]:
    """Intentions from a policy file's JSON/YAML value, or IntentionError.

    Accepts an intention, a `service-intentions` entry (told apart by its
    `Kind` key), or a list mixing both; every problem of every item is
    reported, prefixed with the item's index in a list.
    """
    items = obj if isinstance(obj, list) else [obj]
    prefix = isinstance(obj, list)
    problems: list[Problem] = []
    out: list[Intention] = []
    for i, item in enumerate(items):
        path = f"[{i}]" if prefix else ""
        is_entry = _entry(item)
        try:
            if is_entry:
                out.extend(config_entry_from_json(item, path))
            else:
                out.append(intention_from_json(item))
        except IntentionError as exc:
            problems += exc.problems if not path or is_entry else _prefixed(exc, path)
    if problems:
        raise IntentionError(problems)
    return tuple(out)


def _entry(item: object) -> bool:
    return isinstance(item, dict) and any(str(k).lower() == "kind" for k in item)


def _prefixed(exc: IntentionError, path: str) -> list[Problem]:
    return [Problem(path if p.field == "body" else f"{path}.{p.field}", p.message)
            for p in exc.problems]  # fmt: skip
