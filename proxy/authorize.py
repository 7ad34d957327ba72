"""Who is on the other end of a proxied connection, and may it come in? Pure.

Inbound (`client_service`): OpenSSL has verified the client's chain against
the trust bundle during the handshake (signatures, validity, name
constraints); gossamer checks it again with its own verifier
(`proxy.ca.verify.verify_chain`, purpose client auth), because OpenSSL knows
nothing of SPIFFE: the leaf must carry exactly one URI SAN that is a
*service* SPIFFE ID of this mesh's trust domain. `admit` then asks the
pure intentions core (`decide`) with the intentions the proxy watches; a
deny is a value (the `Decision`) carrying the intention that decided.

Outbound (`server_service`): the upstream's certificate must verify for
server auth and name exactly the upstream service, or the connection is
refused (`Refused(WRONG_SERVER)`).

Both: a chain through the intermediate of a revoked agent is refused
(`Refused(REVOKED)`), whatever OpenSSL thought of it: OpenSSL knows the
roots, not the mesh's revocations. `gossamer ca revoke-agent` writes a
revocation into the replicated CA map; every agent lists them at `GET
/v1/connect/ca/revoked` (blocking), each with its intermediate's key id;
the proxy watches that list (`revoked_key_ids`) and puts the key ids into
its `Trust`. A new `Trust` object empties the peer cache, so no leaf
verified before a revocation is taken on trust after it.

A resumed TLS session presents only its leaf; it is verified and decided
again like any other, with the intermediates learnt from earlier full
handshakes (peer_cache.py). A leaf already verified against the same roots
is not verified again while its chain is valid (peer_cache.py says why
that is sound); the intention decision is made for every connection.

Every refusal is a `Refused` whose `reason` is a tally.py counter name;
`reason_of_verify_code` maps OpenSSL's verify codes onto the same names, so
a rogue certificate counts the same whichever check caught it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from gossamer.intentions.decide import IntentionSet, decide
from gossamer.intentions.model import Decision
from gossamer.intentions.spiffe import ServiceId
from gossamer.proxy import tally
from gossamer.proxy.ca import errors
from gossamer.proxy.ca.keys import key_id
from gossamer.proxy.ca.profile import utc
from gossamer.proxy.ca.verify import CLIENT_AUTH, SERVER_AUTH, verify_chain
from gossamer.proxy.peer_cache import PeerCache

_VERIFY_CODES = {  # OpenSSL's X509_V_ERR_* codes with a reason of their own
    2: tally.UNKNOWN_ISSUER,
    7: tally.UNKNOWN_ISSUER,
    9: tally.NOT_YET_VALID,
    10: tally.EXPIRED,
    18: tally.UNKNOWN_ISSUER,
    19: tally.UNKNOWN_ISSUER,
    20: tally.UNKNOWN_ISSUER,
    21: tally.UNKNOWN_ISSUER,
    26: tally.WRONG_PURPOSE,
    47: tally.FOREIGN_TRUST_DOMAIN,  # permitted subtree violation (name constraints)
    48: tally.FOREIGN_TRUST_DOMAIN,  # excluded subtree violation
}
_ERRORS: tuple[tuple[type[errors.CertificateError], str], ...] = (
    (errors.CertificateExpired, tally.EXPIRED),
    (errors.CertificateNotYetValid, tally.NOT_YET_VALID),
    (errors.UnknownIssuer, tally.UNKNOWN_ISSUER),
    (errors.ForeignTrustDomain, tally.FOREIGN_TRUST_DOMAIN),
    (errors.WrongPurpose, tally.WRONG_PURPOSE),
    (errors.NotSpiffeCertificate, tally.NOT_SPIFFE),
)


class Refused(Exception):
    """The peer may not be served; `reason` is a tally.py counter name."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Trust:
    """What peers are checked against: the mesh's trust domain and its current roots."""

    trust_domain: str
    roots: Sequence[x509.Certificate]
    revoked: frozenset[bytes] = frozenset()  # key ids of revoked agents' intermediates


