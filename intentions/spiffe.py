"""SPIFFE IDs: the one parser for every identity gossamer puts in a certificate. Pure.

Three shapes, all under one trust domain (`<cluster-id>.consul`):

    spiffe://<td>                                         a CA root's URI SAN
    spiffe://<td>/ns/default/dc/<dc>/svc/<service>        a service leaf (Consul's
                                                          agent/connect/uri_service.go;
                                                          `/ap/default` may come first)
    spiffe://<td>/agent/client/dc/<dc>/id/<node-id>       an agent's own certificate

Rules this module keeps (the SPIFFE ID spec, "SPIFFE-ID.md" section 2):
- the scheme is exactly `spiffe://`, lower case;
- the trust domain is non-empty, at most 255 characters of `[a-z0-9._-]`:
  no upper case, no port, no user info;
- every path segment is non-empty, not `.` or `..`, only `[A-Za-z0-9._-]`
  (so no percent-encoding); no trailing slash, no query, no fragment;
- the whole ID is at most 2048 bytes.
gossamer is the open-source shape, so namespace and partition must be
`default`. Every refusal is a `SpiffeError` whose message names what is
wrong; the caller decides what that means (400 at the HTTP edge, a refused
handshake on the RPC port).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gossamer.intentions.model import Intention
from gossamer.intentions.validate import validate

SCHEME = "spiffe://"
DEFAULT = "default"
MAX_ID_BYTES = 2048
MAX_TRUST_DOMAIN = 255
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]+")
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
_SERVICE_SHAPE = "spiffe://<trust-domain>/ns/default/dc/<dc>/svc/<service>"
_AGENT_SHAPE = "spiffe://<trust-domain>/agent/client/dc/<dc>/id/<node-id>"


class SpiffeError(ValueError):
    """Not a SPIFFE ID of the shape asked for; the message says why."""


@dataclass(frozen=True)
class SpiffeId:
    """Any well-formed SPIFFE ID: a trust domain and its path segments."""

    trust_domain: str
    segments: tuple[str, ...] = ()

    @property
    def uri(self) -> str:
        return SCHEME + "/".join((self.trust_domain, *self.segments))


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


@dataclass(frozen=True)
class AgentId:
    """An agent's identity on the RPC port: which node, in which datacenter."""

    trust_domain: str
    datacenter: str
    node_id: str

    @property
    def uri(self) -> str:
        return f"spiffe://{self.trust_domain}/agent/client/dc/{self.datacenter}/id/{self.node_id}"


def check_trust_domain(name: str) -> str:
    """`name` if it is a valid SPIFFE trust domain; SpiffeError naming the problem."""
    if not name:
        raise SpiffeError("trust domain is empty")
    if "@" in name:
        raise SpiffeError(f"trust domain {name!r} has user info; a SPIFFE ID has none")
    if ":" in name:
        raise SpiffeError(f"trust domain {name!r} has a port; a SPIFFE ID has none")
    if name != name.lower():
        raise SpiffeError(f"trust domain {name!r} has upper-case letters; it must be lower case")
    if not _TRUST_DOMAIN.fullmatch(name):
        raise SpiffeError(f"trust domain {name!r} may hold only a-z, 0-9, '.', '-' and '_'")
    if len(name) > MAX_TRUST_DOMAIN:
        raise SpiffeError(f"trust domain is longer than {MAX_TRUST_DOMAIN} characters")
    return name


