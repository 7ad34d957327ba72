"""Which HTTP/1.1 upgrades the L7 path passes on, and a head with one taken out. Pure.

After a `101` the two connections are joined byte for byte and nothing that
follows is decided request by request. WebSocket needs that, and it is safe
for it: its frames are not HTTP requests. An upgrade to `h2c` is not: a
client asks for an allowed path with `Upgrade: h2c`, the app switches to
HTTP/2, and every request after it on that connection reaches the app
unjudged ("h2c smuggling"); any other protocol would carry bytes no
permission reads. So only `websocket` is passed on. From any other upgrade
the `Upgrade` and `HTTP2-Settings` headers and their `Connection` tokens are
taken out and the request goes on as a plain HTTP/1.1 one, answered
normally: a server may ignore an Upgrade (RFC 9110 §7.8), Envoy drops `h2c`
the same way (Java's HTTP clients offer it on every request), and a `403`
for an upgrade nobody needed breaks clients that only offered it.
"""

from __future__ import annotations

from typing import Final

PASSED: Final = frozenset({b"websocket"})  # protocols joined byte for byte after a 101
_TAKEN_OUT: Final = frozenset({b"upgrade", b"http2-settings"})


def _tokens(value: bytes) -> list[bytes]:
    """A comma-separated header value's tokens, lower-cased, without a `/version`."""
    return [t.strip().split(b"/")[0].lower() for t in value.split(b",") if t.strip()]


def passes(head: list[bytes]) -> bool:
    """Every protocol the request's `Upgrade` headers offer is one passed on (a list with
    another in it is not: the app could pick that one)."""
    offered = [t for i in range(0, len(head), 4) if head[i].lower() == b"upgrade"
               for t in _tokens(head[i + 2])]  # fmt: skip
    return bool(offered) and all(t in PASSED for t in offered)


def without_upgrade(head: list[bytes]) -> list[bytes]:
    """A flat head (http_codec.add_header) with its upgrade taken out: no `Upgrade` or
    `HTTP2-Settings` header, and no `Connection` token naming them (a `Connection` left
    with none goes too)."""
    kept: list[bytes] = []
    for i in range(0, len(head), 4):
        name, value = head[i], head[i + 2]
        lowered = name.lower()
        if lowered in _TAKEN_OUT:
            continue
        if lowered == b"connection":
            left = [t.strip() for t in value.split(b",")
                    if t.strip() and t.strip().lower() not in _TAKEN_OUT]  # fmt: skip
            if not left:
                continue
            value = b", ".join(left)
        kept += (name, head[i + 1], value, head[i + 3])
    return kept
