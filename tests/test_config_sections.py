"""The nested config sections `dns:` and `intentions:`: defaults, normalisation,
problems named with dotted keys, merging key by key, flags, reload diffs.

Bad input is table-driven like tests/test_config.py: each row is what a
person might write and the "source: dns.key: message" line they get back.
"""

from __future__ import annotations

import argparse
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gossamer.agent.config import (
    RELOADABLE_KEYS,
    AgentConfig,
    ConfigError,
    ConfigProblem,
    DnsConfig,
    IntentionsConfig,
    diff_configs,
    load_agent_config,
)
from gossamer.agent.lifecycle.reload import apply_reloadable
from tests.harness.cli import gossamer
from tests.test_config import errors, load, parse, write


def load_files(tmp_path: Path, *texts: str, argv: tuple[str, ...] = ("--dev",)) -> AgentConfig:
    paths = [write(tmp_path, f"{i}.yaml", text) for i, text in enumerate(texts)]
    return load([*argv, *(arg for path in paths for arg in ("--config-file", path))])


# --- defaults ----------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    config = load(["--data-dir", str(tmp_path)])
    dns = config.dns
    assert dns == DnsConfig()
    assert (dns.domain, dns.alt_domain) == ("consul.", None)
    assert (dns.node_ttl, dns.negative_ttl, dns.service_ttl) == (timedelta(0), timedelta(0), {})
    assert (dns.only_passing, dns.enable_truncate, dns.nearest_first) == (False, True, False)
    assert dns.udp_answer_limit == 0
    assert dns.recursors == ()
    assert (dns.recursor_strategy, dns.recursor_timeout) == ("sequential", timedelta(seconds=2))
    assert config.intentions == IntentionsConfig(default_policy="deny")


def test_default_intention_policy_follows_dev(tmp_path: Path) -> None:
    assert load(["--dev"]).intentions.default_policy == "allow"
    assert load(["--data-dir", str(tmp_path)]).intentions.default_policy == "deny"
    assert IntentionsConfig().default_policy is None  # only a loaded config is resolved


@pytest.mark.parametrize(
    ("argv", "text", "expected"),
    [
        (["--dev"], "intentions: {default_policy: deny}", "deny"),
        (["--data-dir", "/d"], "intentions: {default_policy: allow}", "allow"),
        (["--data-dir", "/d"], "intentions: {default_policy: ALLOW}", "allow"),
        (["--dev"], "intentions: {default_policy: null}", "allow"),  # null: decided at load
        (["--data-dir", "/d"], "intentions: {default_policy: null}", "deny"),
        (["--dev"], "intentions:", "allow"),  # an empty section
        (["--dev", "--default-intention-policy", "deny"], "", "deny"),
        (["--data-dir", "/d", "--default-intention-policy", "allow"], "", "allow"),
        (
            ["--dev", "--default-intention-policy", "deny"],
            "intentions: {default_policy: allow}",
            "deny",
        ),
    ],
)
def test_explicit_intention_policy_wins(
    tmp_path: Path, argv: list[str], text: str, expected: str
) -> None:
    path = write(tmp_path, "a.yaml", text + "\n")
    assert load([*argv, "--config-file", path]).intentions.default_policy == expected


def test_sections_are_frozen() -> None:
    config = load(["--dev"])
    with pytest.raises(ValidationError):
        config.dns.domain = "x."  # type: ignore[misc]
    with pytest.raises(ValidationError):
        config.intentions.default_policy = "deny"  # type: ignore[misc]


# --- normalisation -------------------------------------------------------------

LONGEST_NAME = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 253 characters


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("consul", "consul."),
        ("consul.", "consul."),
        ("Mesh.Example", "mesh.example."),
        ("a-b.c1.", "a-b.c1."),
        ("x" * 63, "x" * 63 + "."),
        (LONGEST_NAME, LONGEST_NAME + "."),
    ],
)
def test_domain_is_lower_case_with_one_trailing_dot(
    tmp_path: Path, written: str, stored: str
) -> None:
    assert load_files(tmp_path, f"dns: {{domain: '{written}'}}").dns.domain == stored
    assert load(["--dev", "--domain", written]).dns.domain == stored
    assert load(["--dev", "--domain", "x", "--alt-domain", written]).dns.alt_domain == stored


