"""The proxy's pure cores: config parsing, instance choice, outlier state, relay ends, counters."""

from __future__ import annotations

import random
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.proxy import config_fields as fields
from gossamer.proxy import tally
from gossamer.proxy.agent_http import BadAnswer, parse_answer, split_base_url
from gossamer.proxy.balance import choose, choose_for_request
from gossamer.proxy.config import ConfigError, Upstream, config_from_json, config_to_json
from gossamer.proxy.config_flags import adhoc_config, keep_pinned, parse_upstream_flag, with_drain
from gossamer.proxy.config_registration import config_from_registration
from gossamer.proxy.dial import failed
from gossamer.proxy.local_peer import from_this_host, loopback
from gossamer.proxy.outbound import UpstreamListener
from gossamer.proxy.outlier import THRESHOLD, Outliers
from gossamer.proxy.relay_state import Halves, Step

SIDECAR: dict[str, Any] = {
    "Kind": "connect-proxy",
    "ID": "web-sidecar-proxy",
    "Service": "web-sidecar-proxy",
    "Port": 21000,
    "Address": "10.0.0.5",
    "Proxy": {
        "DestinationServiceName": "web",
        "DestinationServiceID": "web",
        "LocalServiceAddress": "127.0.0.1",
        "LocalServicePort": 8080,
        "Upstreams": [
            {"DestinationType": "service", "DestinationName": "db", "LocalBindPort": 9191},
            {"DestinationName": "cache", "LocalBindAddress": "127.0.0.2", "LocalBindPort": 9192,
             "Config": {"connect_timeout_ms": 2500}},
        ],
        "Config": {"handshake_timeout_ms": 5000, "drain_timeout_s": 3},
    },
}  # fmt: skip


def with_proxy(**changes: Any) -> dict[str, Any]:
    return SIDECAR | {"Proxy": SIDECAR["Proxy"] | changes}


# --- config -------------------------------------------------------------------------------------


def test_a_sidecar_registration_gives_the_whole_config() -> None:
    config = config_from_registration(SIDECAR, "web-sidecar-proxy")
    assert (config.service, config.proxy_id) == ("web", "web-sidecar-proxy")
    assert (config.bind_address, config.bind_port) == ("10.0.0.5", 21000)
    assert (config.local_address, config.local_port) == ("127.0.0.1", 8080)
    assert config.upstreams == (
        Upstream("db", 9191),
        Upstream("cache", 9192, "127.0.0.2", connect_timeout_s=2.5, connect_timeout_set=True),
    )
    assert (config.timeouts.handshake_s, config.timeouts.local_connect_s) == (5.0, 1.0)
    assert config.timeouts.drain_s == 3.0
    assert with_drain(config, 7).timeouts.drain_s == 7.0  # the flag wins
    changed = config_from_registration(with_proxy(Config={"drain_timeout_s": 9}), "w")
    assert keep_pinned(changed, with_drain(config, 7)).timeouts.drain_s == 7.0  # and stays
    assert keep_pinned(changed, config).timeouts.drain_s == 9.0  # unpinned: the new key's
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="--drain-timeout"):
            with_drain(config, bad)
    assert (config.protocol, config.headers_timeout_s, config.max_header_bytes) == (
        "tcp",
        10.0,
        65536,
    )  # Consul's default protocol; the HTTP limits' defaults
    http = config_from_registration(
        with_proxy(Config={"protocol": "HTTP", "request_headers_timeout_ms": 500}),
        "web-sidecar-proxy",
    )
    assert (http.protocol, http.headers_timeout_s) == ("http", 0.5)
    assert config_from_json(config_to_json(http)) == http


