"""The light front's pure part: which request heads it answers itself, and its answer heads.

The front (front.py) takes a request itself only when the answer cannot
depend on anything it does not look at: a complete `GET` head over
HTTP/1.1 with keep-alive, no body, no `Expect` or `Upgrade`, to a hot read
route (`HOT_ROUTES`) whose path holds no percent escape, dot segment, brace
or fragment. Anything else, including a head httptools refuses, is handed
to aiohttp untouched, so every other request is answered exactly as before
(an error included: the front never words one of its own for a head).

The answer heads are aiohttp's, byte for byte in the same order
(`Content-Type`, the index or content-hash headers, `Content-Length`,
`Date`, `Server`), so
a client cannot tell which front answered (tests/test_http_front.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus

import httptools

HEALTH_SERVICE = "/v1/health/service/{name}"
CATALOG_SERVICE = "/v1/catalog/service/{name}"
CATALOG_SERVICES = "/v1/catalog/services"
AGENT_SERVICES = "/v1/agent/services"
HOT_ROUTES = (HEALTH_SERVICE, CATALOG_SERVICE, CATALOG_SERVICES, AGENT_SERVICES)
_PREFIXES = (("/v1/health/service/", HEALTH_SERVICE), ("/v1/catalog/service/", CATALOG_SERVICE))
_REFUSED_HEADERS = frozenset({b"expect", b"upgrade"})
_TOKEN_HEADERS = {b"x-consul-token": "X-Consul-Token", b"authorization": "Authorization"}


class PlainGet:
    """A request head the front may take: its target and the headers a token comes in
    (the first of each, as aiohttp's `headers.get` reads them); httptools' callbacks."""

    __slots__ = ("complete", "headers", "parser", "plain", "refused", "target")

    def __init__(self) -> None:
        self.target = ""
        self.headers: dict[str, str] = {}
        self.complete = self.refused = self.plain = False
        self.parser = httptools.HttpRequestParser(self)

    def on_url(self, url: bytes) -> None:
        self.target += url.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered in _REFUSED_HEADERS:
            self.refused = True
        elif lowered in _TOKEN_HEADERS:
            self.headers.setdefault(_TOKEN_HEADERS[lowered], value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        # read here: once the message completes the parser forgets them
        p = self.parser
        self.plain = (
            p.get_method() == b"GET" and p.get_http_version() == "1.1" and p.should_keep_alive()
        )

    def on_message_complete(self) -> None:
        self.complete = True


def plain_get(head: bytes) -> PlainGet | None:
    """`head` (one request's bytes up to its blank line) when it is a complete keep-alive
    HTTP/1.1 GET with nothing the front leaves to aiohttp; else None."""
    seen = PlainGet()
    try:
        seen.parser.feed_data(head)
    except (httptools.HttpParserError, httptools.HttpParserUpgrade):
        return None  # aiohttp answers what it must
    finally:
        del seen.parser  # it refers back to `seen`: no cycle left for the collector
    if not (seen.complete and seen.plain) or seen.refused or not seen.target.isascii():
        return None
    return seen


def hot_route(target: str) -> tuple[str, str, str, str] | None:
    """(route pattern, `name` in it or "", path, query string) for a target the front
    answers; None for every other target (aiohttp routes it)."""
    if not target.startswith("/") or "%" in target or "#" in target:
        return None
    path, _, query = target.partition("?")
    if path in (CATALOG_SERVICES, AGENT_SERVICES):
        return path, "", path, query
    for prefix, route in _PREFIXES:
        if path.startswith(prefix):
            name = path[len(prefix) :]
            if name and name not in (".", "..") and not any(c in name for c in "/{}"):
                return route, name, path, query
    return None


def json_head(length: int, headers: Mapping[str, str], date: str, server: str) -> bytes:
    """The head aiohttp sends before a JSON body of `length` bytes with `headers`
    (`server`: aiohttp's SERVER_SOFTWARE)."""
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{lines}"
        f"Content-Length: {length}\r\nDate: {date}\r\nServer: {server}\r\n\r\n"
    ).encode("latin-1")


def text_head(status: int, length: int, date: str, server: str) -> bytes:
    """The head aiohttp sends before a plain-text error body (`web.Response(text=...)`)."""
    return (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {length}\r\nDate: {date}\r\nServer: {server}\r\n\r\n"
    ).encode("latin-1")
