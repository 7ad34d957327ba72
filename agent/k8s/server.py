"""The injector's HTTPS server: parse -> review.answer -> JSON. A thin shell.

`POST /mutate` takes an AdmissionReview and answers one (200), or 400 with
a JSON `{"error": ...}` naming the field when the body cannot be answered
(review.ReviewError); nothing a client sends makes it fail otherwise.
`GET /healthz` is the readiness probe. The API server only speaks TLS to
webhooks, so the server refuses to start without a certificate. The
certificate files are checked every `cert_check_s` and reloaded when they
change (the kubelet swaps a Secret volume's files when the Secret is
renewed), so a renewal needs no restart; a pair that does not load (a half
written one) is logged, the old certificate stays and the next check retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import ssl
from pathlib import Path

from aiohttp import web

from gossamer.agent.k8s.patch import InjectorSettings
from gossamer.agent.k8s.review import ReviewError, answer, parse_review
from gossamer.gossip.addresses import format_host_port

log = logging.getLogger("gossamer.k8s.injector")
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


class ServingCertificate:
    """The server's TLS context and the files it was loaded from, reloaded when they change."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        """OSError/ssl.SSLError if the files are unusable now."""
        self.cert_file, self.key_file = cert_file, key_file
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._stamp = self._files_stamp()
        self.context.load_cert_chain(cert_file, key_file)

    def _files_stamp(self) -> tuple[int, ...]:
        out: list[int] = []
        for path in (self.cert_file, self.key_file):
            st = os.stat(path)  # follows the kubelet's ..data symlink
            out += [st.st_ino, st.st_mtime_ns, st.st_size]
        return tuple(out)

    def reload_if_changed(self) -> bool:
        """Load the files again if they changed; new handshakes then use them."""
        try:
            stamp = self._files_stamp()
            if stamp == self._stamp:
                return False
            self.context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            log.warning("certificate %s not reloaded (keeping the old one): %s",
                        self.cert_file, exc)  # fmt: skip
            return False
        self._stamp = stamp
        log.info("certificate %s reloaded", self.cert_file)
        return True


async def _watch(certificate: ServingCertificate, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        certificate.reload_if_changed()


async def serve(
    settings: InjectorSettings,
    host: str,
    port: int,
    certificate: ServingCertificate,
    cert_check_s: float = 30.0,
) -> None:
    """Serve until SIGTERM or SIGINT, then stop accepting and finish open requests."""
    # No access log: the API server calls on every pod creation; errors are logged.
    runner = web.AppRunner(make_app(settings), shutdown_timeout=5.0, access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(_watch(certificate, cert_check_s))
    try:
        await web.TCPSite(runner, host, port, ssl_context=certificate.context).start()
        print(f"gossamer injector: serving https://{format_host_port(host, port)}/mutate",
              flush=True)  # fmt: skip
        await stop.wait()
    finally:
        watcher.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await runner.cleanup()