def test_numbers_written_as_consuls_decoder_takes_them() -> None:
    """Consul decodes Proxy.Config and an upstream's Config weakly typed (mapstructure):
    digits in a string, as an HCL file or a template may write a number, and a float with
    no fraction are that number. They were refused here (a walkthrough's finding)."""
    config = config_from_registration(with_proxy(
        Config={"handshake_timeout_ms": "2500", "local_connect_timeout_ms": 1500.0,
                "drain_timeout_s": "4", "bind_port": " 21001 ", "local_request_timeout_ms": "700",
                "protocol": "http"},
        Upstreams=[{"DestinationName": "db", "LocalBindPort": 9191,
                    "Config": {"connect_timeout_ms": "2000", "protocol": "http",
                               "max_idle_connections": "8", "request_timeout_ms": 900.0}}],
    ), "w")  # fmt: skip
    assert (config.timeouts.handshake_s, config.timeouts.local_connect_s) == (2.5, 1.5)
    assert (config.timeouts.drain_s, config.bind_port) == (4.0, 21001)
    assert config.request_timeout_s == 0.7
    (db,) = config.upstreams
    assert (db.connect_timeout_s, db.pool_idle, db.request_timeout_s) == (2.0, 8, 0.9)
    assert (db.retry_ratio, db.retry_min_per_s) == (0.2, 10.0)  # Linkerd's, when unset
    budget = with_proxy(Upstreams=[{"DestinationName": "db", "LocalBindPort": 9191, "Config": {
        "retry_ratio": "0.5", "retry_min_per_second": 0}}])  # fmt: skip
    (db,) = config_from_registration(budget, "w").upstreams
    assert (db.retry_ratio, db.retry_min_per_s) == (0.5, 0.0)
    for bad in ("1500.5", "5s", "-5", "", 1500.5, float("inf")):  # still refused, named
        with pytest.raises(ConfigError, match=r"Proxy\.Config\.handshake_timeout_ms"):
            config_from_registration(with_proxy(Config={"handshake_timeout_ms": bad}), "w")


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (SIDECAR | {"Kind": ""}, "web-sidecar-proxy"),
        (with_proxy(DestinationServiceName=""), "Proxy.DestinationServiceName"),
        (with_proxy(LocalServicePort=0), "Proxy.LocalServicePort"),
        (with_proxy(Upstreams=[{"DestinationName": "db"}]), "Proxy.Upstreams[0].LocalBindPort"),
        (with_proxy(Upstreams=[{"DestinationName": "d b", "LocalBindPort": 1}]),
         "Proxy.Upstreams[0].DestinationName"),
        (with_proxy(Upstreams=[{"DestinationType": "prepared_query", "DestinationName": "q",
                                "LocalBindPort": 1}]), "Proxy.Upstreams[0].DestinationType"),
        (with_proxy(Upstreams=[{"DestinationName": "a", "LocalBindPort": 5},
                               {"DestinationName": "b", "LocalBindPort": 5}]), "upstream 'b'"),
        (with_proxy(Config={"handshake_timeout_ms": -1}), "Proxy.Config.handshake_timeout_ms"),
        (with_proxy(Config={"drain_timeout_s": "soon"}), "Proxy.Config.drain_timeout_s"),
        (SIDECAR | {"Port": 0}, "Port"),
        (SIDECAR | {"Proxy": "x"}, "Proxy"),
        (with_proxy(Config={"protocol": "udp"}), "Proxy.Config.protocol"),
        (with_proxy(Config={"request_headers_timeout_ms": 0}),
         "Proxy.Config.request_headers_timeout_ms"),
        (with_proxy(Config={"max_request_header_bytes": "big"}),
         "Proxy.Config.max_request_header_bytes"),
        (with_proxy(Upstreams=[{"DestinationName": "db", "LocalBindPort": 1,
                                "Config": {"gossamer_remote_clients": "yes"}}]),
         "Proxy.Upstreams[0].Config.gossamer_remote_clients"),
        # digits Python calls digits and int() does not take; numbers no float holds
        (with_proxy(Config={"bind_port": "\u00b2"}), "Proxy.Config.bind_port"),
        (with_proxy(Config={"bind_port": "abc"}), "Proxy.Config.bind_port"),
        (with_proxy(Config={"drain_timeout_s": 10**400}), "Proxy.Config.drain_timeout_s"),
        (with_proxy(Config={"drain_timeout_s": float("nan")}), "Proxy.Config.drain_timeout_s"),
        (with_proxy(Config={"handshake_timeout_ms": 10**400}), "Proxy.Config.handshake_timeout_ms"),
        (with_proxy(Config={"local_request_timeout_ms": 10**400}),
         "Proxy.Config.local_request_timeout_ms"),
        (with_proxy(Config={"max_request_header_bytes": 10**400}),
         "Proxy.Config.max_request_header_bytes"),
        # an upstream on the inbound listener's port (its address, or a wildcard one)
        (with_proxy(Upstreams=[{"DestinationName": "db", "LocalBindAddress": "10.0.0.5",
                                "LocalBindPort": 21000}]), "upstream 'db'"),
        (with_proxy(Upstreams=[{"DestinationName": "db", "LocalBindAddress": "0.0.0.0",
                                "LocalBindPort": 21000}]), "upstream 'db'"),
        (with_proxy(Upstreams=[{"DestinationName": "a", "LocalBindPort": 5},
                               {"DestinationName": "b", "LocalBindAddress": "0.0.0.0",
                                "LocalBindPort": 5}]), "upstream 'b'"),
        # an address the proxy binds or dials that is neither an IP address nor a host name
        (with_proxy(Config={"bind_address": "not an address"}), "Proxy.Config.bind_address"),
        (with_proxy(Config={"bind_address": "[::1]"}), "Proxy.Config.bind_address"),
        (with_proxy(Config={"bind_address": "10.0.0.300"}), "Proxy.Config.bind_address"),
        (with_proxy(Config={"bind_address": "10.0.0.5\x00"}), "Proxy.Config.bind_address"),
        (SIDECAR | {"Address": "not an address"}, "Address"),
        (with_proxy(LocalServiceAddress="127.0.0.1:8080"), "Proxy.LocalServiceAddress"),
        (with_proxy(Upstreams=[{"DestinationName": "db", "LocalBindAddress": "-bad-",
                                "LocalBindPort": 1}]), "Proxy.Upstreams[0].LocalBindAddress"),
        # an upstream elsewhere than the proxy can reach: it was served by the local `db`
        (SIDECAR | {"Datacenter": "dc1"} | {"Proxy": SIDECAR["Proxy"] | {"Upstreams": [
            {"DestinationName": "db", "Datacenter": "dc2", "LocalBindPort": 1}]}},
         "Proxy.Upstreams[0].Datacenter"),
        (with_proxy(Upstreams=[{"DestinationName": "db", "DestinationPeer": "other",
                                "LocalBindPort": 1}]), "Proxy.Upstreams[0].DestinationPeer"),
        (with_proxy(Upstreams=[{"DestinationName": "db", "DestinationNamespace": "team-a",
                                "LocalBindPort": 1}]), "Proxy.Upstreams[0].DestinationNamespace"),
        (with_proxy(Upstreams=[{"DestinationName": "db", "DestinationPartition": "p1",
                                "LocalBindPort": 1}]), "Proxy.Upstreams[0].DestinationPartition"),
        (with_proxy(Upstreams=[{"DestinationName": "db", "Datacenter": 7,
                                "LocalBindPort": 1}]), "Proxy.Upstreams[0].Datacenter"),
        # a retry budget that is no number, negative, past its bound, or not finite
        *((with_proxy(Upstreams=[{"DestinationName": "db", "LocalBindPort": 1,
                                  "Config": {key: bad}}]), f"Proxy.Upstreams[0].Config.{key}")
          for key in ("retry_ratio", "retry_min_per_second")
          for bad in ("lots", -0.1, "-1", 10**400, float("nan"), float("inf"), True, "²")),
    ],
)  # fmt: skip
def test_a_bad_registration_names_where(body: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as error:
        config_from_registration(body, "web-sidecar-proxy")
    assert error.value.where == where, str(error.value)


@pytest.mark.parametrize(
    "place",
    [{}, {"Datacenter": ""}, {"Datacenter": "dc1"}, {"DestinationPeer": ""},
     {"DestinationNamespace": "default", "DestinationPartition": "default"},
     {"DestinationNamespace": "", "DestinationPartition": ""}],
)  # fmt: skip
def test_an_upstream_in_this_datacenter_and_the_default_namespace_is_served(
    place: dict[str, str],
) -> None:
    """Consul's registrations name the defaults, or this agent's datacenter, at times."""
    up = {"DestinationName": "db", "LocalBindPort": 1} | place
    body = SIDECAR | {"Datacenter": "dc1"} | {"Proxy": SIDECAR["Proxy"] | {"Upstreams": [up]}}
    assert config_from_registration(body, "w").upstreams[0].name == "db"


@pytest.mark.parametrize(
    "address", ["10.0.0.6", "0.0.0.0", "::", "::1", "fe80::1%eth0", "localhost", "db.example."]
)
def test_an_address_is_an_ip_literal_or_a_host_name(address: str) -> None:
    """What the listeners bind and the loop resolves (listen.py): IP literals and names."""
    config = config_from_registration(with_proxy(Config={"bind_address": address}), "w")
    assert config.bind_address == address
    assert config_from_registration(SIDECAR | {"Address": address}, "w").bind_address == address


def _packs(family: int, text: str) -> bool:
    try:
        socket.inet_pton(family, text)
    except (OSError, ValueError):
        return False
    return True


_GROUP = st.one_of(st.just(""), st.text("0123456789abcdefABCDEFg", min_size=1, max_size=5),
                   st.lists(st.sampled_from(["0", "1", "01", "255", "256"]), min_size=3,
                            max_size=5).map(".".join))  # fmt: skip


@settings(max_examples=1000)
@given(st.lists(_GROUP, max_size=10).map(":".join), st.booleans())
def test_an_ip_literal_is_what_inet_pton_takes(text: str, colon: bool) -> None:
    """The listeners bind an IP literal as inet_pton reads it (listen.py); config_fields reads
    it by its text (no `socket` in a pure module, no `ipaddress` in the proxy process)."""
    text = ":" + text if colon else text
    if ":" in text:
        assert fields.is_ipv6(text) == _packs(socket.AF_INET6, text), text
    elif _packs(socket.AF_INET, text):
        assert fields.is_address(text), text


def test_an_address_is_not_checked_where_it_is_not_used() -> None:
    """`Address` is what peers dial (perhaps through a NAT): bound only without bind_address."""
    body = with_proxy(Config={"bind_address": "10.0.0.6"}) | {"Address": "not an address"}
    assert config_from_registration(body, "w").bind_address == "10.0.0.6"


@pytest.mark.parametrize(
    ("flags", "where"),
    [
        ({"listen": "not an address:21000", "local": "127.0.0.1:8080"}, "--listen"),
        ({"listen": "127.0.0.1:21000", "local": "no such app:8080"}, "--local"),
        ({"upstreams": ["db:not an address:9191"]}, "--upstream 'db:not an address:9191'"),
    ],
)
def test_a_flag_address_that_is_no_address_names_the_flag(
    flags: dict[str, Any], where: str
) -> None:
    with pytest.raises(ConfigError) as error:
        adhoc_config("web", flags.pop("upstreams", []), **flags)
    assert error.value.where == where, str(error.value)
    assert "is not an IP address or host name" in str(error.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("db:9191", Upstream("db", 9191)),
        ("db:127.0.0.9:9191", Upstream("db", 9191, "127.0.0.9")),
        ("db:[::1]:9191", Upstream("db", 9191, "::1")),
    ],
)
def test_upstream_flags(text: str, expected: Upstream) -> None:
    assert parse_upstream_flag(text) == expected


