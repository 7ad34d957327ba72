"""The injector's answer time over TLS, next to the webhook's timeout. Printed, not asserted.

Starts `gossamer k8s injector` as a process with a certificate from
kubernetes/webhook-cert.sh, then sends AdmissionReview v1 requests over one
kept-alive TLS connection (as the API server reuses its connections), one
at a time, interleaving three kinds: a pod to inject, a pod left alone (no
annotation) and a pod with malformed annotations. Prints per kind the
median and p99 round trip and the median as a fraction of the webhook's
timeoutSeconds (kubernetes/injector.yaml), which is the budget it must stay
far below. Also the in-process cost of parse + answer alone.

    .venv/bin/python bench/k8s_injector.py [--rounds 600]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gossamer.agent.k8s.patch import InjectorSettings  # noqa: E402
from gossamer.agent.k8s.review import answer, parse_review  # noqa: E402
from tests.harness.cluster import free_port  # noqa: E402
from tests.k8s_support import pod, review  # noqa: E402

KINDS = {
    "inject": pod({"gossamer.io/inject": "true",
                   "gossamer.io/connect-service-upstreams": "db:5432,cache:6379"}),
    "skip": pod(None),
    "malformed": pod({"gossamer.io/inject": "true", "gossamer.io/connect-service-port": "x"}),
}  # fmt: skip


def timeout_s() -> float:
    docs = yaml.safe_load_all((ROOT / "kubernetes" / "injector.yaml").read_text())
    hook = next(d for d in docs if d["kind"] == "MutatingWebhookConfiguration")
    return float(hook["webhooks"][0]["timeoutSeconds"])


def certs(out: Path) -> None:
    script = str(ROOT / "kubernetes" / "webhook-cert.sh")
    subprocess.run(["bash", script, "root", str(out)], check=True, capture_output=True)
    subprocess.run(["bash", script, "webhook", str(out / "root.pem"), str(out / "root-key.pem"),
                    str(out)], check=True, capture_output=True)  # fmt: skip


async def measure(base: str, root: Path, rounds: int) -> dict[str, list[float]]:
    context = ssl.create_default_context(cafile=str(root))
    times: dict[str, list[float]] = {k: [] for k in KINDS}
    bodies = {k: [json.dumps(review(p)).encode() for _ in range(rounds)] for k, p in KINDS.items()}
    connector = aiohttp.TCPConnector(ssl=context, limit=1)
    async with aiohttp.ClientSession(base, connector=connector) as client:
        for _ in range(200):
            try:
                async with client.get("/healthz", server_hostname="gossamer-injector.gossamer.svc"):
                    break
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
        for i in range(rounds):
            for kind in KINDS:
                start = time.perf_counter()
                async with client.post(
                    "/mutate",
                    data=bodies[kind][i],
                    server_hostname="gossamer-injector.gossamer.svc",
                ) as resp:
                    await resp.read()
                    assert resp.status == 200
                times[kind].append(time.perf_counter() - start)  # fmt: skip
    return times


def in_process(rounds: int) -> float:
    settings = InjectorSettings()
    body = json.dumps(review(KINDS["inject"])).encode()
    start = time.perf_counter()
    for _ in range(rounds):
        answer(parse_review(body), settings)
    return (time.perf_counter() - start) / rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        certs(out)
        port = free_port("127.0.0.1")
        proc = subprocess.Popen(
            [sys.executable, "-m", "gossamer.agent", "k8s", "injector", "--listen",
             f"127.0.0.1:{port}", "--tls-cert", str(out / "tls.crt"), "--tls-key",
             str(out / "tls.key")], stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            times = asyncio.run(measure(f"https://127.0.0.1:{port}", out / "root.pem", args.rounds))
        finally:
            proc.terminate()
            proc.wait(10)
    budget = timeout_s()
    print(f"injector over TLS, {args.rounds} reviews per kind, interleaved, one connection")
    print(f"{'kind':<10} {'median ms':>10} {'p99 ms':>8} {'median / timeout':>17}")
    for kind, samples in times.items():
        med = statistics.median(samples)
        p99 = statistics.quantiles(samples, n=100)[98]
        print(f"{kind:<10} {med * 1e3:>10.2f} {p99 * 1e3:>8.2f} {med / budget:>17.5f}")
    print(f"(webhook timeoutSeconds: {budget:g} s)")
    print(f"in-process parse + answer (inject): {in_process(2000) * 1e6:.0f} µs per review")


if __name__ == "__main__":
    main()
