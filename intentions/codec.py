"""Intentions <-> Consul's JSON: `/v1/connect/intentions` bodies and responses.

Reading is forgiving about spelling and strict about content, like Consul's
decoders: a key matches its field in any case and in snake_case
(`PathPrefix`, `pathprefix`, `path_prefix`); JSON null means "absent", as Go
decodes it. Everything else wrong — an unknown key (a typo such as
`PathPrefx` would otherwise silently widen a rule), a wrong type, a
namespace other than `default` — is a `Problem`, and `intention_from_json`
raises one `IntentionError` with the parse and validation problems
together. No other exception escapes, whatever JSON comes in.

Writing produces exactly what Consul's API returns (its struct order and
omitempty tags): `ID`, `CreatedAt`, `UpdatedAt` omitted when unset (the
`/exact` upsert does not assign them), `Action` omitted on L7 intentions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gossamer.intentions.model import HeaderMatch, HTTPMatch, Intention, Permission
from gossamer.intentions.validate import IntentionError, Problem, shown, validate

DEFAULT_NS = "default"
SOURCE_TYPE = "consul"
GO_ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's time.Time{} as JSON: means "not set"

INTENTION_FIELDS = (
    "ID", "Description", "SourceNS", "SourceName", "DestinationNS", "DestinationName",
    "SourcePartition", "DestinationPartition", "SourcePeer", "SourceSamenessGroup",
    "SourceType", "Action", "Permissions", "Meta", "Precedence", "CreatedAt", "UpdatedAt",
    "CreateIndex", "ModifyIndex", "Hash", "DefaultAddr", "DefaultPort", "JWT",
)  # fmt: skip
PERMISSION_FIELDS = ("Action", "HTTP", "JWT")
HTTP_FIELDS = ("PathExact", "PathPrefix", "PathRegex", "Header", "Methods")
# Consul's IntentionHTTPHeaderPermission in its struct order; `Contains` and `IgnoreCase`
# (HCL `ignore_case`) came with newer Consul and are read, written and decided like the rest.
HEADER_FIELDS = (
    "Name", "Present", "Exact", "Prefix", "Suffix", "Contains", "Regex", "Invert", "IgnoreCase",
)  # fmt: skip


def join(path: str, name: str) -> str:
    """`Permissions[0]` + `HTTP` -> `Permissions[0].HTTP`; "" + `Action` -> `Action`."""
    return f"{path}.{name}" if path else name


class Fields:
    """One JSON object, its keys resolved to canonical names, problems collected.

    Getters return a typed value or a default, recording a problem for a
    value of the wrong type, so parsing always runs to the end.
    """

    def __init__(self, raw: object, path: str, names: Sequence[str], out: list[Problem]) -> None:
        self.path, self.out = path, out
        self.values: dict[str, object] = {}
        if not isinstance(raw, dict):
            out.append(Problem(path or "body", f"must be a JSON object, got {shown(raw)}"))
            return
        canon = {n.lower(): n for n in names}
        for key, value in raw.items():
            name = canon.get(str(key).replace("_", "").lower()) if isinstance(key, str) else None
            if name is None:
                out.append(Problem(join(path, str(key)), "unknown field"))
            elif name in self.values:
                out.append(Problem(join(path, name), "given more than once (in another spelling)"))
            elif value is not None:
                self.values[name] = value

    def has(self, name: str) -> bool:
        return name in self.values

    def _typed(self, name: str, kind: type | tuple[type, ...], what: str) -> Any:
        value = self.values.get(name)
        if value is None:
            return None
        is_bool_as_int = kind is int and isinstance(value, bool)  # true is no JSON number
        if not isinstance(value, kind) or is_bool_as_int:
            self.out.append(Problem(join(self.path, name), f"must be {what}, got {shown(value)}"))
            return None
        return value

    def text(self, name: str) -> str:
        value = self._typed(name, str, "a string")
        return "" if value is None else str(value)

    def flag(self, name: str) -> bool:
        return bool(self._typed(name, bool, "true or false"))

    def number(self, name: str) -> int:
        value = self._typed(name, int, "an integer")
        return 0 if value is None else int(value)

    def array(self, name: str) -> list[object]:
        value = self._typed(name, list, "a JSON array")
        return [] if value is None else list(value)

    def meta(self, name: str) -> dict[str, str]:
        value = self._typed(name, dict, "a JSON object of strings")
        if value is None:
            return {}
        meta: dict[str, str] = {}
        for key, item in value.items():
            if isinstance(item, str):
                meta[str(key)] = item
            else:
                self.out.append(
                    Problem(
                        f"{join(self.path, name)}[{shown(key)}]",
                        f"must be a string, got {shown(item)}",
                    )
                )
        return meta

    def only(self, name: str, allowed: Sequence[str], why: str) -> None:
        """Accept `name` only with one of `allowed` values (or absent/empty)."""
        value = self.values.get(name)
        if value is not None and value != "" and value not in allowed:
            self.out.append(Problem(join(self.path, name), f"{why}, got {shown(value)}"))

    def unsupported(self, name: str, why: str) -> None:
        value = self.values.get(name)
        if value not in (None, {}, [], ""):
            self.out.append(Problem(join(self.path, name), why))

    def timestamp(self, name: str) -> str:
        value = self.text(name)
        return "" if value == GO_ZERO_TIME else value


def permissions_from_json(fields: Fields, name: str) -> tuple[Permission, ...]:
    """Parse a `Permissions` array (methods upper-cased, as Consul normalizes)."""
    out: list[Permission] = []
    for i, raw in enumerate(fields.array(name)):
        path = f"{join(fields.path, name)}[{i}]"
        perm = Fields(raw, path, PERMISSION_FIELDS, fields.out)
        perm.unsupported("JWT", "JWT requirements are not supported by gossamer")
        http: HTTPMatch | None = None
        if perm.has("HTTP"):
            h = Fields(perm.values["HTTP"], join(path, "HTTP"), HTTP_FIELDS, fields.out)
            methods = []
            for j, m in enumerate(h.array("Methods")):
                if isinstance(m, str):
                    methods.append(m.upper())
                else:
                    fields.out.append(
                        Problem(f"{h.path}.Methods[{j}]", f"must be a string, got {shown(m)}")
                    )
            headers = tuple(
                _header(raw_h, f"{h.path}.Header[{k}]", fields.out)
                for k, raw_h in enumerate(h.array("Header"))
            )
            http = HTTPMatch(h.text("PathExact"), h.text("PathPrefix"), h.text("PathRegex"),
                             tuple(methods), headers)  # fmt: skip
        out.append(Permission(perm.text("Action"), http))
    return tuple(out)


def _header(raw: object, path: str, out: list[Problem]) -> HeaderMatch:
    f = Fields(raw, path, HEADER_FIELDS, out)
    return HeaderMatch(f.text("Name"), f.flag("Present"), f.text("Exact"), f.text("Prefix"),
                       f.text("Suffix"), f.text("Regex"), f.flag("Invert"),
                       contains=f.text("Contains"), ignore_case=f.flag("IgnoreCase"))  # fmt: skip


def merge_problems(parsed: list[Problem], checked: list[Problem]) -> list[Problem]:
    """Parse problems, then validation problems about fields that parsed fine.

    A field that failed to parse reads as empty; validating it again would
    only add a confusing "is required" next to the real reason.
    """
    bad = {p.field for p in parsed}
    keep = [p for p in checked if not any(p.field == b or p.field.startswith(b + ".") or
                                          p.field.startswith(b + "[") for b in bad)]  # fmt: skip
    return parsed + keep


def intention_from_json(
    obj: object, *, source: str | None = None, destination: str | None = None
) -> Intention:
    """A valid Intention from a Consul intention body, or IntentionError.

    `source`/`destination` (the `/exact?source=&destination=` query) take
    the place of the body's names. `Precedence` and `Hash` are read-only and
    ignored; the precedence is always recomputed.
    """
    out: list[Problem] = []
    f = Fields(obj, "", INTENTION_FIELDS, out)
    for ns in ("SourceNS", "DestinationNS", "SourcePartition", "DestinationPartition"):
        f.only(ns, (DEFAULT_NS,), 'must be "default" (namespaces and partitions are Enterprise)')
    f.only("SourceType", (SOURCE_TYPE,), 'must be "consul"')
    f.unsupported("SourcePeer", "cluster peering is not supported by gossamer")
    f.unsupported("SourceSamenessGroup", "sameness groups are not supported by gossamer")
    f.unsupported("JWT", "JWT requirements are not supported by gossamer")
    for read_only in ("Precedence", "DefaultPort"):  # type-checked, then dropped
        f.number(read_only)
    f.text("DefaultAddr")
    ixn = Intention(
        source=f.text("SourceName") if source is None else source,
        destination=f.text("DestinationName") if destination is None else destination,
        action=f.text("Action") or None,
        permissions=permissions_from_json(f, "Permissions"),
        id=f.text("ID"),
        description=f.text("Description"),
        meta=f.meta("Meta"),
        created_at=f.timestamp("CreatedAt"),
        updated_at=f.timestamp("UpdatedAt"),
        create_index=f.number("CreateIndex"),
        modify_index=f.number("ModifyIndex"),
    )
    problems = merge_problems(out, validate(ixn)) if isinstance(obj, dict) else out
    if problems:
        raise IntentionError(problems)
    return ixn


def permissions_to_json(perms: Sequence[Permission]) -> list[dict[str, Any]]:
    """Consul's `Permissions` array, empty fields omitted as its omitempty tags do."""
    out: list[dict[str, Any]] = []
    for perm in perms:
        item: dict[str, Any] = {"Action": perm.action}
        if perm.http is not None:
            h = perm.http
            http: dict[str, Any] = {}
            for key, value in (("PathExact", h.path_exact), ("PathPrefix", h.path_prefix),
                               ("PathRegex", h.path_regex)):  # fmt: skip
                if value:
                    http[key] = value
            if h.headers:
                http["Header"] = [_header_to_json(hm) for hm in h.headers]
            if h.methods:
                http["Methods"] = list(h.methods)
            item["HTTP"] = http
        out.append(item)
    return out


