"""Whether an HTTP/2 request's header fields are well-formed, before the gate judges them. Pure.

The gate decides a request on its decoded fields and hands the app the same
fields (h2_gate.py). A request that RFC 9113 calls malformed (§8.1.1: an
intermediary must not forward it) could be read one way by the intentions
and another by the app: two `:path` fields are one joined path to the
rules and the first or the last to the app; a CR or LF inside a value is
one field here and two to an app that writes the request again as
HTTP/1; a `transfer-encoding` or `connection` field means nothing in
HTTP/2 and something to an HTTP/1 hop behind. So such a request is refused
(`400`), as llhttp refuses its HTTP/1 cousins, and `CONNECT` gets `501`,
as on the HTTP/1 path: a tunnel to wherever the client names is `tcp`, not
L7. Trailers, the only block a client may send on a stream it opened
already, carry no pseudo-header and end the stream (§8.1); anything else
on an open stream would be a request nobody decided.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Final

from gossamer.intentions.model import HttpRequest
from gossamer.proxy import http_target, xfcc
from gossamer.proxy.http_codec import XFCC_NAMES, judged_request

# RFC 9113 §8.2.1: a name holds none of 0x00-0x20, 0x41-0x5a (upper case), 0x7f-0xff, and a
# colon only as a pseudo-header's first byte (and pseudo-headers are a known few). `translate`
# deletes the bytes a name may hold: what is left is what it may not.
_NAME_OK: Final = bytes(
    b for b in range(256) if 0x20 < b < 0x7F and b != 58 and not 0x41 <= b <= 0x5A
)
_METHOD: Final = 1
_SCHEME: Final = 2
_AUTHORITY: Final = 4
_PATH: Final = 8
_PROTOCOL: Final = 16
_REGULAR: Final = 32  # a regular field came: no pseudo-header after it
_PSEUDO: Final = {b":method": _METHOD, b":scheme": _SCHEME, b":authority": _AUTHORITY,
           b":path": _PATH, b":protocol": _PROTOCOL}  # fmt: skip
_JUDGED: Final = (b":method", b":path")
# §8.2.2: fields of a connection, which HTTP/2 has no use for (`te` only as "trailers")
_CONNECTION: Final = frozenset(
    (b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding", b"upgrade")
)
OK: Final = 0
BAD: Final = 400
TOO_LARGE: Final = 431  # a header list past the limit (the gate's reader: `over`)
TUNNEL: Final = 501
_GRPC_DENIED: Final = [(b":status", b"200"), (b"content-type", b"application/grpc"),
                (b"grpc-status", b"7"), (b"grpc-message", b"RBAC: access denied")]  # fmt: skip
_GRPC_TIMED_OUT: Final = [(b":status", b"200"), (b"content-type", b"application/grpc"),
                   (b"grpc-status", b"4"),
                   (b"grpc-message", b"upstream request timeout")]  # fmt: skip
_GRPC_NO_ROUTE: Final = [(b":status", b"200"), (b"content-type", b"application/grpc"),
                  (b"grpc-status", b"12")]  # fmt: skip  # Envoy's 404, for a gRPC client
_GRPC_ANSWERS: Final = {403: _GRPC_DENIED, 404: _GRPC_NO_ROUTE, 504: _GRPC_TIMED_OUT}


def checked(fields: list[tuple[bytes, bytes]], malformed: bool, ended: bool
            ) -> tuple[int, list[tuple[bytes, bytes]], int]:  # fmt: skip
    """A new stream's request: its fault (OK, BAD, TUNNEL; `malformed`: a field's bytes
    were bad), its fields as the intentions and the app see them (`:path` normalized, a
    client's X-Forwarded-Client-Cert dropped; the same list when nothing changed), and its
    content-length (-1: none; `ended`: no body follows its headers)."""
    fault = BAD if malformed else request_fault(fields)
    length = -1 if fault else body_length(fields)
    if fault or length < -1 or (ended and length > 0):
        return fault or BAD, fields, -1
    try:
        return OK, xfcc.without_field(http_target.normal_path(fields)), length
    except http_target.BadTarget:
        return BAD, fields, -1  # (as an HTTP/1 target that is no path)


def body_length(fields: Sequence[tuple[bytes, bytes]]) -> int:
    """A request's content-length: -1 when it says none, -2 when a value is no length or two
    disagree (RFC 9110 §8.6). The gate holds its DATA to it (RFC 9113 §8.1.1), so an app
    that reads the length, or a hop that writes the request again as HTTP/1, never sees a
    body that is longer or shorter than said."""
    length = -1
    for name, value in fields:
        if name == b"content-length":
            if not value.isdigit() or len(value) > 15 or 0 <= length != int(value):
                return -2
            length = int(value)
    return length


def request_of(fields: Sequence[tuple[bytes, bytes]]) -> HttpRequest:
    """What the intentions see of a request: as the HTTP/1 path's (`judged_request`), a
    true-binary `-bin` value (`field_fault`) as the base64 a client sends when the ends
    did not agree on raw bytes (unpadded, as gRPC writes it): what Envoy, which never
    offers raw bytes, would match a rule on that field against."""
    pseudo = {name: value for name, value in fields if name in _JUDGED}
    method, path = pseudo.get(b":method", b""), pseudo.get(b":path", b"")
    if any(v[:1] == b"\0" and n.endswith(b"-bin") for n, v in fields):
        fields = [(n, _base64(v[1:]) if v[:1] == b"\0" and n.endswith(b"-bin") else v)
                  for n, v in fields]  # fmt: skip
    return judged_request(method.decode("latin-1"), path.decode("latin-1"), fields)


def _base64(raw: bytes) -> bytes:
    return base64.b64encode(raw).rstrip(b"=")


def answer(status: int, fields: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The header block of a call answered here: a gRPC call (a request whose `content-type`
    is gRPC's) denied (`403`), with no route (`404`) or timed out (`504`) gets trailers-only
    PERMISSION_DENIED, UNIMPLEMENTED or DEADLINE_EXCEEDED, as Envoy answers them; anything
    else `status` and no body."""
    grpc = _GRPC_ANSWERS.get(status)
    if grpc is not None and any(
        n == b"content-type" and v.startswith(b"application/grpc") for n, v in fields
    ):
        return grpc
    return [(b":status", str(status).encode()), (b"content-length", b"0")]


def request_fault(fields: Sequence[tuple[bytes, bytes]]) -> int:
    """OK, BAD (malformed: §8.2.2, §8.3) or TUNNEL (CONNECT without `:protocol`) for the
    fields of a request's header block. (Each field's bytes, §8.2.1, are the reader's to
    check as it decodes them: `field_fault`.)"""
    seen = 0  # a bit per pseudo-header
    method = path = authority = host = b""
    for name, value in fields:
        if name[:1] == b":":
            bit = _PSEUDO.get(name, 0)
            if not bit or seen & (bit | _REGULAR):
                return BAD  # unknown, twice, or after a regular field
            seen |= bit
            if bit == _METHOD:
                method = value
            elif bit == _PATH:
                path = value
            elif bit == _AUTHORITY:
                authority = value
            continue
        seen |= _REGULAR
        if name in _CONNECTION or (name == b"te" and value != b"trailers"):
            return BAD
        if name == b"host":
            if host:
                return BAD
            host = value
    if not method:
        return BAD
    if method == b"CONNECT" and not seen & _PROTOCOL:
        return TUNNEL  # (RFC 8441's extended CONNECT has a :path, and is judged by it)
    if not seen & _SCHEME or not path or (seen & _PROTOCOL and method != b"CONNECT"):
        return BAD
    if host and authority and host != authority:
        return BAD  # §8.3.1: two authorities, one for the rules and one for the app
    return OK


def trailers_fault(fields: Sequence[tuple[bytes, bytes]], ends_stream: bool) -> bool:
    """Whether a block on a stream the client opened already is not trailers (§8.1)."""
    return not ends_stream or has_pseudo(fields)


def has_pseudo(fields: Sequence[tuple[bytes, bytes]]) -> bool:
    """Whether a block holds a pseudo-header: it would open a request, or answer one."""
    return any(name[:1] == b":" for name, _ in fields)


def trailers_forbidden(fields: Sequence[tuple[bytes, bytes]]) -> bool:
    """Whether trailers carry what may not be sent there (RFC 9110 §6.5.1): a connection's
    field (§8.2.2), or an X-Forwarded-Client-Cert, which only the gate writes, once, in the
    request's headers: in trailers it would name a caller to the app after the decision."""
    for name, value in fields:
        if name in _CONNECTION or name in XFCC_NAMES or (name == b"te" and value != b"trailers"):
            return True
    return False


# gRPC core's true-binary metadata: two grpc-core ends that both send SETTINGS entry 0xfe03
# send a `-bin` field's value raw behind a NUL instead of base64. The gate passes SETTINGS
# on untouched, so a grpcio client of a grpcio app does it through the sidecars: refused,
# every call with binary metadata failed (`400`, INTERNAL at the client). Such a value is
# the two ends' own, read by neither the rules nor an HTTP/1 hop (a gRPC app's stack).


def field_fault(name: bytes, value: bytes) -> bool:
    """Whether a field's bytes break §8.2.1: a name empty, or holding what `_NAME_OK` lacks
    (a colon only first); a value holding NUL, CR or LF, or a space or tab at either end,
    unless it is a `-bin` field's true-binary value (above)."""
    bare = name[1:] if name[:1] == b":" else name
    if not bare or bare.translate(None, _NAME_OK):
        return True
    if not value:
        return False
    if value[0] == 0 and name.endswith(b"-bin"):
        return False  # gRPC's true-binary metadata: a NUL, then raw bytes (above `field_fault`)
    return (
        value[0] in (32, 9) or value[-1] in (32, 9)
        or 13 in value or 10 in value or 0 in value  # CR, LF, NUL (as values: http_target)
    )  # fmt: skip
