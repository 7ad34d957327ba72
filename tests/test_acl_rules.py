"""ACL rules (HCL and JSON), their validation, and the authorizer's precedence."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.agent.acl.authorize import MANAGEMENT_RULES, Authorizer, denied_message
from gossamer.agent.acl.problems import RulesInvalid
from gossamer.agent.acl.rules import Access, Rule, parse_rules

R, W, D = Access.READ, Access.WRITE, Access.DENY

HCL = """
# web team
service "web" {
  policy = "write"
  intentions = "write"
}
service_prefix "" { policy = "read" }   // everyone may read services
node_prefix "" {
  policy = "read"
}
/* operators only */
operator = "read"
"""


def test_hcl_and_json_give_the_same_rules() -> None:
    as_json = json.dumps(
        {
            "service": {"web": {"policy": "write", "intentions": "write"}},
            "service_prefix": {"": {"policy": "read"}},
            "node_prefix": {"": {"policy": "read"}},
            "operator": "read",
        }
    )
    rules = parse_rules(HCL)
    assert rules == parse_rules(as_json)
    assert Rule("service", "web", False, W, W) in rules.segments
    assert rules.scalars == (("operator", R),)


def problems(text: str) -> list[str]:
    with pytest.raises(RulesInvalid) as caught:
        parse_rules(text)
    return [str(p) for p in caught.value.problems]


def test_every_problem_is_listed_with_its_line_and_column() -> None:
    text = (
        'service "web" {\n  policy = "wrte"\n  colour = "red"\n}\n'
        'nodes "x" { policy = "read" }\noperator = read\n'
    )
    assert problems(text) == [
        'line 2, column 12: "wrte" is not a policy; use "read", "write" or "deny"',
        "line 3, column 3: service has no field 'colour' (fields: intentions, policy)",
        "line 5, column 1: unknown rule type 'nodes' (known: agent, agent_prefix, event, "
        "event_prefix, key, key_prefix, node, node_prefix, query, query_prefix, service, "
        "service_prefix, session, session_prefix, "
        "and scalars acl, keyring, mesh, operator, peering)",
        "line 6, column 12: expected a quoted string, found 'read'",
    ]


def test_syntax_errors_do_not_hide_later_problems() -> None:
    found = problems('service "a" { policy = }\nservice "b" { policy = "nope" }\n"x"\n')
    assert found[0].startswith("line 1, column 24: expected a quoted string, found '}'")
    assert found[1].startswith('line 2, column 24: "nope" is not a policy')
    assert found[2] == "line 3, column 1: expected a rule name, found '\"x\"'"


def test_json_problems_name_the_key_path() -> None:
    text = '{"service": {"web": {"policy": "all"}}, "mesh": 3, "node": []}'
    assert problems(text) == [
        'service.web.policy: "all" is not a policy; use "read", "write" or "deny"',
        'mesh: 3 is not a policy; use "read", "write" or "deny"',
        'node: must be an object: {"NAME": {"policy": ...}}',
    ]
    assert problems('{"service": ') == ["line 1, column 13: Expecting value"]


def test_unterminated_block_and_duplicates() -> None:
    assert problems('service "a" { policy = "read" ') == ["line 1, column 31: missing '}'"]
    assert problems('operator = "read"\noperator = "write"') == [
        "line 2, column 12: operator is set twice"
    ]


def authorizer(*texts: str, default_allow: bool = False) -> Authorizer:
    return Authorizer([parse_rules(t) for t in texts], default_allow)


@pytest.mark.parametrize(
    ("kind", "name", "need", "allowed"),
    [
        ("service", "web", W, True),  # exact rule
        ("service", "webapp", W, False),  # longest prefix "" grants read only
        ("service", "webapp", R, True),
        ("service", "db", R, False),  # exact deny beats the longer prefix
        ("service", "db-replica", R, False),  # prefix "db" (deny) beats prefix ""
        ("service", "dbx", W, False),
        ("intention", "web", W, True),  # explicit intentions
        ("intention", "webapp", R, True),  # implied read from service read
        ("intention", "webapp", W, False),
        ("node", "n1", R, False),  # nothing matches, default deny
        ("mesh", "", R, True),  # mesh falls back to operator
        ("operator", "", W, False),
        ("acl", "", R, False),
    ],
)
def test_most_specific_rule_wins(kind: str, name: str, need: Access, allowed: bool) -> None:
    auth = authorizer(
        'service "web" { policy = "write" intentions = "write" }\n'
        'service_prefix "" { policy = "read" }\n'
        'service "db" { policy = "deny" }\nservice_prefix "db" { policy = "deny" }\n'
        'service_prefix "d" { policy = "write" }\noperator = "read"'
    )
    assert auth.allows(kind, name, need).allowed is allowed


def test_merging_policies_deny_wins_else_most_permissive() -> None:
    auth = authorizer('service "web" { policy = "read" }', 'service "web" { policy = "write" }')
    assert auth.allows("service", "web", W).allowed
    auth = authorizer('service "web" { policy = "write" }', 'service "web" { policy = "deny" }')
    decision = auth.allows("service", "web", R)
    assert not decision.allowed and decision.reason == 'service "web" grants deny'


def test_default_allow_never_grants_acl() -> None:
    auth = authorizer(default_allow=True)
    assert auth.allows("service", "x", W).allowed
    assert not auth.allows("acl", "", R).allowed
    management = Authorizer([MANAGEMENT_RULES], default_allow=False)
    assert management.allows("acl", "", W).allowed
    assert management.allows("intention", "any", W).allowed


def test_denied_message_is_consuls_wording() -> None:
    assert denied_message("a1", "intention", "web", W) == (
        "Permission denied: token with AccessorID 'a1' "
        "lacks permission 'intentions:write' on \"web\""
    )


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from('service_prefix "web" {}=#/*\n\t policyreadwrite,x'), max_size=80
    )
)
def test_any_text_parses_or_raises_rules_invalid(text: str) -> None:
    try:
        parse_rules(text)
    except RulesInvalid as exc:
        assert exc.problems and all(p.position for p in exc.problems)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_unicode_parses_or_raises_rules_invalid(text: str) -> None:
    try:
        parse_rules(text)
    except RulesInvalid as exc:
        assert exc.problems


names = st.text(alphabet="abc-", max_size=6)
words = st.sampled_from(["read", "write", "deny"])


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(names, words, max_size=4), st.dictionaries(names, words, max_size=4))
def test_generated_rules_round_trip_between_hcl_and_json(
    exact: dict[str, str], prefix: dict[str, str]
) -> None:
    hcl = "".join(f'service "{n}" {{ policy = "{w}" }}\n' for n, w in exact.items())
    hcl += "".join(f'service_prefix "{n}" {{ policy = "{w}" }}\n' for n, w in prefix.items())
    doc: dict[str, object] = {}
    if exact:
        doc["service"] = {n: {"policy": w} for n, w in exact.items()}
    if prefix:
        doc["service_prefix"] = {n: {"policy": w} for n, w in prefix.items()}
    assert parse_rules(hcl) == parse_rules(json.dumps(doc) if doc else "")


def test_reads_all_only_when_no_rule_narrows_the_kind() -> None:
    assert Authorizer([MANAGEMENT_RULES], default_allow=False).reads_all("node")
    assert authorizer('node_prefix "" { policy = "read" }').reads_all("node")
    assert not authorizer(
        'node_prefix "" { policy = "read" }\nnode "x" { policy = "deny" }'
    ).reads_all("node")
    assert not authorizer('node "x" { policy = "read" }').reads_all("node")
    assert authorizer(default_allow=True).reads_all("node")