def _header_to_json(h: HeaderMatch) -> dict[str, Any]:
    out: dict[str, Any] = {"Name": h.name}
    for key, value in (("Present", h.present), ("Exact", h.exact), ("Prefix", h.prefix),
                       ("Suffix", h.suffix), ("Contains", h.contains), ("Regex", h.regex),
                       ("Invert", h.invert), ("IgnoreCase", h.ignore_case)):  # fmt: skip
        if value:
            out[key] = value
    return out


def intention_to_json(ixn: Intention) -> dict[str, Any]:
    """One element of `GET /v1/connect/intentions`, field for field."""
    out: dict[str, Any] = {}
    if ixn.id:
        out["ID"] = ixn.id
    out.update(
        Description=ixn.description,
        SourceNS=DEFAULT_NS,
        SourceName=ixn.source,
        DestinationNS=DEFAULT_NS,
        DestinationName=ixn.destination,
        SourceType=SOURCE_TYPE,
    )
    if ixn.permissions:
        out["Permissions"] = permissions_to_json(ixn.permissions)
    else:
        out["Action"] = ixn.action or ""
    out["Meta"] = dict(ixn.meta)
    out["Precedence"] = ixn.precedence
    if ixn.created_at:
        out["CreatedAt"] = ixn.created_at
    if ixn.updated_at:
        out["UpdatedAt"] = ixn.updated_at
    out["CreateIndex"] = ixn.create_index
    out["ModifyIndex"] = ixn.modify_index
    return out