@pytest.mark.parametrize(
    "text", ["db", "db:", "db:0", "db:70000", "db:port", ":9191", "d b:1", "db:\u00b2"]
)
def test_a_bad_upstream_flag_names_itself(text: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_upstream_flag(text)
    assert error.value.where == f"--upstream {text!r}"


def test_a_config_survives_its_json_form() -> None:
    config = config_from_registration(SIDECAR, "web-sidecar-proxy")
    assert config_from_json(config_to_json(config)) == config
    with pytest.raises(ConfigError, match="not a proxy config"):
        config_from_json('{"service": "web"}')


def test_an_adhoc_config() -> None:
    config = adhoc_config("web", ["db:9191"], listen="127.0.0.1:21000", local="127.0.0.1:8080")
    assert (config.service, config.bind_port, config.local_port) == ("web", 21000, 8080)
    assert config.upstreams == (Upstream("db", 9191),)
    with pytest.raises(ConfigError, match="--listen: an inbound listener needs --local"):
        adhoc_config("web", [], listen="127.0.0.1:21000")
    with pytest.raises(ConfigError, match="clashes with 'db'"):
        adhoc_config("web", ["db:9191", "cache:9191"])


@given(st.text(max_size=30))
def test_any_upstream_flag_parses_or_raises_config_error(text: str) -> None:
    try:
        found = parse_upstream_flag(text)
    except ConfigError as exc:
        assert exc.where == f"--upstream {text!r}"
    else:
        assert 1 <= found.bind_port <= 65535 and found.name


# --- balance ------------------------------------------------------------------------------------


def test_p2c_takes_the_less_loaded_of_two_and_never_an_excluded_one() -> None:
    rng = random.Random(1)
    assert choose([], {}, rng) is None
    assert choose(["a"], {"a": 99}, rng) == "a"
    assert choose(["a", "b"], {"a": 5, "b": 1}, rng) == "b"  # two of two: always the lighter
    assert choose(["a", "b"], {"a": 5, "b": 1}, rng, exclude={"b"}) == "a"
    assert choose(["a", "b"], {}, rng, exclude={"a", "b"}) is None


@pytest.mark.parametrize(
    ("set_aside", "failed_here", "expected"),
    [
        (set(), set(), {"a", "b", "c"}),
        ({"a"}, set(), {"b", "c"}),
        (set(), {"b"}, {"a", "c"}),
        ({"a", "c"}, {"b"}, {"a", "c"}),  # all out: the least bad, not where it failed
        ({"a", "b", "c"}, {"a"}, {"b", "c"}),
        (set(), {"a", "b", "c"}, {"a", "b", "c"}),  # failed everywhere: anywhere
        ({"b"}, {"a", "c"}, {"b"}),
    ],
)
def test_a_request_avoids_set_aside_instances_and_where_it_failed_before(
    set_aside: set[str], failed_here: set[str], expected: set[str]
) -> None:
    rng = random.Random(3)
    picks = {choose_for_request(["a", "b", "c"], {}, rng, set_aside, failed_here)
             for _ in range(200)}  # fmt: skip
    assert picks == expected


def test_p2c_spreads_better_than_uniform_random() -> None:
    """With connections that stay open, the busiest instance stays close to the mean."""
    instances = [f"i{n}" for n in range(10)]
    for picker in ("p2c", "random"):
        rng, load = random.Random(7), Counter[str]()
        for _ in range(1000):
            pick = choose(instances, load, rng) if picker == "p2c" else rng.choice(instances)
            assert pick is not None
            load[pick] += 1
        spread = max(load.values()) - min(load.values())
        if picker == "p2c":
            p2c_spread = spread
            assert spread <= 6  # uniform random: ~40 here
        else:
            assert p2c_spread < spread


@given(
    st.lists(st.integers(0, 20), min_size=1, max_size=12, unique=True),
    st.dictionaries(st.integers(0, 20), st.integers(0, 50)),
    st.sets(st.integers(0, 20)),
    st.integers(),
)
def test_p2c_never_picks_outside_or_excluded_and_never_the_busiest_of_a_pair(
    candidates: list[int], load: dict[int, int], exclude: set[int], seed: int
) -> None:
    pick = choose(candidates, load, random.Random(seed), exclude)
    allowed = [c for c in candidates if c not in exclude]
    if not allowed:
        assert pick is None
        return
    assert pick in allowed
    if len(allowed) > 1:  # the pick is never the unique busiest
        busiest = max(load.get(c, 0) for c in allowed)
        assert load.get(pick, 0) < busiest or [load.get(c, 0) for c in allowed].count(busiest) > 1


# --- outlier ------------------------------------------------------------------------------------


def test_an_instance_is_set_aside_after_consecutive_failures_and_back_later() -> None:
    o: Outliers[str] = Outliers(threshold=3, base_ms=1000, max_ms=2500, max_ejected_ratio=0.5)
    assert not o.failed("a", 0, known=4) and not o.failed("a", 1, known=4)
    o.succeeded("a")  # a success resets the count
    assert not o.failed("a", 2, known=4) and not o.failed("a", 3, known=4)
    assert o.failed("a", 4, known=4)  # third in a row
    assert o.ejected(5) == {"a"} and o.is_ejected("a", 1003)
    assert not o.is_ejected("a", 1004)  # 1 s later it is tried again
    for t in (1005, 1006, 1007):
        ejected = o.failed("a", t, known=4)
    assert ejected and o.is_ejected("a", 1007 + 1999) and not o.is_ejected("a", 1007 + 2000)
    for t in (4000, 4001, 4002):
        o.failed("a", t, known=4)
    assert o.is_ejected("a", 4002 + 2499) and not o.is_ejected("a", 4002 + 2500)  # capped


def test_never_more_than_the_ratio_is_ejected() -> None:
    o: Outliers[str] = Outliers(threshold=1, base_ms=1000, max_ejected_ratio=0.5)
    assert o.failed("a", 0, known=2)
    assert not o.failed("b", 0, known=2)  # half of 2 is out already: b stays eligible
    assert o.ejected(1) == {"a"}
    o.forget_except({"b"})
    assert o.ejected(1) == set()


def test_a_split_targets_failing_instance_is_ejected_whatever_the_upstreams_own_count() -> None:
    """The ratio is of every instance the listener can send to: with the upstream's own
    service down to one instance (or none, all moved to the other target), a failing
    instance of the other target is still set aside."""
    for own in ([("10.0.0.1", 1)], []):
        listener = UpstreamListener(Upstream("api", 9191), lambda: None, tally.Tally())
        listener.set_instances(own)
        canary = [(f"10.0.1.{i}", 1) for i in range(4)]
        listener.set_target_instances("api-canary", canary)
        for _ in range(THRESHOLD):
            failed(listener, canary[0], "connect-failed", ConnectionRefusedError())
        assert listener.outliers.ejected(time.monotonic_ns() // 1_000_000) == {canary[0]}, own


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.booleans()), max_size=60))
def test_ejections_respect_the_ratio_and_succeeding_instances_are_never_ejected(
    events: list[tuple[str, bool]],
) -> None:
    o: Outliers[str] = Outliers(threshold=2, base_ms=100, max_ejected_ratio=0.5)
    for now, (instance, ok) in enumerate(events):
        if ok:
            o.succeeded(instance)
        else:
            o.failed(instance, now, known=4)
        assert len(o.ejected(now)) <= 2
    never_failed = {i for i in "abcd"} - {i for i, ok in events if not ok}
    assert not (o.ejected(len(events)) & never_failed)


