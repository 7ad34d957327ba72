"""`gossamer k8s injector | register | deregister`: Kubernetes, from inside the cluster.

- `injector`: the mutating admission webhook (agent/k8s/server.py) over TLS.
  It needs no agent: everything it decides is in the AdmissionReview.
- `register` / `deregister`: run by the injected init container and by the
  sidecar's preStop hook. The pod's name, namespace and IP default to the
  env vars the injector sets from the downward API (POD_NAME,
  POD_NAMESPACE, POD_IP), because the kubelet does not expand `$(VAR)` in
  hook commands. Deregistering a service that is already gone succeeds, so
  a repeated hook is harmless.
Bad flags or unreadable TLS files exit 2 naming them; an agent that cannot
be reached exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import ssl
from pathlib import Path

from rich.console import Console

from gossamer.agent.cli.client import AgentClient, ApiError, UsageError, path_segment
from gossamer.agent.cli.services import VerbParsers
from gossamer.agent.k8s.annotations import Plan, parse_upstreams
from gossamer.agent.k8s.patch import InjectorSettings
from gossamer.agent.k8s.registration import SIDECAR_PORT, definition, service_id
from gossamer.gossip.addresses import AddressError, parse_host_port


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    verbs = VerbParsers(sub.add_parser("k8s", help="Kubernetes: injector, pod registration"))
    inj = verbs.add_parser("injector", help="serve the sidecar injector webhook over TLS")
    inj.add_argument("--listen", default="0.0.0.0:8443", metavar="ADDR:PORT")
    inj.add_argument("--tls-cert", type=Path, required=True, help="PEM certificate (chain)")
    inj.add_argument("--tls-key", type=Path, required=True, help="PEM private key")
    inj.add_argument("--image", default="gossamer:latest", help="image of the injected containers")
    inj.add_argument("--agent-http-port", type=int, default=8500,
                     help="the node agent's HTTP port, reached at the host IP")  # fmt: skip
    inj.add_argument("--agent-https", action="store_true",
                     help="that port serves HTTPS (an agent with http_port: -1)")  # fmt: skip
    inj.add_argument("--agent-ca-file", metavar="PATH",
                     help="CA file in the pod that verifies the agent (CONSUL_CACERT)")  # fmt: skip
    inj.add_argument("--namespace", dest="only", action="append", default=[], metavar="NS",
                     help="inject only in these namespaces (repeatable; default all)")  # fmt: skip
    inj.add_argument("--skip-namespace", action="append", default=[], metavar="NS",
                     help="never inject in NS (repeatable; kube-system, kube-public and "
                     "gossamer always)")  # fmt: skip
    inj.add_argument("--deny-malformed", action="store_true",
                     help="refuse pods whose gossamer.io annotations are malformed "
                     "(default: admit them uninjected with a warning)")  # fmt: skip
    inj.add_argument("--cert-check-interval", type=float, default=30.0, metavar="SECONDS",
                     help="how often to look for a renewed certificate (default 30)")  # fmt: skip
    inj.set_defaults(run=run_injector, needs_agent=False)
    for name, run, what in (
        ("register", register, "register this pod's service and sidecar with the node's agent"),
        ("deregister", deregister, "remove this pod's registration from the node's agent"),
    ):
        p = verbs.add_parser(name, help=what)
        p.add_argument("--service", required=True, help="the service name")
        p.add_argument("--pod", default=os.environ.get("POD_NAME"), help="default: $POD_NAME")
        p.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE"),
                       help="default: $POD_NAMESPACE")  # fmt: skip
        p.set_defaults(run=run)
        if name == "register":
            p.add_argument("--port", type=int, required=True, help="the app's port in the pod")
            p.add_argument("--address", default=os.environ.get("POD_IP"), help="default: $POD_IP")
            p.add_argument("--upstreams", default="", metavar="NAME:PORT,...")
            p.add_argument("--sidecar-port", type=int, default=SIDECAR_PORT)


def _pod_identity(args: argparse.Namespace) -> tuple[str, str]:
    if not args.pod or not args.namespace:
        raise UsageError("--pod and --namespace (or $POD_NAME and $POD_NAMESPACE) are required")
    return args.pod, args.namespace


def register(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    pod, namespace = _pod_identity(args)
    if not args.address:
        raise UsageError("--address (or $POD_IP) is required")
    for flag, port in (("--port", args.port), ("--sidecar-port", args.sidecar_port)):
        if not 0 < port < 65536:
            raise UsageError(f"{flag}: must be 1-65535, got {port}")
    problems: list[str] = []
    upstreams = parse_upstreams(args.upstreams, problems)
    if problems:
        raise UsageError("--upstreams: " + "; ".join(problems))
    plan = Plan(args.service, args.port, upstreams)
    body = definition(plan, pod=pod, namespace=namespace, address=args.address,
                      sidecar_port=args.sidecar_port)  # fmt: skip
    client.put("/v1/agent/service/register", body)
    console.print(f"Registered service: {body['ID']} (and {body['ID']}-sidecar-proxy)")
    return 0


def deregister(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    sid = service_id(*_pod_identity(args), args.service)
    try:
        client.put(f"/v1/agent/service/deregister/{path_segment(sid)}")
    except ApiError as exc:
        if exc.status != 404:
            raise
        console.print(f"Service {sid} was not registered")
        return 0
    console.print(f"Deregistered service: {sid}")
    return 0


def run_injector(args: argparse.Namespace, _: AgentClient | None, console: Console) -> int:
    try:
        host, port = parse_host_port(args.listen, 8443)
    except AddressError as exc:
        raise UsageError(f"--listen {args.listen!r}: {exc}") from None
    if not 0 < args.agent_http_port < 65536:
        raise UsageError(f"--agent-http-port: must be 1-65535, got {args.agent_http_port}")
    settings = InjectorSettings(
        image=args.image,
        agent_http_port=args.agent_http_port,
        agent_https=args.agent_https,
        agent_ca_file=args.agent_ca_file,
        skip_namespaces=InjectorSettings().skip_namespaces | set(args.skip_namespace),
        only_namespaces=frozenset(args.only) if args.only else None,
        deny_malformed=args.deny_malformed,
    )
    if not args.cert_check_interval > 0:
        raise UsageError(f"--cert-check-interval: must be > 0, got {args.cert_check_interval}")
    from gossamer.agent.k8s.server import ServingCertificate, serve

    try:
        certificate = ServingCertificate(args.tls_cert, args.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"--tls-cert {args.tls_cert} / --tls-key {args.tls_key}: {exc}") from None
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("gossamer").setLevel(logging.INFO)
    asyncio.run(serve(settings, host, port, certificate, args.cert_check_interval))
    return 0