def revoked_key_ids(rows: object) -> frozenset[bytes]:
    """The intermediate key ids of a `/v1/connect/ca/revoked` answer; ValueError if malformed.

    A revocation without `IntermediateKeyID` (the agent never published an
    intermediate) names nothing a proxy could see: no leaf chains to it.
    """
    if not isinstance(rows, list):
        raise ValueError("the revoked agents answer is not a list")
    found = set()
    for row in rows:
        text = row.get("IntermediateKeyID") if isinstance(row, dict) else 0
        if text is None:
            continue
        if not isinstance(text, str):
            raise ValueError(f"not a revoked agent with an IntermediateKeyID: {row!r}")
        found.add(bytes.fromhex(text.replace(":", "")))  # ValueError when not hex
    return frozenset(found)


def client_service(
    chain_der: Sequence[bytes], trust: Trust, now: datetime, known: PeerCache | None = None
) -> ServiceId:
    """The verified service a client presented (leaf first), or Refused saying why not."""
    return _service(chain_der, trust, now, CLIENT_AUTH, known)


def server_service(
    chain_der: Sequence[bytes],
    trust: Trust,
    now: datetime,
    expected: str,
    known: PeerCache | None = None,
) -> ServiceId:
    """The upstream's verified service; Refused(WRONG_SERVER) when it is not `expected`."""
    found = _service(chain_der, trust, now, SERVER_AUTH, known)
    if found.service != expected:
        raise Refused(
            tally.WRONG_SERVER,
            f"the server presented {found.uri}, not the upstream service {expected!r}",
        )
    return found


def admit(
    intentions: IntentionSet, source: str, destination: str, *, default_allow: bool
) -> Decision:
    """May `source` open an L4 connection to `destination`? The intentions core decides."""
    return decide(intentions, source, destination, default_allow=default_allow)


def decided_by(decision: Decision) -> str:
    """The rule that decided, for a log line: `web => db (deny, id …)` or the default policy."""
    rule = decision.intention
    if rule is None:
        return decision.reason
    action = rule.action or "L7 permissions"
    shown = f"{rule.source} => {rule.destination} ({action}"
    return shown + (f", id {rule.id})" if rule.id else ")")


def reason_of_verify_code(code: int | None) -> str:
    """The refusal reason for an OpenSSL verify error code."""
    return _VERIFY_CODES.get(code or 0, tally.BAD_CERTIFICATE)


def _service(
    chain_der: Sequence[bytes],
    trust: Trust,
    now: datetime,
    purpose: x509.ObjectIdentifier,
    known: PeerCache | None,
) -> ServiceId:
    if not chain_der:
        raise Refused(tally.NO_CERTIFICATE, "the peer presented no certificate")
    if known is not None:
        seen = known.verified(chain_der[0], trust, purpose.dotted_string, utc(now))
        if seen is not None:
            return seen
    try:
        certs = [x509.load_der_x509_certificate(der) for der in chain_der]
    except ValueError:
        raise Refused(tally.BAD_CERTIFICATE, "the peer's certificate is unreadable") from None
    extra = known.certificates() if known is not None and len(certs) == 1 else []
    try:
        verified = verify_chain(certs[0], [*certs[1:], *extra], trust.roots, now, purpose=purpose)
    except errors.CertificateError as exc:
        raise Refused(_reason_of(exc), str(exc)) from None
    chain = verified.chain
    identity = verified.identity
    if trust.revoked and any(key_id(ca.public_key()) in trust.revoked for ca in chain[1:]):
        raise Refused(
            tally.REVOKED, f"{identity.uri} was issued by the intermediate of a revoked agent"
        )
    if not isinstance(identity, ServiceId):
        raise Refused(tally.NOT_A_SERVICE, f"{identity.uri} is an agent, not a service")
    if identity.trust_domain != trust.trust_domain:
        raise Refused(
            tally.FOREIGN_TRUST_DOMAIN,
            f"{identity.uri} is not of this mesh's trust domain {trust.trust_domain!r}",
        )
    if known is not None:
        known.remember(chain_der[0], trust, purpose.dotted_string, identity, chain)
    return identity


def _reason_of(exc: errors.CertificateError) -> str:
    for kind, reason in _ERRORS:
        if isinstance(exc, kind):
            return reason
    return tally.BAD_CERTIFICATE
