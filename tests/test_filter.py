"""Table tests of the ?filter= language (gossamer.catalog.filter), plus fuzzing.

Expected answers follow go-bexpr as Consul uses it; the cases that pin a
bexpr quirk say so (missing map keys, ANY semantics through lists).
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.catalog.filter import (
    AGENT_SERVICE,
    CATALOG_NODE,
    CATALOG_SERVICE,
    HEALTH_CHECK,
    HEALTH_SERVICE,
    INTENTION,
    FilterError,
    Struct,
    filter_rows,
    filter_values,
    parse,
    validate_selectors,
)

SERVICE_ROW: dict[str, Any] = {
    "ID": "40e4a748-2192-161a-0510-9bf59fe950b5",
    "Node": "node-1",
    "Address": "198.18.0.1",
    "Datacenter": "dc1",
    "TaggedAddresses": {"lan": "198.18.0.1", "wan": "10.0.0.1"},
    "NodeMeta": {"os": "linux", "rack": "r1"},
    "ServiceKind": "",
    "ServiceID": "web-1",
    "ServiceName": "web",
    "ServiceTags": ["prod", "v2"],
    "ServiceAddress": "",
    "ServiceWeights": {"Passing": 10, "Warning": 1},
    "ServiceMeta": {"env": "prod", "team name": "core", "version": "1.2"},
    "ServicePort": 8080,
    "ServiceEnableTagOverride": False,
    "ServiceTaggedAddresses": {"lan": {"address": "198.18.0.1", "port": 8080}},
    "ServiceProxy": {"Upstreams": [{"DestinationName": "db", "LocalBindPort": 9191}]},
    "ServiceConnect": {},
    "CreateIndex": 30,
    "ModifyIndex": 30,
}

CASES: list[tuple[str, bool]] = [
    # == and != on strings, numbers, booleans (value coerced to the field's type)
    ('ServiceName == "web"', True),
    ("ServiceName == web", True),
    ("ServiceName == `web`", True),
    ('ServiceName != "web"', False),
    ('ServiceName == "Web"', False),
    ("ServicePort == 8080", True),
    ('ServicePort == "8080"', True),
    ("ServicePort != 8080", False),
    ('ServicePort == "0x1f90"', True),  # quoted: Go's base-0 integer syntax
    ("ServiceEnableTagOverride == false", True),
    ("ServiceEnableTagOverride == F", True),
    ("ServiceEnableTagOverride != true", True),
    ("ServiceWeights.Passing == 10", True),
    ('ServiceKind == ""', True),
    # in / contains on lists (elements), maps (keys), strings (substrings)
    ('"prod" in ServiceTags', True),
    ("prod in ServiceTags", True),
    ('"dev" in ServiceTags', False),
    ('"dev" not in ServiceTags', True),
    ("ServiceTags contains v2", True),
    ("ServiceTags not contains v2", False),
    ('"env" in ServiceMeta', True),
    ('"nope" in ServiceMeta', False),
    ("ServiceMeta contains env", True),
    ('"eb" in ServiceName', True),
    ('ServiceName contains "we"', True),
    ('ServiceName not contains "x"', True),
    # matches: unanchored search
    ('ServiceName matches "^w.b$"', True),
    ('ServiceName matches "e"', True),
    ('ServiceName not matches "^db"', True),
    ("ServiceID matches `-\\d+$`", True),
    ("ServiceName matches `b\\z`", True),  # RE2's end-of-text
    ("ServiceName matches `^[[:alpha:]]+$`", True),  # a POSIX class, as Go reads it
    ("ServiceName matches `[[w]eb`", True),
    # is empty
    ("ServiceTags is empty", False),
    ("ServiceTags is not empty", True),
    ("ServiceMeta is empty", False),
    ("ServiceAddress is empty", True),
    ("ServiceName is not empty", True),
    # map index forms
    ("ServiceMeta.env == prod", True),
    ('ServiceMeta["env"] == "prod"', True),
    ("ServiceMeta[`env`] == prod", True),
    ('ServiceMeta["team name"] == core', True),
    ('ServiceMeta[ "team name" ] == core', True),
    ('ServiceMeta.version == "1.2"', True),
    ("ServiceMeta.version == 1.2", True),  # a number literal, kept as its text
    ('NodeMeta.os matches "^lin"', True),
    ("TaggedAddresses.wan == `10.0.0.1`", True),
    # a missing map key: nothing equals, contains or matches it; it is empty
    ('ServiceMeta.nope == ""', False),
    ('ServiceMeta.nope != "x"', True),
    ("ServiceMeta.nope is empty", True),
    ("ServiceMeta.nope is not empty", False),
    ('ServiceMeta.nope matches ".*"', False),
    ('ServiceMeta.nope not matches "x"', True),
    ('"x" in ServiceMeta.nope', False),
    ('"x" not in ServiceMeta.nope', True),
    ("ServiceTaggedAddresses.wan.Port == 80", False),
    # nested structs; JSON keys found case-insensitively (Consul's lowercase address/port)
    ("ServiceTaggedAddresses.lan.Port == 8080", True),
    ("ServiceTaggedAddresses.lan.Address == `198.18.0.1`", True),
    ("ServiceConnect.Native == false", True),  # absent field: Go zero value
    ("ServiceProxy.Upstreams.DestinationName == db", True),
    ("ServiceProxy.Upstreams is not empty", True),
    ("ServiceProxy.MeshGateway.Mode is empty", True),
    # logic and precedence: not > and > or
    ("ServiceName == web and ServicePort == 8080", True),
    ("ServiceName == web and ServicePort == 1", False),
    ("ServiceName == db or ServicePort == 8080", True),
    ("not ServiceName == db", True),
    ("not not ServiceName == web", True),
    ("ServiceName == db and ServicePort == 1 or ServicePort == 8080", True),
    ("ServiceName == db and (ServicePort == 1 or ServicePort == 8080)", False),
    ("ServicePort == 8080 or ServiceName == db and ServicePort == 1", True),
    ("(ServicePort == 8080 or ServiceName == db) and ServicePort == 1", False),
    ("not ServiceName == web or ServicePort == 8080", True),
    ("not (ServiceName == web or ServicePort == 1)", False),
    ("not ServiceName == web and ServicePort == 8080", False),
    ("((ServiceName == web))", True),
    # whitespace is free outside literals
    ("  ServiceName==web  and\tServicePort==8080\n", True),
    ('"prod"in ServiceTags', True),
    ("(ServiceName==web)and(ServicePort==8080)", True),
    # escapes
    ('ServiceName == "w\\x65b"', True),
    ('ServiceName == "w\\u0065b"', True),
    ('ServiceName == "w\\145b"', True),
]


@pytest.mark.parametrize(("expression", "expected"), CASES)
def test_catalog_service_row(expression: str, expected: bool) -> None:
    assert parse(expression, CATALOG_SERVICE).evaluate(SERVICE_ROW) is expected


@pytest.mark.timeout(10)
def test_a_matches_pattern_takes_linear_time_whatever_the_value() -> None:
    """RE2, as Consul's Go regexp: a client's `(a+)+$` against a long meta value backtracks
    for hours in Python's re; here it cannot stall the agent."""
    row = {**SERVICE_ROW, "ServiceMeta": {"k": "a" * 100_000 + "!"}}
    assert parse('ServiceMeta.k matches "^(a+)+$"', CATALOG_SERVICE).evaluate(row) is False
    assert parse('ServiceMeta.k matches "^(a+)+!$"', CATALOG_SERVICE).evaluate(row) is True