def parse_id(uri: str) -> SpiffeId:
    """Any SPIFFE ID the spec accepts; SpiffeError naming what it rejects."""
    if not isinstance(uri, str):
        raise SpiffeError(f"a SPIFFE ID is a string, got {type(uri).__name__}")
    if len(uri.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        raise SpiffeError(f"a SPIFFE ID is at most {MAX_ID_BYTES} bytes")
    rest = _strip_scheme(uri)
    if "#" in rest:
        raise SpiffeError("a SPIFFE ID has no fragment ('#')")
    if "?" in rest:
        raise SpiffeError("a SPIFFE ID has no query ('?')")
    authority, slash, path = rest.partition("/")
    trust_domain = check_trust_domain(authority)
    if not slash:
        return SpiffeId(trust_domain)
    return SpiffeId(trust_domain, _segments(path))


def _strip_scheme(uri: str) -> str:
    scheme, colon, after = uri.partition(":")
    if not colon or not scheme or "/" in scheme:
        raise SpiffeError(f"not a SPIFFE ID: it does not start with {SCHEME!r}")
    if scheme != "spiffe":
        if scheme.lower() == "spiffe":
            raise SpiffeError(f"scheme must be lower-case 'spiffe', got {scheme!r}")
        raise SpiffeError(f"scheme must be 'spiffe', got {scheme!r}")
    if not after.startswith("//"):
        raise SpiffeError("'spiffe:' must be followed by '//' and the trust domain")
    return after[2:]


def _segments(path: str) -> tuple[str, ...]:
    if not path:
        raise SpiffeError("a SPIFFE ID has no trailing slash")
    parts = path.split("/")
    for number, segment in enumerate(parts, start=1):
        if not segment:
            if number == len(parts):
                raise SpiffeError("a SPIFFE ID has no trailing slash")
            raise SpiffeError(f"path segment {number} is empty ('//')")
        if segment in (".", ".."):
            raise SpiffeError(f"path segment {number} is {segment!r}; dot segments are refused")
        if not _SEGMENT.fullmatch(segment):
            raise SpiffeError(
                f"path segment {number} ({segment!r}) may hold only A-Z, a-z, 0-9, '.', '-', '_'"
            )
    return tuple(parts)


def trust_domain_uri(trust_domain: str) -> str:
    """The bare trust-domain ID a root carries in its URI SAN: `spiffe://<td>`."""
    return SCHEME + check_trust_domain(trust_domain)


def parse_trust_domain_uri(uri: str) -> str:
    """The trust domain of a bare `spiffe://<td>`; SpiffeError if it has a path."""
    found = parse_id(uri)
    if found.segments:
        raise SpiffeError(f"{uri!r} has a path; a trust-domain ID is spiffe://<trust-domain>")
    return found.trust_domain


def parse_service_uri(uri: str) -> ServiceId:
    """The service a SPIFFE URI names; SpiffeError when it is not a service ID we accept."""
    found = parse_id(uri)
    return _service(found.trust_domain, found.segments)


def parse_agent_uri(uri: str) -> AgentId:
    """The agent a SPIFFE URI names; SpiffeError when it is not an agent ID."""
    found = parse_id(uri)
    return _agent(found.trust_domain, found.segments)


def parse_identity(uri: str) -> ServiceId | AgentId:
    """A service or agent ID, told apart by the first path segment."""
    found = parse_id(uri)
    if found.segments[:1] == ("agent",):
        return _agent(found.trust_domain, found.segments)
    return _service(found.trust_domain, found.segments)


def _service(trust_domain: str, segments: tuple[str, ...]) -> ServiceId:
    if segments[:1] == ("ap",):
        if len(segments) < 2:
            raise SpiffeError(f"path does not name a service; expected {_SERVICE_SHAPE}")
        _require_default("ap", segments[1])
        segments = segments[2:]
    if len(segments) != 6 or segments[0::2] != ("ns", "dc", "svc"):
        shown = "/".join(segments) or "(empty)"
        raise SpiffeError(f"path {shown!r} does not name a service; expected {_SERVICE_SHAPE}")
    _require_default("ns", segments[1])
    service = segments[5]
    bad = [p for p in validate(Intention(service, "x", action="allow")) if p.field == "SourceName"]
    if bad or service == "*":
        raise SpiffeError(f"service {service!r} is not a valid service name")
    return ServiceId(trust_domain=trust_domain, datacenter=segments[3], service=service)


def _agent(trust_domain: str, segments: tuple[str, ...]) -> AgentId:
    if len(segments) != 6 or segments[0::2] != ("agent", "dc", "id") or segments[1] != "client":
        shown = "/".join(segments) or "(empty)"
        raise SpiffeError(f"path {shown!r} does not name an agent; expected {_AGENT_SHAPE}")
    return AgentId(trust_domain=trust_domain, datacenter=segments[3], node_id=segments[5])


def _require_default(scope: str, value: str) -> None:
    if value != DEFAULT:
        raise SpiffeError(f"{scope} must be {DEFAULT!r} (Enterprise feature), got {value!r}")
