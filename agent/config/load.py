"""Loading the agent config: read files, check each layer, merge, resolve.

Layers, lowest first: schema defaults <- each `--config-file`/`--config-dir`
in command-line order (a directory gives its *.yaml and *.yml files sorted by
name) <- flags. Merging follows Consul: a later scalar replaces an earlier
one, lists (join, retry_join) are appended, node_meta maps are merged key by
key. A section (`dns:`, `intentions:`) is split into its sub-keys, named with
a dot (`dns.node_ttl`), which are checked, merged and reported like top-level
keys: a later file's `dns: {only_passing: true}` keeps an earlier `dns.domain`,
and `dns.recursors` append. Every layer is checked on its own first, so a bad
value is reported against the file or flag that holds it; cross-key checks
run on the merged result and are skipped for keys that already failed (no
follow-on noise).
All problems are collected and raised together as one ConfigError.
"""

from __future__ import annotations

import argparse
import difflib
import ipaddress
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from gossamer.gossip.addresses import format_host_port

from .errors import ConfigError, ConfigProblem, describe
from .flags import flag_entries
from .schema import (
    CONFIG_KEYS,
    META_MAX_PAIRS,
    SECTION_KEYS,
    SECTION_LAYERS,
    AgentConfig,
    ConfigLayer,
)
from .sections import DnsConfig, domain_clash, parse_host_port

# key ("http_port", or "dns.node_ttl" once a section is split), value as
# written, source ("path" or "flag --x")
Entry = tuple[str, object, str]
MERGED = "config"  # source named by problems that only exist after merging

# Consul spells some keys differently; point migrating users at ours.
CONSUL_NAMES = {
    "bind_addr": "bind",
    "advertise_addr": "advertise",
    "client_addr": "client",
    "domain": "dns.domain",
    "alt_domain": "dns.alt_domain",
    "recursors": "dns.recursors",
    "dns_config": "dns",
    "dns.soa": "negative_ttl",  # Consul: dns_config { soa { min_ttl } }
}

# The blocks Consul searches for an address to advertise when bound to
# 0.0.0.0: RFC 1918 private space and RFC 6598 carrier-grade NAT.
PRIVATE_IPV4 = tuple(
    ipaddress.IPv4Network(net)
    for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)


def load_agent_config(
    args: argparse.Namespace,
    *,
    hostname: str | None = None,
    host_addresses: list[str] | None = None,
) -> AgentConfig:
    """Build the agent config from the parsed flags and the files they name.

    `hostname` (default node name) and `host_addresses` (candidates for
    advertise) are looked up on the host only when not given and needed.
    Reads files; raises ConfigError listing every problem.
    """
    problems: list[ConfigProblem] = []
    entries, sources = read_config_paths(getattr(args, "config_paths", None) or [], problems)
    entries += check_entries(flag_entries(args), problems)
    values, origin = merge_entries(entries)
    failed = {problem.key for problem in problems}
    resolve(values, origin, failed, problems, hostname, host_addresses)
    if problems:
        raise ConfigError(problems)
    try:
        return AgentConfig.model_validate({**values, "sources": tuple(sources)})
    except ValidationError as exc:  # a default from the host itself may be unusable
        raise ConfigError(_problems_from(exc, lambda key: origin.get(key, MERGED))) from None


def read_config_paths(
    paths: Sequence[tuple[str, str]], problems: list[ConfigProblem]
) -> tuple[list[Entry], list[str]]:
    """Checked entries of every readable file in order, and the list of files read."""
    entries: list[Entry] = []
    sources: list[str] = []
    for kind, path in paths:
        for file in [path] if kind == "file" else _dir_files(path, problems):
            data = _read_yaml(file, problems)
            if data is not None:
                sources.append(file)
                entries += check_entries(_file_entries(file, data, problems), problems)
    return entries, sources


