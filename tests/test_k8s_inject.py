"""The injector's pure core: annotations -> decision, review -> response, patch -> valid pod.

Every patched pod is checked against the Kubernetes Pod schema (strict)
and every response against the AdmissionReview schema (tests/k8s_support.py).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossamer.agent.k8s.annotations import Malformed, Plan, Skip, Upstream, decide
from gossamer.agent.k8s.patch import InjectorSettings
from gossamer.agent.k8s.registration import definition
from gossamer.agent.k8s.review import ReviewError, answer, parse_review
from tests.k8s_support import check_response, patched, pod, review, valid_k8s

SETTINGS = InjectorSettings(image="registry.example/gossamer:0.1.0")
INJECT = {"gossamer.io/inject": "true"}


def respond(sent: dict[str, Any], s: InjectorSettings = SETTINGS) -> dict[str, Any]:
    got = answer(parse_review(json.dumps(sent).encode()), s)
    return check_response(sent, got)


def names(p: dict[str, Any], key: str = "containers") -> list[str]:
    return [c["name"] for c in p["spec"].get(key, [])]


def test_annotated_pod_gets_sidecar_init_and_mark() -> None:
    obj = pod({**INJECT, "gossamer.io/connect-service-upstreams": "db:5432, cache:6379"})
    sent = review(obj)
    response = respond(sent)
    assert response["allowed"] is True and response["patchType"] == "JSONPatch"
    out = patched(obj, response)
    valid_k8s(out)
    assert names(out) == ["web", "gossamer-sidecar"]
    assert names(out, "initContainers") == ["gossamer-init"]
    assert out["metadata"]["annotations"]["gossamer.io/injected"] == "true"
    init = out["spec"]["initContainers"][0]
    assert init["command"] == ["gossamer", "k8s", "register", "--service", "web"]
    assert init["args"] == ["--port", "8080", "--sidecar-port", "21000",
                            "--upstreams", "db:5432,cache:6379"]  # fmt: skip
    sidecar = out["spec"]["containers"][1]
    assert sidecar["command"][-1] == "$(POD_NAME)-$(POD_NAMESPACE)-web"
    assert sidecar["image"] == SETTINGS.image
    env = {e["name"]: e for e in sidecar["env"]}
    assert env["HOST_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    assert env["GOSSAMER_HTTP_ADDR"]["value"] == "$(HOST_IP):8500"
    token = env["CONSUL_HTTP_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token == {"name": "gossamer-acl-default", "key": "token", "optional": True}
    assert sidecar["lifecycle"]["preStop"]["exec"]["command"][:3] == [
        "gossamer",
        "k8s",
        "deregister",
    ]
    # a second pass (reinvocation) over the patched pod changes nothing
    again = respond(review(out))
    assert "patch" not in again and "already injected" in again["status"]["message"]


def test_an_agent_serving_only_https_is_dialled_over_https_and_verified() -> None:
    https = InjectorSettings(agent_http_port=8501, agent_https=True, agent_ca_file="/ca/root.pem")
    obj = pod(INJECT)
    out = patched(obj, respond(review(obj), https))
    env = {e["name"]: e for e in out["spec"]["containers"][1]["env"]}
    assert env["GOSSAMER_HTTP_ADDR"]["value"] == "https://$(HOST_IP):8501"
    assert env["CONSUL_CACERT"]["value"] == "/ca/root.pem"


def test_several_containers_and_init_containers_keep_their_order() -> None:
    app = [
        {"name": "api", "image": "api:1", "ports": [{"containerPort": 9000}]},
        {"name": "logs", "image": "fluent:1"},
    ]
    inits = [{"name": "migrate", "image": "api:1"}]
    obj = pod({**INJECT, "gossamer.io/connect-service": "orders"}, app, inits)
    out = patched(obj, respond(review(obj)))
    valid_k8s(out)
    assert names(out) == ["api", "logs", "gossamer-sidecar"]
    assert names(out, "initContainers") == ["migrate", "gossamer-init"]
    assert out["spec"]["initContainers"][1]["args"][:2] == ["--port", "9000"]
    assert out["spec"]["containers"][:2] == app  # untouched


@pytest.mark.parametrize(
    ("obj", "why"),
    [
        (pod(None), "no gossamer.io/inject annotation"),
        (pod({"gossamer.io/inject": "false"}), '"false"'),
        (pod({**INJECT, "gossamer.io/injected": "true"}), "already injected"),
        (pod(INJECT, [{"name": "gossamer-sidecar", "image": "x"}]), "already injected"),
    ],
)
def test_pods_left_alone_say_why(obj: dict[str, Any], why: str) -> None:
    response = respond(review(obj))
    assert response["allowed"] is True and "patch" not in response
    assert why in response["status"]["message"]


@pytest.mark.parametrize(
    ("sent", "why"),
    [
        (review(pod(INJECT), namespace="kube-system"), "namespace 'kube-system' is never injected"),
        (review(pod(INJECT), operation="UPDATE"), "only CREATE is injected"),
        (review({"kind": "Service"}, kind="Service"), "a Service, not a Pod"),
        (review(None), "no pod in the request"),
    ],
)
def test_requests_not_ours_are_allowed_unchanged(sent: dict[str, Any], why: str) -> None:
    response = respond(sent)
    assert response["allowed"] is True and "patch" not in response
    assert why in response["status"]["message"]


def test_token_secret_follows_the_service_account_or_the_annotation() -> None:
    def secret(obj: dict[str, Any]) -> str:
        init = patched(obj, respond(review(obj)))["spec"]["initContainers"][0]
        env = {e["name"]: e for e in init["env"]}
        name: str = env["CONSUL_HTTP_TOKEN"]["valueFrom"]["secretKeyRef"]["name"]
        return name

    with_account = pod(INJECT)
    with_account["spec"]["serviceAccountName"] = "web-sa"
    assert secret(with_account) == "gossamer-acl-web-sa"
    assert secret(pod({**INJECT, "gossamer.io/acl-token-secret": "my-token"})) == "my-token"
    bad = respond(review(pod({**INJECT, "gossamer.io/acl-token-secret": "Not_A_Name"})))
    assert bad["warnings"] == ["gossamer.io/acl-token-secret: 'Not_A_Name' is not a Secret name"]


def test_only_selected_namespaces_are_injected() -> None:
    only = InjectorSettings(only_namespaces=frozenset({"shop"}))
    assert "patch" in respond(review(pod(INJECT), namespace="shop"), only)
    other = respond(review(pod(INJECT), namespace="blog"), only)
    assert "patch" not in other and "'blog' is not selected" in other["status"]["message"]


def test_pod_from_a_replicaset_has_no_name_yet_and_is_injected() -> None:
    # The API server sends controller-made pods before the name is generated:
    # the containers learn their pod's name at run time (downward API).
    obj = pod(INJECT)
    del obj["metadata"]["name"], obj["metadata"]["namespace"]
    obj["metadata"]["generateName"] = "web-7d9f-"
    sent = review(obj)
    sent["request"]["name"] = ""
    out = patched(obj, respond(sent))
    valid_k8s(out)
    assert out["spec"]["containers"][1]["command"][-1] == "$(POD_NAME)-$(POD_NAMESPACE)-web"


def test_dry_run_gets_the_same_patch() -> None:
    obj = pod(INJECT)
    wet, dry = respond(review(obj)), respond(review(obj, dry_run=True))
    assert patched(obj, wet) == patched(obj, dry)


MALFORMED = {
    "gossamer.io/inject": "yes",
    "gossamer.io/connect-service-port": "http",
    "gossamer.io/connect-service-upstreams": "db:5432,cache,db2:5432,bad name:1,x:99999",
}


def test_malformed_annotations_admit_uninjected_with_one_warning_each() -> None:
    response = respond(review(pod(MALFORMED)))
    assert response["allowed"] is True and "patch" not in response
    assert response["warnings"] == [
        'gossamer.io/inject: must be "true" or "false", got \'yes\'',
        "gossamer.io/connect-service-port: must be a port number 1-65535",
        "gossamer.io/connect-service-upstreams: 'cache': expected NAME:PORT",
        "gossamer.io/connect-service-upstreams: 'db2:5432': local port 5432 is used by "
        "another upstream",
        "gossamer.io/connect-service-upstreams: 'bad name:1': 'bad name' is not a service name",
        "gossamer.io/connect-service-upstreams: 'x:99999': port must be 1-65535",
    ]
    assert response["status"]["message"].startswith("not injected: gossamer.io/inject:")


def test_malformed_refused_when_configured() -> None:
    strict = InjectorSettings(deny_malformed=True)
    response = respond(review(pod(MALFORMED)), strict)
    assert response["allowed"] is False and response["status"]["code"] == 400
    assert "connect-service-port" in response["status"]["message"]


def test_pod_without_port_or_name_is_malformed_not_crashed() -> None:
    decision = decide(pod(INJECT, [{"name": "-", "image": "x"}]))
    assert isinstance(decision, Malformed)
    assert len(decision.problems) == 2, decision.problems


def test_proxy_workers_annotation_reaches_the_sidecar_command() -> None:
    obj = pod({**INJECT, "gossamer.io/proxy-workers": "auto"})
    out = patched(obj, respond(review(obj)))
    valid_k8s(out)
    assert out["spec"]["containers"][1]["command"][-2:] == ["--workers", "auto"]
    plain = pod(INJECT)
    assert "--workers" not in patched(plain, respond(review(plain)))["spec"]["containers"][1][
        "command"]  # fmt: skip
    for bad in ("0", "65", "two", ""):
        decision = decide(pod({**INJECT, "gossamer.io/proxy-workers": bad}))
        assert decision == Malformed((f'gossamer.io/proxy-workers: must be 1 to 64 or "auto", '
                                      f"got {bad!r}",))  # fmt: skip


def test_decide_plan_and_skip_values() -> None:
    plan = decide(pod({**INJECT, "gossamer.io/connect-service-upstreams": " db:5432 ,"}))
    assert plan == Plan("web", 8080, (Upstream("db", 5432),))
    assert isinstance(decide({"metadata": "junk"}), Skip)


def test_registration_definition_is_service_with_sidecar() -> None:
    body = definition(Plan("web", 8080, (Upstream("db", 5432),)), pod="web-1", namespace="shop",
                      address="fd00::5")  # fmt: skip
    assert body["ID"] == "web-1-shop-web" and body["Check"]["TCP"] == "[fd00::5]:21000"
    assert body["Connect"]["SidecarService"] == {
        "Port": 21000,
        "Proxy": {"Upstreams": [{"DestinationName": "db", "LocalBindPort": 5432}]},
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"\xff\xfe", "body: not JSON"),
        (b"[]", "body: not a JSON object"),
        (b'{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"}', "apiVersion"),
        (b'{"apiVersion": "admission.k8s.io/v1", "kind": "Pod"}', "kind"),
        (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}', "request:"),
        (b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}', "uid"),
    ],
)
def test_unanswerable_bodies_name_the_field(body: bytes, field: str) -> None:
    with pytest.raises(ReviewError, match=field):
        parse_review(body)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_keys = st.sampled_from(["apiVersion", "kind", "request", "uid", "object", "metadata", "spec",
                         "annotations", "containers", "ports", "containerPort", "name",
                         "namespace", "operation", "gossamer.io/inject"])  # fmt: skip
_shaped = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 70000)
    | st.sampled_from(
        ["admission.k8s.io/v1", "AdmissionReview", "Pod", "CREATE", "true", "db:5432", "x"]
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=64), _json.map(json.dumps).map(str.encode),
                 _shaped.map(json.dumps).map(str.encode),
                 _shaped.map(lambda o: json.dumps(review(o)).encode())))  # fmt: skip
def test_fuzz_review_parser_answers_or_raises_the_one_error(body: bytes) -> None:
    try:
        request = parse_review(body)
    except ReviewError:
        return
    got = answer(request, SETTINGS)
    assert got["response"]["uid"] == request.uid
    assert isinstance(got["response"]["allowed"], bool)