# Without a schema an absent struct field has no zero value, and every object
# is a map whose keys match exactly; cases that rely on either are left out.
SCHEMALESS_CASES = [
    (expression, expected)
    for expression, expected in CASES
    if not any(k in expression for k in ("Native", "MeshGateway", "ServiceTaggedAddresses.lan"))
]


@pytest.mark.parametrize(("expression", "expected"), SCHEMALESS_CASES)
def test_same_answers_without_schema_where_the_row_has_the_field(
    expression: str, expected: bool
) -> None:
    assert parse(expression).evaluate(SERVICE_ROW) is expected


HEALTH_ROW: dict[str, Any] = {
    "Node": {"Node": "n1", "Address": "10.0.0.1", "Meta": {"az": "a"}, "TaggedAddresses": {}},
    "Service": {"ID": "web-1", "Service": "web", "Tags": ["prod"], "Port": 80, "Meta": None},
    "Checks": [
        {"CheckID": "serfHealth", "Status": "passing", "ServiceTags": []},
        {"CheckID": "service:web-1", "Status": "critical", "ServiceTags": ["prod"]},
    ],
}
ALL_PASSING = {**HEALTH_ROW, "Checks": [{"CheckID": "serfHealth", "Status": "passing"}]}
NO_CHECKS = {**HEALTH_ROW, "Checks": []}


