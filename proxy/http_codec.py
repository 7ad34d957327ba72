"""HTTP/1.1 as the inbound path writes it: heads, body framing, the proxy's own answers. Pure.

A request or response goes on only once httptools has parsed its whole
head, and it goes on re-serialized from what was parsed (never the raw
bytes), with its body framed the way it came (chunked stays chunked with
the chunks re-encoded and the trailer fields after them kept, a
Content-Length body goes as is). So nothing half-parsed is forwarded, and
an ambiguous message (Content-Length with Transfer-Encoding, two lengths,
a bad chunk) never reaches the other side: llhttp refuses it first.

A head is kept flat as parsed (`add_header`: name, ": ", value, CRLF per
header), so writing it on is one join.

`Exchange` is one request and its answer; `Outcome` is what is known of
it once answered (status, seconds, route), the one record per request
that the counters and metrics read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import product
from typing import Any, Final

from gossamer.intentions.model import Decision, HttpRequest

REASONS: Final = {
    400: b"Bad Request", 403: b"Forbidden", 404: b"Not Found", 408: b"Request Timeout",
    431: b"Request Header Fields Too Large", 501: b"Not Implemented", 502: b"Bad Gateway",
    503: b"Service Unavailable", 504: b"Gateway Timeout",
}  # fmt: skip
DENIED_BODY: Final = b"RBAC: access denied"  # what Envoy's RBAC filter answers: no internals named
DENIED: Final = (403, DENIED_BODY)  # `HttpHost.refusal` where the intentions refuse
IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})  # RFC 9110
HOP_BY_HOP: Final = frozenset({b"connection", b"keep-alive", b"proxy-connection"})  # RFC 9110 7.6.1
RETRY_STATUSES: Final = (502, 503)  # from the far sidecar (its app failed) or the app: elsewhere


class Outcome:
    """One answered request: who asked, the route that decided it, the status (0: none was
    sent) and how long it took.

    Made once per request, so a plain class, not a NamedTuple or a dataclass: compiled
    (proxy/native.py) its constructor is native code, where a NamedTuple's and a
    dataclass's generated ones stay interpreted (bench/README.md, http_path.py)."""

    __slots__ = ("route", "seconds", "source", "status")

    def __init__(self, source: str, route: str, status: int, seconds: float) -> None:
        self.source = source
        self.route = route
        self.status = status
        self.seconds = seconds


class Exchange:
    """One request on a client connection, from its head until its answer is written.

    A plain class for the reason Outcome is one."""

    __slots__ = ("answered", "chunked", "complete", "decision", "early", "expect_continue",
                 "failed_on", "fault", "http10", "idempotent", "keep_alive", "kept", "method",
                 "out", "replay", "request_of", "request_s", "retries", "rules", "sent",
                 "started", "target", "upgrade", "url")  # fmt: skip

    def __init__(self, method: str, url: bytes, keep_alive: bool, chunked: bool,
                 decision: Decision | None, started: float, upgrade: bool) -> None:  # fmt: skip
        self.method = method
        self.url = url
        self.keep_alive = keep_alive
        self.chunked = chunked  # the request body is chunked (re-chunked on the way)
        self.decision = decision  # None: allowed without looking at the request
        self.started = started
        self.upgrade = upgrade
        self.expect_continue = False
        # An HTTP/1.0 request: its keep-alive holds only while each answer says it back.
        self.http10 = False
        self.out: list[bytes] = []  # bytes for the app not sent yet
        self.complete = False  # the whole request has been read
        self.sent = False  # its head went to the app
        self.answered = False  # a final response head went to the client
        # Sent again on a retry (pooled hosts): its head and its body so far, until the body
        # passes http1.KEPT_BODY (`kept` bytes of it kept). An idempotent one may be retried
        # after any failure; any other only when it is known never to have reached an app.
        self.replay: list[bytes] | None = None
        self.kept = 0
        self.idempotent = False
        self.retries = 0
        self.failed_on: tuple[object, ...] = ()  # where its failed attempts went (pooled hosts)
        self.target = ""  # the service a split drew for it (pooled hosts): its retries' too
        self.request_s = 0.0  # its own request timeout (a service-router route's); 0: the host's
        # A service-router route's retries and answer edits (route_rules.RouteRules), None:
        # the host's rules alone. Typed loosely: a sidecar with no router never loads them.
        self.rules: Any = None
        self.fault = 0  # the client broke it (400, 431, 408): answered so in its turn, then close
        # Its answer ended before the request did (an early answer: a 401, a 413, nginx's
        # `return`): (status, keep-alive) until the request's end, which ends the exchange.
        self.early: tuple[int, bool] | None = None
        # The request as the intentions see it (built when first asked for): decided again on
        # a policy change while it is in flight, or for as long as its upgrade's tunnel lasts,
        # since no request follows it on its connection (inbound_http.recheck_sessions).
        self.request_of: Callable[[], HttpRequest] | None = None

    @property
    def allowed(self) -> bool:
        return self.decision is None or self.decision.allowed

    @property
    def route(self) -> str:
        """The L7 permission that decided the request (its metrics label), "" when none did:
        never the raw path, which a client could vary without bound."""
        return "" if self.decision is None else self.decision.route


