"""An aiohttp app served in-process on a real socket, for tests of routes and probes.

`serving(app)` listens on 127.0.0.1 with a free port and yields where; on the
way out it stops the server (open requests get a short grace period, so a
pending blocking query does not hold up teardown). The `serve_app` fixture
of tests/conftest.py does the same for a test that starts apps as it goes.
`SyncCalls` runs a synchronous client (py-consul) off the loop that serves
the app, which would otherwise deadlock waiting for itself.
`self_signed_tls` makes a server context for `serving(app, ctx)` over HTTPS.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import consul
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

T = TypeVar("T")
SHUTDOWN_GRACE = 0.1  # seconds open requests get at teardown


@dataclass(frozen=True)
class Listening:
    """Where a served app answers."""

    host: str
    port: int
    scheme: str = "http"

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def consul(self) -> consul.Consul:
        """A py-consul client for this address (plain HTTP)."""
        return consul.Consul(self.host, self.port)


@asynccontextmanager
async def serving(
    app: web.Application, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[Listening]:
    """Serve `app` on 127.0.0.1 (HTTPS with `ssl_context`) until the block ends."""
    runner = web.AppRunner(app, shutdown_timeout=SHUTDOWN_GRACE)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
        host, port = runner.addresses[0][:2]
        yield Listening(host, port, "https" if ssl_context else "http")
    finally:
        await runner.cleanup()


ServeApp = Callable[..., Awaitable[Listening]]  # the type of the serve_app fixture


class SyncCalls:
    """Mixin for a test's view of a served app that holds a synchronous client."""

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """py-consul is synchronous: run it off the loop that serves it."""
        return await asyncio.to_thread(fn, *args, **kwargs)


def self_signed_tls(tmp_path: Path, host: str = "svc.test") -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate for `host` (files in tmp_path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return ctx
