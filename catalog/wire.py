"""Node records as plain JSON for agent-to-agent replication, with strict validation.

Records arrive from peers, which may run another version or be broken, so
`record_from_wire` trusts nothing: every field is type-checked, every error
names its path (`services[2].port`) and is raised as `RecordError`, the one
exception a receiver has to catch. It never lets another exception escape,
whatever JSON it is given.

Format rules:
- `"v": 1` is the wire format version; another value is refused, so a future
  incompatible format fails loudly instead of being half-understood.
- Unknown keys are kept, not read: a newer agent may add optional fields
  without cutting older peers off during a rolling upgrade, and since the
  owner's signature covers them, the record, its services and its checks
  each keep every key this version would not write itself (`unknown_fields`,
  plain JSON, checked like `proxy`) and write it back as it came. So a
  relayed record encodes, and verifies, as its owner signed it.
- Missing keys and wrong types are errors; nothing is defaulted silently,
  because a record that decodes differently on two agents would never
  converge.
- Floats must be finite: NaN would make two equal records compare unequal.
- `"sig"`, the owner's signature (`model.OwnerSignature`), is optional and
  not part of the record's content: `record_body_to_wire` leaves it out, and
  that body is what is signed and what ties between equal versions compare.
  Its fields are base64 text, sizes capped (`MAX_SIGNATURE`, `MAX_CERTIFICATE`,
  `MAX_CHAIN`), so the JSON stored on disk and the frames carry it alike.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import Any

from gossamer.catalog import wire_fields as read
from gossamer.catalog.model import (
    STATUSES,
    Check,
    JsonObject,
    NodeRecord,
    OwnerSignature,
    Service,
)
from gossamer.catalog.plain_json import json_problem
from gossamer.catalog.wire_fields import RecordError as RecordError

WIRE_VERSION = 1
MAX_VERSION = 2**63 - 1  # fits SQLite's INTEGER, where records are kept
MAX_SIGNATURE = 256  # bytes: an ECDSA P-521 signature is at most 139
MAX_CERTIFICATE = 4096  # bytes of DER per certificate
MAX_CHAIN = 3  # agent certificate, its intermediate, and room for one more
# The keys record_body_to_wire always writes, and the signature: never kept as unknown.
_RECORD_KEYS = frozenset(
    {"v", "node", "node_id", "datacenter", "address", "tagged_addresses", "meta", "version"}
    | {"origin", "services", "checks", "sig"}
)


def record_to_wire(record: NodeRecord) -> JsonObject:
    """The record as JSON-able data (dicts, lists, str, int, bool), its signature included."""
    body = record_body_to_wire(record)
    if record.signed is not None:
        body["sig"] = {
            "s": _b64(record.signed.signature),
            "c": [_b64(der) for der in record.signed.chain],
        }
    return body


def record_body_to_wire(record: NodeRecord) -> JsonObject:
    """The record's content as JSON-able data: everything but its signature."""
    return {
        **_unknown_to_wire(record.unknown_fields, ("v", "sig")),
        "v": WIRE_VERSION,
        "node": record.node,
        "node_id": record.node_id,
        "datacenter": record.datacenter,
        "address": record.address,
        "tagged_addresses": dict(record.tagged_addresses),
        "meta": dict(record.meta),
        "version": record.version,
        "origin": record.origin,
        "services": [_service_to_wire(s) for s in record.services],
        "checks": [_check_to_wire(c) for c in record.checks],
    }


def _service_to_wire(s: Service) -> JsonObject:
    body: JsonObject = {
        **_unknown_to_wire(s.unknown_fields),
        "id": s.id,
        "name": s.name,
        "tags": list(s.tags),
        "address": s.address,
        "port": s.port,
        "meta": dict(s.meta),
        "tagged_addresses": {k: [a, p] for k, (a, p) in s.tagged_addresses.items()},
        "weights": list(s.weights),
        "kind": s.kind,
        "proxy": dict(s.proxy),
        "connect": dict(s.connect),
        "enable_tag_override": s.enable_tag_override,
    }
    if s.locality:  # only when set: a record without it encodes (and signs) as before
        body["locality"] = dict(s.locality)
    return body


def _check_to_wire(c: Check) -> JsonObject:
    return {
        **_unknown_to_wire(c.unknown_fields),
        "check_id": c.check_id,
        "name": c.name,
        "status": c.status,
        "notes": c.notes,
        "output": c.output,
        "service_id": c.service_id,
        "service_name": c.service_name,
        "service_tags": list(c.service_tags),
        "type": c.type,
        "definition": dict(c.definition),
        "interval": c.interval,
        "timeout": c.timeout,
        **({"exposed_port": c.exposed_port} if c.exposed_port else {}),  # (older records: none)
    }


def _unknown_to_wire(fields: Mapping[str, Any], reserved: tuple[str, ...] = ()) -> JsonObject:
    """The kept fields, written first so a known key of the same name wins."""
    return {k: v for k, v in fields.items() if k not in reserved}