SEP: Final = b": "
CRLF: Final = b"\r\n"
CONNECTION_CLOSE: Final = (b"connection", SEP, b"close", CRLF)
# HTTP/1.0's keep-alive, which it has only in words: on a hop that stays open, and in an
# answer to a client that asked for it.
KEEP_ALIVE: Final = (b"connection", SEP, b"keep-alive", CRLF)


def add_header(head: list[bytes], name: bytes, value: bytes) -> None:
    """One parsed header onto a flat head: name, ": ", value, CRLF."""
    head += (name, SEP, value, CRLF)


def request_head(method: str, url: bytes, version: str, head: list[bytes]) -> bytes:
    """A request line and headers, as parsed."""
    return b"".join([b"%s %s HTTP/%s\r\n" % (method.encode(), url, version.encode()), *head,
                     CRLF])  # fmt: skip


def response_head(status: int, reason: bytes, head: list[bytes]) -> bytes:
    """A status line and headers, as parsed (always HTTP/1.1 towards the client)."""
    return b"".join([b"HTTP/1.1 %d %s\r\n" % (status, reason), *head, CRLF])


def chunk(data: bytes) -> bytes:
    """One body chunk in chunked framing."""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK: Final = b"0\r\n\r\n"


def last_chunk(trailers: list[bytes]) -> bytes:
    """The end of a chunked body, with its trailer fields (a flat head, as parsed) if any."""
    return b"".join([b"0\r\n", *trailers, CRLF]) if trailers else LAST_CHUNK


def local_response(status: int, body: bytes = b"", *, close: bool = False,
                   bodiless: bool = False) -> bytes:  # fmt: skip
    """An answer of the proxy's own (400, 403, 408, 431, 501, 502, 503, 504): short, plain
    text; `bodiless` (an answer to HEAD): its head only, which a client reads as the whole
    answer (RFC 9110 §9.3.2), with the length a GET would have had."""
    text = body or REASONS.get(status, b"Error")
    head = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"Error")),
            b"content-type: text/plain\r\n", b"content-length: %d\r\n" % len(text)]  # fmt: skip
    if close:
        head.append(b"connection: close\r\n")
    return b"".join(head) + (b"\r\n" if bodiless else b"\r\n" + text)


