"""`gossamer connect proxy`: the thin entry of the built-in sidecar proxy (proxy/).

Three ways to say what to serve; the first two are Consul's `connect proxy`:
- `--sidecar-for <service-id>` (or `-sidecar-for`): the agent's sidecar
  registration `<service-id>-sidecar-proxy` gives everything, and is watched;
- `--service NAME [--upstream NAME:PORT ...] [--listen ADDR:PORT --local ADDR:PORT]`:
  an ad-hoc proxy without a registration (NAME must be registered on the
  agent all the same: the agent issues leaves only for its own services);
- `--node`: one process for every sidecar registration of the agent
  (proxy/node.py), each served as its own proxy would be.
A bad flag or registration exits 2 naming it; an agent that cannot be
reached exits 1; SIGTERM drains and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys

from rich.console import Console

from gossamer.agent.cli.client import AgentClient, ApiError, UsageError, path_segment
from gossamer.agent.cli.services import VerbParsers
from gossamer.proxy.agent_http import TOKEN_ENV
from gossamer.proxy.config import ConfigError, ProxyConfig, config_to_json
from gossamer.proxy.config_flags import MAX_WORKERS, adhoc_config, with_drain
from gossamer.proxy.config_metrics import with_metrics
from gossamer.proxy.config_registration import config_from_registration
from gossamer.proxy.cpu_budget import worker_count as cpu_worker_count

SIDECAR_SUFFIX = "-sidecar-proxy"


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    verbs = VerbParsers(sub.add_parser("connect", help="the service mesh data plane"))
    p = verbs.add_parser("proxy", help="run the built-in mTLS sidecar proxy")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--sidecar-for", "-sidecar-for", metavar="ID",
                      help="serve the sidecar registration of service ID")  # fmt: skip
    mode.add_argument("--service", "-service", metavar="NAME",
                      help="ad hoc: the service identity to proxy for")  # fmt: skip
    mode.add_argument("--node", "-node", action="store_true",
                      help="serve every sidecar registration of the agent")  # fmt: skip
    p.add_argument("--upstream", "-upstream", action="append", default=[], metavar="NAME:PORT",
                   help="ad hoc: an upstream listener, NAME:PORT or NAME:ADDR:PORT "
                   "(repeatable)")  # fmt: skip
    p.add_argument("--listen", "-listen", metavar="ADDR:PORT",
                   help="ad hoc: the inbound mTLS listener")  # fmt: skip
    p.add_argument("--local", "-local", metavar="ADDR:PORT",
                   help="ad hoc: the local app that inbound connections reach")  # fmt: skip
    p.add_argument("--drain-timeout", type=float, metavar="SECONDS",
                   help="on SIGTERM, how long open connections may finish (default 15, or "
                   "the registration's Proxy.Config.drain_timeout_s)")  # fmt: skip
    p.add_argument("--metrics-addr", metavar="ADDR:PORT",
                   help="serve Prometheus metrics (/metrics) and edge stats (/stats) here "
                   "(wins over Proxy.Config.gossamer_metrics_bind_addr / "
                   "envoy_prometheus_bind_addr)")  # fmt: skip
    p.add_argument(
        "--no-metrics",
        action="store_true",
        help="count no golden metrics on the data path (to measure their cost)",
    )
    p.add_argument("--workers", default="1", metavar="N",
                   help=f"processes serving the proxy, each using up to one core: 1 to "
                   f"{MAX_WORKERS}, or `auto` (the CPUs it may use); default 1")  # fmt: skip
    p.add_argument("--log-level", "-log-level", default="info", type=log_level, metavar="LEVEL",
                   help="debug, info (default), warning, error (or Consul's trace, warn, "
                   "err)")  # fmt: skip
    # Consul's own spelling of the agent's flags (`consul connect proxy -sidecar-for web
    # -http-addr ...`): argparse took `-http-addr` for `-h ttp-addr` and said so, exit 2.
    for flag in CONSUL_CLIENT_FLAGS:
        p.add_argument(f"-{flag}", dest=flag.replace("-", "_"), default=argparse.SUPPRESS,
                       help=argparse.SUPPRESS)  # fmt: skip
    p.set_defaults(run=run_proxy)


CONSUL_CLIENT_FLAGS = ("http-addr", "token", "token-file", "ca-file", "client-cert", "client-key")
LOG_LEVELS = {"trace": "debug", "debug": "debug", "info": "info", "warn": "warning",
              "warning": "warning", "err": "error", "error": "error"}  # fmt: skip


def log_level(text: str) -> str:
    """`--log-level`: ours, or Consul's name for one (trace, warn, err)."""
    try:
        return LOG_LEVELS[text.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"must be debug, info, warning or error, got {text!r}"
        ) from None


