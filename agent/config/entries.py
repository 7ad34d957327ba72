"""Config entries: one key, its value and where it was set; checked alone, then merged.

An entry is (key, value, source): the key is a top-level key, or a
section's sub-key named with a dot ("dns.node_ttl"); the source is a file
path or "flag --x". Each entry is checked on its own, so a problem names
the file or flag that holds it. Merging follows Consul: a later scalar
replaces an earlier one, lists (join, retry_join, dns.recursors) are
appended without repeats, maps (node_meta) are merged key by key.
"""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import ValidationError

from gossamer.agent.config.errors import ConfigProblem, describe
from gossamer.agent.config.schema import CONFIG_KEYS, SECTION_KEYS, SECTION_LAYERS, ConfigLayer

# key ("http_port", or "dns.node_ttl" once a section is split), value as
# written, source ("path" or "flag --x")
Entry = tuple[str, object, str]

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

# Consul's `ports { http = -1, https = 8501 }` is accepted as written: each
# sub-key stands for our key (one home for the value, two spellings in files).
CONSUL_PORTS = {
    "http": "http_port",
    "https": "https.port",
    "dns": "dns_port",
    "serf_lan": "serf_port",
    "server": "rpc_port",
}


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
    if key == "ports":
        return _consul_ports(raw, source, problems)
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


def _consul_ports(
    raw: object, source: str, problems: list[ConfigProblem]
) -> list[tuple[str, object]]:
    """`ports: {http: -1}` -> [("http_port", -1)]; an unknown port names `ports.<key>`."""
    if not isinstance(raw, dict):
        message = f"must be a mapping like {{http: -1, https: 8501}}, got {describe(raw)}"
        problems.append(ConfigProblem(source, "ports", message))
        return []
    split: list[tuple[str, object]] = []
    for sub, value in raw.items():
        ours = CONSUL_PORTS.get(sub) if isinstance(sub, str) else None
        if ours is None:
            known = ", ".join(CONSUL_PORTS)
            problems.append(ConfigProblem(source, f"ports.{sub}", f"unknown port (known: {known})"))
        else:
            split.append((ours, value))
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