# What `head_facts` finds in a head, as bits (one pass over the headers for all of them).
CHUNKED: Final = 1
LENGTH: Final = 2
EXPECT: Final = 4
HOP: Final = 8
_CODING: Final = 16  # Transfer-Encoding: CHUNKED when chunked is its last coding
UPGRADE: Final = 32
HOST: Final = 64
TWO_HOSTS: Final = 128  # more than one Host line
CODED: Final = 256  # a Transfer-Encoding other than just `chunked` (`gzip, chunked`)
XFCC: Final = 512  # X-Forwarded-Client-Cert (xfcc.py)
XFCC_NAME: Final = b"x-forwarded-client-cert"
# ... and every spelling of it with `_` for a `-`: CGI and WSGI apps (wsgiref, Django, PHP)
# key both as HTTP_X_FORWARDED_CLIENT_CERT, joined, so a client's would name the caller too.
XFCC_NAMES: Final = frozenset(
    b"x%cforwarded%cclient%ccert" % marks for marks in product(b"-_", repeat=3)
)
_FACTS: Final = {b"content-length": LENGTH, b"expect": EXPECT, b"transfer-encoding": _CODING,
                 b"upgrade": UPGRADE, b"host": HOST, **{name: XFCC for name in XFCC_NAMES},
                 **{name: HOP for name in HOP_BY_HOP}}  # fmt: skip
# A header name as sent -> its bits: names repeat from one message to the next, so each is
# lowered once. Bounded: a client inventing names fills it and the rest are lowered each time.
_SEEN: Final[dict[bytes, int]] = {}
_SEEN_MAX: Final = 4096


def head_facts(head: list[bytes]) -> int:
    """The bits of a parsed head: its body is chunked (the last coding is; a request whose
    last is not, llhttp has refused; an answer's is then read to the close), with another
    coding besides; it has a Content-Length,
    an Expect, a hop-by-hop header, an Upgrade, a Host, two, an X-Forwarded-Client-Cert."""
    facts = 0
    seen = _SEEN
    for i in range(0, len(head), 4):
        name = head[i]
        bits = seen.get(name)
        if bits is None:
            bits = _FACTS.get(name.lower(), 0)
            if len(seen) < _SEEN_MAX:
                seen[name] = bits
        if bits:
            if bits == _CODING:  # the last coding of the last field frames the body
                coding = head[i + 2].strip().lower()
                last = coding.rpartition(b",")[2].strip() if b"," in coding else coding
                facts &= ~CHUNKED  # an earlier field's chunked is not the last coding
                bits = (CHUNKED if last == b"chunked" else 0) | (
                    CODED if coding != b"chunked" else 0)  # fmt: skip
            elif bits == HOST and facts & HOST:
                bits = TWO_HOSTS
            facts |= bits
    return facts


def content_length(head: list[bytes]) -> int:
    """A parsed head's Content-Length, -1 without one (llhttp has refused a repeated one, or
    one that is not a decimal number)."""
    seen = _SEEN
    for i in range(0, len(head), 4):
        name = head[i]
        bits = seen.get(name)
        if (_FACTS.get(name.lower(), 0) if bits is None else bits) == LENGTH:
            return int(head[i + 2])
    return -1


def keeps_alive(version: str, head: list[bytes]) -> bool:
    """A message of this HTTP version and head leaves its connection open, framing aside:
    HTTP/1.1 unless its Connection names `close`, HTTP/1.0 only when it names `keep-alive`
    (RFC 9112 §9.3; llhttp's rule, which also closes after a body that runs to the close)."""
    tokens = {token.strip().lower() for i in range(0, len(head), 4)
              if head[i].lower() == b"connection" for token in head[i + 2].split(b",")}  # fmt: skip
    return b"close" not in tokens if version == "1.1" else b"keep-alive" in tokens


def pairs(head: list[bytes]) -> list[tuple[bytes, bytes]]:
    """A flat head's (name, value) pairs."""
    return list(zip(head[0::4], head[2::4]))  # noqa: B905  # a flat head comes in fours


# Fields a Connection header may name that still go on: the body goes on framed as it was
# parsed, so its framing must go with it (a request sent on without the Content-Length a
# client named in `Connection: Content-Length` left its body to be read as the next request:
# a request smuggled onto a pooled connection, and its answer given to whoever borrowed the
# connection next), and Host says which site the request is for.
KEPT_ON: Final = frozenset({b"content-length", b"transfer-encoding", b"host"})
# ... and those no Connection field may name on the way to the app: what is kept on, and the
# caller's name the inbound sidecar adds.
NEVER_HOP: Final = KEPT_ON.union(XFCC_NAMES)


