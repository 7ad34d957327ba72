"""Service identities as SPIFFE IDs: who the source of a connection is. Pure.

A leaf certificate's URI SAN names its service the way Consul does
(agent/connect/uri_service.go):

    spiffe://<trust-domain>/ns/<namespace>/dc/<datacenter>/svc/<service>

optionally with `/ap/<partition>` first (Enterprise). gossamer is the
open-source shape, so namespace and partition must be `default`. Anything
else, including agent or signing IDs, is a `SpiffeError` saying what is
wrong; the caller decides what that means (400 at the HTTP edge).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from gossamer.intentions.model import Intention
from gossamer.intentions.validate import validate

_TRUST_DOMAIN = re.compile(r"[a-z0-9]([a-z0-9._-]*[a-z0-9])?")
_PATH = re.compile(r"(?:/ap/(?P<ap>[^/]+))?/ns/(?P<ns>[^/]+)/dc/(?P<dc>[^/]+)/svc/(?P<svc>[^/]+)")
DEFAULT = "default"


class SpiffeError(ValueError):
    """Not a service SPIFFE ID of the shape above; the message says why."""


@dataclass(frozen=True)
class ServiceId:
    trust_domain: str
    datacenter: str
    service: str
    namespace: str = DEFAULT

    @property
    def uri(self) -> str:
        return (
            f"spiffe://{self.trust_domain}/ns/{self.namespace}"
            f"/dc/{self.datacenter}/svc/{self.service}"
        )


def parse_service_uri(uri: str) -> ServiceId:
    """The service a SPIFFE URI names; SpiffeError when it is not a service ID we accept."""
    shape = "spiffe://<trust-domain>/ns/default/dc/<dc>/svc/<service>"
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise SpiffeError(f"not a URI ({exc}); expected {shape}") from None
    if parts.scheme.lower() != "spiffe":
        raise SpiffeError(
            f"scheme must be spiffe, got {parts.scheme or 'none'!r}; expected {shape}"
        )
    if port is not None or "@" in parts.netloc or parts.query or parts.fragment:
        raise SpiffeError("a SPIFFE ID has no port, user, query or fragment")
    host = parts.netloc.lower()
    if not _TRUST_DOMAIN.fullmatch(host):
        raise SpiffeError(f"trust domain must be a DNS name, got {parts.netloc!r}")
    found = _PATH.fullmatch(parts.path)
    if found is None:
        raise SpiffeError(f"path {parts.path!r} does not name a service; expected {shape}")
    for scope in ("ap", "ns"):
        if found[scope] is not None and found[scope] != DEFAULT:
            raise SpiffeError(
                f"{scope} must be {DEFAULT!r} (Enterprise feature), got {found[scope]!r}"
            )
    service = found["svc"]
    bad = [p for p in validate(Intention(service, "x", action="allow")) if p.field == "SourceName"]
    if bad or service == "*":
        raise SpiffeError(f"service {service!r} is not a valid service name")
    return ServiceId(trust_domain=host, datacenter=found["dc"], service=service)
