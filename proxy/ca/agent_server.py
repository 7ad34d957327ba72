"""The agent's HTTPS server certificate: the one leaf that may name hosts. Pure.

Rules this module keeps (and profile.py states for every certificate):
- Service leaves and agent-RPC certificates carry exactly one SAN, their
  SPIFFE URI: csr.py refuses a CSR with any other name and verify.py refuses
  a service leaf that names a host, so a service can never pass itself off
  as a host name a browser or curl would trust.
- This certificate alone adds DNS and IP SANs beside the agent's SPIFFE URI:
  what a client dials the HTTP API by, as Consul's auto-TLS names its
  agents: DNS `localhost`, the node name (when it is a host name),
  `server.<datacenter>.<domain>`, and IP SANs of the agent's client, bind
  and advertise addresses (never 0.0.0.0 or ::) and loopback.
- It is signed by the agent, for itself, from its own intermediate; no API
  or CSR can ask for one.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from gossamer.intentions.spiffe import AgentId
from gossamer.proxy.ca.errors import LeafRequestError
from gossamer.proxy.ca.keys import PublicKey
from gossamer.proxy.ca.profile import Issuer, common_name, end_entity_builder, sign
from gossamer.proxy.ca.settings import LEAF_TTL_DEFAULT

_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
LOOPBACK = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class ServerNames:
    """The host names and addresses the certificate is valid for, sorted."""

    dns: tuple[str, ...]
    ips: tuple[str, ...]


def is_host_name(name: str) -> bool:
    """An RFC 1123 host name of LDH labels (lower case), at most 253 characters."""
    labels = name.rstrip(".").split(".")
    return len(name) <= 253 and all(_LABEL.fullmatch(label) for label in labels)


def names_hosts(cert: x509.Certificate) -> bool:
    """Whether `cert` carries a DNS or IP SAN (only this module's certificate may)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return bool(san.get_values_for_type(x509.DNSName) or san.get_values_for_type(x509.IPAddress))


def server_names(node: str, datacenter: str, domain: str, addresses: Iterable[str]) -> ServerNames:
    """Consul's auto-TLS names for this agent: see the module docstring."""
    dns = {"localhost", f"server.{datacenter}.{domain.rstrip('.')}"}
    if is_host_name(node.lower()):
        dns.add(node.lower())
    ips = set(LOOPBACK)
    for address in addresses:
        ip = ipaddress.ip_address(address)
        if not ip.is_unspecified:
            ips.add(str(ip))
    return ServerNames(tuple(sorted(n for n in dns if is_host_name(n))), tuple(sorted(ips)))


def sign_agent_server_certificate(
    issuer: Issuer,
    public_key: PublicKey,
    agent: AgentId,
    names: ServerNames,
    now: datetime,
    *,
    node_name: str,
    ttl: timedelta = LEAF_TTL_DEFAULT,
) -> x509.Certificate:
    """The agent's HTTPS server certificate, signed by its own intermediate."""
    if agent.trust_domain != issuer.trust_domain:
        raise LeafRequestError(
            f"agent ID trust domain {agent.trust_domain!r} is not this CA's "
            f"({issuer.trust_domain!r})"
        )
    hosts: list[x509.GeneralName] = [x509.DNSName(name) for name in names.dns]
    hosts += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in names.ips]
    builder = end_entity_builder(common_name(node_name), public_key, agent.uri, hosts=hosts)
    return sign(builder, issuer, now, ttl)
