"""Per-request intentions walked as a Consul user writes them: `web` calls `db` (protocol
`http`) through real sidecars (tests/test_proxy_http.py's mesh), the intention written with
`PUT /v1/connect/intentions/exact`, each request sent as raw bytes and its decision read
from the status line (a denial is Envoy's `403` with `RBAC: access denied`).

What Envoy does for Consul is the reference: the path judged normalized (RFC 3986: an
escaped unreserved character decoded, dot segments removed, `//`, `%2F` and `;` kept),
without its query; methods and paths case-sensitive; a repeated header judged as its
values joined with ","; regexes RE2's; the first permission that matches decides and a
miss is the default policy. Header values are compared as the UTF-8 text they carry, as
Envoy compares a rule's UTF-8 bytes with the request's: a rule on `josé` holds for a
request carrying `josé`.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import consul
import pytest

from gossamer.intentions.decide import IntentionSet, decide
from gossamer.intentions.model import HeaderMatch, HTTPMatch, Intention, Permission
from gossamer.proxy.h2_fields import request_of
from gossamer.proxy.http_codec import judged_request
from tests.harness.cli import expect
from tests.harness.cluster import free_port, put_exact
from tests.harness.poll import eventually
from tests.proxy_support import read_all, sidecar, wait_listening, web_body
from tests.test_proxy_http import Mesh, mesh

__all__ = ["mesh"]  # the fixture, imported for pytest

DENIED, ALLOWED = b"HTTP/1.1 403", b"HTTP/1.1 200"


def _status(mesh: Mesh, head: bytes, sock: socket.socket | None = None) -> bytes:
    """The status line's first 12 bytes of the answer to `head` (a whole request head)."""
    own = sock is None
    s = sock or socket.create_connection(mesh.upstream, timeout=5)
    try:
        s.sendall(head)
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = s.recv(65536)
            assert chunk, f"closed after {got!r}"
            got += chunk
        head_end = got.index(b"\r\n\r\n") + 4
        length = int(next((line.split(b":")[1] for line in got[:head_end].split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), b"0"))  # fmt: skip
        while not head.startswith(b"HEAD") and len(got) < head_end + length:
            got += s.recv(65536)
        return got[:12]
    finally:
        if own:
            s.close()


def _get(target: bytes, fields: bytes = b"") -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: db\r\n" + fields + b"\r\n"


def _write(mesh: Mesh, perms: list[dict[str, Any]], probe: bytes, expect: bytes) -> None:
    """web => db gets `perms`; wait until `probe` (a request head) is answered `expect`."""
    put_exact(mesh.agent, "web", "db", {"Permissions": perms})
    eventually(lambda: _status(mesh, probe) == expect, 10, what="the sidecar to apply it")


ALLOW_REST = {"Action": "allow", "HTTP": {"PathPrefix": "/"}}


# --- header values are judged as the UTF-8 text they carry ----------------------------------


def _deny(*headers: HeaderMatch) -> IntentionSet:
    return IntentionSet([Intention("web", "db", permissions=(
        Permission("deny", HTTPMatch(headers=headers)),
        Permission("allow", HTTPMatch(path_prefix="/")),))])  # fmt: skip


def _allowed(iset: IntentionSet, fields: list[tuple[bytes, bytes]]) -> bool:
    request = judged_request("GET", "/x", fields)
    return decide(iset, "web", "db", request=request, default_allow=False).allowed


@pytest.mark.parametrize(
    ("rule", "value", "allowed"),
    [
        (HeaderMatch("x-user", exact="josé"), "josé".encode(), False),
        (HeaderMatch("x-user", suffix="é"), "josé".encode(), False),
        (HeaderMatch("x-user", regex="jos."), "josé".encode(), False),  # `.` is one character
        (HeaderMatch("x-user", exact="名前"), "名前".encode(), False),
        (HeaderMatch("x-user", exact="jose"), "josé".encode(), True),
        # not UTF-8: no byte stands for a character a rule could name
        (HeaderMatch("x-user", exact="josé"), b"jos\xe9", True),
        (HeaderMatch("x-user", prefix="jos"), b"jos\xe9", False),
        (HeaderMatch("x-user", regex="jos.*"), b"jos\xe9\xff", False),
    ],
)
def test_a_header_value_is_judged_as_its_utf8_text(
    rule: HeaderMatch, value: bytes, allowed: bool
) -> None:
    assert _allowed(_deny(rule), [(b"X-User", value)]) is allowed


