"""Sidecars against an agent with ACLs on (default deny), holding the least a Consul sidecar
holds: a service identity (`ServiceIdentities` on the token, or a policy with the same rules:
`service:write` on the service and its sidecar, `service:read` on every service, `node:read`
on every node). Real agent, real `gossamer connect proxy --sidecar-for` processes with two
workers, real apps."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gossamer.intentions.denials import Denial, denial_to_json
from gossamer.proxy.agent_http import AgentHttp, Answer
from gossamer.proxy.denial_report import PATH as DENIALS
from gossamer.proxy.watch import Watch
from tests.harness.cli import cli_env, gossamer
from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.proxy_support import App, ProxyProc, register_pair, roundtrip, set_intention
from tests.test_acl_http import call

MANAGEMENT = "5b7e0d3c-0000-4000-8000-0000000acl01"
TEMPLATE = """service "{0}" {{ policy = "write" }}
service "{0}-sidecar-proxy" {{ policy = "write" }}
service_prefix "" {{ policy = "read" }}
node_prefix "" {{ policy = "read" }}
"""


@dataclass
class Mesh:
    agent: AgentProc
    root: Path
    up_port: int


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    root = tmp_path_factory.mktemp("aclproxy")
    config = root / "acl.yaml"
    config.write_text(
        "acl:\n  enabled: true\n  default_policy: deny\n"
        f"  tokens:\n    initial_management: {MANAGEMENT}\n"
    )
    cluster = Cluster(root)
    agent = cluster.new_agent("aclp1", "--config-file", str(config))
    agent.token = MANAGEMENT
    app = App("127.0.0.1").start()
    try:
        agent.start()
        up_port = free_port("127.0.0.1")
        register_pair(agent, app.port, up_port)
        set_intention(agent, "web", "db", "allow")
        yield Mesh(agent, root, up_port)
    finally:
        app.stop()
        leftovers = cluster.close()
    assert not leftovers


def token(agent: AgentProc, body: dict[str, object]) -> str:
    status, text, _ = call(agent, "PUT", "/v1/acl/token", body, token=MANAGEMENT)
    assert status == 200, text
    return str(json.loads(text)["SecretID"])


def policy_token(agent: AgentProc, name: str, rules: str) -> str:
    status, text, _ = call(agent, "PUT", "/v1/acl/policy", {"Name": name, "Rules": rules},
                           token=MANAGEMENT)  # fmt: skip
    assert status == 200, text
    return token(agent, {"Policies": [{"Name": name}]})


def identity_token(agent: AgentProc, service: str) -> str:
    return token(agent, {"ServiceIdentities": [{"ServiceName": service}]})


def start_sidecar(mesh: Mesh, service: str, env: dict[str, str], *flags: str) -> ProxyProc:
    log = mesh.root / f"proxy-{service}-{len(list(mesh.root.glob('proxy-*')))}.log"
    proxy = ProxyProc(["--sidecar-for", service, "--http-addr", mesh.agent.http,
                       "--workers", "2", *flags], log)  # fmt: skip
    argv = [sys.executable, "-m", "gossamer.agent", "connect", "proxy", *proxy.args]
    with log.open("ab") as out:
        proxy.proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=cli_env(env=env), start_new_session=True,
        )  # fmt: skip
    return proxy


def through_mesh(mesh: Mesh, *proxies: ProxyProc) -> None:
    def answered() -> bool:
        for proxy in proxies:
            assert proxy.proc is not None and proxy.proc.poll() is None, proxy.log()
        try:
            return roundtrip(("127.0.0.1", mesh.up_port), b"hi", timeout=3) == b"hi<eof>"
        except OSError:
            return False

    logs = lambda: "\n".join(p.log()[-2000:] for p in proxies)  # noqa: E731
    eventually(answered, 30, 0.2, what=f"a round trip web -> db; logs:\n{logs()}")


def test_service_identity_tokens_run_sidecars(mesh: Mesh, tmp_path: Path) -> None:
    """`web`'s sidecar holds a token made with ServiceIdentities (in CONSUL_HTTP_TOKEN);
    `db`'s one whose policy has the template's rules (in a --token-file). Both were refused
    before: the token's ServiceIdentities were dropped (a token granting nothing), and the
    proxy asked `/v1/agent/self` (agent:read, which no sidecar token holds) before it ran."""
    secret_file = tmp_path / "db.token"
    secret_file.write_text(policy_token(mesh.agent, "si-db", TEMPLATE.format("db")) + "\n")
    db = start_sidecar(mesh, "db", {}, "--token-file", str(secret_file))
    web = start_sidecar(mesh, "web", {"CONSUL_HTTP_TOKEN": identity_token(mesh.agent, "web")})
    try:
        through_mesh(mesh, db, web)
    finally:
        assert (db.stop(), web.stop()) == (0, 0)
    for proxy in (db, web):
        refused = re.search(r"(?<![,\d])403\b", proxy.log())  # (a timestamp's ",403" is not)
        assert "Traceback" not in proxy.log() and not refused, proxy.log()


PROXY_CALLS = [
    ("GET", "/v1/agent/connect/ca/roots"),
    ("GET", "/v1/connect/ca/revoked"),
    ("GET", "/v1/agent/service/web-sidecar-proxy"),
    ("GET", "/v1/agent/services?filter=Kind%20%3D%3D%20%22connect-proxy%22"),
    ("GET", "/v1/agent/connect/ca/leaf/web"),
    ("GET", "/v1/connect/intentions/match?by=destination&name=web"),
    ("GET", "/v1/health/connect/db?passing"),
    ("GET", "/v1/config/service-splitter"),
]


@pytest.mark.parametrize(("method", "path"), PROXY_CALLS)
def test_every_call_of_a_sidecar_is_allowed_by_a_service_identity(
    mesh: Mesh, method: str, path: str
) -> None:
    status, text, _ = call(mesh.agent, method, path, token=identity_token(mesh.agent, "web"))
    assert status == 200, text
    if "health/connect/db" in path:  # upstream instances (node:read): not filtered away
        assert len(json.loads(text)) == 1, text


def test_a_service_identity_reads_back_and_grants_nothing_else(mesh: Mesh) -> None:
    secret = identity_token(mesh.agent, "web")
    status, text, _ = call(mesh.agent, "GET", "/v1/acl/token/self", token=secret)
    assert status == 200 and json.loads(text)["ServiceIdentities"] == [{"ServiceName": "web"}]
    status, text, _ = call(mesh.agent, "GET", "/v1/acl/tokens", token=secret)
    assert status == 403, text  # (acl:read: not in the template)
    status, text, _ = call(mesh.agent, "GET", "/v1/agent/connect/ca/leaf/db", token=secret)
    assert status == 403 and "lacks permission 'service:write' on \"db\"" in text, text
    status, text, _ = call(mesh.agent, "PUT", "/v1/acl/token", token=MANAGEMENT,
                           body={"ServiceIdentities": [{"ServiceName": "Web!"}]})  # fmt: skip
    assert status == 400 and "ServiceIdentities[0].ServiceName" in text, text
    node = {"NodeIdentities": [{"NodeName": "n1", "Datacenter": "dc1"}]}
    status, text, _ = call(mesh.agent, "PUT", "/v1/acl/token", node, token=MANAGEMENT)
    assert status == 400 and "NodeIdentities: not supported" in text, text


class CountingAgent(AgentHttp):
    asks = 0

    async def get(self, path: str, timeout: float) -> Answer:
        CountingAgent.asks += 1
        return await super().get(path, timeout)


async def test_a_deleted_token_does_not_lock_the_host_out(mesh: Mesh) -> None:
    """Six watches (a two-worker sidecar's few) whose token was deleted ask again slowly:
    before, each asked every ≤0.75 s, the agent counted each as a guessed secret from this
    host's address, and within 3 s it answered 429 to a valid management token from the
    same address (every sidecar and CLI of the host)."""
    status, text, _ = call(mesh.agent, "PUT", "/v1/acl/token", token=MANAGEMENT,
                           body={"ServiceIdentities": [{"ServiceName": "web"}]})  # fmt: skip
    made = json.loads(text)
    assert call(mesh.agent, "DELETE", f"/v1/acl/token/{made['AccessorID']}",
                token=MANAGEMENT)[0] == 200  # fmt: skip
    agent = CountingAgent(mesh.agent.http, token=made["SecretID"])
    CountingAgent.asks = 0
    watches = [Watch(agent, f"/v1/connect/intentions/match?by=destination&name=s{i}",
                     lambda _: None) for i in range(6)]  # fmt: skip
    for watch in watches:
        watch.start()
    try:
        await asyncio.sleep(3.0)  # (a span to count asks in, not a wait for convergence)
    finally:
        for watch in watches:
            watch.stop()
    assert CountingAgent.asks <= 6 * 3, CountingAgent.asks
    status, text, _ = await asyncio.to_thread(
        call, mesh.agent, "GET", "/v1/agent/services", token=MANAGEMENT
    )
    assert status == 200, text


BOGUS = "5b7e0d3c-0000-4000-8000-00000000dead"


@pytest.mark.parametrize(
    ("argv", "secret", "request_line", "hint"),
    [
        (["connect", "proxy", "--sidecar-for", "web"], "",
         "GET /v1/agent/service/web-sidecar-proxy", "pass a token that holds it"),
        (["stat", "--service", "web"], BOGUS, "GET /v1/agent/", "the agent knows no such token"),
        (["top", "--iterations", "1"], "", "GET /v1/agent/", "pass a token that holds it"),
    ],
)  # fmt: skip
def test_a_refused_token_names_the_request_and_the_fix(
    mesh: Mesh, argv: list[str], secret: str, request_line: str, hint: str
) -> None:
    """A 403 said `Error: <the agent's reason> (HTTP 403)` and no more: not which call was
    refused, nor that the fix is the token (and where it is given)."""
    env = {"CONSUL_HTTP_TOKEN": secret} if secret else {}
    result = gossamer(*argv, "--http-addr", mesh.agent.http, env=env)
    assert result.returncode == 1, result
    assert request_line in result.stderr and hint in result.stderr, result.stderr
    assert "--token-file" in result.stderr and "Traceback" not in result.stderr, result.stderr
    if secret:
        assert secret not in result.stdout + result.stderr


def test_check_with_an_unknown_token_says_so(mesh: Mesh) -> None:
    """`gossamer check` with a token the agent does not know hinted that the token 'lacks
    agent:read', sending its user to the policy instead of the secret."""
    result = gossamer("check", "--http-addr", mesh.agent.http, env={"CONSUL_HTTP_TOKEN": BOGUS})
    assert result.returncode == 1
    assert "ACL not found" in result.stdout and "knows no such token" in result.stdout, result
    assert "lacks agent:read" not in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("flags", "env", "chosen"),
    [
        (["--token", "A", "--token-file", "B"], {}, "B"),
        ([], {"CONSUL_HTTP_TOKEN": "A", "CONSUL_HTTP_TOKEN_FILE": "B"}, "B"),
        (["--token", "A"], {"CONSUL_HTTP_TOKEN_FILE": "B"}, "B"),
        (["--token", "A"], {"CONSUL_HTTP_TOKEN": "B"}, "A"),
        (["--token-file", "A"], {"CONSUL_HTTP_TOKEN_FILE": "B"}, "A"),
        (["--token", "A", "--token-file", "EMPTY"], {}, "A"),
    ],
)  # fmt: skip
def test_token_sources_in_consuls_order(
    mesh: Mesh, tmp_path: Path, flags: list[str], env: dict[str, str], chosen: str
) -> None:
    """Consul's api.NewClient reads a named token file "instead of" -token or
    CONSUL_HTTP_TOKEN (the flag over the variable within each); an empty file falls back.
    Before, --token and CONSUL_HTTP_TOKEN won over the files."""
    secrets = {}
    for name in ("A", "B"):
        status, text, _ = call(mesh.agent, "PUT", "/v1/acl/token", token=MANAGEMENT,
                               body={"Description": f"order-{name}"})  # fmt: skip
        assert status == 200, text
        secrets[name] = json.loads(text)["SecretID"]
        (tmp_path / name).write_text(secrets[name] + "\n")
    (tmp_path / "EMPTY").write_text("\n")

    def given(value: str, as_file: bool) -> str:
        return str(tmp_path / value) if as_file else secrets[value]

    argv = [given(v, flags[i - 1] == "--token-file") if i % 2 else v
            for i, v in enumerate(flags)]  # fmt: skip
    env = {k: given(v, k.endswith("_FILE")) for k, v in env.items()}
    result = gossamer("acl", "token", "read", "--self", "--http-addr", mesh.agent.http, *argv,
                      env=env)  # fmt: skip
    assert result.returncode == 0 and f"order-{chosen}" in result.stdout, result


