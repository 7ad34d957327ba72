"""Which checks run, in which order, on which facts: `--pre` from the config, else the agent.

Before an agent starts (`pre_checks`) the facts come from the config the
agent would load: serf, the data dir, free ports, encryption and the default
policy as configured. With an agent (`live_checks`) they come from the
agent itself: its `DebugConfig` says where its data dir and ports are, and
everything past "agent reachable" is skipped when it does not answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gossamer.agent.cli.client import DEFAULT_HTTP_ADDR, AgentClient
from gossamer.agent.config import AgentConfig
from gossamer.agent.preflight import agent_probe as probe
from gossamer.agent.preflight import cluster_checks as cc
from gossamer.agent.preflight import host_checks as hc
from gossamer.agent.preflight import host_probe, proxy_cert
from gossamer.agent.preflight import identity_checks as ic
from gossamer.agent.preflight import proxy_checks as pc
from gossamer.agent.preflight.result import (
    Result,
    Status,
    fail,
    ok,
    pointed_at,
    skip,
    token_hint,
)
from gossamer.catalog.config_entries import Split, target_parts
from gossamer.proxy.split_targets import PATH as SPLITTERS
from gossamer.proxy.split_targets import RESOLVERS, ROUTERS, splits_by_service

DEFAULT_AGENT = f"http://{DEFAULT_HTTP_ADDR}"  # where `connect proxy` looks without a flag


def pre_checks(config: AgentConfig, path_env: str | None = None) -> list[Result]:
    results = [hc.judge_serf(host_probe.serf_facts(path_env))]
    if config.data_dir is None:
        results.append(ok(hc.HOST, hc.DATA_DIR, "--dev: a temporary dir"))
    else:
        results.append(hc.judge_data_dir(host_probe.data_dir_facts(config.data_dir), False))
    ports = hc.AgentPorts(
        config.client,
        config.bind,
        config.http_port,
        config.dns_port,
        config.serf_port,
        config.rpc_port,
        config.https.listen_port or -1,
    )
    results += _ports(ports, frozenset(), running=False)
    keyring = config.data_dir is not None and host_probe.keyring_kept(config.data_dir)
    if config.encrypt or keyring or config.join_token:
        results.append(ok(cc.CLUSTER, "gossip encryption and keyring", "configured"))
    else:
        results.append(cc.judge_encryption(False, None))
    results.append(cc.judge_default_policy(config.intentions.default_policy or "deny"))
    return results


def _ports(ports: hc.AgentPorts, pids: frozenset[int], running: bool) -> list[Result]:
    return [hc.judge_port(facts, running) for facts in host_probe.ports_facts(ports, pids)]


def live_checks(client: AgentClient, path_env: str | None = None) -> list[Result]:
    """The checks of a running agent, its hints' commands pointed at it (`pointed_at`)."""
    addr = "" if client.base_url == DEFAULT_AGENT else client.base_url
    return pointed_at(_live_checks(client, path_env), addr)


def _live_checks(client: AgentClient, path_env: str | None = None) -> list[Result]:
    results = [hc.judge_serf(host_probe.serf_facts(path_env))]
    asked = probe.ask(client, "/v1/agent/self")
    self_json = asked.value if isinstance(asked.value, dict) else None
    reachable = cc.judge_reachable(client.base_url, self_json, asked.error, asked.denied)
    if self_json is None or not cc.is_gossamer(self_json):
        return [*results, reachable, skip(cc.AGENT, "the other checks", "no agent to ask")]
    dc: Mapping[str, Any] = self_json.get("DebugConfig", {})
    data_dir = Path(dc.get("DataDir", ""))
    pids = host_probe.agent_pids(data_dir)
    results.append(hc.judge_data_dir(host_probe.data_dir_facts(data_dir), True))
    client_addr = (dc.get("ClientAddrs") or ["127.0.0.1"])[0]
    ports = hc.AgentPorts(
        client_addr,
        dc["BindAddr"],
        dc["HTTPPort"],
        dc["DNSPort"],
        dc["SerfPortLAN"],
        dc["ServerPort"],
        dc.get("HTTPSPort", -1),
    )
    results += _ports(ports, pids, running=True)
    results.append(reachable)
    if reachable.status is not Status.OK:  # not ready yet: what follows would fail with it
        return [*results, skip(cc.AGENT, "the other checks", "the agent is not ready yet")]
    results.append(_dns(client_addr, dc))
    listed = probe.ask(client, "/v1/agent/services")
    services = listed.value if isinstance(listed.value, dict) else None
    registered = _stat(self_json, "agent", "services")
    results.append(cc.judge_services(services, registered, listed.error, listed.denied))
    members = probe.ask(client, "/v1/agent/members")
    results += _cluster(client, self_json, members)
    gone = cc.left_members(members.value if isinstance(members.value, list) else [])
    roots = probe.ask(client, "/v1/agent/connect/ca/roots")
    results += _identity(client, self_json, services or {}, gone, roots)
    datacenter = str(self_json.get("Config", {}).get("Datacenter", ""))
    trust = pc.mesh_trust(roots.value if isinstance(roots.value, dict) else None, datacenter)
    results += _proxies(client, services or {}, trust)
    return results


def _stat(self_json: Mapping[str, Any], section: str, key: str) -> int | None:
    """A count of /v1/agent/self's `Stats` (serf and the agent write them as strings)."""
    text = str(self_json.get("Stats", {}).get(section, {}).get(key, ""))
    return int(text) if text.isdigit() else None


