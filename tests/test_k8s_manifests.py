"""The manifests in kubernetes/, checked without a cluster (none can run here).

Each document is validated strictly against the Kubernetes 1.30 OpenAPI
schemas (kubernetes-validate); the agent's command line and ConfigMap are
loaded by the agent's own config loader; the example app's pod, run through
the injector, is still a valid Pod; and the pieces that must agree (the
webhook's Service, path and port, the injector's flags) do. What only a
real cluster would show: scheduling, DNS of the headless Service, the API
server calling the webhook, probes and the kubelet's signals.
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from gossamer.agent.cli.main import build_parser
from gossamer.agent.config.load import load_agent_config
from gossamer.agent.k8s.patch import InjectorSettings
from gossamer.agent.k8s.review import answer, parse_review
from gossamer.agent.k8s.server import make_app
from tests.k8s_support import check_response, expand, patched, review, valid_k8s

DIR = Path(__file__).resolve().parent.parent / "kubernetes"
KEY = "NYGpMh1Gy6mkR/sYjJowzi2P+zIb223h07T0IdPOyXA="


def documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(DIR.glob("*.yaml")):
        docs += [(f"{path.name}:{d['kind']}/{d['metadata']['name']}", d)
                 for d in yaml.safe_load_all(path.read_text()) if d]  # fmt: skip
    return docs


DOCS = documents()


def one(kind: str, name: str) -> dict[str, Any]:
    found = [d for _, d in DOCS if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name)
    return found[0]


def test_every_kind_the_issue_asks_for_is_there() -> None:
    kinds = {d["kind"] for _, d in DOCS}
    wanted = {"Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "DaemonSet",
              "Service", "Deployment", "MutatingWebhookConfiguration"}  # fmt: skip
    assert kinds >= wanted


@pytest.mark.parametrize(("name", "doc"), DOCS, ids=[n for n, _ in DOCS])
def test_manifest_is_valid_kubernetes(name: str, doc: dict[str, Any]) -> None:
    valid_k8s(doc)


def test_webhook_with_a_real_ca_bundle_is_valid(tmp_path: Path) -> None:
    hook = copy.deepcopy(one("MutatingWebhookConfiguration", "gossamer-injector"))
    bundle = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n...\n").decode()
    hook["webhooks"][0]["clientConfig"]["caBundle"] = bundle
    valid_k8s(hook)


def test_agent_command_line_and_configmap_load_with_the_agents_own_loader(tmp_path: Path) -> None:
    config_dir = tmp_path / "gossamer.d"
    config_dir.mkdir()
    for name, text in one("ConfigMap", "gossamer-agent-config")["data"].items():
        (config_dir / name).write_text(text)
    pod = one("DaemonSet", "gossamer-agent")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {"NODE_NAME": "node-a", "HOST_IP": "10.0.0.7", "GOSSIP_KEY": KEY}
    argv = [expand(a, env) for a in container["command"][1:] + container["args"]]
    argv = [a.replace("/etc/gossamer.d", str(config_dir)) for a in argv]
    config = load_agent_config(build_parser().parse_args(argv))
    assert (config.node, config.bind, config.client) == ("node-a", "10.0.0.7", "10.0.0.7")
    assert config.retry_join == ("gossamer-agent.gossamer.svc.cluster.local:8301",)
    assert config.leave_on_terminate is True
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts[str(config.data_dir)]]["hostPath"]["path"] == str(config.data_dir)
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert container["readinessProbe"]["httpGet"] == {"path": "/v1/agent/self", "port": 8500}
    # the measured leave takes ~3 s; the grace period must cover it with room
    assert pod["terminationGracePeriodSeconds"] >= 10
    ports = {(p["containerPort"], p["protocol"]) for p in container["ports"]}
    assert {(8301, "TCP"), (8301, "UDP"), (8300, "TCP"), (8500, "TCP")} <= ports


def test_webhook_injector_and_service_agree() -> None:
    hook = one("MutatingWebhookConfiguration", "gossamer-injector")["webhooks"][0]
    assert hook["failurePolicy"] == "Ignore" and hook["timeoutSeconds"] <= 10
    assert hook["sideEffects"] == "None" and hook["admissionReviewVersions"] == ["v1"]
    target = hook["clientConfig"]["service"]
    service = one("Service", target["name"])
    assert service["metadata"]["namespace"] == target["namespace"]
    assert [p["port"] for p in service["spec"]["ports"]] == [target["port"]]
    app = make_app(InjectorSettings())
    routes = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert target["path"] in routes
    deployment = one("Deployment", "gossamer-injector")["spec"]["template"]["spec"]
    container = deployment["containers"][0]
    args = build_parser().parse_args(container["command"][1:] + container["args"])
    assert args.listen.endswith(f":{service['spec']['ports'][0]['targetPort']}")
    assert Path(args.tls_cert).parent.as_posix() == container["volumeMounts"][0]["mountPath"]
    excluded = hook["namespaceSelector"]["matchExpressions"][0]["values"]
    assert set(InjectorSettings().skip_namespaces) <= set(excluded)


def test_example_app_pod_injected_is_a_valid_pod() -> None:
    template = one("Deployment", "web")["spec"]["template"]
    obj = {"apiVersion": "v1", "kind": "Pod", **copy.deepcopy(template)}
    sent = review(obj, namespace="default")
    out = patched(obj, check_response(sent, answer_review(sent)))
    valid_k8s(out)
    init = out["spec"]["initContainers"][0]
    assert init["args"] == ["--port", "80", "--sidecar-port", "21000", "--upstreams", "db:5432"]


def answer_review(sent: dict[str, Any]) -> dict[str, Any]:
    settings = InjectorSettings(image="gossamer:0.1.0")
    return answer(parse_review(json.dumps(sent).encode()), settings)


def test_the_image_copies_what_its_stages_run_and_points_at_the_compiled_build() -> None:
    """Docker cannot run here: the Dockerfile is read. Each COPY's sources exist; the native
    stage has build_native.py and every script its profile trains on; the final stage points
    GOSSAMER_NATIVE_DIR at the build it copies from that stage."""
    from scripts.build_native import TRAINING

    root = DIR.parent
    stages: dict[str, set[str]] = {}
    bases: dict[str, str] = {}
    stage, env, copied_build = "", {}, ""
    for line in (DIR / "Dockerfile").read_text().splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "FROM":
            stage = words[3] if len(words) > 3 else "final"
            stages[stage], bases[stage] = set(), words[1]
        elif words[0] == "COPY" and words[1].startswith("--from="):
            copied_build = words[-1]
        elif words[0] == "COPY":
            for source in words[1:-1]:
                assert (root / source).exists(), f"COPY {source}: not in the repository"
                stages[stage].add(source)
        elif words[0] == "ENV":
            name, _, value = words[1].partition("=")
            env[name] = value
    assert set(stages) == {"source", "native", "final"}
    needed = {"scripts/build_native.py", "proxy", *(argv[0] for argv, _ in TRAINING)}
    assert bases["native"] == bases["final"] == "source"
    built_from = stages["source"] | stages["native"]
    assert needed <= built_from, needed - built_from
    assert copied_build and env.get("GOSSAMER_NATIVE_DIR") == copied_build
