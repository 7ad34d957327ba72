"""`X-Forwarded-Client-Cert`: the caller's verified identity, told to the app. Pure.

An app behind an `http` sidecar may want to know who called, as apps in
Consul's mesh read it from Envoy: each request the inbound sidecar passes on
carries `X-Forwarded-Client-Cert: By=<this service's SPIFFE ID>;Hash=<SHA-256
of the caller's leaf>;URI=<the caller's SPIFFE ID>` (Envoy's keys; not its
`Cert` and `Chain`, a few KiB of PEM per request). Whatever a client sent
under that name is dropped first, on every HTTP sidecar: a client's app
could otherwise name any caller it liked, since an L4 upstream carries its
bytes as they are. Computed once per mTLS connection, not per request. On
the h2 gate (`http2`, `grpc`) a client's field is dropped, but none is
added: that would write every header block again (h2_gate.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from gossamer.proxy.authorize import Refused, Trust, client_service
from gossamer.proxy.ca.verified_chain import ChainMemory
from gossamer.proxy.http_codec import XFCC_NAMES


def header_value(
    by: str, chain: Sequence[bytes], trust: Trust, now: datetime, known: ChainMemory | None
) -> bytes:
    """The value for a caller that presented `chain` (leaf first); b"" when there is none
    to give (no chain, no own SPIFFE ID, a chain the trust no longer takes)."""
    if not chain or not by:
        return b""
    try:
        uri = client_service(chain, trust, now, known).uri
    except Refused:
        return b""
    digest = hashlib.sha256(chain[0]).hexdigest()
    return f"By={by};Hash={digest};URI={uri}".encode()


def without_field(fields: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """HTTP/2 header fields (names lower-case) without any of this name, in any of its
    spellings (XFCC_NAMES: `_` for `-`, one field to CGI and WSGI apps), the same object
    when there was none."""
    for name, _ in fields:
        if name in XFCC_NAMES:
            return [field for field in fields if field[0] not in XFCC_NAMES]
    return fields