def test_node_proxy_says_when_its_token_hides_sidecars(mesh: Mesh) -> None:
    """`--node` with a token that may read only `web`: the agent's list of sidecars leaves
    `db`'s out (X-Consul-Results-Filtered-By-ACLs: true) and `db` went unserved without a
    word. Now `web` is served and the log says sidecars were hidden, and what to grant."""
    rules = TEMPLATE.format("web").replace('service_prefix "" { policy = "read" }\n', "")
    secret = policy_token(mesh.agent, "node-web-only", rules)
    proxy = ProxyProc(["--node", "--http-addr", mesh.agent.http],
                      mesh.root / "proxy-node-hidden.log")  # fmt: skip
    argv = [sys.executable, "-m", "gossamer.agent", "connect", "proxy", *proxy.args]
    with proxy.log_path.open("ab") as out:
        proxy.proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=cli_env(env={"CONSUL_HTTP_TOKEN": secret}), start_new_session=True,
        )  # fmt: skip
    try:
        said = ("hid sidecar registrations", "[web-sidecar-proxy] proxy: inbound")
        eventually(lambda: all(line in proxy.log() for line in said), 10,
                   what=f"the warning; log:\n{proxy.log()[-2000:]}")  # fmt: skip
        assert "db-sidecar-proxy" not in proxy.log()
        assert "service:read" in proxy.log()
    finally:
        assert proxy.stop() == 0


