"""Who is on the other end of a proxied connection, and may it come in? Pure.

Inbound (`client_service`): OpenSSL has verified the client's chain against
the trust bundle during the handshake (signatures, validity, purpose, name
constraints) and built the path to a root; OpenSSL knows nothing of SPIFFE,
so gossamer checks that chain's facts (`proxy.ca.verified_chain`, purpose
client auth): it still ends at a root of the current bundle, every
certificate is valid now, and the leaf carries exactly one URI SAN that is
a *service* SPIFFE ID of this mesh's trust domain. `admit` then asks the
pure intentions core (`decide`) with the intentions the proxy watches; a
deny is a value (the `Decision`) carrying the intention that decided.

Outbound (`server_service`): the upstream's certificate must verify for
server auth and name exactly the upstream service in this proxy's own
datacenter (upstreams are only ever of it: config_registration.py), or the
connection is refused (`Refused(WRONG_SERVER)`): as Envoy under Consul
matches the whole SPIFFE ID, an instance holding another datacenter's leaf
for the same name is not the upstream.

Both: a chain through the intermediate of a revoked agent is refused
(`Refused(REVOKED)`), whatever OpenSSL thought of it: OpenSSL knows the
roots, not the mesh's revocations. `gossamer ca revoke-agent` writes a
revocation into the replicated CA map; every agent lists them at `GET
/v1/connect/ca/revoked` (blocking), each with its intermediate's key id;
the proxy watches that list (`revoked_key_ids`) and puts the key ids into
its `Trust`. A new `Trust` object empties the peer cache, so no leaf
verified before a revocation is taken on trust after it.

A resumed TLS session presents only its leaf; the chain its full handshake
verified is remembered (`ChainMemory`), and it is checked and decided again
like any other. The intention decision is made for every connection.

Every refusal is a `Refused` whose `reason` is a tally.py counter name;
`reason_of_verify_code` maps OpenSSL's verify codes onto the same names, so
a rogue certificate counts the same whichever check caught it, and
`reason_of_handshake_error` does so for a failed handshake as a whole.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from gossamer.intentions.decide import IntentionSet, decide
from gossamer.intentions.model import Decision
from gossamer.intentions.spiffe import ServiceId
from gossamer.proxy import tally
from gossamer.proxy.ca import errors
from gossamer.proxy.ca.spiffe_leaf import CLIENT_AUTH, SERVER_AUTH
from gossamer.proxy.ca.verified_chain import ChainMemory, check_verified

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
# OpenSSL's reasons for an alert the peer sent (TLSV1_ALERT_UNKNOWN_CA, SSLV3_ALERT_BAD_CERTIFICATE,
# ...): a peer that refused this side's certificate or could not go on, not one that spoke no TLS
_ALERTS = ("SSLV3_ALERT_", "TLSV1_ALERT_", "TLSV13_ALERT_")
_ERRORS: tuple[tuple[type[errors.CertificateError], str], ...] = (
    (errors.CertificateExpired, tally.EXPIRED),
    (errors.CertificateNotYetValid, tally.NOT_YET_VALID),
    (errors.UnknownIssuer, tally.UNKNOWN_ISSUER),
    (errors.ForeignTrustDomain, tally.FOREIGN_TRUST_DOMAIN),
    (errors.WrongPurpose, tally.WRONG_PURPOSE),
    (errors.NotSpiffeCertificate, tally.NOT_SPIFFE),
)


class ClosedEarly(ConnectionResetError):
    """The peer connected and closed without sending a byte, or without a word after the
    proxy's answer to its ClientHello (it read the certificates: `gossamer check`): a port
    probe, not an attack.
    (Here, not beside tls_side.py's use: mypyc compiles that module, and a compiled class
    cannot derive from ConnectionResetError.)"""


class Refused(Exception):
    """The peer may not be served; `reason` is a tally.py counter name."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Trust:
    """What peers are checked against: the mesh's trust domain and its current roots."""

    trust_domain: str
    roots: frozenset[bytes]  # the DER of each root of the bundle
    revoked: frozenset[bytes] = frozenset()  # key ids of revoked agents' intermediates
    datacenter: str = ""  # this proxy's own (its leaf's); upstreams must be of it. "": unchecked


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
    chain_der: Sequence[bytes], trust: Trust, now: datetime, known: ChainMemory | None = None
) -> ServiceId:
    """The verified service a client presented (leaf first), or Refused saying why not."""
    return _service(chain_der, trust, now, CLIENT_AUTH, known)


def server_service(
    chain_der: Sequence[bytes],
    trust: Trust,
    now: datetime,
    expected: str,
    known: ChainMemory | None = None,
) -> ServiceId:
    """The upstream's verified service; Refused(WRONG_SERVER) when it is not `expected` of
    the trust's datacenter."""
    found = _service(chain_der, trust, now, SERVER_AUTH, known)
    if found.service != expected:
        raise Refused(
            tally.WRONG_SERVER,
            f"the server presented {found.uri}, not the upstream service {expected!r}",
        )
    if trust.datacenter and found.datacenter != trust.datacenter:
        raise Refused(
            tally.WRONG_SERVER,
            f"the server presented {found.uri}, of datacenter {found.datacenter!r}, not "
            f"this proxy's {trust.datacenter!r}",
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


def reason_of_handshake_error(exc: BaseException) -> str:
    """The refusal reason for a TLS handshake that failed with `exc` (timeouts included)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return reason_of_verify_code(exc.verify_code)
    if isinstance(exc, TimeoutError):
        return tally.HANDSHAKE_TIMEOUT
    if isinstance(exc, ssl.SSLError):
        if exc.reason in ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "TLSV13_ALERT_CERTIFICATE_REQUIRED"):
            return tally.NO_CERTIFICATE
        if exc.reason == "CERTIFICATE_VERIFY_FAILED":
            return tally.BAD_CERTIFICATE
        if (exc.reason or "").startswith(_ALERTS):  # the peer's alert: it spoke TLS
            return tally.PEER_REFUSED
    return tally.NOT_TLS


def _service(
    chain_der: Sequence[bytes],
    trust: Trust,
    now: datetime,
    purpose: str,
    known: ChainMemory | None,
) -> ServiceId:
    """`chain_der`: the chain OpenSSL verified (leaf first, root last), or a resumed leaf."""
    if not chain_der:
        raise Refused(tally.NO_CERTIFICATE, "the peer presented no certificate")
    memory = known if known is not None else ChainMemory()
    try:
        chain = memory.chain(chain_der) or tuple(chain_der)  # a lone leaf not remembered: itself
        facts = [memory.facts(der, now) for der in chain]
    except ValueError:
        raise Refused(tally.BAD_CERTIFICATE, "the peer's certificate is unreadable") from None
    if len(chain) == 1:  # only a resumed session presents a lone leaf
        raise Refused(
            tally.UNKNOWN_ISSUER,
            f"{facts[0].describe()}: a resumed session whose "
            "verified chain is no longer remembered (more clients since than kept)",
        )
    try:
        identity = check_verified(chain, facts, trust.roots, now, purpose)
    except errors.CertificateError as exc:
        raise Refused(_reason_of(exc), str(exc)) from None
    if trust.revoked and any(ca.key_id in trust.revoked for ca in facts[1:]):
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
    return identity


def _reason_of(exc: errors.CertificateError) -> str:
    for kind, reason in _ERRORS:
        if isinstance(exc, kind):
            return reason
    return tally.BAD_CERTIFICATE