def test_http2_fields_are_judged_as_http1_fields() -> None:
    """The same request as an h2c header block and as an HTTP/1 head decides the same."""
    iset = _deny(HeaderMatch("x-user", exact="josé"), HeaderMatch("x-n", exact="b"))
    for value in ("josé".encode(), b"jose", b"jos\xe9"):
        for extra in ([], [(b"x-n", b"a"), (b"x-n", b"b")]):
            fields = [(b"x-user", value), *extra]
            h1 = _allowed(iset, fields)
            h2 = request_of([(b":method", b"GET"), (b":path", b"/x"), (b":authority", b"db"),
                             *fields])  # fmt: skip
            assert decide(iset, "web", "db", request=h2, default_allow=False).allowed is h1


def test_a_non_ascii_header_rule_holds_through_the_sidecar_and_in_check(mesh: Mesh) -> None:
    """A deny on `X-User: josé` written as Consul takes it (JSON, UTF-8) denies the request
    that carries it through the sidecar, and `/intentions/check` answers the same."""
    _write(mesh, [{"Action": "deny", "HTTP": {"Header": [{"Name": "X-User", "Exact": "josé"}]}},
                  {"Action": "deny", "HTTP": {"Header": [{"Name": "X-Team", "Regex": "caf."}]}},
                  ALLOW_REST], _get(b"/echo/a", b"X-Team: cafe\r\n"), DENIED)  # fmt: skip
    assert _status(mesh, _get(b"/echo/a", "X-User: josé\r\n".encode())) == DENIED
    assert _status(mesh, _get(b"/echo/a", "X-Team: café\r\n".encode())) == DENIED
    assert _status(mesh, _get(b"/echo/a", b"X-User: jose\r\n")) == ALLOWED
    query = urllib.parse.urlencode({"source": "web", "destination": "db", "path": "/echo/a",
                                    "header": "X-User:josé"})  # fmt: skip
    with urllib.request.urlopen(f"{mesh.agent.http}/v1/connect/intentions/check?{query}") as r:
        assert json.load(r)["Allowed"] is False


# --- the rest of the walk: what already holds, kept so it keeps holding --------------------


def test_paths_are_judged_as_envoy_normalizes_them(mesh: Mesh) -> None:
    _write(mesh, [{"Action": "deny", "HTTP": {"PathExact": "/echo/admin"}}, ALLOW_REST],
           _get(b"/echo/admin"), DENIED)  # fmt: skip
    for target, wanted in [
        (b"/echo/%61dmin", DENIED),  # an escaped unreserved character is decoded
        (b"/echo/adm%69n", DENIED),
        (b"/echo/x/../admin", DENIED),
        (b"/echo/./admin", DENIED),
        (b"/echo/%2e%2e/echo/admin", DENIED),
        (b"/echo\\admin", DENIED),
        (b"/echo/admin?x=1", DENIED),  # PathExact ignores the query, as Envoy's url_path
        (b"http://db/echo/admin", DENIED),  # absolute form: judged as its path
        (b"HTTP://DB:80/echo/admin?q", DENIED),
        (b"/echo/ADMIN", ALLOWED),  # case-sensitive
        (b"/echo/admin/", ALLOWED),  # a trailing slash is another path
        (b"/echo//admin", ALLOWED),  # slashes not merged (Consul's default)
        (b"/echo/admin;x", ALLOWED),  # path parameters kept, as Envoy keeps them
        (b"/echo/admin%2F", ALLOWED),  # an escaped slash stays as sent
    ]:
        assert _status(mesh, _get(target)) == wanted, target
    assert _status(mesh, _get(b"/echo/admin#x"))[:12] == b"HTTP/1.1 400"


def test_methods_headers_and_first_match_order(mesh: Mesh) -> None:
    _write(mesh, [{"Action": "deny", "HTTP": {"Methods": ["GET"], "PathPrefix": "/echo/m"}},
                  {"Action": "deny", "HTTP": {"Header": [{"Name": "X-Role", "Exact": "admin"}]}},
                  {"Action": "deny", "HTTP": {"Header": [{"Name": "X-Probe", "Present": True}]}},
                  {"Action": "deny", "HTTP": {"Header": [
                      {"Name": "X-Env", "Exact": "prod", "Invert": True}, {"Name": "X-Env",
                                                                          "Present": True}]}},
                  ALLOW_REST], _get(b"/echo/m"), DENIED)  # fmt: skip
    assert _status(mesh, b"HEAD /echo/m HTTP/1.1\r\nHost: db\r\n\r\n") == ALLOWED  # HEAD != GET
    assert _status(mesh, b"get /echo/m HTTP/1.1\r\nHost: db\r\n\r\n") == b"HTTP/1.1 400"
    for fields, wanted in [
        (b"x-ROLE: admin\r\n", DENIED),  # a header name in any case
        (b"X-Role:admin \r\n", DENIED),  # the value without the spaces around it
        (b"X-Role: ADMIN\r\n", ALLOWED),
        (b"X-Role: user\r\nX-Role: admin\r\n", ALLOWED),  # judged joined: "user,admin"
        (b"X-Role: adm\r\n in\r\n", b"HTTP/1.1 400"),  # obs-fold is refused, never judged
        (b"X-Probe:\r\n", DENIED),  # present with an empty value is present
        (b"X-Env: test\r\n", DENIED),
        (b"X-Env: prod\r\n", ALLOWED),
        (b"", ALLOWED),
    ]:
        assert _status(mesh, _get(b"/echo/h", fields)) == wanted, fields


