"""`gossamer k8s injector` as a process, over real TLS, with a certificate from webhook-cert.sh.

No Kubernetes API server runs here: the client is aiohttp, sending the
AdmissionReview v1 JSON an API server sends and verifying the server as
one would (the mesh root as caBundle, the Service's DNS name). The patch is
applied with jsonpatch and the pod checked against the Pod schema.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509

from gossamer.agent.k8s.annotations import INJECT
from gossamer.proxy.ca.operator_root import load_operator_root
from tests.harness.binaries import require
from tests.harness.cli import cli_env, gossamer, one_error_line
from tests.harness.cluster import free_port
from tests.harness.poll import eventually, eventually_async
from tests.k8s_support import check_response, patched, pod, review, valid_k8s

SCRIPT = Path(__file__).resolve().parent.parent / "kubernetes" / "webhook-cert.sh"
SERVICE_DNS = "gossamer-injector.gossamer.svc"


def script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require("openssl")
    out = tmp_path_factory.mktemp("webhook-certs")
    made = script("root", str(out), "mesh.test")
    assert made.returncode == 0, made.stderr
    made = script("webhook", str(out / "root.pem"), str(out / "root-key.pem"), str(out))
    assert made.returncode == 0, made.stderr
    return out


@pytest.fixture(scope="module")
def injector(certs: Path) -> Iterator[str]:
    port = free_port("127.0.0.1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gossamer.agent", "k8s", "injector",
         "--listen", f"127.0.0.1:{port}", "--tls-cert", str(certs / "tls.crt"),
         "--tls-key", str(certs / "tls.key"), "--image", "gossamer:test"],
        env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0, out  # SIGTERM: a clean stop
        assert "Traceback" not in out, out


@pytest.fixture
async def session(injector: str, certs: Path) -> AsyncIterator[aiohttp.ClientSession]:
    """A client that trusts only the mesh root, as the caBundle makes the API server do."""
    context = ssl.create_default_context(cafile=str(certs / "root.pem"))
    connector = aiohttp.TCPConnector(ssl=context)
    async with aiohttp.ClientSession(injector, connector=connector) as client:

        async def up() -> bool:
            async with client.get("/healthz", server_hostname=SERVICE_DNS) as resp:
                return resp.status == 200

        await eventually_async(up, 20, retry_on=(aiohttp.ClientError, AssertionError))
        yield client


async def post(client: aiohttp.ClientSession, body: bytes) -> tuple[int, Any]:
    async with client.post(
        "/mutate", data=body, server_hostname=SERVICE_DNS,
        headers={"Content-Type": "application/json"},
    ) as resp:  # fmt: skip
        return resp.status, await resp.json()


def test_script_root_is_accepted_by_the_mesh_ca_and_signs_the_webhook(certs: Path) -> None:
    now = datetime.datetime.now(datetime.UTC)
    issuer = load_operator_root(
        (certs / "root.pem").read_text(), (certs / "root-key.pem").read_text(), now
    )
    assert issuer.trust_domain == "mesh.test"
    verified = subprocess.run(
        ["openssl", "verify", "-CAfile", str(certs / "root.pem"), "-purpose", "sslserver",
         str(certs / "tls.crt")], capture_output=True, text=True,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    leaf = x509.load_pem_x509_certificate((certs / "tls.crt").read_bytes())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert SERVICE_DNS in sans.get_values_for_type(x509.DNSName)
    bundle = (certs / "ca-bundle.b64").read_text()
    assert "\n" not in bundle and bundle.startswith("LS0tLS1CRUdJTi")  # one-line base64 PEM


def test_script_refuses_a_key_that_is_not_the_roots(certs: Path, tmp_path: Path) -> None:
    bad = script("webhook", str(certs / "root.pem"), str(certs / "tls.key"), str(tmp_path))
    assert bad.returncode == 2 and "failed (key not the root's?)" in bad.stderr
    missing = script("webhook", str(tmp_path / "nope.pem"), str(certs / "tls.key"), str(tmp_path))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


async def test_annotated_pod_is_patched_over_tls(session: aiohttp.ClientSession) -> None:
    obj = pod({INJECT: "true", "gossamer.io/connect-service-upstreams": "db:5432"})
    sent = review(obj)
    status, got = await post(session, json.dumps(sent).encode())
    assert status == 200
    out = patched(obj, check_response(sent, got))
    valid_k8s(out)
    assert [c["name"] for c in out["spec"]["containers"]] == ["web", "gossamer-sidecar"]
    assert out["spec"]["containers"][1]["image"] == "gossamer:test"


async def test_malformed_pod_is_admitted_with_warnings(session: aiohttp.ClientSession) -> None:
    sent = review(pod({INJECT: "true", "gossamer.io/connect-service-upstreams": "db"}))
    status, got = await post(session, json.dumps(sent).encode())
    response = check_response(sent, got)
    assert status == 200 and response["allowed"] is True and "patch" not in response
    assert response["warnings"] == [
        "gossamer.io/connect-service-upstreams: 'db': expected NAME:PORT"
    ]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"\x00garbage", "body: not JSON"),
        (json.dumps({**review(pod()), "apiVersion": "admission.k8s.io/v1beta1"}).encode(),
         "apiVersion: 'admission.k8s.io/v1beta1' is not supported"),
        (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {}}',
         "request.uid"),
    ],
    ids=["garbage", "v1beta1", "no-uid"],  # (a uid is random: ids the same in every process)
)  # fmt: skip
async def test_unanswerable_bodies_get_400_and_the_server_keeps_serving(
    session: aiohttp.ClientSession, body: bytes, error: str
) -> None:
    status, got = await post(session, body)
    assert status == 400 and got["error"].startswith(error), got
    sent = review(pod({INJECT: "true"}), dry_run=True)
    status, got = await post(session, json.dumps(sent).encode())
    assert status == 200 and "patch" in check_response(sent, got)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--tls-cert", "/nonexistent.crt", "--tls-key", "/nonexistent.key"],
         "gossamer k8s: error: --tls-cert /nonexistent.crt / --tls-key /nonexistent.key: "
         "[Errno 2] No such file or directory"),
        (["--tls-cert", "c", "--tls-key", "k", "--listen", "host:notaport"],
         "gossamer k8s: error: --listen 'host:notaport': "),
    ],
)  # fmt: skip
def test_injector_bad_flags_exit_2_with_one_line(args: list[str], error: str) -> None:
    result = gossamer("k8s", "injector", *args)
    assert one_error_line(result, 2).startswith(error)


def served_serial(port: int, root: Path) -> int:
    context = ssl.create_default_context(cafile=str(root))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=SERVICE_DNS) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_a_renewed_certificate_is_served_without_a_restart(certs: Path, tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    for name in ("tls.crt", "tls.key"):
        shutil.copy(certs / name, live / name)
    port = free_port("127.0.0.1")
    log = tmp_path / "injector.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gossamer.agent", "k8s", "injector",
             "--listen", f"127.0.0.1:{port}", "--tls-cert", str(live / "tls.crt"),
             "--tls-key", str(live / "tls.key"), "--cert-check-interval", "0.1"],
            env=cli_env(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        first = eventually(lambda: served_serial(port, certs / "root.pem"), 20,
                           what="the injector to serve")  # fmt: skip
        renewed = tmp_path / "renewed"
        made = script("webhook", str(certs / "root.pem"), str(certs / "root-key.pem"), str(renewed))
        assert made.returncode == 0, made.stderr
        (live / "tls.crt").write_text("half written")  # a torn update: logged, old cert kept
        eventually(lambda: "not reloaded (keeping the old one)" in log.read_text(), 20,
                   what="the torn update to be refused")  # fmt: skip
        assert served_serial(port, certs / "root.pem") == first
        os.replace(renewed / "tls.key", live / "tls.key")
        os.replace(renewed / "tls.crt", live / "tls.crt")
        eventually(lambda: served_serial(port, certs / "root.pem") != first, 20,
                   what="the renewed certificate to be served")  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0 and "Traceback" not in log.read_text()
