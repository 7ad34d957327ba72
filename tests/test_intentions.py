"""Intentions, the pure part: decision tables (precedence, ties, wildcards,
defaults, L7 paths/methods/headers), validation tables (every problem at once,
field named), JSON against Consul's documented bodies, and Hypothesis
properties (insertion order never matters, exact beats wildcard, the default
only when nothing matches, any JSON parses or raises IntentionError)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gossamer.agent.cli.intention_files import read_policy
from gossamer.intentions import (
    Decision,
    HeaderMatch,
    HTTPMatch,
    HttpRequest,
    Intention,
    IntentionError,
    IntentionSet,
    Permission,
    config_entries_to_json,
    config_entry_from_json,
    config_entry_to_json,
    decide,
    intention_from_json,
    intention_to_json,
    intentions_from_document,
    match,
    validate,
)

KINDS = {
    "web => db": ("web", "db"),
    "* => db": ("*", "db"),
    "web => *": ("web", "*"),
    "* => *": ("*", "*"),
}
ORDER = ["web => db", "* => db", "web => *", "* => *"]  # precedence 9, 8, 6, 5


def l4(src: str, dst: str, action: str, **kw: Any) -> Intention:
    return Intention(src, dst, action, **kw)


def l7(src: str, dst: str, *perms: Permission, **kw: Any) -> Intention:
    return Intention(src, dst, None, perms, **kw)


def perm(action: str, **http: Any) -> Permission:
    return Permission(action, HTTPMatch(**http))


def hdr(name: str, **kw: Any) -> Permission:
    """An allow permission on one header condition."""
    return Permission("allow", HTTPMatch(headers=(HeaderMatch(name, **kw),)))


def check(
    ixns: list[Intention],
    src: str = "web",
    dst: str = "db",
    *,
    req: HttpRequest | None = None,
    default_allow: bool = False,
) -> Decision:
    return decide(IntentionSet(ixns), src, dst, request=req, default_allow=default_allow)


# -- precedence ---------------------------------------------------------------


@pytest.mark.parametrize(("kind", "expected"), list(zip(ORDER, [9, 8, 6, 5], strict=True)))
def test_precedence_values(kind: str, expected: int) -> None:
    assert l4(*KINDS[kind], "allow").precedence == expected
    assert intention_to_json(l4(*KINDS[kind], "allow"))["Precedence"] == expected


PAIRS = [
    (hi, lo, act)
    for i, hi in enumerate(ORDER)
    for lo in ORDER[i + 1 :]
    for act in ("allow", "deny")
]


@pytest.mark.parametrize(
    ("hi", "lo", "action"), PAIRS, ids=[f"{h} ({a}) beats {lo}" for h, lo, a in PAIRS]
)
def test_higher_precedence_decides(hi: str, lo: str, action: str) -> None:
    other = "deny" if action == "allow" else "allow"
    for ixns in (
        [l4(*KINDS[hi], action), l4(*KINDS[lo], other)],
        [l4(*KINDS[lo], other), l4(*KINDS[hi], action)],
    ):
        d = check(ixns, default_allow=other == "allow")
        assert d.allowed is (action == "allow")
        assert d.reason == f"matched intention {hi} ({action})"
        assert d.intention == l4(*KINDS[hi], action)


CASES: dict[str, tuple[list[Intention], str, str, bool, str]] = {
    "deny wins a tie (deny first)": (
        [l4("web", "db", "deny"), l4("web", "db", "allow")],
        "web",
        "db",
        False,
        "matched intention web => db (deny)",
    ),
    "deny wins a tie (allow first)": (
        [l4("web", "db", "allow"), l4("web", "db", "deny")],
        "web",
        "db",
        False,
        "matched intention web => db (deny)",
    ),
    "deny wins a wildcard tie": (
        [l4("*", "*", "allow"), l4("*", "*", "deny")],
        "a",
        "b",
        False,
        "matched intention * => * (deny)",
    ),
    "L7 without request is a deny that wins a tie": (
        [l4("web", "db", "allow"), l7("web", "db", perm("allow", path_prefix="/"))],
        "web",
        "db",
        False,
        "matched intention web => db, which has L7 permissions: denied without an HTTP "
        "request to check them (as Consul's L4 check)",
    ),
    "wildcard source: other sources fall to it": (
        [l4("*", "db", "deny"), l4("web", "db", "allow")],
        "api",
        "db",
        False,
        "matched intention * => db (deny)",
    ),
    "deny-all with one hole": (
        [l4("*", "*", "deny"), l4("web", "*", "allow")],
        "web",
        "cache",
        True,
        "matched intention web => * (allow)",
    ),
    "deny-all applies to others": (
        [l4("*", "*", "deny"), l4("web", "*", "allow")],
        "api",
        "cache",
        False,
        "matched intention * => * (deny)",
    ),
    "destination wildcard loses to destination exact": (
        [l4("web", "*", "deny"), l4("*", "db", "allow")],
        "web",
        "db",
        True,
        "matched intention * => db (allow)",
    ),
    "no intentions, default allow": (
        [],
        "web",
        "db",
        True,
        "no intention matched; default policy is allow",
    ),
    "no intentions, default deny": (
        [],
        "web",
        "db",
        False,
        "no intention matched; default policy is deny",
    ),
    "unrelated intentions, default deny": (
        [l4("api", "db", "allow"), l4("web", "cache", "allow")],
        "web",
        "db",
        False,
        "no intention matched; default policy is deny",
    ),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("default_allow", [False, True])
def test_decision_table(name: str, default_allow: bool) -> None:
    ixns, src, dst, allowed, reason = CASES[name]
    if "default" in name:
        allowed = default_allow
        reason = reason.rsplit(" ", 1)[0] + (" allow" if default_allow else " deny")
    d = check(ixns, src, dst, default_allow=default_allow)
    assert (d.allowed, d.reason) == (allowed, reason)
    assert (d.intention is None) == ("default" in name)


# -- L7 -------------------------------------------------------------------------

API = [
    perm("deny", path_exact="/v2/admin"),
    perm("allow", path_prefix="/v2/", methods=("GET", "HEAD")),
    perm("allow", path_regex=r"/v[0-9]+/health"),
    perm("deny", path_prefix="/v2/"),
]
L7_CASES: dict[str, tuple[str, str, dict[str, str], bool | None, int | None]] = {
    "exact path, first permission wins over a later prefix": ("GET", "/v2/admin", {}, False, 0),
    "exact path ignores the query string": ("GET", "/v2/admin?x=1", {}, False, 0),
    "exact path is exact": ("GET", "/v2/admin/x", {}, True, 1),
    "prefix with allowed method": ("HEAD", "/v2/items", {}, True, 1),
    # a method is case-sensitive (RFC 9110 §9.1; Envoy matches :method as written)
    "a method in another case is another method": ("get", "/v2/items", {}, False, 3),
    "prefix with another method falls to a later deny": ("POST", "/v2/items", {}, False, 3),
    "regex is a full match": ("POST", "/v10/health", {}, True, 2),
    "regex does not match a longer path": ("POST", "/v10/healthz", {}, None, None),
    "nothing matches: default": ("GET", "/v1/x", {}, None, None),
}


@pytest.mark.timeout(10)
def test_a_regex_takes_linear_time_whatever_the_path() -> None:
    """RE2, as Envoy: `(a+)+b` against `/aaa…a!` backtracks for hours in Python's re (each
    `a` doubles it); here a caller's path cannot stall the proxy's one event loop."""
    ixn = l7("web", "api", perm("deny", path_regex="/(a+)+b"), perm("allow", path_prefix="/"))
    for length in (40, 100_000):
        d = check([ixn], "web", "api", req=HttpRequest("GET", "/" + "a" * length + "!", {}))
        assert d.allowed
    assert not check([ixn], "web", "api", req=HttpRequest("GET", "/aaab", {})).allowed


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        ("/users/[[:digit:]]+", "/users/123", True),  # a POSIX class, as RE2 reads it
        ("/users/[[:digit:]]+", "/users/d]", False),  # (Python's re: the set "[:dgit" and "]")
        (r"/files/\w+", "/files/été", False),  # \w is ASCII in RE2
        (r"/files/\pL+", "/files/été", True),  # Unicode classes spelled as RE2 spells them
    ],
)
def test_regexes_mean_what_they_mean_to_envoy(pattern: str, text: str, matches: bool) -> None:
    ixn = l7("web", "api", perm("deny", path_regex=pattern), perm("allow", path_prefix="/"))
    assert check([ixn], "web", "api", req=HttpRequest("GET", text, {})).allowed is not matches


@pytest.mark.parametrize("name", L7_CASES)
@pytest.mark.parametrize("default_allow", [False, True])
def test_l7_paths_and_methods(name: str, default_allow: bool) -> None:
    method, path, headers, allowed, index = L7_CASES[name]
    d = check(
        [l7("web", "api", *API)],
        "web",
        "api",
        req=HttpRequest(method, path, headers),
        default_allow=default_allow,
    )
    assert d.intention is not None
    if index is None:
        assert d.allowed is default_allow
        policy = "allow" if default_allow else "deny"
        assert d.reason == (
            f"matched intention web => api but none of its 4 permissions "
            f"matched; default policy is {policy}"
        )
    else:
        action = API[index].action
        assert (d.allowed, d.reason) == (
            allowed,
            f"matched intention web => api, Permissions[{index}] ({action})",
        )


HEADER_CASES = {
    "present, header there": (hdr("X-Debug", present=True), {"x-debug": ""}, True),
    "present, header absent": (hdr("X-Debug", present=True), {}, False),
    "present inverted, header absent": (hdr("X-Debug", present=True, invert=True), {}, True),
    "present inverted, header there": (
        hdr("X-Debug", present=True, invert=True),
        {"X-Debug": "1"},
        False,
    ),
    "exact, name in any case": (hdr("x-tenant", exact="acme"), {"X-TENANT": "acme"}, True),
    "exact, other value": (hdr("x-tenant", exact="acme"), {"x-tenant": "acme2"}, False),
    "exact inverted, other value": (
        hdr("x-tenant", exact="acme", invert=True),
        {"x-tenant": "evil"},
        True,
    ),
    "exact inverted, header absent (Envoy: no match)": (
        hdr("x-tenant", exact="acme", invert=True),
        {},
        False,
    ),
    "prefix": (hdr("user-agent", prefix="curl/"), {"User-Agent": "curl/8.0"}, True),
    "prefix miss": (hdr("user-agent", prefix="curl/"), {"User-Agent": "wget"}, False),
    "suffix": (hdr("host", suffix=".internal"), {"host": "db.internal"}, True),
    "suffix inverted": (
        hdr("host", suffix=".internal", invert=True),
        {"host": "db.internal"},
        False,
    ),
    "regex full match": (hdr("x-id", regex=r"[0-9]{3}"), {"x-id": "123"}, True),
    "regex partial is no match": (hdr("x-id", regex=r"[0-9]{3}"), {"x-id": "1234"}, False),
    "regex inverted": (hdr("x-id", regex=r"[0-9]{3}", invert=True), {"x-id": "1234"}, True),
    # Contains and IgnoreCase (newer Consul; Envoy's StringMatcher `contains`, `ignore_case`)
    "contains": (hdr("user-agent", contains="bot"), {"User-Agent": "Googlebot/2.1"}, True),
    "contains anywhere, whole value too": (hdr("x-a", contains="bot"), {"x-a": "bot"}, True),
    "contains miss": (hdr("user-agent", contains="bot"), {"User-Agent": "curl/8.0"}, False),
    "contains is case-sensitive": (hdr("user-agent", contains="bot"), {"User-Agent": "BOT"}, False),
    "contains inverted": (
        hdr("user-agent", contains="bot", invert=True),
        {"User-Agent": "curl/8.0"},
        True,
    ),
    "contains inverted, header absent (Envoy: no match)": (
        hdr("user-agent", contains="bot", invert=True),
        {},
        False,
    ),
    "exact ignoring case": (hdr("x-env", exact="Prod", ignore_case=True), {"x-env": "pROD"}, True),
    "exact ignoring case, other value": (
        hdr("x-env", exact="prod", ignore_case=True),
        {"x-env": "prod2"},
        False,
    ),
    "prefix ignoring case": (
        hdr("user-agent", prefix="CURL/", ignore_case=True),
        {"User-Agent": "curl/8.0"},
        True,
    ),
    "suffix ignoring case": (
        hdr("host", suffix=".Internal", ignore_case=True),
        {"host": "DB.INTERNAL"},
        True,
    ),
    "contains ignoring case": (
        hdr("user-agent", contains="Bot", ignore_case=True),
        {"User-Agent": "GoogleBOT/2"},
        True,
    ),
    "ignoring case, inverted": (
        hdr("x-env", exact="prod", ignore_case=True, invert=True),
        {"x-env": "PROD"},
        False,
    ),
    "ignoring case folds ASCII only: É is not é": (
        hdr("x-name", exact="é", ignore_case=True),
        {"x-name": "É"},
        False,
    ),
    "ignoring case folds ASCII only: the Kelvin sign is not k": (
        hdr("x-unit", exact="k", ignore_case=True),
        {"x-unit": "\u212a"},
        False,
    ),
    "ignoring case folds ASCII only: İ holds no i": (
        hdr("x-name", contains="i", ignore_case=True),
        {"x-name": "\u0130"},
        False,
    ),
}


@pytest.mark.parametrize("name", HEADER_CASES)
def test_l7_headers(name: str) -> None:
    permission, headers, allowed = HEADER_CASES[name]
    d = check([l7("web", "db", permission)], req=HttpRequest("GET", "/", headers))
    assert d.allowed is allowed
    assert ("Permissions[0] (allow)" in d.reason) is allowed


def test_l7_all_conditions_of_a_permission_must_hold() -> None:
    p = Permission(
        "allow",
        HTTPMatch(
            path_prefix="/a",
            methods=("PUT",),
            headers=(HeaderMatch("x-a", exact="1"), HeaderMatch("x-b", present=True)),
        ),
    )
    ok = {"x-a": "1", "x-b": ""}
    assert check([l7("web", "db", p)], req=HttpRequest("PUT", "/a/b", ok)).allowed
    for method, path, headers in [
        ("GET", "/a", ok),
        ("PUT", "/b", ok),
        ("PUT", "/a", {"x-a": "1"}),
        ("PUT", "/a", {"x-b": "1"}),
    ]:
        assert not check([l7("web", "db", p)], req=HttpRequest(method, path, headers)).allowed


def test_l7_intention_does_not_fall_through_to_lower_precedence() -> None:
    ixns = [l7("web", "db", perm("allow", path_exact="/ok")), l4("*", "db", "allow")]
    d = check(ixns, req=HttpRequest("GET", "/other"), default_allow=False)
    assert not d.allowed and d.intention == ixns[0]


def test_match_lists_in_evaluation_order() -> None:
    ixns = [
        l4("*", "*", "deny"),
        l4("web", "*", "allow"),
        l4("*", "db", "deny"),
        l4("web", "db", "allow"),
        l4("api", "db", "allow"),
        l4("web", "cache", "deny"),
        l4("api", "cache", "allow"),
    ]
    s = IntentionSet(ixns)
    by_dst = [i.summary() for i in match(s, "destination", "db")]
    assert by_dst == [
        "api => db (allow)",
        "web => db (allow)",
        "* => db (deny)",
        "web => * (allow)",
        "* => * (deny)",
    ]
    by_src = [i.summary() for i in match(s, "source", "web")]
    assert by_src == [
        "web => cache (deny)",
        "web => db (allow)",
        "* => db (deny)",
        "web => * (allow)",
        "* => * (deny)",
    ]
    assert [i.summary() for i in s][:2] == ["api => cache (allow)", "api => db (allow)"]
    with pytest.raises(ValueError):
        match(s, "sideways", "db")  # type: ignore[arg-type]


def test_set_refuses_a_regex_it_cannot_compile() -> None:
    with pytest.raises(IntentionError, match=r"web => db: Permissions\[0\]\.HTTP\.PathRegex"):
        IntentionSet([l7("web", "db", perm("allow", path_regex="(unclosed"))])


# -- validation -------------------------------------------------------------------

VALID_L7 = l7("web", "api", perm("allow", path_prefix="/v2", methods=("GET",)))
PROBLEMS = {
    "source with a space": (
        Intention("Web Server", "db", "allow"),
        ['SourceName: must be a DNS-label-like service name or "*", got "Web Server"'],
    ),
    "partial wildcard": (
        Intention("web*", "db", "allow"),
        ["SourceName: wildcard '*' cannot be part of a name, got \"web*\""],
    ),
    "names missing": (
        Intention("", "", "allow"),
        ["SourceName: is required", "DestinationName: is required"],
    ),
    "neither action nor permissions": (
        Intention("web", "db"),
        ["Action: exactly one of Action or Permissions is required, got neither"],
    ),
    "both action and permissions": (
        Intention("web", "api", "allow", VALID_L7.permissions),
        ["Action: exactly one of Action or Permissions is required, got both"],
    ),
    "bad action": (
        Intention("web", "db", "permit"),
        ['Action: must be "allow" or "deny", got "permit"'],
    ),
    "wildcard destination with L7": (
        l7("web", "*", perm("allow", path_prefix="/")),
        ["Permissions: a wildcard destination cannot carry L7 permissions"],
    ),
    "two path kinds": (
        l7("web", "api", perm("allow", path_exact="/a", path_regex="/b")),
        ["Permissions[0].HTTP: at most one of PathExact, PathPrefix, PathRegex"],
    ),
    "relative paths": (
        l7("web", "api", perm("allow", path_exact="a"), perm("deny", path_prefix="b")),
        [
            'Permissions[0].HTTP.PathExact: must start with "/", got "a"',
            'Permissions[1].HTTP.PathPrefix: must start with "/", got "b"',
        ],
    ),
    "bad regex": (
        l7("web", "api", perm("allow", path_prefix="/"), perm("deny", path_regex="(a")),
        ["Permissions[1].HTTP.PathRegex: invalid regular expression: missing ): (a"],
    ),
    "RE2 has no lookahead": (
        l7("web", "api", perm("allow", path_regex="/(?=a)")),
        ["Permissions[0].HTTP.PathRegex: invalid regular expression: invalid perl operator: (?="],
    ),
    "permission without HTTP, bad action": (
        l7("web", "api", Permission("maybe")),
        [
            'Permissions[0].Action: must be "allow" or "deny", got "maybe"',
            "Permissions[0].HTTP: is required",
        ],
    ),
    "empty HTTP": (
        l7("web", "api", perm("allow")),
        ["Permissions[0].HTTP: must match on at least one of a path, Methods or Header"],
    ),
    "methods": (
        l7("web", "api", perm("allow", methods=("GET", "get", "GET"))),
        [
            "Permissions[0].HTTP.Methods[1]: must be one of CONNECT, DELETE, GET, HEAD, OPTIONS, "
            'PATCH, POST, PUT, TRACE (uppercase), got "get"',
            'Permissions[0].HTTP.Methods[2]: "GET" is listed more than once',
        ],
    ),
    "header kinds": (
        l7(
            "web",
            "api",
            Permission(
                "allow",
                HTTPMatch(
                    headers=(
                        HeaderMatch("x", exact="a", prefix="b"),
                        HeaderMatch("", invert=True),
                        HeaderMatch("y", regex="["),
                    )
                ),
            ),
        ),
        [
            "Permissions[0].HTTP.Header[0]: exactly one of Present, Exact, Prefix, Suffix, "
            "Contains, Regex",
            "Permissions[0].HTTP.Header[1].Name: is required",
            "Permissions[0].HTTP.Header[1]: exactly one of Present, Exact, Prefix, Suffix, "
            "Contains, Regex",
            "Permissions[0].HTTP.Header[2].Regex: invalid regular expression: missing ]: [",
        ],
    ),
    # Consul (agent/structs/config_entry_intentions.go, validate): Contains counts as one of
    # the kinds ("should only contain one of Present, Exact, Prefix, Suffix, Contains, or
    # Regex"), and IgnoreCase beside Present or Regex is refused ("should set one of Exact,
    # Prefix, Suffix, or Contains when using IgnoreCase"). Alone it is just a missing kind.
    "contains and ignore case": (
        l7(
            "web",
            "api",
            Permission(
                "allow",
                HTTPMatch(
                    headers=(
                        HeaderMatch("x", exact="a", contains="b"),
                        HeaderMatch("x", regex="a.*", ignore_case=True),
                        HeaderMatch("x", present=True, ignore_case=True, invert=True),
                        HeaderMatch("x", ignore_case=True),
                        HeaderMatch("x", contains="a", ignore_case=True, invert=True),
                    )
                ),
            ),
        ),
        [
            "Permissions[0].HTTP.Header[0]: exactly one of Present, Exact, Prefix, Suffix, "
            "Contains, Regex",
            "Permissions[0].HTTP.Header[1].IgnoreCase: applies only to Exact, Prefix, Suffix or "
            "Contains, not to Regex",
            "Permissions[0].HTTP.Header[2].IgnoreCase: applies only to Exact, Prefix, Suffix or "
            "Contains, not to Present",
            "Permissions[0].HTTP.Header[3]: exactly one of Present, Exact, Prefix, Suffix, "
            "Contains, Regex",
        ],
    ),
    "meta limits": (
        l4("web", "db", "allow", meta={"k" * 129: "v", "a b": "x" * 513}),
        [
            "Meta[\"a b\"]: key may only contain letters, digits, '_' and '-'",
            'Meta["a b"]: value exceeds maximum length 512',
            f'Meta["{"k" * 96}...]: key exceeds maximum length 128',
        ],
    ),
    "too much meta": (
        l4("web", "db", "allow", meta={f"k{i}": "v" for i in range(65)}),
        ["Meta: exceeds maximum element count 64"],
    ),
    "description": (
        l4("web", "db", "allow", description="é" * 257),
        ["Description: exceeds maximum length 512"],
    ),
    "id and times": (
        l4("web", "db", "allow", id="x", created_at="yesterday"),
        [
            'ID: must be a UUID, got "x"',
            'CreatedAt: must be an RFC 3339 timestamp, got "yesterday"',
        ],
    ),
}


# The JSON writer emits only one of Action/Permissions; the reader upper-cases
# methods as Consul's Normalize does. Both are covered by the JSON tests below.
JSON_DIFFERS = {"both action and permissions", "methods"}


@pytest.mark.parametrize("name", PROBLEMS)
def test_validation_lists_every_problem(name: str) -> None:
    ixn, expected = PROBLEMS[name]
    assert [str(p) for p in validate(ixn)] == expected
    if name in JSON_DIFFERS:
        return
    with pytest.raises(IntentionError) as err:
        intention_from_json(intention_to_json(ixn))
    assert str(err.value).splitlines()[-len(expected) :] == expected


@pytest.mark.parametrize(
    "ixn",
    [
        VALID_L7,
        l4("*", "*", "deny"),
        l4("web-1", "db_main", "allow"),
        l4("a", "b", "allow", meta={"k": "v" * 512}),
        *(
            l7("web", "api", hdr("x-env", **{kind: "Prod"}, ignore_case=True, invert=invert))
            for kind in ("exact", "prefix", "suffix", "contains")
            for invert in (False, True)
        ),
        l7("web", "api", hdr("x-env", contains="prod")),
    ],
)
def test_valid_intentions_have_no_problems(ixn: Intention) -> None:
    assert validate(ixn) == []


def test_many_problems_at_once_one_line_each() -> None:
    body = {
        "SourceName": "Web Server",
        "DestinationName": "*",
        "Action": "allow",
        "Bogus": 1,
        "SourceNS": "team-a",
        "Meta": {"ok": 5},
        "Permissions": [{"Action": "allow", "HTTP": {"PathRegex": "(", "Methods": [7]}}],
    }
    with pytest.raises(IntentionError) as err:
        intention_from_json(body)
    assert str(err.value).splitlines() == [
        "Bogus: unknown field",
        'SourceNS: must be "default" (namespaces and partitions are Enterprise), got "team-a"',
        "Permissions[0].HTTP.Methods[0]: must be a string, got 7",
        'Meta["ok"]: must be a string, got 5',
        'SourceName: must be a DNS-label-like service name or "*", got "Web Server"',
        "Action: exactly one of Action or Permissions is required, got both",
        "Permissions: a wildcard destination cannot carry L7 permissions",
        "Permissions[0].HTTP.PathRegex: invalid regular expression: missing ): (",
    ]


# -- JSON: Consul's documented bodies ------------------------------------------

# GET /v1/connect/intentions/:uuid, from Consul's api-docs/connect/intentions.mdx.
DOC_BY_ID = {
    "ID": "e9ebc19f-d481-42b1-4871-4d298d3acd5c",
    "Description": "",
    "SourceNS": "default",
    "SourceName": "web",
    "DestinationNS": "default",
    "DestinationName": "db",
    "SourceType": "consul",
    "Action": "allow",
    "Meta": {},
    "Precedence": 9,
    "CreatedAt": "2018-05-21T16:41:27.977155457Z",
    "UpdatedAt": "2018-05-21T16:41:27.977157724Z",
    "CreateIndex": 11,
    "ModifyIndex": 11,
}
# GET /v1/connect/intentions/exact (no ID or timestamps: the upsert does not assign them).
DOC_EXACT = {
    "Description": "",
    "SourceNS": "default",
    "SourceName": "web",
    "DestinationNS": "default",
    "DestinationName": "db",
    "SourceType": "consul",
    "Action": "allow",
    "Meta": {},
    "Precedence": 9,
    "CreateIndex": 11,
    "ModifyIndex": 11,
}
# service-intentions config entry after Consul's docs (REST access sample, JSON form).
DOC_ENTRY = {
    "Kind": "service-intentions",
    "Name": "api",
    "Sources": [
        {
            "Name": "admin-dashboard",
            "Permissions": [
                {
                    "Action": "allow",
                    "HTTP": {
                        "PathPrefix": "/v2",
                        "Methods": ["GET", "PUT", "POST", "DELETE", "HEAD"],
                    },
                }
            ],
        },
        {
            "Name": "report-generator",
            "Permissions": [
                {"Action": "allow", "HTTP": {"PathPrefix": "/v2/widgets", "Methods": ["GET"]}}
            ],
        },
        {"Name": "*", "Action": "deny", "Description": "deny everything else"},
    ],
}


@pytest.mark.parametrize("body", [DOC_BY_ID, DOC_EXACT], ids=["by-id", "exact"])
def test_doc_intention_bodies_round_trip(body: dict[str, Any]) -> None:
    ixn = intention_from_json(body)
    assert ixn.source == "web" and ixn.action == "allow" and ixn.precedence == 9
    out = intention_to_json(ixn)
    assert out == body and list(out) == list(body)  # same fields, Consul's order


def test_doc_bodies_accepted_as_written_for_writes() -> None:
    # PUT /exact sample: names come from the query string.
    ixn = intention_from_json(
        {"SourceType": "consul", "Action": "allow"}, source="web", destination="db"
    )
    assert ixn == Intention("web", "db", "allow")
    # POST sample, any key case and snake_case as Consul's decoders allow.
    body = {
        "sourcename": "web",
        "Destination_Name": "db",
        "SOURCETYPE": "consul",
        "action": "deny",
        "Precedence": 3,
        "SourceNS": None,
    }
    assert intention_from_json(body) == Intention("web", "db", "deny")


def test_l7_intention_json_omits_action_and_empty_fields() -> None:
    ixn = l7(
        "web",
        "api",
        Permission(
            "deny",
            HTTPMatch(
                path_regex="/a.*",
                methods=("get",),
                headers=(
                    HeaderMatch("X-A", present=True, invert=True),
                    HeaderMatch("X-B", suffix="z"),
                ),
            ),
        ),
    )
    out = intention_to_json(ixn)
    assert "Action" not in out and "ID" not in out and "CreatedAt" not in out
    assert out["Permissions"] == [
        {
            "Action": "deny",
            "HTTP": {
                "PathRegex": "/a.*",
                "Header": [
                    {"Name": "X-A", "Present": True, "Invert": True},
                    {"Name": "X-B", "Suffix": "z"},
                ],
                "Methods": ["get"],
            },
        }
    ]
    back = intention_from_json(
        copy.deepcopy(out)
        | {
            "Permissions": [
                {
                    "action": "deny",
                    "http": {
                        "path_regex": "/a.*",
                        "methods": ["get"],
                        "header": out["Permissions"][0]["HTTP"]["Header"],
                    },
                }
            ]
        }
    )
    headers = ixn.permissions[0].http.headers if ixn.permissions[0].http else ()
    assert back.permissions[0].http == HTTPMatch(  # methods upper-cased, as Consul normalizes
        path_regex="/a.*", methods=("GET",), headers=headers
    )


def test_contains_and_ignore_case_read_and_written_as_newer_consul_spells_them() -> None:
    """A newer Consul user's service-intentions entry, as HCL decodes it (snake_case
    aliases): read, decided, and written back in Consul's struct order (Contains before
    Regex, IgnoreCase last). Before, both keys were an `unknown field` 400."""
    entry = {
        "Kind": "service-intentions",
        "Name": "api",
        "Sources": [{"Name": "web", "Permissions": [{"Action": "deny", "HTTP": {"Header": [
            {"Name": "User-Agent", "contains": "bot", "ignore_case": True},
            {"Name": "X-Env", "Exact": "Prod", "IgnoreCase": True, "Invert": True},
        ]}}]}],
    }  # fmt: skip
    (ixn,) = config_entry_from_json(entry)
    http = ixn.permissions[0].http
    assert http is not None and http.headers == (
        HeaderMatch("User-Agent", contains="bot", ignore_case=True),
        HeaderMatch("X-Env", exact="Prod", invert=True, ignore_case=True),
    )
    written = [
        {"Name": "User-Agent", "Contains": "bot", "IgnoreCase": True},
        {"Name": "X-Env", "Exact": "Prod", "Invert": True, "IgnoreCase": True},
    ]
    out = config_entry_to_json([ixn])["Sources"][0]["Permissions"][0]["HTTP"]["Header"]
    assert [list(h.items()) for h in out] == [list(h.items()) for h in written]
    assert intention_to_json(ixn)["Permissions"][0]["HTTP"]["Header"] == written
    legacy = intention_to_json(ixn) | {"ID": "e9ebc19f-d481-42b1-4871-4d298d3acd5c"}
    assert intention_from_json(json.loads(json.dumps(legacy))).permissions == ixn.permissions

    def allowed(agent: str, env: str) -> bool:
        req = HttpRequest("GET", "/", {"user-agent": agent, "x-env": env})
        return check([ixn], "web", "api", req=req, default_allow=True).allowed

    assert not allowed("GoogleBOT/2.1", "staging")  # the deny's two conditions hold
    assert allowed("GoogleBOT/2.1", "PROD")  # not prod, in any case: fails
    assert allowed("curl/8", "staging")


def test_ignore_case_beside_a_regex_is_refused_naming_the_field() -> None:
    body = {"SourceName": "web", "DestinationName": "api", "Permissions": [{"Action": "allow",
            "HTTP": {"Header": [{"Name": "x", "Regex": "a.*", "IgnoreCase": True},
                                {"Name": "x", "Contains": 7}]}}]}  # fmt: skip
    with pytest.raises(IntentionError) as err:
        intention_from_json(body)
    assert str(err.value).splitlines() == [
        "Permissions[0].HTTP.Header[1].Contains: must be a string, got 7",
        "Permissions[0].HTTP.Header[0].IgnoreCase: applies only to Exact, Prefix, Suffix or "
        "Contains, not to Regex",
        "Permissions[0].HTTP.Header[1]: exactly one of Present, Exact, Prefix, Suffix, "
        "Contains, Regex",
    ]


def test_doc_config_entry_round_trip() -> None:
    ixns = config_entry_from_json(DOC_ENTRY)
    assert [i.summary() for i in ixns] == [
        "admin-dashboard => api (1 permission)",
        "report-generator => api (1 permission)",
        "* => api (deny)",
    ]
    entry = config_entry_to_json(ixns)
    assert [s["Name"] for s in entry["Sources"]] == ["admin-dashboard", "report-generator", "*"]
    assert [s["Precedence"] for s in entry["Sources"]] == [9, 9, 8]
    assert config_entry_from_json(entry) == ixns
    s = IntentionSet(ixns)
    get = HttpRequest("GET", "/v2/widgets/1")
    assert decide(s, "report-generator", "api", request=get, default_allow=False).allowed
    put = HttpRequest("PUT", "/v2/widgets/1")  # no permission matches: the default, not `* => api`
    d = decide(s, "report-generator", "api", request=put, default_allow=True)
    assert d.allowed and "none of its 1 permission matched; default policy is allow" in d.reason
    assert not decide(s, "billing", "api", request=get, default_allow=True).allowed


def test_config_entry_keeps_ids_times_and_differing_meta() -> None:
    a = l4(
        "web",
        "db",
        "allow",
        id="8f246b77-f3e1-ff88-5b48-8ec93abf3e05",
        created_at="2018-05-21T16:41:27Z",
        updated_at="2018-05-21T16:41:28Z",
        meta={"a": "1"},
    )
    b = l4("*", "db", "deny", description="rest", meta={"b": "2"})
    entries = config_entries_to_json([b, a, l4("web", "cache", "allow", meta={"x": "y"})])
    assert [e["Name"] for e in entries] == ["cache", "db"]
    assert entries[0]["Meta"] == {"x": "y"} and "Meta" not in entries[1]
    assert entries[1]["Sources"][0]["LegacyMeta"] == {"a": "1"}
    assert set(config_entry_from_json(entries[1])) == {a, b}


# -- pseudo-headers in Header rules ---------------------------------------------
# The sidecars judge `:authority`, `:method` and `:path` on HTTP/1 and HTTP/2 alike
# (proxy/http_codec.judged_request; the authority under both its names), so a Header rule may
# name them, in any case, as any header name (Envoy lower-cases a matcher's name). `:scheme`
# and `:protocol` only an HTTP/2 call carries: a rule on them would hold for one protocol and
# not the other, so they are refused with every other name that is not a token.
PSEUDO_NAMES = [":authority", ":method", ":path", ":Authority", ":PATH"]
NOT_HEADER_NAMES = [":scheme", ":protocol", ":status", ":", "::authority", ":authority ",
                    " :path", "x:y", "host:", ":auth ority", "x y"]  # fmt: skip


def _on_header(name: str) -> Intention:
    return l7("web", "db", perm("deny", headers=(HeaderMatch(name, exact="secret-host"),)))


@pytest.mark.parametrize("name", PSEUDO_NAMES)
def test_a_header_rule_may_name_a_judged_pseudo_header(name: str) -> None:
    ixn = _on_header(name)
    assert validate(ixn) == []
    assert intention_from_json(intention_to_json(ixn)) == ixn
    entry = {"Kind": "service-intentions", "Name": "db", "Sources": [{"Name": "web",
             "Permissions": [{"Action": "deny", "HTTP": {"Header": [
                 {"Name": name, "Exact": "secret-host"}]}}]}]}  # fmt: skip
    assert config_entry_from_json(entry) == (ixn,)
    located, problems = read_policy(entry)  # `gossamer intention create/apply FILE`
    assert problems == [] and [loc.intention for loc in located] == [ixn]


@pytest.mark.parametrize("name", NOT_HEADER_NAMES)
def test_a_header_rule_on_any_other_name_is_refused_naming_the_field(name: str) -> None:
    expected = (
        "Permissions[0].HTTP.Header[0].Name: must be an HTTP header name or one of the "
        f"pseudo-headers :authority, :method, :path, got {json.dumps(name)}"
    )
    assert [str(p) for p in validate(_on_header(name))] == [expected]
    entry = {"Kind": "service-intentions", "Name": "db", "Sources": [{"Name": "web",
             "Permissions": [{"Action": "deny", "HTTP": {"Header": [
                 {"Name": name, "Exact": "secret-host"}]}}]}]}  # fmt: skip
    with pytest.raises(IntentionError) as err:
        config_entry_from_json(entry)
    assert str(err.value).splitlines() == [f"Sources[0].{expected}"]
    assert read_policy(entry)[1] == [f"Sources[0] web => db: {expected}"]


@pytest.mark.parametrize(
    ("fields", "denied"),
    [
        ([(b"Host", b"secret-host")], True),  # HTTP/1: the authority as `Host`
        ([(b":authority", b"secret-host")], True),  # HTTP/2
        ([(b"Host", b"db")], False),
        ([], False),
    ],
)
def test_a_rule_on_the_authority_judges_a_request_as_the_sidecars_read_it(
    fields: list[tuple[bytes, bytes]], denied: bool
) -> None:
    from gossamer.proxy.http_codec import judged_request

    rules = [
        l7("web", "db", _on_header(":authority").permissions[0], perm("allow", path_prefix="/"))
    ]
    d = check(rules, req=judged_request("GET", "/x", fields))
    assert d.allowed is not denied, d.reason


def test_config_entry_problems_at_entry_paths() -> None:
    entry = {
        "Kind": "service-intentions",
        "Name": "*",
        "Namespace": "prod",
        "Sources": [
            {"Name": "web", "Permissions": [{"Action": "allow", "HTTP": {"PathExact": "x"}}]},
            {"Name": "web", "Action": "allow", "Peer": "dc2"},
            {"Name": "a b"},
        ],
    }
    with pytest.raises(IntentionError) as err:
        config_entry_from_json(entry)
    assert str(err.value).splitlines() == [
        'Namespace: must be "default" (namespaces and partitions are Enterprise), got "prod"',
        "Sources[1].Peer: cluster peering is not supported by gossamer",
        'Sources[1].Name: defines "web" more than once',
        "Sources[0].Permissions: a wildcard destination cannot carry L7 permissions",
        'Sources[0].Permissions[0].HTTP.PathExact: must start with "/", got "x"',
        'Sources[2].Name: must be a DNS-label-like service name or "*", got "a b"',
        "Sources[2].Action: exactly one of Action or Permissions is required, got neither",
    ]


def test_documents_mix_shapes_and_report_item_paths() -> None:
    doc = [DOC_EXACT, DOC_ENTRY]
    assert len(intentions_from_document(doc)) == 4
    assert intentions_from_document(DOC_ENTRY) == config_entry_from_json(DOC_ENTRY)
    with pytest.raises(IntentionError) as err:
        intentions_from_document([DOC_EXACT, {"SourceName": "x"}, 5, DOC_ENTRY | {"Kind": "nope"}])
    assert str(err.value).splitlines() == [
        "[1].DestinationName: is required",
        "[1].Action: exactly one of Action or Permissions is required, got neither",
        "[2]: must be a JSON object, got 5",
        '[3].Kind: must be "service-intentions", got "nope"',
    ]


# -- Hypothesis ------------------------------------------------------------------

NAMES = ["web", "db", "api", "*"]
names = st.sampled_from(NAMES)
http_matches = st.builds(
    HTTPMatch,
    path_prefix=st.sampled_from(["/", "/a", "/b"]),
    methods=st.sampled_from([(), ("GET",), ("POST", "PUT")]),
    headers=st.sampled_from(
        [
            (),
            (HeaderMatch("x-a", present=True),),
            (HeaderMatch("x-a", exact="1", invert=True),),
            (HeaderMatch("x-a", contains="1", ignore_case=True),),
        ]
    ),
)
permissions = st.builds(Permission, st.sampled_from(["allow", "deny"]), http_matches)


@st.composite
def intentions(draw: st.DrawFn) -> Intention:
    src, dst = draw(names), draw(names)
    if dst != "*" and draw(st.booleans()):
        return l7(src, dst, *draw(st.lists(permissions, min_size=1, max_size=3)))
    desc = draw(st.sampled_from(["", "x"]))
    return l4(src, dst, draw(st.sampled_from(["allow", "deny"])), description=desc)


requests = st.one_of(
    st.none(),
    st.builds(
        HttpRequest,
        st.sampled_from(["GET", "POST"]),
        st.sampled_from(["/a/1", "/b", "/c"]),
        st.sampled_from([{}, {"X-A": "1"}, {"x-a": "2"}]),
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(intentions(), max_size=8), st.randoms(), requests, st.booleans())
def test_decision_ignores_insertion_order(
    ixns: list[Intention], rnd: Any, req: HttpRequest | None, default: bool
) -> None:
    shuffled = list(ixns)
    rnd.shuffle(shuffled)
    a, b = IntentionSet(ixns), IntentionSet(shuffled)
    assert list(a) == list(b)
    for src in NAMES[:3]:
        for dst in NAMES[:3]:
            assert decide(a, src, dst, request=req, default_allow=default) == decide(
                b, src, dst, request=req, default_allow=default
            )
            assert match(a, "destination", dst) == match(b, "destination", dst)


@settings(max_examples=200, deadline=None)
@given(st.lists(intentions(), max_size=8), st.sampled_from(["allow", "deny"]), requests)
def test_exact_rule_beats_any_wildcard(
    others: list[Intention], action: str, req: HttpRequest | None
) -> None:
    exact = l4("web", "db", action)
    ixns = [i for i in others if i.pair != ("web", "db")] + [exact]
    for default in (False, True):
        d = decide(IntentionSet(ixns), "web", "db", request=req, default_allow=default)
        assert (d.allowed, d.intention) == (action == "allow", exact)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(intentions(), max_size=8),
    st.sampled_from(NAMES[:3]),
    st.sampled_from(NAMES[:3]),
    st.booleans(),
)
def test_default_applies_only_when_nothing_matches(
    ixns: list[Intention], src: str, dst: str, default: bool
) -> None:
    applicable = [i for i in ixns if i.source in (src, "*") and i.destination in (dst, "*")]
    d = decide(IntentionSet(ixns), src, dst, default_allow=default)
    assert (d.intention is None) == (not applicable)
    if not applicable:
        assert d.allowed is default and d.reason.startswith("no intention matched")
    else:
        assert d.intention in applicable
        assert d.intention.precedence == max(i.precedence for i in applicable)


@settings(max_examples=200, deadline=None)
@given(st.lists(intentions(), min_size=1, max_size=6))
def test_json_and_config_entry_round_trips(ixns: list[Intention]) -> None:
    for ixn in ixns:
        assert intention_from_json(json.loads(json.dumps(intention_to_json(ixn)))) == ixn
    unique = list({i.pair: i for i in ixns}.values())
    back = intentions_from_document(json.loads(json.dumps(config_entries_to_json(unique))))
    assert sorted(back, key=repr) == sorted(unique, key=repr)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=20,
)
FIELD_NAMES = [
    "SourceName",
    "DestinationName",
    "Action",
    "Permissions",
    "Meta",
    "HTTP",
    "PathRegex",
    "PathExact",
    "Methods",
    "Header",
    "Name",
    "Present",
    "Regex",
    "Invert",
    "Contains",
    "IgnoreCase",
    "ID",
    "CreatedAt",
    "CreateIndex",
    "Kind",
    "Sources",
    "SourceNS",
]
shaped = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from(["web", "*", "allow", "/a", "(", ""]),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.sampled_from(FIELD_NAMES), kids, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=500, deadline=None)
@given(st.one_of(json_values, shaped))
@example({"SourceName": "a", "DestinationName": "b", "Action": "allow", "CreateIndex": 10**5000})
@example({"Kind": "service-intentions", "Name": "db", "Meta": {"k": 10**5000}, "Sources": [{}]})
@example([{"Permissions": [{"HTTP": {"Header": [{"Regex": "(?P=x)"}]}}]}, None])
def test_any_json_parses_or_raises_intention_error(body: object) -> None:
    for parse in (intention_from_json, config_entry_from_json, intentions_from_document):
        try:
            result = parse(body)
        except IntentionError as exc:
            assert exc.problems and all(str(p) for p in exc.problems)
            continue
        for ixn in result if isinstance(result, tuple) else (result,):
            assert validate(ixn) == []
            IntentionSet([ixn])


# Envoy folds case as absl does: ASCII letters only, on the header's bytes. Over UTF-8 bytes,
# Python's bytes.lower() is exactly that (a multi-byte sequence holds no ASCII byte), and a
# substring of characters is a substring of their UTF-8 bytes: an oracle that shares no code
# with rules.py. str.lower() would differ (the Kelvin sign, İ, É: all in the alphabet).
TRICKY = "aAbBkKzZ-/ \u212a\u0130\u0131iI\u00c9\u00e9\u00df\u1e9e"
header_text = st.one_of(st.text(alphabet=TRICKY, max_size=6), st.text(max_size=6))
STRING_KINDS: dict[str, Callable[[bytes, bytes], bool]] = {
    "exact": lambda value, needle: value == needle,
    "prefix": bytes.startswith,
    "suffix": bytes.endswith,
    "contains": lambda value, needle: needle in value,
}


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(sorted(STRING_KINDS)),
    header_text.filter(bool),
    header_text,
    st.booleans(),
    st.booleans(),
)
def test_string_kinds_match_as_envoy_compares_bytes(
    kind: str, needle: str, value: str, ignore_case: bool, invert: bool
) -> None:
    rule = hdr("x-h", **{kind: needle}, ignore_case=ignore_case, invert=invert)
    want_b, got_b = needle.encode(), value.encode()
    if ignore_case:
        want_b, got_b = want_b.lower(), got_b.lower()
    expected = STRING_KINDS[kind](got_b, want_b) != invert
    d = check([l7("web", "db", rule)], req=HttpRequest("GET", "/", {"X-H": value}))
    assert d.allowed is expected
