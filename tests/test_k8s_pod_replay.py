"""Two injected pods replayed on a real agent: the patch's own commands, run as a kubelet would.

No kubelet runs here, so this test stands in for it, and only for what the
kubelet itself does: it resolves the injected env (downward API fields,
then `$(VAR)` in values, in order), expands `$(VAR)` in command and args
(not in hook commands), runs the init container to completion, then the
sidecar, and on termination the preStop hook and SIGTERM. Everything it
runs is the injector's patch output, unchanged; agent, proxies and apps are
real. Both "pods" share this host's loopback (each has its own network
namespace in a cluster), so each gets its own sidecar port and app port.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gossamer.agent.k8s.patch import InjectorSettings
from gossamer.agent.k8s.review import answer, parse_review
from tests.harness.cli import cli_env
from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.k8s_support import expand, patched, pod, review
from tests.proxy_support import App, healthy_sidecars, listening, roundtrip, set_intention


class Kubelet:
    """Runs one pod's injected containers the way the kubelet would (see the module docstring)."""

    def __init__(self, obj: dict[str, Any], fields: dict[str, str], logs: Path) -> None:
        self.pod = obj
        self.fields = fields  # fieldPath -> value (the downward API)
        self.logs = logs
        self.sidecar: subprocess.Popen[bytes] | None = None

    def _container(self, key: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = next(c for c in self.pod["spec"][key] if c["name"] == name)
        return found

    def _env(self, container: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        for item in container["env"]:
            source = item.get("valueFrom", {})
            if "secretKeyRef" in source:  # no such Secret here: optional, so left unset
                assert source["secretKeyRef"]["optional"] is True
            elif "fieldRef" in source:
                env[item["name"]] = self.fields[source["fieldRef"]["fieldPath"]]
            else:
                env[item["name"]] = expand(item["value"], env)
        return env

    def _argv(self, words: list[str], env: dict[str, str] | None) -> list[str]:
        words = [expand(w, env) for w in words] if env is not None else list(words)
        assert words[0] == "gossamer"  # the image's entry point
        return [sys.executable, "-m", "gossamer.agent", *words[1:]]

    def run_init(self) -> subprocess.CompletedProcess[str]:
        c = self._container("initContainers", "gossamer-init")
        env = self._env(c)
        argv = self._argv(c["command"] + c.get("args", []), env)
        return subprocess.run(argv, env=cli_env(env=env), capture_output=True, text=True,
                              timeout=60)  # fmt: skip

    def start_sidecar(self) -> None:
        c = self._container("containers", "gossamer-sidecar")
        env = self._env(c)
        with (self.logs / f"{self.fields['metadata.name']}.log").open("ab") as log:
            self.sidecar = subprocess.Popen(
                self._argv(c["command"] + c.get("args", []), env), env=cli_env(env=env),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def terminate(self) -> tuple[subprocess.CompletedProcess[str], int]:
        """preStop (no $(VAR) expansion in hooks), then SIGTERM; the hook's result and exit code."""
        c = self._container("containers", "gossamer-sidecar")
        env = self._env(c)
        hook = self._argv(c["lifecycle"]["preStop"]["exec"]["command"], None)
        done = subprocess.run(hook, env=cli_env(env=env), capture_output=True, text=True,
                              timeout=60)  # fmt: skip
        assert self.sidecar is not None
        self.sidecar.send_signal(signal.SIGTERM)
        return done, self.sidecar.wait(30)

    def kill(self) -> None:
        if self.sidecar is not None and self.sidecar.poll() is None:
            self.sidecar.kill()
            self.sidecar.wait(5)


def injected(obj: dict[str, Any], settings: InjectorSettings) -> dict[str, Any]:
    sent = review(obj)
    response = answer(parse_review(json.dumps(sent).encode()), settings)["response"]
    return patched(obj, response)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProc]:
    cluster = Cluster(tmp_path)
    try:
        node = cluster.new_agent("k8s-node").start()
        eventually(node.enrolled, 20, what="the agent's certificate")
        yield node
    finally:
        leftovers = cluster.close()
    assert not leftovers, f"processes left behind: {leftovers}"


def test_two_injected_pods_talk_through_the_mesh_and_leave_the_catalog(
    agent: AgentProc, tmp_path: Path
) -> None:
    db_app = App("127.0.0.1").start()  # the db pod's app, on the pod's loopback
    up_port = free_port("127.0.0.1")
    db_pod = pod({"gossamer.io/inject": "true", "gossamer.io/connect-service": "db"},
                 [{"name": "db", "image": "db:1", "ports": [{"containerPort": db_app.port}]}],
                 name="db-0")  # fmt: skip
    upstreams = {"gossamer.io/connect-service-upstreams": f"db:{up_port}"}
    web_pod = pod({"gossamer.io/inject": "true", **upstreams}, name="web-1")
    kubelets = []
    for obj in (db_pod, web_pod):
        settings = InjectorSettings(agent_http_port=agent.http_port,
                                    sidecar_port=free_port(agent.ip))  # fmt: skip
        fields = {"status.hostIP": agent.ip, "status.podIP": agent.ip,
                  "metadata.name": obj["metadata"]["name"],
                  "metadata.namespace": "shop"}  # fmt: skip
        kubelets.append(Kubelet(injected(obj, settings), fields, tmp_path))
    try:
        set_intention(agent, "web", "db", "allow")
        for kubelet in kubelets:
            init = kubelet.run_init()
            assert init.returncode == 0, init.stderr
            kubelet.start_sidecar()
        assert set(agent.get("/v1/agent/services")) >= {
            "db-0-shop-db", "db-0-shop-db-sidecar-proxy", "web-1-shop-web",
            "web-1-shop-web-sidecar-proxy"}  # fmt: skip
        eventually(lambda: listening("127.0.0.1", up_port), 30, what="web's upstream listener")
        eventually(lambda: healthy_sidecars(agent, "db") == 1, 30, what="db's sidecar passing")

        def through() -> bytes:
            got = roundtrip(("127.0.0.1", up_port), b"hello db")
            assert got, "closed without an answer"
            return got

        assert eventually(through, 20, what="web -> db through both sidecars") == b"hello db<eof>"
        for kubelet in reversed(kubelets):
            hook, code = kubelet.terminate()
            assert hook.returncode == 0 and "Deregistered service" in hook.stdout, hook.stderr
            assert code == 0
        assert agent.get("/v1/agent/services").keys() <= {"consul"}
    finally:
        for kubelet in kubelets:
            kubelet.kill()
        db_app.stop()