def test_a_catastrophic_regex_costs_no_time_and_bad_ones_are_refused(mesh: Mesh) -> None:
    _write(mesh, [{"Action": "deny", "HTTP": {"PathRegex": "/echo/(a+)+$"}}, ALLOW_REST],
           _get(b"/echo/aaa"), DENIED)  # fmt: skip
    start = time.perf_counter()
    assert _status(mesh, _get(b"/echo/" + b"a" * 30 + b"b")) == ALLOWED
    assert time.perf_counter() - start < 0.5
    url = f"{mesh.agent.http}/v1/connect/intentions/exact?source=web&destination=db"
    for field, perm in [
        ("Permissions[0].HTTP.PathRegex", {"PathRegex": "(a)\\1"}),  # backreference
        ("Permissions[0].HTTP.PathRegex", {"PathRegex": "/(?=a)"}),  # lookahead
        ("Permissions[0].HTTP.Header[0].Regex", {"Header": [{"Name": "x", "Regex": "(?<=a)"}]}),
    ]:
        body = json.dumps({"Permissions": [{"Action": "deny", "HTTP": perm}]}).encode()
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(urllib.request.Request(url, body, method="PUT"))
        assert caught.value.code == 400
        assert field in caught.value.read().decode()


def test_a_change_applies_to_the_next_request_on_the_same_connection(mesh: Mesh) -> None:
    """The kept connection carries only allowed requests while the change travels (a request
    in flight when its permission goes is cut, by design), then its next request is denied
    and the one after it, allowed, goes through on the same connection."""
    _write(mesh, [ALLOW_REST], _get(b"/echo/k"), ALLOWED)
    with socket.create_connection(mesh.upstream, timeout=5) as s:
        assert _status(mesh, _get(b"/echo/k"), s) == ALLOWED
        put_exact(mesh.agent, "web", "db", {"Permissions": [
            {"Action": "deny", "HTTP": {"PathPrefix": "/echo/k"}}, ALLOW_REST]})  # fmt: skip

        def applied() -> bool:
            assert _status(mesh, _get(b"/echo/other"), s) == ALLOWED  # (keeps `s` busy)
            return _status(mesh, _get(b"/echo/k")) == DENIED

        eventually(applied, 10, what="the change")
        assert _status(mesh, _get(b"/echo/k"), s) == DENIED
        assert _status(mesh, _get(b"/echo/other"), s) == ALLOWED  # the connection stays open


def test_an_l7_intention_on_a_tcp_service_is_a_deny(mesh: Mesh, tmp_path: Path) -> None:
    """`tdb` keeps the default protocol (`tcp`): its sidecar decides connections, not
    requests. An L7 intention to it is a deny, as Consul's L4 filter treats one; an L4 allow
    of the same pair lets the same bytes through."""
    agent, proxies = mesh.agent, []
    tdb_in, up = free_port(agent.ip), free_port("127.0.0.1")
    try:
        agent.put("/v1/agent/service/register", {
            "Name": "tdb", "ID": "tdb", "Port": mesh.app.port, "Address": agent.ip,
            "Connect": {"SidecarService": {"Port": tdb_in, "Address": agent.ip}}})  # fmt: skip
        body = web_body(agent, free_port(agent.ip), [{"DestinationName": "tdb",
                                                      "LocalBindPort": up}])  # fmt: skip
        agent.put("/v1/agent/service/register", body | {"Name": "tweb", "ID": "tweb"})
        put_exact(agent, "tweb", "tdb", {"Action": "allow"})
        proxies += [
            tdb := sidecar(agent, tmp_path, "tdb"),
            tweb := sidecar(agent, tmp_path, "tweb"),
        ]
        wait_listening(agent.ip, tdb_in, tdb)
        wait_listening("127.0.0.1", up, tweb)
        through = ("127.0.0.1", up)

        def answered() -> bytes:
            with socket.create_connection(through, timeout=5) as s:
                s.sendall(_get(b"/echo/t").replace(b"HTTP/1.1", b"HTTP/1.0"))
                return read_all(s)[:12]

        eventually(lambda: answered()[9:12] == b"200", 20, what="tweb -> tdb through")
        put_exact(agent, "tweb", "tdb", {"Permissions": [ALLOW_REST]})
        eventually(lambda: answered() == b"", 10, what="the L7 intention to deny the connection")
    finally:
        for proxy in proxies:
            proxy.stop()
        for sid in ("tweb", "tdb"):
            agent.put(f"/v1/agent/service/deregister/{sid}", None)
        urllib.request.urlopen(urllib.request.Request(
            f"{agent.http}/v1/connect/intentions/exact?source=tweb&destination=tdb",
            method="DELETE"))  # fmt: skip


