"""The terminal UI's HTTP client of one agent (aiohttp): reads, blocking queries, writes.

It speaks the agent's Consul-compatible API only, as any client would.
Errors are three kinds, so a screen can say what happened:
- `AgentDown`: no answer (refused, reset, timed out) -> banner and retry;
- `ApiRefused`: the agent answered an error status; `text` is its reason
  (a 400 lists `Field: message` lines that the form puts next to fields);
- `BadAnswer`: an answer that is not what the API promises (not JSON, an
  intention that does not decode) -> said, and retried like a fault.

Blocking queries follow Consul's client rules: send the last
`X-Consul-Index`; an index that goes backwards (the agent restarted)
starts over from 0; an index of 0 is never sent back as a wait.
"""

from __future__ import annotations

import json
import ssl
from typing import Any
from urllib.parse import urlencode

import aiohttp

from gossamer.intentions.codec import intention_from_json
from gossamer.intentions.denials import Denial, DenialError, denials_from_json
from gossamer.intentions.model import HttpRequest, Intention
from gossamer.intentions.plan import write_body
from gossamer.intentions.validate import IntentionError

WAIT = "30s"  # how long one blocking query may hang on the agent
SLACK_S = 10.0  # beyond the wait: the agent adds up to wait/16 of jitter, plus the network
CALL_TIMEOUT_S = 10.0


class AgentDown(ConnectionError):
    """The agent did not answer (refused, reset, timed out)."""


class ApiRefused(RuntimeError):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{text} (HTTP {status})")
        self.status = status
        self.text = text


class BadAnswer(RuntimeError):
    """The agent answered something the API does not promise."""


def next_index(sent: int, got: int) -> int:
    """The index to send next: Consul's rule for an index that went backwards or is 0."""
    return 0 if got < sent or got <= 0 else got


class AgentApi:
    """One aiohttp session to one agent; `close()` it when done."""

    def __init__(
        self, base_url: str, token: str = "", ssl_context: ssl.SSLContext | None = None
    ) -> None:
        """`ssl_context` verifies an https:// agent (the CLI's, from --ca-file/CONSUL_CACERT)."""
        self.base_url = base_url.rstrip("/")
        self._token = token  # sent as X-Consul-Token when set (an agent with ACLs on)
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl) if self._ssl is not None else None
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(
        self, method: str, path: str, body: Any = None, timeout: float = CALL_TIMEOUT_S
    ) -> tuple[Any, int]:
        """(JSON answer, X-Consul-Index or 0); AgentDown, ApiRefused or BadAnswer."""
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": "application/json"} if data else {}
        if self._token:
            headers["X-Consul-Token"] = self._token
        try:
            async with self._http().request(
                method,
                self.base_url + path,
                data=data,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                raw = await resp.read()
                index = resp.headers.get("X-Consul-Index", "0")
                status = resp.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise AgentDown(f"{self.base_url}: {type(exc).__name__}: {exc}".rstrip(": ")) from None
        text = raw.decode("utf-8", "replace")
        if status >= 400:
            raise ApiRefused(status, text.strip() or f"HTTP {status}")
        try:
            return (json.loads(text) if text.strip() else None), int(index)
        except ValueError as exc:
            raise BadAnswer(f"{path}: the agent's answer is not JSON: {exc}") from None

    async def intentions(self, index: int = 0) -> tuple[list[Intention], int]:
        """Every intention, in evaluation order; blocks while `index` is current."""
        path = "/v1/connect/intentions" + _blocking(index)
        rows, got = await self.call("GET", path, timeout=_timeout(index))
        if not isinstance(rows, list):
            raise BadAnswer("/v1/connect/intentions: expected a list")
        try:
            return [intention_from_json(r) for r in rows], got
        except IntentionError as exc:
            raise BadAnswer(f"an intention from the agent does not decode: {exc}") from None

    async def services(self, index: int = 0) -> tuple[list[str], int]:
        """The service names of the catalog; blocks while `index` is current."""
        names, got = await self.call(
            "GET", "/v1/catalog/services" + _blocking(index), timeout=_timeout(index)
        )
        if not isinstance(names, dict):
            raise BadAnswer("/v1/catalog/services: expected an object")
        return sorted(str(n) for n in names), got

    async def put(self, ixn: Intention) -> None:
        """Create or replace the intention of the pair (PUT /exact, an upsert)."""
        await self.call("PUT", _exact(*ixn.pair), write_body(ixn))

    async def delete(self, source: str, destination: str) -> None:
        await self.call("DELETE", _exact(source, destination))

    async def check(
        self, source: str, destination: str, request: HttpRequest | None = None
    ) -> tuple[bool, str]:
        """(allowed, reason) as the agent decides it (`/v1/connect/intentions/check`)."""
        query: list[tuple[str, str]] = [("source", source), ("destination", destination)]
        if request is not None:
            query += [("method", request.method), ("path", request.path)]
            query += [("header", f"{k}:{v}") for k, v in request.headers.items()]
        answer, _ = await self.call("GET", "/v1/connect/intentions/check?" + urlencode(query))
        if not isinstance(answer, dict) or "Allowed" not in answer:
            raise BadAnswer("/v1/connect/intentions/check: expected {Allowed, Reason}")
        return bool(answer["Allowed"]), str(answer.get("Reason", ""))

    async def history(
        self, index: int = 0, source: str = "", destination: str = ""
    ) -> tuple[list[dict[str, Any]], int]:
        """The agent's record of intention changes, newest first; blocks on `index`."""
        query = [("source", source), ("destination", destination)] if source else []
        path = "/v1/connect/intentions/history" + _blocking(index, query)
        rows, got = await self.call("GET", path, timeout=_timeout(index))
        if not isinstance(rows, list):
            raise BadAnswer("/v1/connect/intentions/history: expected a list")
        return [r for r in rows if isinstance(r, dict)], got

    async def denials(self, index: int = 0) -> tuple[list[Denial], int]:
        """What the proxies of this agent denied lately, most recent first; blocks on `index`."""
        path = "/v1/connect/intentions/denials" + _blocking(index)
        rows, got = await self.call("GET", path, timeout=_timeout(index))
        try:
            return denials_from_json(rows), got
        except DenialError as exc:
            raise BadAnswer(f"{path}: {exc}") from None

    async def proxy_figures(self) -> Any:
        """The edge figures of this agent's sidecars (`/v1/agent/metrics/proxies`), as JSON;
        denial_rows.py reads them and skips what is not shaped as expected."""
        return (await self.call("GET", "/v1/agent/metrics/proxies"))[0]


def _blocking(index: int, extra: list[tuple[str, str]] | None = None) -> str:
    query = list(extra or [])
    if index > 0:
        query += [("index", str(index)), ("wait", WAIT)]
    return "?" + urlencode(query) if query else ""


def _timeout(index: int) -> float:
    return CALL_TIMEOUT_S + (30.0 + SLACK_S if index > 0 else 0.0)


def _exact(source: str, destination: str) -> str:
    return "/v1/connect/intentions/exact?" + urlencode(
        {"source": source, "destination": destination}
    )
