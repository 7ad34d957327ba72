"""The replicated "ca" map's entries: keys, values, and reading them back. Pure.

Keys and values (JSON), one concern per key so that two agents writing at
once never overwrite each other's news (last-writer-wins is per key):

    root/<root-id>           {"cert", "cluster_id", "created_ms", "state",
                              "trusted_until_ms", "cross_signed", "key_type", "key_bits"}
    seal/<root-id>/<fp>      {"blob"}   the root key sealed under the secret with fingerprint fp
    config                   {"LeafCertTTL", "IntermediateCertTTL", "RootCertTTL",
                              "PrivateKeyType", "PrivateKeyBits"}   (Consul's names)
    agent/<node-id>          {"node", "intermediate"}   an agent's current intermediate (PEM)
    revoked/<node-id>        {"node", "at_ms", "reason"}

Why seals are not inside the root entry (as first sketched): a root entry
is written twice in its life, when made and when it starts retiring; if
re-sealing (a new gossip key) rewrote it, an agent with a stale view could
stamp "active" over a rotation's "retiring" and undo it. `<root-id>` is
Consul's root ID (consul_json.root_id). A `state` is "active" or "retiring".

`read_state` never raises: an entry it cannot read is left out and named
in `CaState.problems` (a newer gossamer's entry, or a damaged one); a root
that does not read is simply not trusted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from cryptography import x509

from gossamer.proxy.ca.consul_json import ca_config_json, root_id
from gossamer.proxy.ca.errors import CaConfigError
from gossamer.proxy.ca.keys import certificate_pem, key_id, load_certificate, spec_of
from gossamer.proxy.ca.settings import CaSettings, read_consul_config

MAP_NAME = "ca"
ROOT, SEAL, AGENT, REVOKED = "root/", "seal/", "agent/", "revoked/"
CONFIG = "config"
ACTIVE, RETIRING = "active", "retiring"


@dataclass(frozen=True)
class RootRecord:
    """One root of the CA map, its certificate parsed."""

    root_id: str
    certificate: x509.Certificate = field(compare=False)
    cluster_id: str
    created_ms: int
    state: str
    trusted_until_ms: int | None = None
    cross_signed: x509.Certificate | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Revoked:
    node_id: str
    node: str
    at_ms: int
    reason: str


@dataclass(frozen=True)
class CaState:
    """Everything the map holds, decoded: what the trust rules (trust.py) read."""

    roots: tuple[RootRecord, ...] = ()
    seals: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # root id -> fp -> blob
    settings: CaSettings = field(default_factory=CaSettings)
    agents: Mapping[str, x509.Certificate] = field(default_factory=dict)  # node id -> intermediate
    revoked: Mapping[str, Revoked] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


def root_key(rid: str) -> str:
    return ROOT + rid


def seal_key_of(rid: str, fingerprint: str) -> str:
    return f"{SEAL}{rid}/{fingerprint}"


def root_value(
    cert: x509.Certificate,
    cluster_id: str,
    created_ms: int,
    state: str = ACTIVE,
    *,
    trusted_until_ms: int | None = None,
    cross_signed: x509.Certificate | None = None,
) -> tuple[str, dict[str, Any]]:
    """The (key, value) that stores a root."""
    spec = spec_of(cert.public_key(), "RootCert")
    value = {
        "cert": certificate_pem(cert),
        "cluster_id": cluster_id,
        "created_ms": created_ms,
        "state": state,
        "trusted_until_ms": trusted_until_ms,
        "cross_signed": certificate_pem(cross_signed) if cross_signed is not None else None,
        "key_type": spec.key_type,
        "key_bits": spec.bits,
    }
    return root_key(root_id(cert)), value


def retiring_value(record: RootRecord, trusted_until_ms: int) -> tuple[str, dict[str, Any]]:
    """`record` rewritten as retiring, trusted until `trusted_until_ms`."""
    return root_value(
        record.certificate,
        record.cluster_id,
        record.created_ms,
        RETIRING,
        trusted_until_ms=trusted_until_ms,
        cross_signed=record.cross_signed,
    )


def config_value(settings: CaSettings) -> tuple[str, dict[str, Any]]:
    return CONFIG, dict(ca_config_json(settings, 0, 0)["Config"])


def agent_value(node_id: str, node: str, intermediate: x509.Certificate) -> tuple[str, Any]:
    return AGENT + node_id, {"node": node, "intermediate": certificate_pem(intermediate)}


def revoked_value(node_id: str, node: str, at_ms: int, reason: str) -> tuple[str, Any]:
    return REVOKED + node_id, {"node": node, "at_ms": at_ms, "reason": reason}


def known_key(key: str) -> bool:
    """Whether a key has a shape this map holds (others are refused from peers)."""
    if key == CONFIG:
        return True
    prefix, slash, rest = key.partition("/")
    if not slash or not rest or len(key) > 400:
        return False
    if prefix == "seal":
        return rest.count("/") == 1 and all(rest.split("/"))
    return f"{prefix}/" in (ROOT, AGENT, REVOKED) and "/" not in rest


def read_state(items: Iterable[tuple[str, Any]]) -> CaState:
    """Decode the live (key, value) pairs of the map; problems are collected, not raised."""
    roots: list[RootRecord] = []
    seals: dict[str, dict[str, str]] = {}
    agents: dict[str, x509.Certificate] = {}
    revoked: dict[str, Revoked] = {}
    settings, problems = CaSettings(), []
    for key, value in items:
        try:
            if key.startswith(ROOT):
                roots.append(_root(key, value))
            elif key.startswith(SEAL):
                rid, _, fingerprint = key.removeprefix(SEAL).partition("/")
                seals.setdefault(rid, {})[fingerprint] = _text(value, "blob")
            elif key == CONFIG:
                settings = read_consul_config(_mapping(value)).settings
            elif key.startswith(AGENT):
                agents[key.removeprefix(AGENT)] = load_certificate(
                    _text(value, "intermediate"), "intermediate"
                )
            elif key.startswith(REVOKED):
                revoked[key.removeprefix(REVOKED)] = _revoked(key, value)
        except (CaConfigError, ValueError, TypeError) as exc:
            problems.append(f"{key[:100]}: {exc}")
    return CaState(
        tuple(sorted(roots, key=lambda r: r.root_id)), seals, settings, agents, revoked,
        tuple(problems),
    )  # fmt: skip


def intermediate_key_id(cert: x509.Certificate) -> bytes:
    """The key id that names an agent's intermediate across re-signings (same key)."""
    return key_id(cert.public_key())