def test_recursors_are_normalised(tmp_path: Path) -> None:
    text = """
dns:
  recursors: [8.8.8.8, "1.1.1.1:5353", "[2001:DB8::1]", "[2001:db8::2]:53", "fd00::1:53",
              "8.8.8.8:53"]
"""
    assert load_files(tmp_path, text).dns.recursors == (
        "8.8.8.8:53",
        "1.1.1.1:5353",
        "[2001:db8::1]:53",
        "[2001:db8::2]:53",
        "[fd00::1:53]:53",  # a bare IPv6 literal is all address, as Consul reads it
    )


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("0", 0),
        (0, 0),
        ("0s", 0),
        ("10s", 10),
        ("1m", 60),
        ("1h30m", 5400),
        ("24h", 86400),
        ("2000ms", 2),
    ],
)
def test_ttls_take_go_durations_in_whole_seconds(
    tmp_path: Path, written: object, seconds: int
) -> None:
    value = yaml.safe_dump(written).removesuffix("\n...\n").strip()
    text = f"dns: {{node_ttl: {value}, negative_ttl: {value}, service_ttl: {{web: {value}}}}}"
    dns = load_files(tmp_path, text).dns
    expected = timedelta(seconds=seconds)
    assert (dns.node_ttl, dns.negative_ttl, dns.service_ttl) == (
        expected,
        expected,
        {"web": expected},
    )


def test_valid_values_in_every_form(tmp_path: Path) -> None:
    text = """
dns:
  domain: mesh.example
  alt_domain: Mesh.Internal.
  node_ttl: 30s
  service_ttl: {web: 10s, "api-*": 1m, "*": 5s, "DB": 0}
  negative_ttl: 1m
  only_passing: yes
  udp_answer_limit: 1000
  enable_truncate: false
  recursors: ["10.0.0.53"]
  recursor_strategy: Random
  recursor_timeout: 500ms
  nearest_first: true
intentions:
  default_policy: deny
"""
    dns = load_files(tmp_path, text).dns
    assert (dns.domain, dns.alt_domain) == ("mesh.example.", "mesh.internal.")
    assert dns.service_ttl == {
        "web": timedelta(seconds=10),
        "api-*": timedelta(minutes=1),
        "*": timedelta(seconds=5),
        "DB": timedelta(0),
    }
    assert (dns.only_passing, dns.enable_truncate, dns.nearest_first) == (True, False, True)
    assert (dns.udp_answer_limit, dns.recursor_strategy) == (1000, "random")
    assert dns.recursor_timeout == timedelta(milliseconds=500)


def test_models_check_direct_construction_too() -> None:
    assert DnsConfig(domain="Consul").domain == "consul."
    with pytest.raises(ValidationError, match="is the same as domain"):
        DnsConfig(alt_domain="consul")
    with pytest.raises(ValidationError, match="must be a DNS name"):
        DnsConfig(domain="a..b")


def test_loaded_config_round_trips_through_model_dump(tmp_path: Path) -> None:
    text = "dns: {service_ttl: {web: 10s}, recursors: ['[::1]'], alt_domain: alt}\n"
    config = load_files(tmp_path, text)
    assert DnsConfig.model_validate(config.dns.model_dump()) == config.dns
    assert AgentConfig.model_validate(config.model_dump(exclude_none=True)) == config
    assert '"recursors":["[::1]:53"]' in config.model_dump_json()


# --- bad input: one row per mistake -------------------------------------------

DOMAIN_RULE = "must be a DNS name: dot-separated labels of 1-63 letters, digits or"
TTL_RULE = 'must be a duration in whole seconds from 0 to 24h, like "30s" or "5m"'

