"""`gossamer intention ...` against real agents, as subprocesses; plus its pure parts.

The module-scoped `duo` (two joined agents, default policy deny) is shared, so
each test uses its own service names; `apply` rewrites an agent's whole set,
so its tests get a fresh agent of their own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gossamer.agent.cli.client import UsageError
from gossamer.agent.cli.intention_files import read_policy
from gossamer.agent.cli.intentions import header_arg
from gossamer.intentions import HTTPMatch, Intention, Permission
from gossamer.intentions.plan import differences, plan
from tests.harness.cli import DOWN, expect, gossamer
from tests.harness.cluster import AgentProc, Cluster
from tests.harness.poll import eventually

DENY_BY_DEFAULT = ("--default-intention-policy", "deny")


def run(agent: AgentProc | str, *args: str, code: int = 0) -> str:
    """`gossamer intention ARGS --http-addr AGENT`; asserts the exit code, returns stdout+stderr."""
    addr = agent if isinstance(agent, str) else agent.http
    return expect("intention", *args, "--http-addr", addr, code=code)


def listed(agent: AgentProc) -> dict[tuple[str, str], dict[str, Any]]:
    rows = json.loads(run(agent, "list", "--json"))
    return {(r["SourceName"], r["DestinationName"]): r for r in rows}


def line_with(text: str, *needles: str) -> str:
    return next(line for line in text.splitlines() if all(n in line for n in needles))


@pytest.fixture(scope="module")
def duo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[AgentProc]]:
    c = Cluster(tmp_path_factory.mktemp("duo"))
    try:
        first = c.new_agent("i1", *DENY_BY_DEFAULT).start()
        second = c.new_agent("i2", *DENY_BY_DEFAULT, "--join", first.serf_addr).start()
        eventually(lambda: len(first.members()) == 2, 15, what="i1 to see i2")
        yield [first, second]
    finally:
        leftovers = c.close()
    assert not leftovers, f"processes left behind: {leftovers}"


@pytest.fixture
def fresh(cluster: Cluster) -> AgentProc:
    """One agent of its own, no intentions yet."""
    return cluster.new_agent("solo", *DENY_BY_DEFAULT).start()


# --- create, get, list, delete ----------------------------------------------------------------


def test_create_get_list_replace_and_delete(duo: list[AgentProc]) -> None:
    a = duo[0]
    assert "Created: c-web => c-db (allow)" in run(a, "create", "c-web", "c-db")
    row = listed(a)[("c-web", "c-db")]
    assert row["Action"] == "allow" and row["Precedence"] == 9

    table = run(a, "list")
    line = line_with(table, "c-web", "c-db")
    assert line.split() == ["c-web", "c-db", "allow", "9", row["UpdatedAt"]]
    assert table.splitlines()[0].split() == [
        "Source", "Destination", "Action", "Precedence", "Updated"
    ]  # fmt: skip

    again = run(a, "create", "c-web", "c-db", "--deny", code=1)
    assert "c-web => c-db (allow) exists already" in again and "--replace" in again
    assert listed(a)[("c-web", "c-db")]["Action"] == "allow"

    out = run(
        a, "create", "-replace", "-deny", "c-web", "c-db", "--description", "no web to db",
        "--meta", "team=core", "--meta", "ticket=OPS-1",
    )  # fmt: skip
    assert "Replaced: c-web => c-db (deny)" in out
    shown = run(a, "get", "c-web", "c-db")
    for label, value in (("Source", "c-web"), ("Destination", "c-db"), ("Action", "deny"),
                         ("ID", row["ID"]), ("Precedence", "9"), ("Description", "no web to db"),
                         ("Meta", "team=core, ticket=OPS-1")):  # fmt: skip
        assert line_with(shown, label).split(None, 1 + label.count(" "))[-1].strip() == value
    as_json = json.loads(run(a, "get", "c-web", "c-db", "--json"))
    assert as_json["ID"] == row["ID"] and as_json["Meta"] == {"team": "core", "ticket": "OPS-1"}
    assert json.loads(run(a, "get", row["ID"], "--json"))["Action"] == "deny"

    assert "Intention deleted: c-web => c-db" in run(a, "delete", row["ID"])
    assert "no intention c-web => c-db" in run(a, "get", "c-web", "c-db", code=1)
    assert f"no intention ID {row['ID']}" in run(a, "delete", row["ID"], code=1)
    run(a, "create", "c-web", "c-db")
    assert "Intention deleted: c-web => c-db" in run(a, "delete", "c-web", "c-db")
    assert "no intention c-web => c-db" in run(a, "delete", "c-web", "c-db", code=1)
    assert ("c-web", "c-db") not in listed(a)


def test_written_on_one_agent_checked_on_the_other(duo: list[AgentProc]) -> None:
    a, b = duo
    run(b, "check", "r-web", "r-db", code=1)
    run(a, "create", "r-web", "r-db")
    eventually(lambda: gossamer("intention", "check", "r-web", "r-db", "--http-addr",
                                b.http).returncode == 0, 15, what="B to allow")  # fmt: skip
    run(b, "create", "--replace", "--deny", "r-web", "r-db")
    eventually(lambda: gossamer("intention", "check", "r-web", "r-db", "--http-addr",
                                a.http).returncode == 1, 15, what="A to deny")  # fmt: skip


def test_create_from_files(duo: list[AgentProc], tmp_path: Path) -> None:
    a = duo[0]
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps([
        {"SourceName": "f-web", "DestinationName": "f-db", "Action": "allow"},
        {"source_name": "f-batch", "destination_name": "f-db", "action": "deny",
         "description": "batch jobs go through the api"},
    ]))  # fmt: skip
    entry = tmp_path / "entry.yaml"
    entry.write_text(
        "Kind: service-intentions\nName: f-api\nMeta: {owner: team-a}\n"
        "Sources:\n  - {Name: f-web, Action: allow}\n  - {Name: '*', Action: deny}\n"
    )
    out = run(a, "create", "--file", str(flat), "-file", str(entry))
    for made in ("f-web => f-db (allow)", "f-batch => f-db (deny)", "f-web => f-api (allow)",
                 "* => f-api (deny)"):  # fmt: skip
        assert f"Created: {made}" in out
    held = listed(a)
    assert held[("f-web", "f-api")]["Meta"] == {"owner": "team-a"}
    assert held[("f-batch", "f-db")]["Description"] == "batch jobs go through the api"

    again = run(a, "create", "--file", str(flat), "--file", str(entry), code=1)
    assert again.count("exists already") == 4
    assert "Replaced: f-batch => f-db (deny)" in run(a, "create", "--replace", "--file", str(flat))
    for pair in [("f-web", "f-db"), ("f-batch", "f-db"), ("f-web", "f-api"), ("*", "f-api")]:
        run(a, "delete", *pair)


# --- check and match ---------------------------------------------------------------------------


def test_check_answers_with_exit_codes_and_reasons(duo: list[AgentProc]) -> None:
    a = duo[0]
    run(a, "create", "k-web", "k-db")
    run(a, "create", "--deny", "*", "k-db")
    assert run(a, "check", "k-web", "k-db") == "Allowed: matched intention k-web => k-db (allow)\n"
    assert run(a, "check", "k-other", "k-db", code=1) == (
        "Denied: matched intention * => k-db (deny)\n"
    )
    out = run(a, "check", "k-web", "k-nothing", code=1)
    assert out.startswith("Denied") and "default policy is deny" in out
    run(a, "delete", "k-web", "k-db")
    run(a, "delete", "*", "k-db")


def test_check_evaluates_l7_permissions_with_a_request(
    duo: list[AgentProc], tmp_path: Path
) -> None:
    a = duo[0]
    policy = tmp_path / "l7.yaml"
    policy.write_text(
        "Kind: service-intentions\n"
        "Name: l7-api\n"
        "Sources:\n"
        "  - Name: l7-web\n"
        "    Permissions:\n"
        "      - Action: deny\n"
        "        HTTP: {PathPrefix: /admin}\n"
        "      - Action: allow\n"
        "        HTTP:\n"
        "          PathPrefix: /v1/\n"
        "          Methods: [GET, HEAD]\n"
        "          Header: [{Name: X-Tenant, Exact: acme}, {Name: X-Debug, Present: true, "
        "Invert: true}]\n"
    )
    run(a, "create", "--file", str(policy))
    assert line_with(run(a, "list"), "l7-web", "l7-api").split()[2:4] == ["2", "permissions"]
    shown = run(a, "get", "l7-web", "l7-api")
    assert "deny  path prefix /admin" in line_with(shown, "Permission 1")
    assert line_with(shown, "Permission 2").split(None, 2)[2] == (
        "allow  path prefix /v1/, methods GET|HEAD, header X-Tenant exact 'acme', "
        "header X-Debug not present"
    )

    def check(*request: str, code: int) -> str:
        return run(a, "check", "l7-web", "l7-api", *request, code=code)

    allowed = check("--method", "GET", "--path", "/v1/items", "--header", "x-tenant=acme", code=0)
    assert allowed.strip() == "Allowed: matched intention l7-web => l7-api, Permissions[1] (allow)"
    denied = check("--method", "GET", "--path", "/admin/users", "--header", "X-Tenant:acme", code=1)
    assert "Permissions[0] (deny)" in denied
    check("--method", "POST", "--path", "/v1/items", "--header", "X-Tenant=acme", code=1)
    check("--path", "/v1/items", "--header", "X-Tenant=other", code=1)
    check("--path", "/v1/x", "--header", "X-Tenant=acme", "--header", "X-Debug=1", code=1)
    check("--path", "/v1/x", "--header", "X-Tenant=acme", code=0)  # GET is the default method
    check(code=1)  # no request described: an L7 intention denies, as in Consul
    assert "path" in check("--path", "no-slash", code=2)  # the agent's 400
    run(a, "delete", "l7-web", "l7-api")


def test_a_consul_entry_with_contains_and_ignore_case_works_unchanged(
    duo: list[AgentProc], tmp_path: Path
) -> None:
    """A newer Consul user's service-intentions entry, in HCL's snake_case (`contains`,
    `ignore_case`), written to one real agent, shown, listed as Consul's JSON, and decided on
    the other agent once replicated. Before, the file was refused (`unknown field`, exit 2)."""
    a, b = duo
    policy = tmp_path / "bots.yaml"
    policy.write_text(
        "Kind: service-intentions\n"
        "Name: ci-api\n"
        "Sources:\n"
        "  - Name: ci-web\n"
        "    Permissions:\n"
        "      - Action: deny\n"
        "        HTTP:\n"
        "          Header: [{name: User-Agent, contains: bot, ignore_case: true}]\n"
        "      - Action: allow\n"
        "        HTTP:\n"
        "          Header: [{name: X-Env, exact: Prod, ignore_case: true}]\n"
    )
    run(a, "create", "--file", str(policy))
    shown = run(a, "get", "ci-web", "ci-api")
    assert line_with(shown, "Permission 1").split(None, 2)[2].rstrip() == (
        "deny  header User-Agent contains 'bot' ignoring case"
    )
    assert line_with(shown, "Permission 2").split(None, 2)[2].rstrip() == (
        "allow  header X-Env exact 'Prod' ignoring case"
    )
    row = listed(a)[("ci-web", "ci-api")]
    assert [p["HTTP"]["Header"] for p in row["Permissions"]] == [
        [{"Name": "User-Agent", "Contains": "bot", "IgnoreCase": True}],
        [{"Name": "X-Env", "Exact": "Prod", "IgnoreCase": True}],
    ]

    def on_b(*header: str) -> int:
        args = [x for h in header for x in ("--header", h)]
        return gossamer("intention", "check", "ci-web", "ci-api", "--path", "/", *args,
                        "--http-addr", b.http).returncode  # fmt: skip

    eventually(lambda: on_b("X-Env=prod") == 0, 15, what="B to have the rule")
    assert on_b("X-Env=PROD", "User-Agent=GoogleBOT/2.1") == 1  # the deny comes first
    assert on_b("X-Env=pRoD", "User-Agent=curl/8") == 0
    assert on_b("X-Env=production") == 1  # Exact, in any case: still the whole value
    denied = run(b, "check", "ci-web", "ci-api", "--header", "user-agent=A BOT", code=1)
    assert denied.strip() == "Denied: matched intention ci-web => ci-api, Permissions[0] (deny)"


def test_match_lists_in_evaluation_order(duo: list[AgentProc]) -> None:
    a = duo[0]
    assert "No intentions match destination m-db" in run(a, "match", "--destination", "m-db")
    run(a, "create", "--deny", "*", "m-db")
    run(a, "create", "m-web", "m-db")
    run(a, "create", "m-web", "*")
    by_dest = run(a, "match", "--destination", "m-db").splitlines()
    assert [line.split()[:5] for line in by_dest[1:]] == [
        ["1", "m-web", "m-db", "allow", "9"],
        ["2", "*", "m-db", "deny", "8"],
        ["3", "m-web", "*", "allow", "6"],
    ]
    by_source = run(a, "match", "-source", "m-web").splitlines()
    mine = [line.split()[1:3] for line in by_source[1:] if "m-" in line]
    assert mine == [["m-web", "m-db"], ["*", "m-db"], ["m-web", "*"]]
    answer = json.loads(run(a, "match", "--destination", "m-db", "--json"))
    assert [(i["SourceName"], i["DestinationName"], i["Precedence"]) for i in answer["m-db"]] == [
        ("m-web", "m-db", 9), ("*", "m-db", 8), ("m-web", "*", 6)
    ]  # fmt: skip
    for pair in [("*", "m-db"), ("m-web", "m-db"), ("m-web", "*")]:
        run(a, "delete", *pair)


def test_list_filter_and_json(duo: list[AgentProc]) -> None:
    a = duo[0]
    run(a, "create", "--deny", "l-web", "l-db")
    run(a, "create", "l-web", "l-cache")
    only = run(a, "list", "--filter", 'DestinationName == "l-db"')
    rows = [line for line in only.splitlines()[1:] if line.strip()]
    assert [r.split()[:3] for r in rows] == [["l-web", "l-db", "deny"]]
    as_json = json.loads(run(a, "list", "--json", "--filter", 'SourceName == "l-web"'))
    assert {r["DestinationName"] for r in as_json} == {"l-db", "l-cache"}
    assert "No intentions match the filter" in run(a, "list", "--filter", 'SourceName == "none"')
    bad = run(a, "list", "--filter", "SourceName ==", code=2)
    assert "filter" in bad and "HTTP 400" in bad
    run(a, "delete", "l-web", "l-db")
    run(a, "delete", "l-web", "l-cache")


# --- apply -----------------------------------------------------------------------------------

POLICY = """\
- SourceName: web
  DestinationName: db
  Action: allow
  Meta: {owner: dba}