def _dir_files(path: str, problems: list[ConfigProblem]) -> list[str]:
    try:
        found = [p for p in Path(path).iterdir() if p.suffix in (".yaml", ".yml")]
    except OSError as exc:  # missing, not a directory, no permission
        problems.append(ConfigProblem(path, "", f"cannot read config directory: {exc.strerror}"))
        return []
    return [str(p) for p in sorted(found, key=lambda p: p.name) if not p.is_dir()]


def _read_yaml(path: str, problems: list[ConfigProblem]) -> dict[Any, Any] | None:
    """The file's top-level mapping ({} when empty), or None after noting why not."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except OSError as exc:  # missing, a directory, no permission
        message = f"cannot read config file: {exc.strerror}"
    except UnicodeDecodeError:
        message = "is not UTF-8 text"
    except yaml.MarkedYAMLError as exc:
        message = _yaml_message(exc)
    except (yaml.YAMLError, RecursionError) as exc:
        message = f"invalid YAML: {exc if isinstance(exc, yaml.YAMLError) else 'nested too deeply'}"
    else:
        if data is None or isinstance(data, dict):
            return data or {}
        message = f"top level must be a mapping of keys to values, got {describe(data)}"
    problems.append(ConfigProblem(path, "", message))
    return None


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    what = ", ".join(filter(None, (exc.context, exc.problem)))
    return f"invalid YAML{where}: {what}"


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice: PyYAML would keep the last silently."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f'duplicate key "{key}"', key_node.start_mark
                )
            if isinstance(key, str):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _file_entries(path: str, data: dict[Any, Any], problems: list[ConfigProblem]) -> list[Entry]:
    entries: list[Entry] = []
    for key, value in data.items():
        if isinstance(key, str):
            entries.append((key, value, path))
        else:
            problems.append(ConfigProblem(path, describe(key), "keys must be strings"))
    return entries


def check_entries(entries: list[Entry], problems: list[ConfigProblem]) -> list[Entry]:
    """The entries whose value passes its key's checks, with the checked value.

    Each entry is checked alone, so a problem names the file or flag that
    holds it. A section's mapping becomes one entry per sub-key ("dns.domain").
    """
    good: list[Entry] = []
    for top_key, top_raw, source in entries:
        for key, raw in _split_section(top_key, top_raw, source, problems):
            try:
                good.append((key, check_entry(key, raw), source))
            except ValueError as exc:
                problems.append(ConfigProblem(source, key, str(exc)))
    return good


def _split_section(
    key: str, raw: object, source: str, problems: list[ConfigProblem]
) -> list[tuple[str, object]]:
    """[(key, raw)], or for a section [("dns.domain", raw), ...]; null is an empty section."""
    if key not in SECTION_KEYS:
        section, _, sub = key.partition(".")
        if sub and section in SECTION_KEYS:  # "dns.domain: x": sections are only nested
            message = f"unknown key (nest it: {section}: {{{sub}: ...}})"
            problems.append(ConfigProblem(source, key, message))
            return []
        return [(key, raw)]
    if raw is None:
        return []
    if not isinstance(raw, dict):
        message = f"must be a mapping of keys to values (a section), got {describe(raw)}"
        problems.append(ConfigProblem(source, key, message))
        return []
    split: list[tuple[str, object]] = []
    for sub, value in raw.items():
        if isinstance(sub, str):
            split.append((f"{key}.{sub}", value))
        else:
            problems.append(ConfigProblem(source, f"{key}.{describe(sub)}", "keys must be strings"))
    return split


def merge_entries(entries: list[Entry]) -> tuple[dict[str, Any], dict[str, str]]:
    """Merge checked entries in order; also say where each key was last set.

    A section's sub-keys are merged into its own dict (values["dns"]["domain"])
    by the same rules as top-level keys; `origin` uses the dotted names.
    """
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, value, source in entries:
        section, _, sub = key.partition(".")
        target, name = (values.setdefault(section, {}), sub) if sub else (values, key)
        target[name] = _merge_value(target.get(name), value)
        origin[key] = source
    return values, origin


def check_entry(key: str, raw: object) -> Any:
    """The validated value of one key, or ValueError with the message to show.

    `key` is a top-level key or a section's sub-key named with a dot.
    """
    section, _, sub = key.partition(".")
    if sub and section in SECTION_KEYS and sub in SECTION_KEYS[section]:
        layer_model, name = SECTION_LAYERS[section], sub
    elif not sub and key in CONFIG_KEYS:
        layer_model, name = ConfigLayer, key
    else:
        raise ValueError(unknown_key_message(key))
    try:
        layer = layer_model.model_validate({name: raw})
    except ValidationError as exc:
        raise ValueError("; ".join(error["msg"] for error in exc.errors())) from None
    return getattr(layer, name)


def unknown_key_message(key: str) -> str:
    """The "unknown key" message, with a did-you-mean among keys of the same level."""
    section, _, sub = key.partition(".")
    if key in CONSUL_NAMES:
        guess: str | None = CONSUL_NAMES[key]
    elif sub and section in SECTION_KEYS:
        guess = next(iter(difflib.get_close_matches(sub, SECTION_KEYS[section], 1)), None)
    else:
        guess = next(iter(difflib.get_close_matches(key, CONFIG_KEYS, 1)), None)
    return f'unknown key (did you mean "{guess}"?)' if guess else "unknown key"


def _merge_value(old: object, new: object) -> object:
    """Consul's merge: lists append (without repeats), maps merge, scalars replace."""
    if isinstance(old, tuple) and isinstance(new, tuple):
        return tuple(dict.fromkeys(old + new))
    if isinstance(old, dict) and isinstance(new, dict):
        return {**old, **new}
    return new


