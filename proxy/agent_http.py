"""The proxy's HTTP client for its agent: one request per connection, nothing more.

Why not aiohttp: the proxy only ever GETs small JSON answers (some held for
a minute as blocking queries), and aiohttp alone adds ~12 MiB to the RSS of
every sidecar. This sends `GET <path> HTTP/1.1` (or a `PUT` of a small JSON
body: the denial reports) with `Connection: close`,
reads to the end, and decodes a `Content-Length` or chunked body. `https://`
agent addresses are verified against `CONSUL_CACERT` (the mesh root for an
agent serving the mesh CA's certificate; `gossamer connect proxy --ca-file`
sets it), else the system's CAs, with `CONSUL_CLIENT_CERT`/`_KEY` for an
agent with verify_incoming.
Errors: OSError / TimeoutError from the network (`NoAnswer`, an OSError,
for a connection closed before a byte came back: an agent killed while it
held the query; a TimeoutError says how long it waited), `BadAnswer` for a
reply that is not HTTP/1.x or whose body ends before its Content-Length.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_ANSWER = 64 * 1024 * 1024  # a catalog answer bigger than this is not one the proxy wants


class BadAnswer(ValueError):
    """The agent's reply could not be read as HTTP."""


class NoAnswer(ConnectionError):
    """The agent closed the connection without a byte of answer (killed, restarting)."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace").strip()


TOKEN_ENV = "GOSSAMER_HTTP_TOKEN"


class AgentHttp:
    """Requests to one agent's HTTP API (`base_url` as the CLI resolved it)."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        """`token` (default: $GOSSAMER_HTTP_TOKEN, which `gossamer connect proxy` sets to the
        token it resolved) goes with every call as X-Consul-Token."""
        scheme, self._host, self._port, self._host_header = split_base_url(base_url)
        self.base_url = base_url
        token = os.environ.get(TOKEN_ENV, "") if token is None else token
        self._token = "".join(ch for ch in token if ch.isprintable())  # no header injection
        self._tls = _tls_context() if scheme == "https" else None

    async def get(self, path: str, timeout: float) -> Answer:
        return await self.request("GET", path, timeout)

    async def put_json(
        self, path: str, body: Sequence[object] | Mapping[str, object], timeout: float = 5.0
    ) -> Answer:
        """PUT `body` as JSON; the answer whatever its status (the caller judges it)."""
        return await self.request("PUT", path, timeout, json.dumps(body).encode())

    async def request(self, method: str, path: str, timeout: float, body: bytes = b"") -> Answer:
        try:
            raw = await self._exchange(method, path, timeout, body)
        except TimeoutError:
            raise TimeoutError(f"no answer from the agent in {timeout:g} s") from None
        if not raw:
            raise NoAnswer("the agent closed the connection without answering")
        return parse_answer(raw)

    async def _exchange(self, method: str, path: str, timeout: float, body: bytes) -> bytes:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(self._host, self._port, ssl=self._tls)
            try:
                head = f"{method} {path} HTTP/1.1\r\nHost: {self._host_header}\r\n"
                if self._token:
                    head += f"X-Consul-Token: {self._token}\r\n"
                if body:
                    head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                head += "Connection: close\r\nAccept: */*\r\n\r\n"
                writer.write(head.encode() + body)
                # joined once at the end: added up as they came, an answer of MBs was copied
                # over and over (~60 MB of copies for a 3.5 MB answer)
                chunks: list[bytes] = []
                while chunk := await reader.read(MAX_ANSWER):
                    chunks.append(chunk)
            finally:
                writer.close()
        return b"".join(chunks)

    async def get_json(self, path: str, timeout: float = 10.0) -> Any:
        answer = await self.get(path, timeout)
        if answer.status != 200:
            raise BadAnswer(f"GET {path}: {answer.status} {answer.text}")
        return answer.json()


def split_base_url(base_url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, host:port as written) of an agent address in the form the CLI
    resolves (`http://127.0.0.1:8500`, `https://[::1]:8501`; a path after it is ignored).

    The address was checked where it was resolved (agent/cli/client.py, with the project's
    host:port parser, gossip/addresses.py); this only splits it again. Neither that parser
    nor `urllib.parse` here: both import `ipaddress`, which nothing else in the proxy process
    uses (with urllib.parse ~0.5 MiB of every sidecar's RSS, bench/proxy_rss.py).
    """
    scheme, sep, rest = base_url.partition("://")
    netloc = rest.partition("/")[0]
    if not sep or scheme not in ("http", "https") or not netloc:
        raise ValueError(f"agent address {base_url!r}: expected http(s)://host[:port]")
    if netloc.startswith("["):
        host, _, after = netloc[1:].partition("]")
        port = after.removeprefix(":") if after else ""
    else:
        host, _, port = netloc.partition(":")
    if not host or (port and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536)):
        raise ValueError(f"agent address {base_url!r}: bad host or port")
    return scheme, host, int(port) if port else (443 if scheme == "https" else 80), netloc


def _tls_context() -> ssl.SSLContext:
    """Consul's client variables, as the CLI reads them."""
    context = ssl.create_default_context(cafile=os.environ.get("CONSUL_CACERT") or None)
    if cert := os.environ.get("CONSUL_CLIENT_CERT"):
        context.load_cert_chain(cert, os.environ.get("CONSUL_CLIENT_KEY") or None)
    return context


def parse_answer(raw: bytes) -> Answer:
    """An HTTP/1.x response read to its end; BadAnswer when it is not one."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise BadAnswer("the agent's reply has no end of headers")
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise BadAnswer(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _unchunk(body)
    elif (length := headers.get("content-length", "")).isdigit():
        if len(body) < int(length):  # cut off: its start may read as JSON all the same
            raise BadAnswer(f"the agent's answer ends early ({len(body)} of {length} bytes)")
        body = body[: int(length)]
    return Answer(int(code), headers, body)


def _unchunk(data: bytes) -> bytes:
    out, at = bytearray(), 0
    while True:
        end = data.find(b"\r\n", at)
        if end < 0:
            raise BadAnswer("a chunked body ends early")
        try:
            size = int(data[at:end].split(b";")[0], 16)
        except ValueError:
            raise BadAnswer("a chunk size is not hexadecimal") from None
        if size < 0:
            raise BadAnswer("a chunk size is negative")
        if size == 0:
            return bytes(out)
        out += data[end + 2 : end + 2 + size]
        at = end + 2 + size + 2