BAD_VALUES = [
    # sections that are not mappings, unknown keys
    ("dns: 5", "dns", "must be a mapping of keys to values (a section), got 5"),
    ("dns: [a]", "dns", "must be a mapping of keys to values (a section), got a list"),
    (
        "intentions: deny",
        "intentions",
        'must be a mapping of keys to values (a section), got "deny"',
    ),
    ("dns: {servce_ttl: {web: 1s}}", "dns.servce_ttl", 'unknown key (did you mean "service_ttl"?)'),
    ("dns: {nodettl: 1s}", "dns.nodettl", 'unknown key (did you mean "node_ttl"?)'),
    ("dns: {zzz: 1}", "dns.zzz", "unknown key"),
    ("dns: {soa: {min_ttl: 1s}}", "dns.soa", 'unknown key (did you mean "negative_ttl"?)'),
    ("dns: {1: x}", "dns.1", "keys must be strings"),
    ("intentions: {default: deny}", "intentions.default", 'did you mean "default_policy"?'),
    ("dns.domain: x", "dns.domain", "unknown key (nest it: dns: {domain: ...})"),
    ("domain: x", "domain", 'unknown key (did you mean "dns.domain"?)'),
    ("recursors: [8.8.8.8]", "recursors", 'unknown key (did you mean "dns.recursors"?)'),
    ("dns_config: {}", "dns_config", 'unknown key (did you mean "dns"?)'),
    # domain, alt_domain
    (
        "dns: {domain: 'a..b'}",
        "dns.domain",
        f'{DOMAIN_RULE} "-" (no "-" at either end of a label), 253 characters at most, got "a..b"',
    ),
    ("dns: {domain: ''}", "dns.domain", f"{DOMAIN_RULE}"),
    ("dns: {domain: '.'}", "dns.domain", 'got "."'),
    ("dns: {domain: consul..}", "dns.domain", 'got "consul.."'),
    ("dns: {domain: -a.b}", "dns.domain", 'got "-a.b"'),
    ("dns: {domain: a-.b}", "dns.domain", 'got "a-.b"'),
    ("dns: {domain: a_b}", "dns.domain", 'got "a_b"'),
    ("dns: {domain: mesh example}", "dns.domain", 'got "mesh example"'),
    ("dns: {domain: é.example}", "dns.domain", 'got "é.example"'),
    ("dns: {domain: \u212aonsul}", "dns.domain", DOMAIN_RULE),  # Kelvin sign lower()s to "k"
    ("dns: {domain: " + "a" * 64 + "}", "dns.domain", DOMAIN_RULE),
    ("dns: {domain: " + ".".join(["a" * 63] * 3 + ["d" * 62]) + "}", "dns.domain", DOMAIN_RULE),
    ("dns: {domain: 5}", "dns.domain", f"{DOMAIN_RULE}"),
    ("dns: {domain: null}", "dns.domain", "got null"),
    ("dns: {alt_domain: a..b}", "dns.alt_domain", DOMAIN_RULE),
    # TTLs
    (
        "dns: {node_ttl: 1500ms}",
        "dns.node_ttl",
        'must be whole seconds (DNS TTLs have no fractions), got "1500ms"',
    ),
    ("dns: {node_ttl: 0.5s}", "dns.node_ttl", "must be whole seconds"),
    ("dns: {node_ttl: 25h}", "dns.node_ttl", 'must be from 0 to 24h, got "25h"'),
    ("dns: {node_ttl: 24h1s}", "dns.node_ttl", "must be from 0 to 24h"),
    ("dns: {node_ttl: 99999999999999h}", "dns.node_ttl", TTL_RULE),
    ("dns: {node_ttl: '30'}", "dns.node_ttl", f'{TTL_RULE}, got "30"'),
    ("dns: {node_ttl: 30}", "dns.node_ttl", f"{TTL_RULE}, got 30"),
    ("dns: {node_ttl: -1s}", "dns.node_ttl", 'got "-1s"'),
    ("dns: {node_ttl: true}", "dns.node_ttl", "got true"),
    ("dns: {node_ttl: 0.0}", "dns.node_ttl", "got 0.0"),
    ("dns: {negative_ttl: 1.5s}", "dns.negative_ttl", "must be whole seconds"),
    ("dns: {negative_ttl: 2d}", "dns.negative_ttl", f'{TTL_RULE}, got "2d"'),
    (
        "dns: {service_ttl: [web]}",
        "dns.service_ttl",
        'must be a mapping of service names (or "prefix*", "*") to durations, got a list',
    ),
    (
        "dns: {service_ttl: {bad_key: 1s}}",
        "dns.service_ttl",
        'key "bad_key" must be a service name, "prefix*" or "*"',
    ),
    ("dns: {service_ttl: {'a**': 1s}}", "dns.service_ttl", 'key "a**" must be'),
    ("dns: {service_ttl: {'*a': 1s}}", "dns.service_ttl", 'key "*a" must be'),
    ("dns: {service_ttl: {'-x': 1s}}", "dns.service_ttl", 'key "-x" must be'),
    ("dns: {service_ttl: {'x-': 1s}}", "dns.service_ttl", 'key "x-" must be'),
    ("dns: {service_ttl: {1: 1s}}", "dns.service_ttl", "key 1 must be"),
    (
        "dns: {service_ttl: {web: 25h}}",
        "dns.service_ttl",
        '"web": must be from 0 to 24h, got "25h"',
    ),
    (
        "dns: {service_ttl: {web: 1.5s, api: x}}",
        "dns.service_ttl",
        '"web": must be whole seconds (DNS TTLs have no fractions), got "1.5s"; "api": must be',
    ),
    # booleans and counts
    ("dns: {only_passing: 'yes'}", "dns.only_passing", 'must be true or false, got "yes"'),
    ("dns: {enable_truncate: 1}", "dns.enable_truncate", "must be true or false, got 1"),
    ("dns: {nearest_first: null}", "dns.nearest_first", "must be true or false, got null"),
    (
        "dns: {udp_answer_limit: -1}",
        "dns.udp_answer_limit",
        "must be an integer from 0 (no cap: fill the packet) to 1000, got -1",
    ),
    ("dns: {udp_answer_limit: 1001}", "dns.udp_answer_limit", "got 1001"),
    ("dns: {udp_answer_limit: '5'}", "dns.udp_answer_limit", 'got "5"'),
    ("dns: {udp_answer_limit: true}", "dns.udp_answer_limit", "got true"),
    ("dns: {udp_answer_limit: 3.0}", "dns.udp_answer_limit", "got 3.0"),
    # recursors
    (
        "dns: {recursors: 8.8.8.8}",
        "dns.recursors",
        'must be a list of "ip" or "ip:port" strings, got "8.8.8.8"',
    ),
    (
        "dns: {recursors: [dns.google]}",
        "dns.recursors",
        '"dns.google" is not an IP address (recursors are dialled directly)',
    ),
    ("dns: {recursors: ['dns.google:53']}", "dns.recursors", '"dns.google" is not an IP address'),
    ("dns: {recursors: ['1.1.1.1:0']}", "dns.recursors", "port 0 is out of range 1-65535"),
    ("dns: {recursors: ['1.1.1.1:']}", "dns.recursors", "port '' is not a number"),
    ("dns: {recursors: ['[10.0.0.1]:53']}", "dns.recursors", "brackets must hold an IPv6 address"),
    ("dns: {recursors: ['fd00::zz']}", "dns.recursors", '"fd00::zz" is not an IP address'),
    ("dns: {recursors: ['10.0.0.300']}", "dns.recursors", "'10.0.0.300' is not a valid IP address"),
    (
        "dns: {recursors: [5, x]}",
        "dns.recursors",
        'entries must be strings, got 5; "x" is not an IP',
    ),
    (
        "dns: {recursor_strategy: round-robin}",
        "dns.recursor_strategy",
        'must be "sequential" or "random", got "round-robin"',
    ),
    ("dns: {recursor_timeout: 0s}", "dns.recursor_timeout", 'must be longer than zero, got "0s"'),
    (
        "dns: {recursor_timeout: 61s}",
        "dns.recursor_timeout",
        'must be longer than zero and at most 1m, got "61s"',
    ),
    (
        "dns: {recursor_timeout: 2}",
        "dns.recursor_timeout",
        'a duration like "30s", "1m" or "500ms", got 2',
    ),
    # intentions
    (
        "intentions: {default_policy: maybe}",
        "intentions.default_policy",
        'must be "allow" or "deny", got "maybe"',
    ),
    ("intentions: {default_policy: false}", "intentions.default_policy", "got false"),
]


