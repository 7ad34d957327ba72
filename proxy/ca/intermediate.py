"""An agent's signing authority: its intermediate CA, and its own agent certificate.

Each agent holds an intermediate signed by the root (at enrolment, or by any
agent holding the root key) for a key the agent made itself; it signs the
leaves of its own services with it, so losing any one host never stops the
others from issuing. The intermediate carries the CA profile with path
length 0 (it signs leaves, never another CA) and the root's Name
Constraints, so even a stolen intermediate can only vouch inside this trust
domain.

The agent certificate is the agent's identity on the RPC port:
`spiffe://<td>/agent/client/dc/<dc>/id/<node-id>`, EKU client and server
auth (each agent both dials and accepts), CN the node name.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cryptography import x509

from gossamer.intentions.spiffe import AgentId
from gossamer.proxy.ca.errors import CaConfigError, LeafRequestError
from gossamer.proxy.ca.keys import PublicKey, spec_of
from gossamer.proxy.ca.profile import Issuer, ca_builder, common_name, end_entity_builder, sign
from gossamer.proxy.ca.settings import INTERMEDIATE_TTL_DEFAULT, LEAF_TTL_DEFAULT


def sign_intermediate(
    issuer: Issuer,
    public_key: PublicKey,
    now: datetime,
    *,
    name: str,
    ttl: timedelta = INTERMEDIATE_TTL_DEFAULT,
) -> x509.Certificate:
    """An intermediate CA for `public_key` (CN `name`), signed by `issuer`."""
    _check_key(public_key)
    subject = common_name(f"gossamer intermediate {name}")
    builder = ca_builder(subject, public_key, issuer.trust_domain, path_length=0)
    return sign(builder, issuer, now, ttl)


def sign_agent_certificate(
    issuer: Issuer,
    public_key: PublicKey,
    agent: AgentId,
    now: datetime,
    *,
    node_name: str,
    ttl: timedelta = LEAF_TTL_DEFAULT,
) -> x509.Certificate:
    """The agent's TLS certificate for agent RPC, signed by `issuer`."""
    _check_key(public_key)
    if agent.trust_domain != issuer.trust_domain:
        raise LeafRequestError(
            f"agent ID trust domain {agent.trust_domain!r} is not this CA's "
            f"({issuer.trust_domain!r})"
        )
    builder = end_entity_builder(common_name(node_name), public_key, agent.uri)
    return sign(builder, issuer, now, ttl)


def _check_key(public_key: PublicKey) -> None:
    try:
        spec_of(public_key, "public key")
    except CaConfigError as exc:
        raise LeafRequestError(str(exc)) from None
