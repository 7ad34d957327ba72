"""Defaults that depend on other keys, and the checks that need the merged config.

Runs on the merged values, after every entry was checked alone. A check is
skipped when a key it reads already failed, so one mistake is reported once
(no follow-on noise). Problems that exist only after merging name the
source `config` (MERGED).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from gossamer.agent.config.advertise import resolve_advertise
from gossamer.agent.config.entries import check_entry
from gossamer.agent.config.errors import MERGED, ConfigProblem
from gossamer.agent.config.https_section import HttpsConfig
from gossamer.agent.config.schema import AgentConfig
from gossamer.agent.config.sections import DnsConfig, domain_clash
from gossamer.agent.config.values import PORT_OFF, parse_host_port
from gossamer.catalog.names import META_MAX_PAIRS
from gossamer.gossip.addresses import format_host_port, other_family


def resolve(
    values: dict[str, Any],
    origin: dict[str, str],
    failed: set[str],
    problems: list[ConfigProblem],
    hostname: str | None,
    host_addresses: list[str] | None,
) -> None:
    """Fill the defaults that depend on other keys, then run the cross-key checks."""
    _fill_defaults(values, origin, failed, problems, hostname, host_addresses)
    problems += _cross_key_problems(values, origin, failed)


def _fill_defaults(
    values: dict[str, Any],
    origin: dict[str, str],
    failed: set[str],
    problems: list[ConfigProblem],
    hostname: str | None,
    host_addresses: list[str] | None,
) -> None:
    """node (the host name), bind and advertise, join ports, the intentions default."""
    dev = values.get("dev", False)
    if "node" not in values and "node" not in failed:
        _set_default(values, "node", hostname or socket.gethostname(), problems)
    values.setdefault("bind", "127.0.0.1" if dev else "0.0.0.0")
    if not {"bind", "advertise"} & failed:
        resolve_advertise(values, origin, problems, host_addresses)
    serf_port = values.get("serf_port", _default("serf_port"))
    for key in ("join", "retry_join"):
        if key in values:
            values[key] = _with_ports(values[key], serf_port)
    intentions = values.setdefault("intentions", {})
    if intentions.get("default_policy") is None:
        intentions["default_policy"] = "allow" if dev else "deny"


def _cross_key_problems(
    values: dict[str, Any], origin: dict[str, str], failed: set[str]
) -> list[ConfigProblem]:
    dev = values.get("dev", False)
    problems = []
    if not {"dev", "data_dir"} & failed and not dev and values.get("data_dir") is None:
        hint = "set data_dir in a config file or pass --data-dir (or use --dev)"
        problems.append(ConfigProblem(MERGED, "data_dir", f"is required; {hint}"))
    if dev and not {"join", "retry_join"} & failed:
        for key in ("join", "retry_join"):
            if values.get(key):
                message = "cannot be used with dev: a dev agent is a cluster of one"
                problems.append(ConfigProblem(origin[key], key, message))
    if "advertise" in values and not {"join", "retry_join"} & failed:
        for key in ("join", "retry_join"):
            for target in values.get(key, ()):
                if why := other_family(values["advertise"], target):
                    problems.append(ConfigProblem(origin[key], key, why))
    if len(values.get("node_meta", {})) > META_MAX_PAIRS:
        message = f"at most {META_MAX_PAIRS} pairs allowed once all files are merged"
        problems.append(ConfigProblem(MERGED, "node_meta", message))
    ports = {"client", "bind", "http_port", "dns_port", "serf_port", "rpc_port", "https.port"}
    if not (ports | {"https", "https.cert_file"}) & failed:
        problems += _port_clashes(values, origin)
        problems += _no_api(values, origin)
    if not {"dns", "dns.domain", "dns.alt_domain"} & failed:
        dns = values.get("dns", {})
        domain = dns.get("domain", DnsConfig.model_fields["domain"].default)
        clash = domain_clash(domain, dns.get("alt_domain"))
        if clash:
            problems.append(ConfigProblem(origin["dns.alt_domain"], "dns.alt_domain", clash))
    return problems


def _default(key: str) -> Any:
    return AgentConfig.model_fields[key].default


def _set_default(values: dict[str, Any], key: str, value: object, problems: list[Any]) -> None:
    """A default taken from the host goes through the same checks as user input."""
    try:
        values[key] = check_entry(key, value)
    except ValueError as exc:
        problems.append(ConfigProblem("default (from this host)", key, str(exc)))


def _with_ports(entries: tuple[str, ...], serf_port: int) -> tuple[str, ...]:
    """Give every join address a port (the serf port by default), without repeats."""
    pairs = (parse_host_port(entry) for entry in entries)
    return tuple(dict.fromkeys(format_host_port(host, port or serf_port) for host, port in pairs))


def _https_port(values: dict[str, Any]) -> int | None:
    return HttpsConfig.model_construct(**values.get("https", {})).listen_port


def _no_api(values: dict[str, Any], origin: dict[str, str]) -> list[ConfigProblem]:
    """HTTP off (-1) and no HTTPS: nothing could reach the agent's API."""
    if values.get("http_port", _default("http_port")) != PORT_OFF or _https_port(values):
        return []
    message = "-1 turns plain HTTP off, and HTTPS is not on (set https.port or https.cert_file)"
    return [ConfigProblem(origin.get("http_port", MERGED), "http_port", message)]


# Which address each port listens on (DESIGN.md section 5).
_PORT_ADDRESS = {
    "http_port": "client",
    "https.port": "client",
    "dns_port": "client",
    "serf_port": "bind",
    "rpc_port": "bind",
}


def _port_clashes(values: dict[str, Any], origin: dict[str, str]) -> list[ConfigProblem]:
    """Two listeners on one port and overlapping addresses would fail at bind time.

    The problem is reported against the key the user set (the later one if both).
    """
    get = {key: values.get(key, _default(key)) for key in _PORT_ADDRESS if key != "https.port"}
    get |= {"https.port": _https_port(values), "client": values.get("client", _default("client"))}
    get["bind"] = values["bind"]
    problems = []
    keys = [key for key in _PORT_ADDRESS if get[key] not in (None, PORT_OFF)]
    for i, later in enumerate(keys):
        for earlier in keys[:i]:
            addr = get[_PORT_ADDRESS[later]]
            if get[later] != get[earlier] or not _overlap(addr, get[_PORT_ADDRESS[earlier]]):
                continue
            key, other = (later, earlier) if later in origin else (earlier, later)
            message = f"{get[key]} is also the {other} (both listen on {addr})"
            problems.append(ConfigProblem(origin.get(key, MERGED), key, message))
    return problems


def _overlap(a: str, b: str) -> bool:
    return (
        a == b or ipaddress.ip_address(a).is_unspecified or ipaddress.ip_address(b).is_unspecified
    )