@pytest.mark.parametrize(
    ("expression", "row", "expected"),
    [
        # a path through a list is true when ANY element satisfies the match (bexpr)
        ("Checks.Status == passing", HEALTH_ROW, True),
        ("Checks.Status == warning", HEALTH_ROW, False),
        ("Checks.Status != passing", HEALTH_ROW, True),  # some check is not passing
        ("Checks.Status != passing", ALL_PASSING, False),
        ("not Checks.Status != passing", ALL_PASSING, True),  # every check passes
        ("not Checks.Status != passing", HEALTH_ROW, False),
        ("Checks.Status == passing", NO_CHECKS, False),
        ("Checks.Status != passing", NO_CHECKS, False),  # an empty list has no element
        ("Checks is empty", NO_CHECKS, True),
        ("Checks is not empty", HEALTH_ROW, True),
        ('"prod" in Checks.ServiceTags', HEALTH_ROW, True),
        ("Checks.CheckID matches `^service:`", HEALTH_ROW, True),
        ("Node.Meta.az == a", HEALTH_ROW, True),
        ("Node.TaggedAddresses is empty", HEALTH_ROW, True),
        ("Service.Service == web and prod in Service.Tags", HEALTH_ROW, True),
        ("Service.Meta is empty", HEALTH_ROW, True),  # JSON null map
        ('Service.Meta.x != ""', HEALTH_ROW, True),
        ("Service.Port == 80", HEALTH_ROW, True),
        ("Service.Weights.Passing == 0", HEALTH_ROW, True),  # absent: zero value
    ],
)
def test_health_service_row(expression: str, row: dict[str, Any], expected: bool) -> None:
    assert parse(expression, HEALTH_SERVICE).evaluate(row) is expected


@pytest.mark.parametrize(
    ("schema", "expression", "row", "expected"),
    [
        (CATALOG_NODE, "Meta.os == linux", {"Node": "a", "Meta": {"os": "linux"}}, True),
        (CATALOG_NODE, 'Node matches "^a"', {"Node": "a"}, True),
        (HEALTH_CHECK, "Status == critical", {"Status": "critical"}, True),
        (HEALTH_CHECK, "ServiceTags is empty", {"Status": "passing"}, True),
        (
            AGENT_SERVICE,
            "Service == redis and Port == 1234",
            {"Service": "redis", "Port": 1234},
            True,
        ),
        (AGENT_SERVICE, "Proxy.Upstreams.LocalBindPort == 9191", {"Proxy": None}, False),
        (
            INTENTION,
            "Precedence == 9 and Action == allow",
            {"Precedence": 9, "Action": "allow"},
            True,
        ),
        (INTENTION, "Meta.owner is empty", {"Meta": {}}, True),
    ],
)
def test_other_endpoints(
    schema: Struct, expression: str, row: dict[str, Any], expected: bool
) -> None:
    assert parse(expression, schema).evaluate(row) is expected


BAD_SYNTAX: list[tuple[str, str, int]] = [
    # (expression, words the message must contain, column)
    ("", "empty expression", 1),
    ("   ", "empty expression", 4),
    ("ServiceName ==", 'expected a value after "=="', 15),
    ("ServiceName == ", 'expected a value after "=="', 16),
    ("ServiceMeta.env == ) ", 'expected a value after "=="', 20),
    ("ServiceName", "expected an operator", 12),
    ("ServiceName = web", "expected an operator", 13),
    ("ServiceName is", "expected an operator", 13),
    ("ServiceName is not full", "expected an operator", 13),
    ('"web" == ServiceName', 'expected a selector before "=="', 1),
    ('"web" in', 'expected a selector after "in"', 9),
    ('"web" in "x"', 'expected a selector after "in"', 10),
    ("(ServiceName == web", 'unmatched "("', 1),
    ("ServiceName == web)", 'unmatched ")"', 19),
    ("(ServiceName == web x", 'expected ")"', 21),
    ("ServiceName == web ServicePort == 1", 'expected "and", "or" or the end', 20),
    ("ServiceName == web and", "expected a selector or value, found end of input", 23),
    ("and ServiceName == web", 'expected a selector or value, found "and"', 1),
    ("not", "expected a selector or value", 4),
    ("()", 'expected a selector or value, found ")"', 2),
    ('ServiceName == "web', "unterminated string", 16),
    ("ServiceName == `web", "unterminated string", 16),
    ('ServiceName == "a\\qb"', 'invalid escape "\\\\q"', 18),
    ('ServiceName == "\\ud800"', "invalid escape", 17),
    ("ServicePort == 12ab", 'invalid number "12ab"', 16),
    ("ServicePort == 012", 'invalid number "012"', 16),
    ("ServicePort == -", 'invalid number "-"', 16),
    ("ServiceMeta. == 1", 'expected a name after "."', 13),
    ("ServiceMeta[env] == 1", 'expected a quoted map key after "["', 13),
    ('ServiceMeta["env" == 1', 'unclosed index, expected "]"', 12),
    ("ServiceName == web and !", 'found "!"', 24),
    ("(" * 100 + "a == 1" + ")" * 100, "nested too deeply", 65),
    ('ServiceName matches "("', "invalid regular expression", 21),
    ("ServiceName matches `(?=x)`", "invalid perl operator: (?=", 21),
    ("ServiceName matches `(a)\\1`", "invalid escape sequence: \\1", 21),
]