def test_the_most_specific_intention_decides_and_a_miss_is_the_default(mesh: Mesh) -> None:
    """`* => db` with permissions governs web while web has no intention of its own; once
    `web => db` exists it alone decides (an L4 allow: everything; an L7 one whose
    permissions all miss: the default policy, deny here, never the wildcard's allow)."""
    agent = mesh.agent
    star = f"{agent.http}/v1/connect/intentions/exact?source=*&destination=db"
    put_exact(agent, "*", "db", {"Permissions": [
        {"Action": "deny", "HTTP": {"PathPrefix": "/echo/p"}}, ALLOW_REST]})  # fmt: skip
    try:
        urllib.request.urlopen(urllib.request.Request(
            f"{agent.http}/v1/connect/intentions/exact?source=web&destination=db",
            method="DELETE"))  # fmt: skip
        eventually(lambda: _status(mesh, _get(b"/echo/p")) == DENIED, 10, what="* => db")
        assert _status(mesh, _get(b"/echo/q")) == ALLOWED
        put_exact(agent, "web", "db", {"Action": "allow"})
        eventually(lambda: _status(mesh, _get(b"/echo/p")) == ALLOWED, 10, what="web => db")
        # waited for by the miss (the default, not `*`'s allow): /echo/only was allowed under
        # the L4 allow before, so its answer cannot tell the new intention has applied
        _write(mesh, [{"Action": "allow", "HTTP": {"PathExact": "/echo/only"}}],
               _get(b"/echo/q"), DENIED)  # fmt: skip
        assert _status(mesh, _get(b"/echo/only")) == ALLOWED
    finally:
        urllib.request.urlopen(urllib.request.Request(star, method="DELETE"))


# --- written as a `service-intentions` config entry, as Consul >= 1.9 users write them -----