def _unknown_from_wire(obj: Mapping[str, Any], written: Collection[str], at: str) -> dict[str, Any]:
    """The keys of `obj` that encoding the decoded value would not write (`written`):
    fields of a newer version, or an optional one sent at its default (`"locality": {}`)."""
    kept = {k: v for k, v in obj.items() if k not in written}
    if problem := json_problem(kept, at or "record"):
        raise RecordError("{}: {}".format(*problem))
    return kept


def record_from_wire(data: object) -> NodeRecord:
    """Decode and validate a peer's record; raises RecordError naming the bad field."""
    obj = read.mapping(data, "record")
    if obj.get("v") != WIRE_VERSION or isinstance(obj.get("v"), bool):
        raise RecordError(f"v: unsupported wire version {obj.get('v')!r}")
    version = read.integer(obj, "version", "", 0, MAX_VERSION)
    services = read.list_of(obj, "services", "", _service_from_wire)
    checks = read.list_of(obj, "checks", "", _check_from_wire)
    try:
        record = NodeRecord(
            node=read.string(obj, "node", ""),
            node_id=read.string(obj, "node_id", ""),
            datacenter=read.string(obj, "datacenter", ""),
            address=read.string(obj, "address", ""),
            version=version,
            origin=read.string(obj, "origin", ""),
            tagged_addresses=read.string_map(obj, "tagged_addresses", ""),
            meta=read.string_map(obj, "meta", ""),
            services=tuple(services),
            checks=tuple(checks),
            signed=_signature(obj.get("sig")),
        )
    except ValueError as err:  # duplicate ids
        raise RecordError(str(err)) from None
    unknown = _unknown_from_wire(obj, _RECORD_KEYS, "")
    return replace(record, unknown_fields=unknown) if unknown else record


def _signature(data: object) -> OwnerSignature | None:
    """The optional owner signature; RecordError naming the part that is wrong."""
    if data is None:
        return None
    obj = read.mapping(data, "sig")
    chain = obj.get("c")
    if not isinstance(chain, list) or not 1 <= len(chain) <= MAX_CHAIN:
        raise RecordError(f"sig.c: expected a list of 1 to {MAX_CHAIN} certificates")
    return OwnerSignature(
        signature=_unb64(obj.get("s"), "sig.s", MAX_SIGNATURE),
        chain=tuple(_unb64(c, f"sig.c[{i}]", MAX_CERTIFICATE) for i, c in enumerate(chain)),
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object, path: str, limit: int) -> bytes:
    if not isinstance(value, str) or len(value) > (limit + 2) // 3 * 4:
        raise RecordError(f"{path}: expected base64 text of at most {limit} bytes")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RecordError(f"{path}: not valid base64") from None
    if not data:
        raise RecordError(f"{path}: empty")
    return data


def _service_from_wire(data: object, at: str) -> Service:
    obj = read.mapping(data, at)
    tagged = read.mapping(read.field(obj, "tagged_addresses", at), f"{at}.tagged_addresses")
    weights = read.integers(obj, "weights", at)
    if len(weights) != 2:
        raise RecordError(f"{at}.weights: expected [passing, warning]")
    service = Service(
        id=read.string(obj, "id", at),
        name=read.string(obj, "name", at),
        tags=tuple(read.strings(obj, "tags", at)),
        address=read.string(obj, "address", at),
        port=read.integer(obj, "port", at, 0, 65535),
        meta=read.string_map(obj, "meta", at),
        tagged_addresses={
            k: read.addr_port(v, f"{at}.tagged_addresses.{k}") for k, v in sorted(tagged.items())
        },
        weights=(weights[0], weights[1]),
        kind=read.string(obj, "kind", at),
        proxy=read.json_obj(obj, "proxy", at),
        connect=read.json_obj(obj, "connect", at),
        enable_tag_override=read.boolean(obj, "enable_tag_override", at),
        locality=read.string_map(obj, "locality", at) if "locality" in obj else {},
    )
    unknown = _unknown_from_wire(obj, _service_to_wire(service), at)
    return replace(service, unknown_fields=unknown) if unknown else service


def _check_from_wire(data: object, at: str) -> Check:
    obj = read.mapping(data, at)
    status = read.string(obj, "status", at)
    if status not in STATUSES:
        raise RecordError(f"{at}.status: {status!r} is not one of {', '.join(STATUSES)}")
    check = Check(
        check_id=read.string(obj, "check_id", at),
        name=read.string(obj, "name", at),
        status=status,
        notes=read.string(obj, "notes", at),
        output=read.string(obj, "output", at),
        service_id=read.string(obj, "service_id", at),
        service_name=read.string(obj, "service_name", at),
        service_tags=tuple(read.strings(obj, "service_tags", at)),
        type=read.string(obj, "type", at),
        definition=read.json_obj(obj, "definition", at),
        interval=read.string(obj, "interval", at),
        timeout=read.string(obj, "timeout", at),
        exposed_port=read.integer(obj, "exposed_port", at, 0, 65535)
        if "exposed_port" in obj
        else 0,
    )
    unknown = _unknown_from_wire(obj, _check_to_wire(check), at)
    return replace(check, unknown_fields=unknown) if unknown else check