def end_to_end(head: list[bytes]) -> list[bytes]:
    """The headers without the hop-by-hop ones: those of HOP_BY_HOP and any the Connection
    field names (RFC 9110 §7.6.1), for a hop other than the one they came on; never the
    body's framing nor Host (KEPT_ON), whatever Connection names."""
    named = [token.strip().lower() for i in range(0, len(head), 4)
             if head[i].lower() == b"connection" for token in head[i + 2].split(b",")]  # fmt: skip
    return without(head, HOP_BY_HOP.union(named).difference(KEPT_ON) if named else HOP_BY_HOP)


def connection_unnaming(head: list[bytes], names: frozenset[bytes]) -> list[bytes]:
    """A flat head whose Connection fields no longer name these (lower-case) fields; a
    Connection left naming nothing goes. For the hop to an app that is not pooled, where
    Connection goes on: a client's `Connection: X-Forwarded-Client-Cert` would have the app
    (or a proxy in front of it) drop the caller's name the sidecar adds, and `Connection:
    Content-Length` the framing the body is sent with. The same list when nothing changed."""
    out: list[bytes] | None = None
    for i in range(len(head) - 4, -1, -4):
        if head[i].lower() != b"connection":
            continue
        tokens = [t for t in head[i + 2].split(b",") if t.strip()]
        kept = [t for t in tokens if t.strip().lower() not in names]
        if len(kept) == len(tokens):
            continue
        out = head.copy() if out is None else out
        if kept:
            out[i + 2] = b",".join(kept).strip()
        else:
            del out[i : i + 4]
    return head if out is None else out


def without(head: list[bytes], names: frozenset[bytes]) -> list[bytes]:
    """A flat head without the fields of these (lower-case) names; the same list when it
    has none."""
    drop = [i for i, name in enumerate(head[0::4]) if name.lower() in names]
    if not drop:
        return head
    kept = head.copy()
    for i in reversed(drop):
        del kept[4 * i : 4 * i + 4]
    return kept


def judged_request(method: str, path: str, fields: Sequence[tuple[bytes, bytes]]) -> HttpRequest:
    """A request as an L7 permission reads it, the same for HTTP/1 and HTTP/2: its fields
    joined (`joined_headers`), `:method` and `:path` among them on both, and the authority
    under both of its names, `host` and `:authority`, whichever one came. A rule written
    on `Host` (HTTP/1's name) then holds for an HTTP/2 call, which carries `:authority`,
    and one on `:authority` (Envoy's name for both) holds for HTTP/1."""
    headers = joined_headers(fields)
    headers.setdefault(":method", method)
    headers.setdefault(":path", path)
    authority = headers.get("host", headers.get(":authority"))
    if authority is not None:
        headers.setdefault("host", authority)
        headers.setdefault(":authority", authority)
    return HttpRequest(method, path, headers)


def joined_headers(fields: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    """(name, value) pairs as an L7 permission reads them: names lower-cased, a repeated
    name's values joined with "," (HTTP/1 heads and HTTP/2 header blocks alike), each value
    the UTF-8 text it carries. A rule is UTF-8 text too (JSON), and Envoy compares its bytes
    with the request's: read as Latin-1, `josé` would never meet a rule on `josé` (a deny
    stepped around). A value that is not UTF-8 reads its bad bytes as U+FFFD, which no rule
    on a character it could mean matches (as no such rule matches those bytes in Envoy)."""
    joined: dict[str, str] = {}
    for name, value in fields:
        key = name.decode("latin-1").lower()
        text = _text(value).strip(" \t")  # llhttp keeps trailing whitespace,
        # which is not part of the value (RFC 9110 §5.5) and the app drops: judged without
        joined[key] = f"{joined[key]},{text}" if key in joined else text
    return joined


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")  # (ASCII, nearly every value, as fast as Latin-1)
    except UnicodeDecodeError:
        return value.decode("utf-8", "replace")