def _dns(client_addr: str, dc: Mapping[str, Any]) -> Result:
    question = f"consul.service.{dc.get('DNSDomain', 'consul.')}"
    answers, error = probe.dns_answers(client_addr, dc["DNSPort"], question)
    return cc.judge_dns(question, answers, error)


def _cluster(
    client: AgentClient, self_json: Mapping[str, Any], members: probe.Answer
) -> list[Result]:
    own = str(self_json.get("Config", {}).get("NodeName", ""))
    if isinstance(members.value, list):
        listed = cc.judge_members(members.value, own, _stat(self_json, "serf_lan", "members"))
    else:
        hint = token_hint(cc.NODE_READ) if members.denied else "read the agent's log (serf lines)"
        listed = fail(cc.CLUSTER, "cluster members", members.error, hint)
    results = [listed, cc.judge_clock(*probe.clock_offsets(client))]
    encrypted = self_json.get("Stats", {}).get("serf_lan", {}).get("encrypted") == "true"
    keyring = probe.ask(client, "/v1/operator/keyring") if encrypted else probe.Answer(None)
    shown = keyring.value if isinstance(keyring.value, list) else None
    results.append(cc.judge_encryption(encrypted, shown, keyring.denied))
    policy = self_json.get("DebugConfig", {}).get("IntentionDefaultPolicy", "deny")
    results.append(cc.judge_default_policy(str(policy)))
    return results


def _identity(
    client: AgentClient,
    self_json: Mapping[str, Any],
    services: Mapping[str, Any],
    gone: Sequence[str],
    roots: probe.Answer,
) -> list[Result]:
    now = probe.now_utc()
    results = [ic.judge_roots(roots.value, roots.error, now)]
    identity = self_json.get("Gossamer", {}).get("Identity", {})
    results.append(ic.judge_rpc_identity(identity, now, gone))
    for service in ic.connect_services(services):
        leaf = probe.leaf(client, service)
        results.append(ic.judge_leaf(service, leaf.value, leaf.error, now, leaf.denied))
    return results


def _proxies(
    client: AgentClient, services: Mapping[str, Any], trust: pc.MeshTrust | None
) -> list[Result]:
    results = []
    splitters: dict[str, tuple[Split, ...]] | None = None
    resolvers: Any = None  # the service-resolver entries, as the agent answers them
    routers: Mapping[str, Any] = {}  # service -> its service-router's routes
    for proxy in ic.sidecars(services):
        config = proxy.get("Proxy") or {}
        service = str(config.get("DestinationServiceName", ""))
        target = pc.dial_target(proxy)
        if target.error:
            results.append(pc.judge_registration(proxy["ID"], service, target))
        else:
            shown = probe.presented(target.address, target.port)
            results.append(
                proxy_cert.judge_proxy(
                    proxy["ID"],
                    service,
                    target.shown,
                    shown,
                    probe.now_utc(),
                    trust,
                    pc.sidecar_for(proxy),
                    "" if client.base_url == DEFAULT_AGENT else client.base_url,
                )
            )
        upstreams = [str(u["DestinationName"]) for u in config.get("Upstreams") or []]
        if upstreams and splitters is None:
            splitters = splits_by_service(probe.fetch(client, SPLITTERS)[0])
            resolvers = probe.fetch(client, RESOLVERS)[0]
            routers = _routers(probe.fetch(client, ROUTERS)[0])
        healthy = [(name, _passing(client, name, resolvers)) for name in upstreams]
        targets = [
            pc.SplitTarget(name, split.service, split.weight,
                           _passing(client, split.service, resolvers))
            for name in upstreams
            for split in (splitters or {}).get(name, ())
            if split.service != name and split.weight > 0
        ]  # fmt: skip
        routed = [
            pc.RouteTarget(name, i, key, _passing(client, key, resolvers))
            for name in upstreams
            for i, key in pc.route_targets(name, routers.get(name, ()), splitters or {})
        ]  # fmt: skip
        results.append(pc.judge_upstreams(proxy["ID"], healthy, targets, routed))
    return results


def _routers(body: Any) -> Mapping[str, Any]:
    """`{service: routes}` of the agent's service-router entries (none: the router reader is
    not loaded)."""
    if not body:
        return {}
    from gossamer.catalog.config_router import routes_of
    from gossamer.proxy.resolver_routes import entries_by_name

    return entries_by_name(body, "service-router", routes_of)


def _passing(client: AgentClient, target: str, resolvers: Any) -> int | None:
    """The passing instances an upstream or split target has as its sidecars find them:
    through the service-resolver entries (`resolvers`, the agent's answer), those of the
    first target of its chain that has any (the subset or redirect, then each failover),
    else the primary's count. A subset (`api/v2`) asked as a service of that name had none,
    and a DefaultSubset with no instance was counted by the whole service's."""
    service, subset = target_parts(target)
    if not subset and not resolvers:
        return probe.passing_instances(client, service)
    from gossamer.catalog.resolver_chain import ChainError, resolve
    from gossamer.proxy.resolver_routes import resolvers_by_service

    try:
        route = resolve(service, subset, resolvers_by_service(resolvers))
    except ChainError:
        return 0  # no resolver defines the subset: its share fails
    first = None
    for each in route.targets:
        count = probe.passing_instances(client, each.service, each.query())
        if count:
            return count
        first = count if each is route.primary else first
    return first
