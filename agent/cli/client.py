"""The CLI's HTTP client for a running agent.

Address precedence: `--http-addr`, then `GOSSAMER_HTTP_ADDR`, then
`CONSUL_HTTP_ADDR` (so a shell set up for Consul works), then
127.0.0.1:8500. Accepts `host:port` or a URL, as Consul does. When none is
given and nothing listens on 127.0.0.1:8500, the client tries
https://127.0.0.1:8501 once (an agent with `http_port: -1` serves only
HTTPS), verified like any HTTPS address. Synchronous
urllib keeps the CLI quick to start; each call is one small request.

The ACL token, sent as `X-Consul-Token`, comes from `--token`,
`--token-file`, `GOSSAMER_HTTP_TOKEN`, `GOSSAMER_HTTP_TOKEN_FILE`,
`CONSUL_HTTP_TOKEN`, `CONSUL_HTTP_TOKEN_FILE`, the first one set.

HTTPS: an `https://` address, or `CONSUL_HTTP_SSL=true` for a bare
host:port; the server is verified against `--ca-file` / `CONSUL_CACERT`
(else the system's CAs); `--client-cert`/`--client-key` (or
`CONSUL_CLIENT_CERT`/`CONSUL_CLIENT_KEY`) for an agent with verify_incoming.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

from gossamer.gossip.addresses import AddressError, parse_host_port

DEFAULT_HTTP_ADDR = "127.0.0.1:8500"
DEFAULT_HTTPS_ADDR = "https://127.0.0.1:8501"  # tried when the default HTTP address refuses
TIMEOUT = 30.0


class UsageError(ValueError):
    """Bad command-line input (exit code 2)."""


class AgentUnreachable(RuntimeError):
    """No agent answered at the address (exit code 1)."""


class AgentTimedOut(AgentUnreachable):
    """The agent took the connection (or the address swallowed it) and said nothing in time."""


class _Refused(AgentUnreachable):
    """Nothing listens at the address (the client may try its fallback)."""


class ApiError(RuntimeError):
    """The agent answered with an error status; the message is its reason. `request` is the
    call it answered (`GET /v1/...`), for the hint a 403 gets (`refusal_hint`)."""

    def __init__(self, status: int, reason: str, request: str = "") -> None:
        super().__init__(f"{reason} (HTTP {status})")
        self.status = status
        self.reason = reason
        self.request = request


TOKEN_SOURCES = "--token / --token-file, or CONSUL_HTTP_TOKEN / GOSSAMER_HTTP_TOKEN (or *_FILE)"


def refusal_hint(reason: str) -> str:
    """What to do about a 403 of an agent with ACLs on: the token is the fix, and which way
    (a secret the agent does not know, or one that lacks the permission named)."""
    if reason.startswith("ACL not found"):
        return ("the agent knows no such token (deleted, expired or mistyped): check the one "
                f"given by {TOKEN_SOURCES}")  # fmt: skip
    return f"the agent has ACLs on: pass a token that holds it with {TOKEN_SOURCES}"


def resolve_http_addr(flag: str | None, env: dict[str, str] | None = None) -> str:
    """Return a base URL such as http://127.0.0.1:8500; UsageError if malformed."""
    env = dict(os.environ) if env is None else env
    raw = flag or env.get("GOSSAMER_HTTP_ADDR") or env.get("CONSUL_HTTP_ADDR") or DEFAULT_HTTP_ADDR
    secure = env.get("CONSUL_HTTP_SSL", "").lower() in ("1", "true", "yes")
    text = raw if "://" in raw else f"{'https' if secure else 'http'}://{raw}"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise UsageError(f"HTTP address {raw!r}: scheme must be http or https")
    netloc = _bracketed(parts.netloc)
    try:
        host, port = parse_host_port(netloc, 443 if parts.scheme == "https" else 80)
    except AddressError as exc:
        raise UsageError(f"HTTP address {raw!r}: {exc}") from None
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{port}"


def _bracketed(netloc: str) -> str:
    """`fd00::5:8500` as `[fd00::5]:8500`: an IPv6 address and a port written without brackets
    are split at the last colon, as Go's URL parser (Consul's client) splits them. Such an
    address comes from `$(HOST_IP):8500` on an IPv6 Kubernetes node (the downward API writes no
    brackets): it was read as the address fd00::5:8500 on port 80."""
    if netloc.startswith("[") or netloc.count(":") < 2:
        return netloc
    host, _, port = netloc.rpartition(":")
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return netloc
    return f"[{host}]:{port}" if port.isascii() and port.isdigit() else netloc