def test_acl_token_create_takes_a_service_identity(mesh: Mesh) -> None:
    """Consul's `consul acl token create -service-identity web[:dc,...]`: the CLI had no such
    flag (argparse exit 2), so a sidecar token needed a hand-written policy."""
    made = gossamer("acl", "token", "create", "--service-identity", "web",
                    "--service-identity", "api:dc1,dc2", "--http-addr", mesh.agent.http,
                    env={"CONSUL_HTTP_TOKEN": MANAGEMENT})  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "web (Datacenters: all)" in made.stdout and "api (Datacenters: dc1, dc2)" in made.stdout
    secret = next(line.split()[-1] for line in made.stdout.splitlines()
                  if line.startswith("SecretID:"))  # fmt: skip
    status, text, _ = call(mesh.agent, "GET", "/v1/agent/connect/ca/leaf/web", token=secret)
    assert status == 200, text
    bad = gossamer("acl", "token", "create", "--service-identity", "web:", "--http-addr",
                   mesh.agent.http, env={"CONSUL_HTTP_TOKEN": MANAGEMENT})  # fmt: skip
    assert bad.returncode == 2 and "--service-identity" in bad.stderr, bad


def test_a_deleted_token_leaves_the_mesh_running(mesh: Mesh) -> None:
    """web's token deleted while its sidecar runs: the sidecar keeps what it holds (leaf,
    roots, intentions, instances), so an open connection goes on and new ones still pass;
    its watches log that the agent knows no such token and ask again slowly. A new token
    reaches it by a restart (it reads its token once, as Consul's proxy does)."""
    db = start_sidecar(mesh, "db", {"CONSUL_HTTP_TOKEN": identity_token(mesh.agent, "db")})
    status, text, _ = call(mesh.agent, "PUT", "/v1/acl/token", token=MANAGEMENT,
                           body={"ServiceIdentities": [{"ServiceName": "web"}]})  # fmt: skip
    assert status == 200, text
    made = json.loads(text)
    web = start_sidecar(mesh, "web", {"CONSUL_HTTP_TOKEN": made["SecretID"]})
    try:
        through_mesh(mesh, db, web)
        with socket.create_connection(("127.0.0.1", mesh.up_port), timeout=10) as open_conn:
            open_conn.sendall(b"before")
            assert read_exactly(open_conn, 6) == b"before"
            assert call(mesh.agent, "DELETE", f"/v1/acl/token/{made['AccessorID']}",
                        token=MANAGEMENT)[0] == 200  # fmt: skip
            set_intention(mesh.agent, "other", "web", "deny")  # wakes web's intentions watch
            eventually(lambda: "knows no such token" in web.log(), 10,
                       what=f"web's watch to hear; log:\n{web.log()[-2000:]}")  # fmt: skip
            open_conn.sendall(b"after")
            assert read_exactly(open_conn, 5) == b"after"
        assert roundtrip(("127.0.0.1", mesh.up_port), b"new", timeout=5) == b"new<eof>"
        assert web.proc is not None and web.proc.poll() is None
    finally:
        assert (db.stop(), web.stop()) == (0, 0)
    assert "Traceback" not in web.log() and made["SecretID"] not in web.log()