# --- relay ends and counters -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("events", "steps"),
    [
        ([("end", 0), ("end", 1)], [Step.FORWARD_EOF, Step.CLOSE_BOTH]),
        ([("end", 1), ("end", 1), ("end", 0)], [Step.FORWARD_EOF, Step.NOTHING, Step.CLOSE_BOTH]),
        ([("end", 0), ("lost", None), ("end", 1)],
         [Step.FORWARD_EOF, Step.CLOSE_BOTH, Step.NOTHING]),
        ([("lost", None), ("lost", None)], [Step.CLOSE_BOTH, Step.NOTHING]),
    ],
)  # fmt: skip
def test_relay_ends(events: list[tuple[str, int | None]], steps: list[Step]) -> None:
    halves = Halves()
    got = [halves.end_from(side) if kind == "end" and side is not None else halves.lost()
           for kind, side in events]  # fmt: skip
    assert got == steps


@given(st.lists(st.one_of(st.sampled_from([0, 1]), st.none()), max_size=10))
def test_a_relay_closes_exactly_once_and_always_once_both_ended(events: list[int | None]) -> None:
    halves = Halves()
    steps = [halves.lost() if e is None else halves.end_from(e) for e in events]
    assert steps.count(Step.CLOSE_BOTH) <= 1
    if set(events) >= {0, 1} or None in events:
        assert Step.CLOSE_BOTH in steps and halves.closed