def worker_count(text: str) -> int:
    """`--workers`: 1 to MAX_WORKERS, or `auto` (the CPUs this process may use: its affinity
    mask, fewer under a cgroup CPU quota; cpu_budget.py); UsageError naming the flag."""
    try:
        return cpu_worker_count(text, "--workers")
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def proxy_config(args: argparse.Namespace, client: AgentClient) -> ProxyConfig:
    """The config the flags ask for; UsageError naming a bad flag or registration."""
    try:
        return with_metrics(_base_config(args, client), args.metrics_addr, not args.no_metrics)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


def _base_config(args: argparse.Namespace, client: AgentClient) -> ProxyConfig:
    if args.service:
        return with_drain(
            adhoc_config(args.service, args.upstream, listen=args.listen, local=args.local),
            args.drain_timeout,
        )
    if args.upstream or args.listen or args.local:
        raise UsageError("--upstream, --listen and --local go with --service, not --sidecar-for")
    proxy_id = args.sidecar_for + SIDECAR_SUFFIX
    try:
        body = client.get(f"/v1/agent/service/{path_segment(proxy_id)}")
    except ApiError as exc:
        if exc.status != 404:
            raise
        proxy_id = proxy_for(client, args.sidecar_for, proxy_id)
        body = client.get(f"/v1/agent/service/{path_segment(proxy_id)}")
    return with_drain(config_from_registration(body, proxy_id), args.drain_timeout)


# What asks "is the agent there?" before the exec: the roots, which every token may read
# (and the proxy reads anyway). `/v1/agent/self` needed `agent:read`, which a sidecar's
# token (Consul's service identity) does not hold: it exited 1 on a 403.
REACHABLE = "/v1/agent/connect/ca/roots"

PROXIES = "/v1/agent/services?filter=" + path_segment('Kind == "connect-proxy"')


def proxy_for(client: AgentClient, service_id: str, usual: str) -> str:
    """The ID of the one connect-proxy whose `Proxy.DestinationServiceID` is `service_id`, as
    Consul's `-sidecar-for` finds it (a proxy registered by itself, not as a SidecarService,
    has an ID of its own); UsageError when there is none, or more than one."""
    found = sorted(
        str(proxy_id)
        for proxy_id, svc in (client.get(PROXIES) or {}).items()
        if str(((svc or {}).get("Proxy") or {}).get("DestinationServiceID", "")).lower()
        == service_id.lower()
    )
    if not found:
        raise UsageError(f"--sidecar-for {service_id}: no sidecar registration {usual!r} on "
                         "this agent, nor a connect-proxy whose Proxy.DestinationServiceID "
                         "is it")  # fmt: skip
    if len(found) > 1:
        raise UsageError(f"--sidecar-for {service_id}: more than one connect-proxy serves it "
                         f"({', '.join(found)}); run one proxy with --node, or deregister "
                         "all but one")  # fmt: skip
    return found[0]


def run_proxy(args: argparse.Namespace, client: AgentClient, console: Console) -> int:
    """Check everything here (exit 2 naming a problem), then become the lean proxy process."""
    workers = worker_count(args.workers)  # a flag alone: refused before the agent is asked
    if args.node:
        if args.upstream or args.listen or args.local or args.metrics_addr or args.no_metrics:
            raise UsageError("--upstream, --listen, --local and the metrics flags go with "
                             "--service or --sidecar-for, not --node (each registration's "
                             "Proxy.Config names its metrics address)")  # fmt: skip
        try:  # (checked as a sidecar's flag is: a number of seconds, not NaN)
            with_drain(adhoc_config("node", []), args.drain_timeout)
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        client.get(REACHABLE)  # an agent that cannot be reached: exit 1 now
        request = json.dumps({"node": True, "drain_s": args.drain_timeout})
    else:
        config = proxy_config(args, client)
        client.get(REACHABLE)  # an agent that cannot be reached: exit 1 now (ad hoc)
        request = config_to_json(config)
    argv = [sys.executable, "-m", "gossamer.proxy", request, client.base_url, args.log_level,
            str(workers)]  # fmt: skip
    sys.stdout.flush()
    sys.stderr.flush()
    env = dict(os.environ)
    if client.token:  # the proxy sends it on every call; the environment keeps it out of ps
        env[TOKEN_ENV] = client.token
    for name, value in (("CONSUL_CACERT", args.ca_file), ("CONSUL_CLIENT_CERT", args.client_cert),
                        ("CONSUL_CLIENT_KEY", args.client_key)):  # fmt: skip
        if value:  # the flags win over the variables, as for the CLI's own calls
            env[name] = value
    # held pending across the execve until the proxy's handlers are in (proxy/process.py):
    # a SIGTERM as it starts is then a drain and exit 0, not the end of it by the signal
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    os.execve(sys.executable, argv, env)  # same pid: signals and systemd see one process