- Kind: service-intentions
  Name: api
  Sources:
    - Name: web
      Permissions:
        - Action: allow
          HTTP: {PathPrefix: /v1, Methods: [GET]}
    - Name: "*"
      Action: deny
"""


def test_apply_plans_then_applies_the_difference(fresh: AgentProc, tmp_path: Path) -> None:
    a = fresh
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)

    dry = run(a, "apply", str(policy), "--dry-run")
    assert "3 to create, 0 to update, 0 to delete, 0 unchanged" in dry
    assert "Dry run: nothing applied." in dry and listed(a) == {}

    first = run(a, "apply", str(policy))
    assert [line.strip() for line in first.splitlines() if line.startswith("  ")] == [
        "+ web => api (1 permission)", "+ web => db (allow)", "+ * => api (deny)"
    ]  # fmt: skip
    assert "Applied: 3 created, 0 updated, 0 deleted." in first
    held = listed(a)
    assert set(held) == {("web", "db"), ("web", "api"), ("*", "api")}
    assert held[("web", "db")]["Meta"] == {"owner": "dba"}
    run(a, "check", "web", "api", "--path", "/v1/x")

    again = run(a, "apply", str(policy))
    assert "0 to create, 0 to update, 0 to delete, 3 unchanged" in again
    assert "Nothing to do." in again
    assert listed(a) == held  # not even rewritten: same UpdatedAt and ModifyIndex
    exported = tmp_path / "exported.json"
    exported.write_text(run(a, "list", "--json"))
    assert "3 unchanged" in run(a, "apply", str(exported))  # what list --json prints applies

    policy.write_text(POLICY.replace("Action: deny", "Action: allow"))
    changed = run(a, "apply", str(policy))
    assert [line.strip() for line in changed.splitlines() if line.startswith("  ")] == [
        "~ * => api: deny → allow"
    ]
    assert "0 to create, 1 to update, 0 to delete, 2 unchanged" in changed
    assert listed(a)[("*", "api")]["ID"] == held[("*", "api")]["ID"]
    run(a, "check", "other", "api")

    policy.write_text(POLICY.replace("{owner: dba}", "{owner: ops}").replace("/v1", "/v2"))
    both = run(a, "apply", str(policy), "--dry-run")
    assert "~ web => db: meta {owner=dba} → {owner=ops}" in both
    assert "~ web => api: permissions changed" in both
    assert "~ * => api: allow → deny" in both


def test_apply_keeps_or_prunes_what_is_not_in_the_file(fresh: AgentProc, tmp_path: Path) -> None:
    a = fresh
    policy = tmp_path / "policy.json"
    policy.write_text(
        json.dumps([{"SourceName": "web", "DestinationName": "db", "Action": "deny"}])
    )
    run(a, "create", "old", "db")
    run(a, "create", "--deny", "old", "*")

    kept = run(a, "apply", str(policy))
    assert "old => db (allow)  not in file, kept" in kept
    assert "old => * (deny)  not in file, kept" in kept
    assert "1 to create, 0 to update, 0 to delete, 0 unchanged, 2 not in file, kept" in kept
    assert set(listed(a)) == {("web", "db"), ("old", "db"), ("old", "*")}

    dry = run(a, "apply", str(policy), "--prune", "--dry-run")
    assert "- old => db (allow)" in dry and "- old => * (deny)" in dry
    assert "0 to create, 0 to update, 2 to delete, 1 unchanged" in dry
    assert len(listed(a)) == 3

    pruned = run(a, "apply", str(policy), "--prune")
    assert "Applied: 0 created, 0 updated, 2 deleted." in pruned
    assert set(listed(a)) == {("web", "db")}


def test_apply_lists_every_problem_and_applies_nothing(
    duo: list[AgentProc], tmp_path: Path
) -> None:
    a = duo[0]
    before = listed(a)
    policy = tmp_path / "broken.yaml"
    policy.write_text(
        "- {SourceName: p-web, DestinationName: p-db, Action: maybe}\n"
        "- {SourceName: p-ok, DestinationName: p-db, Action: allow}\n"
        "- Kind: service-intentions\n"
        "  Name: p-api\n"
        "  Sources:\n"
        "    - Name: p-web\n"
        "      Permissions: [{Action: allow, HTTP: {PathRegex: '(?=x)'}}]\n"
        "- {SourceName: p-ok, DestinationName: p-db, Action: deny}\n"
    )
    result = gossamer("intention", "apply", str(policy), "--http-addr", a.http)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == "Error: 3 problems, nothing changed:"
    assert lines[1] == (
        f'  {policy}: [0] p-web => p-db: Action: must be "allow" or "deny", got "maybe"'
    )
    assert lines[2].startswith(
        f"  {policy}: [2].Sources[0] p-web => p-api: Permissions[0].HTTP.PathRegex: "
    )
    assert lines[3] == f"  {policy}: [3] p-ok => p-db: defined more than once (also at [1])"
    assert listed(a) == before


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["create", "a", "b", "--bogus"], "--bogus"),
        (["create", "a", "b", "--allow", "--deny"], "not allowed with argument"),
        (["create", "a", "b", "--meta", "novalue"], "--meta 'novalue': expected KEY=VALUE"),
        (["create", "a", "b", "--meta", "bad key=v"], 'Meta["bad key"]'),
        (["create", "a"], "give SRC and DST"),
        (["create", "a b", "c"], 'SRC: must be a DNS-label-like service name or "*", got "a b"'),
        (["create", "--file", "/no/such.yaml"], "/no/such.yaml: cannot read"),
        (["create", "a", "b", "--file", "x.yaml"], "SRC DST or --file, not both"),
        (["create", "--deny", "--file", "x.yaml"], "apply to SRC DST"),
        (["get", "a", "b", "c"], "unrecognized arguments: c"),
        (["get"], "required"),
        (["delete", "a", "b c"], "DST: must be"),
        (["match"], "give a service: DST, --destination DST or --source SRC"),
        (["match", "--source", "a", "--destination", "b"], "not allowed with argument"),
        (["check", "a"], "required: DST"),
        (["check", "a", "b", "--header", "novalue"], "--header 'novalue': expected NAME=VALUE"),
        (["apply"], "required: FILE"),
        (["apply", "/no/such.yaml"], "/no/such.yaml: cannot read: No such file or directory"),
        (["nosuchverb"], "invalid choice"),
        ([], "required: VERB"),
    ],
)
def test_bad_input_exits_2_naming_what_is_wrong(args: list[str], says: str) -> None:
    result = gossamer("intention", *args, "--http-addr", DOWN)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert says in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("bad.yaml", "- {SourceName: a, DestinationName: [b\n", ":1:"),
        ("bad.json", '[{"SourceName": "a",\n "Action": }]', ":2:12: invalid JSON"),
        ("empty.yaml", "", "is empty"),
        ("list.yaml", "- 1\n- x\n", "[0]: must be a JSON object"),
    ],
)
def test_unreadable_policy_files_exit_2(tmp_path: Path, name: str, text: str, says: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    for args in (["apply", str(path)], ["create", "--file", str(path)]):
        result = gossamer("intention", *args, "--http-addr", DOWN)
        assert result.returncode == 2, (result.stdout, result.stderr)
        assert str(path) in result.stderr and says in result.stderr, result.stderr


def test_agent_down_check_exits_2_others_1() -> None:
    check = run(DOWN, "check", "a", "b", code=2)
    assert f"cannot reach the gossamer agent at http://{DOWN}" in check
    for args in (["list"], ["get", "a", "b"], ["create", "a", "b"], ["match", "--source", "a"]):
        assert "cannot reach the gossamer agent" in run(DOWN, *args, code=1)


# --- the pure parts ---------------------------------------------------------------------------


def test_plan_is_a_pure_difference() -> None:
    l7 = (Permission("allow", HTTPMatch(path_prefix="/v1")),)
    current = [
        Intention("a", "b", "allow", id="x", updated_at="2024-01-01T00:00:00Z"),
        Intention("c", "d", "deny"),
        Intention("e", "f", None, l7),
        Intention("g", "h", "allow"),
    ]
    wanted = [
        Intention("a", "b", "allow"),  # same but for the agent's fields
        Intention("c", "d", "allow"),
        Intention("e", "f", "deny", description="now L4"),
        Intention("*", "z", "deny"),
    ]
    kept = plan(wanted, current, prune=False)
    assert [(s.op, s.intention.pair, s.changes) for s in kept.steps] == [
        ("update", ("c", "d"), ("deny → allow",)),
        ("update", ("e", "f"), ("1 permission → deny", "description '' → 'now L4'")),
        ("create", ("*", "z"), ()),
    ]
    assert [i.pair for i in kept.unchanged] == [("a", "b")]
    assert [i.pair for i in kept.kept] == [("g", "h")]
    pruned = plan(wanted, current, prune=True)
    assert pruned.steps[-1].op == "delete" and pruned.steps[-1].intention.pair == ("g", "h")
    assert pruned.kept == () and plan(current, current, prune=True).steps == ()
    assert differences(Intention("a", "b", "allow", meta={"k": "1"}),
                       Intention("a", "b", "allow")) == ("meta {k=1} → {}",)  # fmt: skip


def test_read_policy_places_and_pairs() -> None:
    document = [
        {"SourceName": "a", "DestinationName": "b", "Action": "allow"},
        {"Kind": "service-intentions", "Name": "b", "Sources": [
            {"Name": "c", "Action": "deny"}, {"Name": "a", "Action": "deny"}]},
    ]  # fmt: skip
    located, problems = read_policy(document)
    assert [(loc.where, loc.intention.pair) for loc in located] == [
        ("[0]", ("a", "b")), ("[1].Sources[0]", ("c", "b")), ("[1].Sources[1]", ("a", "b"))
    ]  # fmt: skip
    assert problems == ["[1].Sources[1] a => b: defined more than once (also at [0])"]
    single, problems = read_policy({"Kind": "service-intentions", "Name": "*", "Sources": "x"})
    assert single == [] and problems == [
        'service-intentions *: Sources: must be a JSON array, got "x"'
    ]
    _, problems = read_policy({"SourceName": "a", "Action": "allow"})
    assert problems == ["a => ?: DestinationName: is required"]


@pytest.mark.parametrize(
    ("raw", "sent"),
    [
        ("X-Env=prod", "X-Env:prod"),
        ("X-Env:a=b", "X-Env:a=b"),
        ("X=a:b", "X:a:b"),
        ("X=", "X:"),
        (":authority:db", ":authority:db"),
        (":authority=db:8080", ":authority:db:8080"),
    ],
)
def test_header_flag(raw: str, sent: str) -> None:
    assert header_arg(raw) == sent


@pytest.mark.parametrize("raw", ["novalue", "=x", ":x"])
def test_header_flag_needs_a_name_and_a_separator(raw: str) -> None:
    with pytest.raises(UsageError):
        header_arg(raw)