def test_refusals_are_counted_always_and_logged_once_per_source_per_minute() -> None:
    t = tally.Tally()
    assert t.refuse("inbound", tally.DENIED, "10.0.0.1", 0)
    assert not t.refuse("inbound", tally.DENIED, "10.0.0.1", 59_999)
    assert not t.refuse("inbound", tally.NOT_TLS, "10.0.0.1", 1)  # another reason: no line
    assert t.refuse("inbound", tally.NOT_TLS, "10.0.0.2", 1)  # another source: its own
    assert t.refuse("inbound", tally.DENIED, "10.0.0.1", 60_000)
    snapshot = t.snapshot()
    assert snapshot["inbound.refused.denied"] == 3 and snapshot["inbound.refused.expired"] == 0
    assert snapshot["inbound.refused.not-tls"] == 2
    # an upstream's turned-away clients: once a minute for each reason
    assert t.refuse("outbound", tally.NO_HEALTHY_INSTANCE, "db", 0)
    assert t.refuse("outbound", tally.ALL_ATTEMPTS_FAILED, "db", 1)
    assert not t.refuse("outbound", tally.NO_HEALTHY_INSTANCE, "db", 2)
    with pytest.raises(ValueError, match="unknown inbound refusal reason"):
        t.refuse("inbound", "nope", "x", 0)