def test_a_service_intentions_entry_written_with_py_consul_is_enforced(mesh: Mesh) -> None:
    """`config.set("service-intentions", "db", ...)` (PUT /v1/config, what `consul config
    write` sends) makes db's intentions the entry's sources; the sidecar enforces them; a
    source left out of the next write is deleted; the entry reads back with
    `config.get`; a bad regex is a 400 naming its place in the entry; `cas` guards; a
    delete removes the destination's intentions."""
    agent = mesh.agent
    client = consul.Consul(host=agent.ip, port=agent.http_port)
    web_perms = [{"Action": "deny", "HTTP": {"PathPrefix": "/echo/cfg", "Methods": ["GET"]}},
                 ALLOW_REST]  # fmt: skip
    sources = [{"Name": "web", "Permissions": web_perms},
               {"Name": "web2", "Action": "allow", "Description": "pooled"}]  # fmt: skip
    assert client.config.set("service-intentions", "db", {"Sources": sources}) is True
    # both at once: a 403 alone may be the state before the entry applies
    eventually(
        lambda: (
            _status(mesh, _get(b"/echo/cfg")) == DENIED
            and _status(mesh, _get(b"/echo/other")) == ALLOWED
        ),
        10,
        what="the entry",
    )
    exact = agent.get("/v1/connect/intentions/exact?source=web&destination=db")
    assert exact["Permissions"][0]["HTTP"]["PathPrefix"] == "/echo/cfg"
    entry = client.config.get("service-intentions", "db")
    assert entry["Kind"] == "service-intentions" and entry["Name"] == "db"
    assert {s["Name"]: s.get("Action") for s in entry["Sources"]} == {"web": None,
                                                                       "web2": "allow"}  # fmt: skip
    assert "db" in [e["Name"] for e in client.config.list("service-intentions")]
    # snake_case keys and lower-case names, as an HCL file may spell them
    assert client.config.set("service-intentions", "db", {"sources": [
        {"name": "web", "permissions": [{"action": "deny", "http": {"path_exact": "/echo/x"}},
                                        ALLOW_REST]}]}) is True  # fmt: skip
    eventually(lambda: _status(mesh, _get(b"/echo/x")) == DENIED, 10, what="the rewrite")
    assert _status(mesh, _get(b"/echo/cfg")) == ALLOWED
    query = "source=web2&destination=db"
    with pytest.raises(urllib.error.HTTPError) as gone:
        urllib.request.urlopen(f"{agent.http}/v1/connect/intentions/exact?{query}")
    assert gone.value.code == 404  # web2 was left out of the entry: deleted
    bad = {"Kind": "service-intentions", "Name": "db", "Sources": [{"Name": "web", "Permissions": [
        {"Action": "deny", "HTTP": {"PathRegex": "(?=x)"}}]}]}  # fmt: skip
    request = urllib.request.Request(f"{agent.http}/v1/config", json.dumps(bad).encode(),
                                     method="PUT")  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request)
    assert refused.value.code == 400
    assert "Sources[0].Permissions[0].HTTP.PathRegex: invalid regular expression" in (
        refused.value.read().decode())  # fmt: skip
    empty = json.dumps({"Kind": "service-intentions", "Name": "db", "Sources": []}).encode()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(f"{agent.http}/v1/config", empty,
                                                      method="PUT"))  # fmt: skip
    assert refused.value.code == 400  # as Consul: at least one source (not a 500)
    assert (
        refused.value.read().decode().strip().endswith("Sources: at least one source is required")
    )
    held = client.config.get("service-intentions", "db")["ModifyIndex"]
    again = {"Sources": [{"Name": "web", "Action": "allow"}]}
    assert client.config.set("service-intentions", "db", again, cas=held + 1) is False
    assert client.config.set("service-intentions", "db", again, cas=held) is True
    eventually(lambda: _status(mesh, _get(b"/echo/x")) == ALLOWED, 10, what="the cas write")
    assert client.config.delete("service-intentions", "db")
    eventually(lambda: _status(mesh, _get(b"/echo/x")) == DENIED, 10, what="the default")
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{agent.http}/v1/config/service-intentions/db")
    assert missing.value.code == 404
    assert missing.value.read().startswith(b"Config entry not found for 'service-intentions'")


DB_HCL = """Kind = "service-intentions"
Name = "db"
Sources = [
  {
    Name = "web"
    Permissions = [
      {
        Action = "deny"
        HTTP {
          PathPrefix = "/echo/hcl"
          Methods    = ["GET", "HEAD"]
          Header = [
            {
              Name    = "X-Env"
              Present = true
            }
          ]
        }
      },
      {
        Action = "allow"
        HTTP {
          PathPrefix = "/"
        }
      }
    ]
  }
]
"""


def test_gossamer_config_write_takes_a_consul_intentions_file(mesh: Mesh, tmp_path: Path) -> None:
    """The HCL file as Consul's docs write it: `gossamer config write` sends it, `config
    read` shows it back, `config list` names it, `config delete` removes it; a bad one is
    exit 2 naming the file and the field, before anything is sent."""
    http = ("--http-addr", mesh.agent.http)
    (tmp_path / "db.hcl").write_text(DB_HCL)
    said = expect("config", "write", str(tmp_path / "db.hcl"), *http)
    assert "Config entry written: service-intentions/db" in said
    probe = _get(b"/echo/hcl", b"X-Env: 1\r\n")
    eventually(lambda: _status(mesh, probe) == DENIED, 10, what="the HCL entry")
    assert _status(mesh, _get(b"/echo/hcl")) == ALLOWED  # no X-Env: the deny needs it
    shown = json.loads(expect("config", "read", "-kind", "service-intentions", "-name", "db",
                              *http))  # fmt: skip
    assert shown["Sources"][0]["Permissions"][0]["HTTP"]["Methods"] == ["GET", "HEAD"]
    assert "db" in expect("config", "list", "-kind", "service-intentions", *http).split()
    (tmp_path / "bad.hcl").write_text(DB_HCL.replace('"/echo/hcl"', '"echo"'))
    said = expect("config", "write", str(tmp_path / "bad.hcl"), *http, code=2)
    assert "Sources[0].Permissions[0].HTTP.PathPrefix: must start with" in said
    expect("config", "delete", "-kind", "service-intentions", "-name", "db", *http)
    eventually(lambda: _status(mesh, probe) == DENIED and _status(mesh, _get(b"/echo/a"))
               == DENIED, 10, what="the default policy")  # fmt: skip