def _problems_from(exc: ValidationError, source_of: Any) -> list[ConfigProblem]:
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        key = ".".join(loc[:2] if loc and loc[0] in SECTION_KEYS else loc[:1])
        problems.append(ConfigProblem(source_of(key), key, error["msg"]))
    return problems


def resolve(
    values: dict[str, Any],
    origin: dict[str, str],
    failed: set[str],
    problems: list[ConfigProblem],
    hostname: str | None,
    host_addresses: list[str] | None,
) -> None:
    """Fill the defaults that depend on other keys, then run the cross-key checks."""
    dev = values.get("dev", False)
    if "node" not in values and "node" not in failed:
        _set_default(values, "node", hostname or socket.gethostname(), problems)
    values.setdefault("bind", "127.0.0.1" if dev else "0.0.0.0")
    if not {"bind", "advertise"} & failed:
        _resolve_advertise(values, origin, problems, host_addresses)
    serf_port = values.get("serf_port", _default("serf_port"))
    for key in ("join", "retry_join"):
        if key in values:
            values[key] = _with_ports(values[key], serf_port)
    if not {"dev", "data_dir"} & failed and not dev and values.get("data_dir") is None:
        hint = "set data_dir in a config file or pass --data-dir (or use --dev)"
        problems.append(ConfigProblem(MERGED, "data_dir", f"is required; {hint}"))
    if dev and not {"join", "retry_join"} & failed:
        for key in ("join", "retry_join"):
            if values.get(key):
                message = "cannot be used with dev: a dev agent is a cluster of one"
                problems.append(ConfigProblem(origin[key], key, message))
    if len(values.get("node_meta", {})) > META_MAX_PAIRS:
        message = f"at most {META_MAX_PAIRS} pairs allowed once all files are merged"
        problems.append(ConfigProblem(MERGED, "node_meta", message))
    if not {"client", "bind", "http_port", "dns_port", "serf_port", "rpc_port"} & failed:
        problems += _port_clashes(values, origin)
    intentions = values.setdefault("intentions", {})
    if intentions.get("default_policy") is None:
        intentions["default_policy"] = "allow" if dev else "deny"
    if not {"dns", "dns.domain", "dns.alt_domain"} & failed:
        dns = values.get("dns", {})
        domain = dns.get("domain", DnsConfig.model_fields["domain"].default)
        clash = domain_clash(domain, dns.get("alt_domain"))
        if clash:
            problems.append(ConfigProblem(origin["dns.alt_domain"], "dns.alt_domain", clash))