# --- the agent's HTTP answers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "status", "body", "index"),
    [
        (b"HTTP/1.1 200 OK\r\nX-Consul-Index: 7\r\nContent-Length: 2\r\n\r\n{}", 200, b"{}", "7"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n",
         200, b"[1,2]", ""),
        (b"HTTP/1.0 404 Not Found\r\n\r\nno such service", 404, b"no such service", ""),
    ],
)  # fmt: skip
def test_agent_answers_are_read(raw: bytes, status: int, body: bytes, index: str) -> None:
    answer = parse_answer(raw)
    assert (answer.status, answer.body, answer.headers.get("x-consul-index", "")) == (
        status, body, index,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("url", "parts"),
    [
        ("http://127.0.0.1:8500", ("http", "127.0.0.1", 8500, "127.0.0.1:8500")),
        ("https://[::1]:8501", ("https", "::1", 8501, "[::1]:8501")),
        ("https://agent.internal", ("https", "agent.internal", 443, "agent.internal")),
        ("http://[fd00::1]/v1", ("http", "fd00::1", 80, "[fd00::1]")),
    ],
)  # fmt: skip
def test_agent_addresses_split_as_the_cli_writes_them(
    url: str, parts: tuple[str, str, int, str]
) -> None:
    assert split_base_url(url) == parts