@pytest.mark.parametrize(("expression", "words", "column"), BAD_SYNTAX)
def test_bad_syntax_names_problem_and_column(expression: str, words: str, column: int) -> None:
    with pytest.raises(FilterError) as caught:
        parse(expression)
    assert words in caught.value.message
    assert caught.value.position == column
    assert str(caught.value) == f"filter: {caught.value.message} at column {column}"


BAD_FOR_SCHEMA: list[tuple[str, str, int]] = [
    ("Foo == 1", 'unknown selector "Foo"', 1),
    ("ServiceName == web and Service.Foo == 1", 'unknown selector "Service.Foo"', 24),
    ("servicename == web", 'unknown selector "servicename"', 1),  # names are case-sensitive
    ('"x" in ServiceName.sub', 'unknown selector "ServiceName.sub"', 8),
    ("ServiceTags.x == 1", 'unknown selector "ServiceTags.x"', 1),
    ("ServicePort == web", 'value "web" is not an int', 16),
    ("ServicePort == 80.5", 'value "80.5" is not an int', 16),
    ("ServiceEnableTagOverride == yes", 'value "yes" is not a bool', 29),
    ("ServiceTags == prod", 'operator "==" cannot be used on selector "ServiceTags" (a list)', 1),
    ("ServicePort matches 80", '"matches" cannot be used on selector "ServicePort" (an int)', 1),
    ('"8" in ServicePort', 'operator "in" cannot be used on selector "ServicePort"', 8),
    ("ServicePort is empty", '"is empty" cannot be used on selector "ServicePort"', 1),
    ("ServiceWeights == 1", "(an object)", 1),
    ("ServiceProxy.Upstreams contains db", "(a list of objects)", 1),
]


@pytest.mark.parametrize(("expression", "words", "column"), BAD_FOR_SCHEMA)
def test_bad_for_schema_names_selector(expression: str, words: str, column: int) -> None:
    parse(expression)  # syntactically fine
    with pytest.raises(FilterError) as caught:
        parse(expression, CATALOG_SERVICE)
    assert words in caught.value.message
    assert caught.value.position == column


@pytest.mark.parametrize(
    ("expression", "record", "words"),
    [
        ("ServicePort == web", {"ServicePort": 80}, 'value "web" is not an int'),
        ("Flag == maybe", {"Flag": True}, 'value "maybe" is not a bool'),
        ("Tags == x", {"Tags": ["x"]}, 'operator "==" cannot be used on selector "Tags" (a list)'),
        ("Port matches x", {"Port": 1}, "(an int)"),
        ("Port is empty", {"Port": 1}, "(an int)"),
        ('"1" in Port', {"Port": 1}, "(an int)"),
        ("Missing == x", {"Other": 1}, 'unknown selector "Missing"'),
        ("Name.sub == x", {"Name": "web"}, 'selector "Name" is a string and has no field "sub"'),
    ],
)
def test_schema_less_errors_at_evaluation(
    expression: str, record: dict[str, Any], words: str
) -> None:
    expr = parse(expression)
    with pytest.raises(FilterError) as caught:
        expr.evaluate(record)
    assert words in caught.value.message


def test_schema_less_missing_nested_key_is_not_present() -> None:
    assert parse("Meta.x != y").evaluate({"Meta": {}}) is True
    assert parse("Meta.x == y").evaluate({"Meta": None}) is False


def test_mixed_list_membership_skips_elements_of_other_types() -> None:
    record = {"Values": [1, "two", True, 2.5, None, {"k": 1}]}
    assert parse('"two" in Values').evaluate(record)
    assert parse("1 in Values").evaluate(record)
    assert parse("2.5 in Values").evaluate(record)
    assert parse("true in Values").evaluate(record)
    assert not parse("three in Values").evaluate(record)