def resolve_token(
    flag: str | None, flag_file: str | None, env: dict[str, str] | None = None
) -> str:
    """The ACL secret to send ("" for none); UsageError naming an unreadable file.

    Consul's order (its api.NewClient): a token file, when one is named and holds a token,
    is used "instead of" a token (`-token-file` over `CONSUL_HTTP_TOKEN_FILE`); else the
    token (`-token` over `CONSUL_HTTP_TOKEN`). GOSSAMER_* come before CONSUL_* at each step.
    """
    env = dict(os.environ) if env is None else env
    files = [
        ("--token-file", flag_file),
        ("GOSSAMER_HTTP_TOKEN_FILE", env.get("GOSSAMER_HTTP_TOKEN_FILE")),
        ("CONSUL_HTTP_TOKEN_FILE", env.get("CONSUL_HTTP_TOKEN_FILE")),
    ]
    named = next(((name, path) for name, path in files if path), None)
    if named is not None:
        try:
            with open(named[1], encoding="utf-8") as f:
                if held := f.read().strip():
                    return held
        except OSError as exc:
            raise UsageError(f"{named[0]} {named[1]}: {exc.strerror or exc}") from None
    for value in (flag, env.get("GOSSAMER_HTTP_TOKEN"), env.get("CONSUL_HTTP_TOKEN")):
        if value:
            return value.strip()
    return ""


def tls_context(
    ca_file: str | None, cert: str | None, key: str | None, env: dict[str, str] | None = None
) -> ssl.SSLContext:
    """The context HTTPS calls verify the agent with (and present a client certificate)."""
    env = dict(os.environ) if env is None else env
    ca_file = ca_file or env.get("CONSUL_CACERT") or None
    cert = cert or env.get("CONSUL_CLIENT_CERT") or None
    key = key or env.get("CONSUL_CLIENT_KEY") or None
    try:
        context = ssl.create_default_context(cafile=ca_file)
        if cert:
            context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"TLS files (CA {ca_file}, cert {cert}, key {key}): {exc}") from None
    return context


def client_from_args(args: argparse.Namespace, env: dict[str, str] | None = None) -> AgentClient:
    """The client the common flags describe (address, token, TLS files); UsageError if bad."""
    env = dict(os.environ) if env is None else env
    token = resolve_token(args.token, args.token_file, env)
    base = resolve_http_addr(args.http_addr, env)

    def context() -> ssl.SSLContext:
        return tls_context(args.ca_file, args.client_cert, args.client_key, env)

    client = AgentClient(base, token, context() if base.startswith("https:") else None)
    if not (args.http_addr or env.get("GOSSAMER_HTTP_ADDR") or env.get("CONSUL_HTTP_ADDR")):
        client.fallback = (DEFAULT_HTTPS_ADDR, context)
    return client


class AgentClient:
    def __init__(
        self, base_url: str, token: str = "", context: ssl.SSLContext | None = None
    ) -> None:
        self.base_url = base_url
        self.token = token
        self.context = context
        self.timeout = TIMEOUT  # seconds each request may take (`check` waits less)
        # Where to go, once, when base_url refuses the connection (the default address).
        self.fallback: tuple[str, Callable[[], ssl.SSLContext]] | None = None

    def request(self, method: str, path: str, body: Any = None) -> Any:
        try:
            return self._request(method, path, body)
        except _Refused as exc:
            if self.fallback is None:
                raise AgentUnreachable(str(exc)) from None
            (self.base_url, context), self.fallback = self.fallback, None
            self.context = context()
            return self.request(method, path, body)

    def _request(self, method: str, path: str, body: Any) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        if self.token:
            req.add_header("X-Consul-Token", self.token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self.context) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            reason = exc.read().decode("utf-8", "replace").strip() or exc.reason
            raise ApiError(exc.code, str(reason), f"{method} {path}") from None
        except (urllib.error.URLError, OSError) as exc:
            why = getattr(exc, "reason", exc)
            message = f"cannot reach the gossamer agent at {self.base_url}: {why}"
            if isinstance(why, TimeoutError):  # it took the connection and then said nothing
                raise AgentTimedOut(
                    f"cannot reach the gossamer agent at {self.base_url}: no answer within "
                    f"{self.timeout:g} s (timed out: a stopped or stuck agent?)"
                ) from None
            if isinstance(why, ConnectionRefusedError):
                raise _Refused(message) from None
            raise AgentUnreachable(message) from None
        return json.loads(payload) if payload.strip() else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def put(self, path: str, body: Any = None) -> Any:
        return self.request("PUT", path, body)


def path_segment(text: str) -> str:
    return quote(text, safe="")