@pytest.mark.parametrize(
    "url", ["127.0.0.1:8500", "ftp://h:21", "http://", "http://h:0", "http://h:x", "http://[::1]x"]
)
def test_a_bad_agent_address_is_named(url: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(url))):
        split_base_url(url)


def test_the_proxy_process_refuses_a_bad_agent_address_with_exit_2() -> None:
    argv = [sys.executable, "-m", "gossamer.proxy", '{"node": true, "drain_s": null}',
            "ftp://agent:8500", "info"]  # fmt: skip
    run = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2
    assert run.stderr.strip() == (
        "gossamer proxy: agent address 'ftp://agent:8500': expected http(s)://host[:port]"
    )


@given(st.binary(max_size=200))
def test_any_reply_is_an_answer_or_bad_answer(raw: bytes) -> None:
    try:
        answer = parse_answer(raw)
    except BadAnswer:
        return
    assert 0 <= answer.status <= 999


def test_from_this_host_is_a_loopback_peer_or_the_listeners_own_address() -> None:
    own = ("10.0.0.5", 9191)
    assert from_this_host(("127.0.0.1", 40000), own)
    assert from_this_host(("127.9.9.9", 40000), own)
    assert from_this_host(("::1", 40000, 0, 0), ("::1", 9191, 0, 0))
    assert from_this_host(("::ffff:127.0.0.1", 40000, 0, 0), ("::", 9191, 0, 0))
    assert from_this_host(("10.0.0.5", 40000), own)  # a local client dialing the host's address
    assert not from_this_host(("10.0.0.6", 40000), own)
    assert not from_this_host(("fe80::1", 40000, 0, 2), ("fe80::2", 9191, 0, 2))
    assert not from_this_host("/run/x.sock", own) and not from_this_host(None, own)
    assert [loopback(h) for h in ("127.0.0.1", "::1", "[::1]", "localhost", "0.0.0.0", "10.0.0.5",
                                  "::", "db.example")] == [True] * 4 + [False] * 4  # fmt: skip