@pytest.mark.parametrize(("text", "key", "message"), BAD_VALUES)
def test_bad_value_names_file_and_dotted_key(
    tmp_path: Path, text: str, key: str, message: str
) -> None:
    path = write(tmp_path, "10-base.yaml", text + "\n")
    lines = errors(["--dev", "--config-file", path])
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{path}: {key}: "), lines
    assert message in lines[0], lines


def test_every_bad_key_of_a_section_is_reported_and_good_ones_kept(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", "dns: {domain: x, node_ttl: 1.5s, servce_ttl: {}}\n")
    assert errors(["--dev", "--config-file", path]) == [
        f'{path}: dns.node_ttl: must be whole seconds (DNS TTLs have no fractions), got "1.5s"',
        f'{path}: dns.servce_ttl: unknown key (did you mean "service_ttl"?)',
    ]


def test_each_file_is_checked_alone(tmp_path: Path) -> None:
    """A bad value is blamed on its file even when a later file replaces it."""
    a = write(tmp_path, "a.yaml", "dns: {node_ttl: 90000s}\n")
    b = write(tmp_path, "b.yaml", "dns: {node_ttl: 10s}\n")
    assert errors(["--dev", "--config-file", a, "--config-file", b]) == [
        f'{a}: dns.node_ttl: must be from 0 to 24h, got "90000s"'
    ]


BAD_FLAGS = [
    (["--domain", "bad..x"], "dns.domain", DOMAIN_RULE),
    (["--domain", ""], "dns.domain", 'got ""'),
    (["--alt-domain", "a b"], "dns.alt_domain", 'got "a b"'),
    (["--recursor", "localhost"], "dns.recursors", '"localhost" is not an IP address'),
    (["--recursor", "1.1.1.1", "--recursor", "1.1.1.1:99999"], "dns.recursors", "port 99999"),
    (["--default-intention-policy", "open"], "intentions.default_policy", 'got "open"'),
]


@pytest.mark.parametrize(("argv", "key", "message"), BAD_FLAGS)
def test_bad_flag_names_flag_and_dotted_key(argv: list[str], key: str, message: str) -> None:
    lines = errors(["--dev", *argv])
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"flag {argv[0]}: {key}: ") and message in lines[0], lines