def test_short_circuit_skips_an_erroring_right_side() -> None:
    record = {"Name": "web", "Port": 1}
    assert parse("Name == web or Port == notanumber").evaluate(record)
    assert not parse("Name == db and Port == notanumber").evaluate(record)


def test_long_chains_do_not_exhaust_the_stack() -> None:
    # and/or chains are flat n-ary nodes: 1,020 terms, past Python's recursion limit
    expr = parse(" and ".join(["Name == web"] * 1020))
    assert expr.evaluate({"Name": "web"})
    assert parse("not " * 63 + "Name == web").evaluate({"Name": "db"})
    with pytest.raises(FilterError, match="nested too deeply"):
        parse("not " * 65 + "Name == web")


def test_filter_rows_and_values() -> None:
    rows = [
        {"ServiceName": "web", "ServiceTags": ["prod"]},
        {"ServiceName": "api", "ServiceTags": []},
    ]
    assert filter_rows(None, rows, CATALOG_SERVICE) == rows
    assert filter_rows("  ", rows, CATALOG_SERVICE) == rows
    assert filter_rows("prod in ServiceTags", rows, CATALOG_SERVICE) == rows[:1]
    assert filter_rows("ServiceTags is empty", rows, CATALOG_SERVICE) == rows[1:]
    services = {"redis1": {"Meta": {"env": "qa"}}, "redis2": {"Meta": {"env": "prod"}}}
    assert filter_values('Meta.env == "qa"', services, AGENT_SERVICE) == {
        "redis1": {"Meta": {"env": "qa"}}
    }
    with pytest.raises(FilterError, match='unknown selector "Foo"'):
        filter_rows("Foo == 1", rows, CATALOG_SERVICE)


def test_validate_selectors_binds_a_schema() -> None:
    expr = parse("Meta.os == linux and Node == a")
    assert expr.selectors() == ["Meta.os", "Node"]
    assert validate_selectors(expr, CATALOG_NODE).evaluate({"Node": "a", "Meta": {"os": "linux"}})
    with pytest.raises(FilterError, match=r'unknown selector "Meta\.os"'):
        validate_selectors(expr, HEALTH_CHECK)


def test_too_long_expression_is_refused() -> None:
    with pytest.raises(FilterError, match="longer than"):
        parse("a == b or " * 2000 + "a == b")


# -- fuzzing -------------------------------------------------------------------

_ALPHABET = st.sampled_from(
    [
        *'abcXYZ019 _."`\\[]()=!-\t\n',
        *("and ", "or ", "not ", " in ", " contains ", " matches ", " is empty", " is not empty"),
        *("Meta", "Tags", "Name", "Checks", "Status", "==", "!=", '"x"', "`y`", 'Meta["k"]'),
    ]
)
_FUZZ_TEXT = st.one_of(st.text(max_size=60), st.lists(_ALPHABET, max_size=25).map("".join))

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["Meta", "Tags", "Name", "k", "x", "Status"]), children)
    ),
    max_leaves=12,
)
_RECORDS = st.dictionaries(
    st.sampled_from(["Meta", "Tags", "Name", "Checks", "Status", "a", "x"]), _JSON, max_size=5
)


@settings(max_examples=400, deadline=None)
@given(_FUZZ_TEXT)
def test_arbitrary_text_parses_or_raises_filter_error(text: str) -> None:
    for schema in (None, CATALOG_SERVICE, HEALTH_SERVICE):
        try:
            parse(text, schema)
        except FilterError as exc:
            assert exc.position is None or 1 <= exc.position <= len(text) + 1


_VALID = st.sampled_from(
    [
        "Name == x",
        "Name != 1",
        '"x" in Tags',
        "Tags contains 1",
        "Meta.k is empty",
        'Meta["k"] matches "^a"',
        "Checks.Status == passing",
        "not (Status is not empty or x == true)",
        "a.b.c not matches `.`",
        "1.5 not in Meta",
        "x == -3 and a.x != false",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_VALID, min_size=1, max_size=4), st.sampled_from([" and ", " or "]), _RECORDS)
def test_evaluation_returns_bool_or_filter_error(
    parts: list[str], joiner: str, record: dict[str, Any]
) -> None:
    expr = parse(joiner.join(parts))
    with contextlib.suppress(FilterError):
        assert expr.evaluate(record) in (True, False)