def _root(key: str, value: Any) -> RootRecord:
    data = _mapping(value)
    cert = load_certificate(_text(data, "cert"), "cert")
    rid = key.removeprefix(ROOT)
    if root_id(cert) != rid:
        raise ValueError("cert is not the root its key names")
    state = data.get("state")
    if state not in (ACTIVE, RETIRING):
        raise ValueError(f"state must be {ACTIVE!r} or {RETIRING!r}, got {state!r}")
    created, until = data.get("created_ms"), data.get("trusted_until_ms")
    if not _is_int(created):
        raise ValueError("created_ms must be an integer")
    if until is not None and not _is_int(until):
        raise ValueError("trusted_until_ms must be an integer")
    if state == RETIRING and until is None:
        raise ValueError("a retiring root needs trusted_until_ms")
    cross = data.get("cross_signed")
    cross_cert = load_certificate(cross, "cross_signed") if isinstance(cross, str) else None
    return RootRecord(
        rid, cert, _text(data, "cluster_id"), int(created), str(state),
        None if until is None else int(until), cross_cert,
    )  # fmt: skip


def _revoked(key: str, value: Any) -> Revoked:
    data = _mapping(value)
    at = data.get("at_ms")
    if not _is_int(at):
        raise ValueError("at_ms must be an integer")
    return Revoked(key.removeprefix(REVOKED), _text(data, "node"), int(at), _text(data, "reason"))


def _mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"expected an object, got {type(value).__name__}")
    return value


def _text(value: Any, name: str) -> str:
    found = _mapping(value).get(name)
    if not isinstance(found, str):
        raise ValueError(f"{name} must be a string")
    return found


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