def read_exactly(conn: socket.socket, n: int) -> bytes:
    got = b""
    while len(got) < n:
        chunk = conn.recv(n - len(got))
        assert chunk, f"closed after {got!r}"
        got += chunk
    return got


def test_a_service_identity_may_report_its_denials_and_no_others(mesh: Mesh) -> None:
    """The sidecar's denial report (PUT /v1/connect/intentions/denials) needs service:write
    on the destination: its own service, which the identity holds; another's it does not."""
    now = int(time.time() * 1000)

    def report(destination: str) -> list[dict[str, object]]:
        row = Denial("x", destination, "", 0, "default policy (deny)", "no intention", 1, now, now)
        return [denial_to_json(row)]

    secret = identity_token(mesh.agent, "web")
    status, text, _ = call(mesh.agent, "PUT", DENIALS, report("web"), token=secret)
    assert status == 200, text
    status, text, _ = call(mesh.agent, "PUT", DENIALS, report("db"), token=secret)
    assert status == 403 and "'service:write' on \"db\"" in text, text


def test_a_cloned_service_identity_token_keeps_its_identity(mesh: Mesh) -> None:
    """PUT /v1/acl/token/<id>/clone copied the policies alone: the clone of a sidecar's
    token granted nothing."""
    status, text, _ = call(mesh.agent, "PUT", "/v1/acl/token", token=MANAGEMENT,
                           body={"ServiceIdentities": [{"ServiceName": "web"}]})  # fmt: skip
    assert status == 200, text
    accessor = json.loads(text)["AccessorID"]
    status, text, _ = call(mesh.agent, "PUT", f"/v1/acl/token/{accessor}/clone", {},
                           token=MANAGEMENT)  # fmt: skip
    assert status == 200 and json.loads(text)["ServiceIdentities"] == [{"ServiceName": "web"}]
    clone = json.loads(text)["SecretID"]
    status, text, _ = call(mesh.agent, "GET", "/v1/agent/connect/ca/leaf/web", token=clone)
    assert status == 200, text
