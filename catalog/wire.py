"""Node records as plain JSON for agent-to-agent replication, with strict validation.

Records arrive from peers, which may run another version or be broken, so
`record_from_wire` trusts nothing: every field is type-checked, every error
names its path (`services[2].port`) and is raised as `RecordError`, the one
exception a receiver has to catch. It never lets another exception escape,
whatever JSON it is given.

Format rules:
- `"v": 1` is the wire format version; another value is refused, so a future
  incompatible format fails loudly instead of being half-understood.
- Unknown keys are ignored: a newer agent may add optional fields without
  cutting older peers off during a rolling upgrade.
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
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from gossamer.catalog.model import (
    STATUSES,
    Check,
    JsonObject,
    NodeRecord,
    OwnerSignature,
    Service,
)
from gossamer.catalog.plain_json import json_problem

WIRE_VERSION = 1
MAX_VERSION = 2**63 - 1  # fits SQLite's INTEGER, where records are kept
MAX_SIGNATURE = 256  # bytes: an ECDSA P-521 signature is at most 139
MAX_CERTIFICATE = 4096  # bytes of DER per certificate
MAX_CHAIN = 3  # agent certificate, its intermediate, and room for one more

T = TypeVar("T")


class RecordError(ValueError):
    """A peer sent a record that is not a valid version-1 node record; says which field."""


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
    }


def record_from_wire(data: object) -> NodeRecord:
    """Decode and validate a peer's record; raises RecordError naming the bad field."""
    obj = _obj(data, "record")
    if obj.get("v") != WIRE_VERSION or isinstance(obj.get("v"), bool):
        raise RecordError(f"v: unsupported wire version {obj.get('v')!r}")
    version = _int(obj, "version", "", 0, MAX_VERSION)
    services = _list(obj, "services", "", _service_from_wire)
    checks = _list(obj, "checks", "", _check_from_wire)
    try:
        return NodeRecord(
            node=_str(obj, "node", ""),
            node_id=_str(obj, "node_id", ""),
            datacenter=_str(obj, "datacenter", ""),
            address=_str(obj, "address", ""),
            version=version,
            origin=_str(obj, "origin", ""),
            tagged_addresses=_str_map(obj, "tagged_addresses", ""),
            meta=_str_map(obj, "meta", ""),
            services=tuple(services),
            checks=tuple(checks),
            signed=_signature(obj.get("sig")),
        )
    except ValueError as err:  # duplicate ids
        raise RecordError(str(err)) from None


def _signature(data: object) -> OwnerSignature | None:
    """The optional owner signature; RecordError naming the part that is wrong."""
    if data is None:
        return None
    obj = _obj(data, "sig")
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
    obj = _obj(data, at)
    tagged = _obj(_field(obj, "tagged_addresses", at), f"{at}.tagged_addresses")
    weights = _int_list(obj, "weights", at)
    if len(weights) != 2:
        raise RecordError(f"{at}.weights: expected [passing, warning]")
    return Service(
        id=_str(obj, "id", at),
        name=_str(obj, "name", at),
        tags=tuple(_str_list(obj, "tags", at)),
        address=_str(obj, "address", at),
        port=_int(obj, "port", at, 0, 65535),
        meta=_str_map(obj, "meta", at),
        tagged_addresses={
            k: _addr_port(v, f"{at}.tagged_addresses.{k}") for k, v in sorted(tagged.items())
        },
        weights=(weights[0], weights[1]),
        kind=_str(obj, "kind", at),
        proxy=_json_obj(obj, "proxy", at),
        connect=_json_obj(obj, "connect", at),
        enable_tag_override=_bool(obj, "enable_tag_override", at),
        locality=_str_map(obj, "locality", at) if "locality" in obj else {},
    )


def _check_from_wire(data: object, at: str) -> Check:
    obj = _obj(data, at)
    status = _str(obj, "status", at)
    if status not in STATUSES:
        raise RecordError(f"{at}.status: {status!r} is not one of {', '.join(STATUSES)}")
    return Check(
        check_id=_str(obj, "check_id", at),
        name=_str(obj, "name", at),
        status=status,
        notes=_str(obj, "notes", at),
        output=_str(obj, "output", at),
        service_id=_str(obj, "service_id", at),
        service_name=_str(obj, "service_name", at),
        service_tags=tuple(_str_list(obj, "service_tags", at)),
        type=_str(obj, "type", at),
        definition=_json_obj(obj, "definition", at),
        interval=_str(obj, "interval", at),
        timeout=_str(obj, "timeout", at),
    )


# --- field readers: each names the path it failed at --------------------------------------


def _path(at: str, key: str) -> str:
    return f"{at}.{key}" if at else key


def _field(obj: Mapping[str, Any], key: str, at: str) -> object:
    if key not in obj:
        raise RecordError(f"{_path(at, key)}: missing")
    return obj[key]


def _obj(data: object, at: str) -> Mapping[str, Any]:
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise RecordError(f"{at}: expected an object")
    return data


def _str(obj: Mapping[str, Any], key: str, at: str) -> str:
    value = _field(obj, key, at)
    if not isinstance(value, str):
        raise RecordError(f"{_path(at, key)}: expected a string")
    return value


def _bool(obj: Mapping[str, Any], key: str, at: str) -> bool:
    value = _field(obj, key, at)
    if not isinstance(value, bool):
        raise RecordError(f"{_path(at, key)}: expected true or false")
    return value


def _int(obj: Mapping[str, Any], key: str, at: str, low: int, high: int) -> int:
    return _int_value(_field(obj, key, at), _path(at, key), low, high)


def _int_value(value: object, path: str, low: int, high: int) -> int:
    # bool is an int in Python but not in JSON; a peer sending `true` is broken.
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise RecordError(f"{path}: expected an integer in [{low}, {high}]")
    return value


def _list(obj: Mapping[str, Any], key: str, at: str, item: Callable[[object, str], T]) -> list[T]:
    value = _field(obj, key, at)
    if not isinstance(value, list):
        raise RecordError(f"{_path(at, key)}: expected a list")
    return [item(v, f"{_path(at, key)}[{i}]") for i, v in enumerate(value)]


def _str_list(obj: Mapping[str, Any], key: str, at: str) -> list[str]:
    return _list(obj, key, at, _str_item)


def _str_item(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise RecordError(f"{path}: expected a string")
    return value


def _int_list(obj: Mapping[str, Any], key: str, at: str) -> list[int]:
    return _list(obj, key, at, lambda v, p: _int_value(v, p, 0, 2**31 - 1))


def _str_map(obj: Mapping[str, Any], key: str, at: str) -> dict[str, str]:
    value = _obj(_field(obj, key, at), _path(at, key))
    return {k: _str_item(v, f"{_path(at, key)}.{k}") for k, v in sorted(value.items())}


def _addr_port(value: object, path: str) -> tuple[str, int]:
    if not isinstance(value, list) or len(value) != 2:
        raise RecordError(f"{path}: expected [address, port]")
    return _str_item(value[0], path), _int_value(value[1], path, 0, 65535)


def _json_obj(obj: Mapping[str, Any], key: str, at: str) -> dict[str, Any]:
    value = _obj(_field(obj, key, at), _path(at, key))
    if problem := json_problem(value, _path(at, key)):
        raise RecordError("{}: {}".format(*problem))
    return dict(value)
