"""The injector's HTTPS server: parse -> review.answer -> JSON. A thin shell.

`POST /mutate` takes an AdmissionReview and answers one (200), or 400 with
a JSON `{"error": ...}` naming the field when the body cannot be answered
(review.ReviewError); nothing a client sends makes it fail otherwise.
`GET /healthz` is the readiness probe. The API server only speaks TLS to
webhooks, so the server refuses to start without a certificate.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
from pathlib import Path

from aiohttp import web

from gossamer.agent.k8s.patch import InjectorSettings
from gossamer.agent.k8s.review import ReviewError, answer, parse_review

SETTINGS_KEY = web.AppKey("settings", InjectorSettings)
# A Pod of many containers with big env lists stays far below this; the API
# server's own request limit is 3 MiB.
MAX_BODY = 4 * 1024 * 1024


async def mutate(request: web.Request) -> web.Response:
    try:
        review = parse_review(await request.read())
    except ReviewError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(answer(review, request.app[SETTINGS_KEY]))


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def make_app(settings: InjectorSettings) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)
    app[SETTINGS_KEY] = settings
    app.router.add_post("/mutate", mutate)
    app.router.add_get("/healthz", healthz)
    return app


def tls_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """Server context from PEM files; OSError/ssl.SSLError if they are unusable."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


async def serve(settings: InjectorSettings, host: str, port: int, context: ssl.SSLContext) -> None:
    """Serve until SIGTERM or SIGINT, then stop accepting and finish open requests."""
    runner = web.AppRunner(make_app(settings), shutdown_timeout=5.0)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await web.TCPSite(runner, host, port, ssl_context=context).start()
        print(f"gossamer injector: serving https://{host}:{port}/mutate", flush=True)
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await runner.cleanup()