def _default(key: str) -> Any:
    return AgentConfig.model_fields[key].default


def _set_default(values: dict[str, Any], key: str, value: object, problems: list[Any]) -> None:
    """A default taken from the host goes through the same checks as user input."""
    try:
        values[key] = check_entry(key, value)
    except ValueError as exc:
        problems.append(ConfigProblem("default (from this host)", key, str(exc)))


def _resolve_advertise(
    values: dict[str, Any],
    origin: dict[str, str],
    problems: list[ConfigProblem],
    host_addresses: list[str] | None,
) -> None:
    bind = values["bind"]
    if "advertise" in values:
        if ipaddress.ip_address(values["advertise"]).is_unspecified:
            message = f"{values['advertise']} cannot be advertised: peers could not dial it"
            problems.append(ConfigProblem(origin["advertise"], "advertise", message))
        return
    if not ipaddress.ip_address(bind).is_unspecified:
        values["advertise"] = bind
        return
    if host_addresses is None:
        host_addresses = local_addresses()
    picked = pick_advertise_address(bind, host_addresses)
    if picked is None:
        message = (
            f"not set, and bind is {bind} but this host has no private address to "
            f"advertise (found: {', '.join(host_addresses) or 'none'}); set advertise"
        )
        problems.append(ConfigProblem(MERGED, "advertise", message))
    else:
        values["advertise"] = picked


def pick_advertise_address(bind: str, host_addresses: Sequence[str]) -> str | None:
    """What to advertise for a bind on all interfaces, as Consul chooses it.

    0.0.0.0: the first private IPv4 (RFC 1918 or RFC 6598) in `host_addresses`;
    Consul refuses to choose among several, we take the first so that hosts
    with a second private network (docker0, a VPN) still start. "::": the
    first global IPv6. Entries that are not IP addresses are skipped.
    """
    want_v6 = ipaddress.ip_address(bind).version == 6
    for text in host_addresses:
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            continue
        if want_v6 and addr.version == 6 and addr.is_global:
            return str(addr)
        if not want_v6 and addr.version == 4 and any(addr in net for net in PRIVATE_IPV4):
            return str(addr)
    return None


def local_addresses() -> list[str]:
    """Best-effort host addresses without extra dependencies (impure, never raises).

    The source address of the default route comes first (a UDP connect sends
    nothing), then whatever the host name resolves to.
    """
    found: list[str] = []
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))  # TEST-NET-1: routed like the internet
            found.append(sock.getsockname()[0])
    except OSError:
        pass
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None)
    except OSError:
        infos = []
    found += [str(info[4][0]) for info in infos]
    return list(dict.fromkeys(found))


def _with_ports(entries: tuple[str, ...], serf_port: int) -> tuple[str, ...]:
    """Give every join address a port (the serf port by default), without repeats."""
    pairs = (parse_host_port(entry) for entry in entries)
    return tuple(dict.fromkeys(format_host_port(host, port or serf_port) for host, port in pairs))


# Which address each port listens on (DESIGN.md section 5).
_PORT_ADDRESS = {
    "http_port": "client",
    "dns_port": "client",
    "serf_port": "bind",
    "rpc_port": "bind",
}


def _port_clashes(values: dict[str, Any], origin: dict[str, str]) -> list[ConfigProblem]:
    """Two listeners on one port and overlapping addresses would fail at bind time.

    The problem is reported against the key the user set (the later one if both).
    """
    get = {key: values.get(key, _default(key)) for key in (*_PORT_ADDRESS, "client")}
    get["bind"] = values["bind"]
    problems = []
    keys = list(_PORT_ADDRESS)
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