# --- alt_domain against domain (checked once merged) -------------------------------

CLASHES = [
    ("dns: {alt_domain: Consul}", '"consul." is the same as domain'),
    ("dns: {alt_domain: dc1.consul}", '"dc1.consul." is inside domain "consul."; use another name'),
    (
        "dns: {domain: a.mesh, alt_domain: mesh}",
        'domain "a.mesh." is inside "mesh."; use another name',
    ),
    ("dns: {domain: mesh, alt_domain: mesh.}", '"mesh." is the same as domain'),
]


@pytest.mark.parametrize(("text", "message"), CLASHES)
def test_alt_domain_must_stay_apart_from_domain(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, "a.yaml", text + "\n")
    assert errors(["--dev", "--config-file", path]) == [f"{path}: dns.alt_domain: {message}"]
    assert load(["--dev", "--domain", "mesh", "--alt-domain", "meshy"]).dns.alt_domain == "meshy."


def test_domain_clash_is_checked_on_the_merged_result(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", "dns: {domain: mesh}\n")
    b = write(tmp_path, "b.yaml", "dns: {alt_domain: x.mesh}\n")
    assert errors(["--dev", "--config-file", a, "--config-file", b]) == [
        f'{b}: dns.alt_domain: "x.mesh." is inside domain "mesh."; use another name'
    ]
    assert errors(["--dev", "--config-file", a, "--alt-domain", "mesh"]) == [
        'flag --alt-domain: dns.alt_domain: "mesh." is the same as domain'
    ]
    # a later domain makes it fine again; a bad domain gives no follow-on clash
    assert load(["--dev", "--config-file", b, "--domain", "other"]).dns.alt_domain == "x.mesh."
    assert len(errors(["--dev", "--config-file", b, "--domain", "a..b"])) == 1


# --- merging -----------------------------------------------------------------


def test_sections_merge_key_by_key(tmp_path: Path) -> None:
    config = load_files(
        tmp_path,
        """
dns:
  domain: mesh
  node_ttl: 10s
  recursors: [10.0.0.1, 10.0.0.2]
  service_ttl: {web: 5s, db: 1m}
intentions: {default_policy: deny}
""",
        "dns: {only_passing: true, node_ttl: 20s}\n",
        "dns: {recursors: ['10.0.0.2:53', 10.0.0.3], service_ttl: {db: 2m, '*': 1s}}\n",
        "dns:\nintentions: {}\n",  # empty sections change nothing
    )
    dns = config.dns
    assert (dns.domain, dns.only_passing, dns.node_ttl) == ("mesh.", True, timedelta(seconds=20))
    assert dns.recursors == ("10.0.0.1:53", "10.0.0.2:53", "10.0.0.3:53")
    assert dns.service_ttl == {
        "web": timedelta(seconds=5),
        "db": timedelta(minutes=2),
        "*": timedelta(seconds=1),
    }
    assert dns.enable_truncate is True  # never set: the default
    assert config.intentions.default_policy == "deny"


def test_flags_override_files(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "a.yaml",
        "dns: {domain: mesh, alt_domain: alt, recursors: [10.0.0.1], node_ttl: 5s}\n"
        "intentions: {default_policy: allow}\n",
    )
    argv = ["--data-dir", "/d", "--config-file", path, "--domain", "Flag.Example"]
    argv += ["--recursor", "[::1]:5353", "--recursor", "10.0.0.1"]
    config = load([*argv, "--default-intention-policy", "deny"])
    assert (config.dns.domain, config.dns.alt_domain) == ("flag.example.", "alt.")
    assert config.dns.recursors == ("10.0.0.1:53", "[::1]:5353")  # appended, no repeats
    assert config.dns.node_ttl == timedelta(seconds=5)
    assert config.intentions.default_policy == "deny"


def test_section_flags_not_given_leave_files_alone(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", "dev: true\ndns: {domain: mesh, recursors: [10.0.0.1]}\n")
    args = parse(["--config-file", path])
    assert not hasattr(args, "dns_domain") and not hasattr(args, "dns_recursors")
    config = load_agent_config(args, hostname="h", host_addresses=[])
    assert (config.dns.domain, config.dns.recursors) == ("mesh.", ("10.0.0.1:53",))
    hand_made = argparse.Namespace(config_paths=[("file", path)], dns_domain=None)
    assert load_agent_config(hand_made, hostname="h", host_addresses=[]).dns.domain == "mesh."


# --- reload ------------------------------------------------------------------


def test_diff_shows_changed_nested_keys(tmp_path: Path) -> None:
    old = load(["--dev"])
    path = write(
        tmp_path,
        "a.yaml",
        "dns: {only_passing: true, node_ttl: 10s, service_ttl: {web: 1m}, recursors: [10.0.0.1]}\n"
        "intentions: {default_policy: deny}\n",
    )
    new = load(["--dev", "--config-file", path])
    assert diff_configs(old, new) == [
        "dns.node_ttl: 0s -> 10s (needs restart)",
        'dns.service_ttl: {} -> {"web": "1m"} (needs restart)',
        "dns.only_passing: false -> true (needs restart)",
        'dns.recursors: [] -> ["10.0.0.1:53"] (needs restart)',
        'intentions.default_policy: "allow" -> "deny"',  # live: proxies apply it at once
    ]
    assert diff_configs(new, new) == []
    assert diff_configs(old, load(["--dev", "--alt-domain", "alt"])) == [
        'dns.alt_domain: (unset) -> "alt." (needs restart)'
    ]


def test_dns_needs_a_restart_and_the_intentions_default_does_not(tmp_path: Path) -> None:
    assert "dns" not in RELOADABLE_KEYS and "intentions" in RELOADABLE_KEYS
    running = load(["--dev"])
    new = load(["--dev", "--domain", "mesh", "--default-intention-policy", "deny", "--log-json"])
    applied = apply_reloadable(running, new)
    assert applied.dns == running.dns
    assert applied.intentions.default_policy == "deny"
    assert applied.log_json  # a reloadable key beside them is taken


# --- the agent command --------------------------------------------------------


def test_agent_exits_2_on_a_bad_dns_value(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "dns:\n  node_ttl: 1500ms\n  servce_ttl: {}\n")
    argv = ["--dev", "--config-file", path, "--recursor", "dns.google"]
    result = gossamer("agent", *argv)
    assert result.returncode == 2, result.stderr
    assert f"config error: {path}: dns.node_ttl: must be whole seconds" in result.stderr
    assert f'config error: {path}: dns.servce_ttl: unknown key (did you mean "service_ttl"?)' in (
        result.stderr
    )
    assert "config error: flag --recursor: dns.recursors: " in result.stderr
    assert "not started" in result.stderr


# --- fuzz: anything in a section loads or raises ConfigError ----------------------

SUB_KEYS = sorted({*DnsConfig.model_fields, *IntentionsConfig.model_fields})
EXAMPLES = ["0", "10s", "1.5s", "25h", "consul", "a..b", "8.8.8.8", "[::1]:53", "fd00::1"]
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from([*EXAMPLES, "allow", "deny", "random", "web*", "*"])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.text(max_size=8) | st.sampled_from(["web", "a*", "*"]), inner, max_size=4
        )
    ),
    max_leaves=8,
)
sections = st.dictionaries(
    st.sampled_from(SUB_KEYS) | st.text(max_size=10) | st.integers(), values, max_size=6
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dns=sections | values, intentions=sections | values, dev=st.booleans())
def test_fuzz_sections(dns: object, intentions: object, dev: bool) -> None:
    text = yaml.safe_dump({"dns": dns, "intentions": intentions})
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), "fuzz.yaml", text)
        argv = ["--config-file", path, *(["--dev"] if dev else ["--data-dir", tmp])]
        try:
            config = load_agent_config(parse(argv), hostname="h", host_addresses=["10.0.0.1"])
        except ConfigError as exc:
            assert exc.problems and all(isinstance(p, ConfigProblem) for p in exc.problems)
        else:
            assert config.intentions.default_policy in ("allow", "deny")
            assert AgentConfig.model_validate(config.model_dump(exclude_none=True)) == config
