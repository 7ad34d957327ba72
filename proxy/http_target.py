"""A request target as the L7 permissions judge it and the app receives it. Pure.

A permission on `/admin` must not be stepped around by spelling the path
another way the app reads the same: `/public/../admin`, `/%61dmin`,
`/public/%2e%2e/admin`, `\\admin`, or the absolute form
`http://db/admin`. So, as Consul has Envoy do by default (`normalize_path`,
RFC 3986 §6.2.2), the path is normalized before it is decided, and the
normalized target is what goes on to the app: what was judged is what is
served. Percent-escapes of unreserved characters are decoded and the rest
upper-cased, a backslash is a slash, dot segments are removed (§5.2.4). An
escaped slash (`%2F`) stays as sent, and `//` is kept, as in Consul's
defaults. A fragment (`#`) is no part of a target (RFC 9112 §3.2) and an
app's URL parser would drop it, after the rules judged the path with it
(`/public/..#/admin` is `/` to the app): such a target is refused, as
Envoy refuses it. An absolute-form target (`http://host/path`, what a client that
takes the sidecar for a forward proxy sends) becomes its path, and its
authority the request's Host (RFC 9112 §3.2.2). The query is left as sent.
A Host (or that authority) that is not a host and a port is refused.

Most targets need none of it, and cost only the check in `normalize`.
"""

from __future__ import annotations

import re
from typing import Final

from gossamer.proxy.http_codec import CRLF, SEP

_UNRESERVED: Final = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)
_HEX: Final = frozenset(b"0123456789abcdefABCDEF")
# One byte looked for as its value: `b"%" in url` first tries the bytes as an integer, and
# CPython builds (and drops) a TypeError for it each time, ~0.15 us; `0x25 in url` is a
# memchr. Longer needles use find().
_PERCENT: Final = 0x25
_BACKSLASH: Final = 0x5C
_HASH: Final = 0x23
# RFC 9110 §7.2 / RFC 3986 §3.2.2: a reg-name (or an IP literal), then digits for a port.
_HOST: Final = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?")


class BadTarget(ValueError):
    """A target that cannot be read as a path (a broken escape, a scheme other than http(s)):
    the request gets `400`."""


def normalize(url: bytes) -> tuple[bytes, bytes | None]:
    """(the target to judge and send on, the authority of an absolute-form target or None).
    A target already in normal form comes back as it is, the same object."""
    if (url[:1] == b"/" and _PERCENT not in url and url.find(b"/.") < 0
            and _BACKSLASH not in url and _HASH not in url):  # fmt: skip
        return url, None  # (a query with an escape takes the longer way, to the same end)
    if url == b"*":  # OPTIONS * (asterisk-form): no path to normalize
        return url, None
    if _HASH in url:
        raise BadTarget("a request target has no fragment")
    authority = None
    if url[:1] != b"/":
        authority, url = _origin_form(url)
    path, mark, query = url.partition(b"?")
    normal = _dot_free(_escapes(path).replace(b"\\", b"/")) + mark + query
    return (url if normal == url else normal), authority


def _origin_form(url: bytes) -> tuple[bytes, bytes]:
    """An absolute-form target's authority, and its path and query (at least "/")."""
    scheme, sep, rest = url.partition(b"://")
    if not sep or scheme.lower() not in (b"http", b"https"):
        raise BadTarget("a request target is a path or an http(s) URL")
    cut = min((i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0), default=len(rest))
    authority, target = rest[:cut], rest[cut:]
    if not authority or not valid_host(authority):
        raise BadTarget("an absolute-form target needs a host, without user info")
    return authority, target if target.startswith(b"/") else b"/" + target


def valid_host(value: bytes) -> bool:
    """A Host value (or an absolute-form target's authority) is a host and maybe a port, as
    nginx and Envoy want it: `s/admin`, `s@admin`, `a b`, `s:abc` are read as another site,
    or another path, by an app or a proxy in front of it that splits them its own way. An
    empty one is a Host (RFC 9112 §3.2: a target with no authority)."""
    return _HOST.fullmatch(value) is not None


def host_of(head: list[bytes]) -> bytes:
    """The value of a flat head's Host field (b"" when it has none): it comes first from
    most clients, so this is one step for them."""
    for i in range(0, len(head), 4):
        if head[i].lower() == b"host":
            return head[i + 2]
    return b""


def _escapes(path: bytes) -> bytes:
    """Percent-escapes of unreserved characters decoded, the others' hex upper-cased."""
    if _PERCENT not in path:
        return path
    out = bytearray()
    i, n = 0, len(path)
    while i < n:
        c = path[i]
        if c != _PERCENT:
            out.append(c)
            i += 1
            continue
        pair = path[i + 1 : i + 3]
        if len(pair) != 2 or pair[0] not in _HEX or pair[1] not in _HEX:
            raise BadTarget("a broken percent-escape in the request path")
        value = int(pair, 16)
        out += bytes([value]) if value in _UNRESERVED else b"%" + pair.upper()
        i += 3
    return bytes(out)


def _dot_free(path: bytes) -> bytes:
    """RFC 3986 §5.2.4 remove_dot_segments on an absolute path ("/.." stays at the root)."""
    if path.find(b"/.") < 0:
        return path
    segments = path.split(b"/")
    kept: list[bytes] = []
    for segment in segments[1:]:
        if segment == b"..":
            if kept:
                kept.pop()
        elif segment != b".":
            kept.append(segment)
    if segments[-1] in (b".", b".."):
        kept.append(b"")  # "/a/b/.." is "/a/": the last segment was a directory
    return b"/" + b"/".join(kept)


def with_host(head: list[bytes], authority: bytes) -> list[bytes]:
    """A flat head (http_codec.add_header) whose Host is `authority`: the first Host header
    takes it, any other goes, and one is added if there was none."""
    kept: list[bytes] = []
    placed = False
    for i in range(0, len(head), 4):
        if head[i].lower() == b"host":
            if not placed:
                kept += (head[i], head[i + 1], authority, head[i + 3])
                placed = True
            continue
        kept += head[i : i + 4]
    return kept if placed else [b"Host", SEP, authority, CRLF, *kept]


def normal_path(fields: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """HTTP/2 header fields with `:path` normalized, the same object when it already was;
    BadTarget for one that is no path."""
    for i, (name, value) in enumerate(fields):
        if name == b":path":
            if value == b"*" and (b":method", b"OPTIONS") not in fields:
                raise BadTarget("the asterisk-form target is OPTIONS's only (RFC 9110 §7.1)")
            normal = normalize(value)[0]
            return fields if normal is value else [*fields[:i], (name, normal), *fields[i + 1 :]]
    return fields
