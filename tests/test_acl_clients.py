"""The proxy's and the TUI's HTTP clients send the ACL token they are given."""

from __future__ import annotations

import pytest
from aiohttp import web

from gossamer.intentions.tui.client import AgentApi
from gossamer.proxy.agent_http import TOKEN_ENV, AgentHttp
from tests.harness.http_app import ServeApp


async def echo_token(request: web.Request) -> web.Response:
    return web.json_response({"token": request.headers.get("X-Consul-Token", "")})


def echo_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/v1/echo", echo_token)
    return app


async def test_proxy_client_sends_the_token_from_its_environment(
    serve_app: ServeApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = await serve_app(echo_app())
    monkeypatch.setenv(TOKEN_ENV, "proxy-secret")
    assert (await AgentHttp(served.base).get_json("/v1/echo"))["token"] == "proxy-secret"
    injected = AgentHttp(served.base, token="x\r\nX-Evil: 1")
    assert (await injected.get_json("/v1/echo"))["token"] == "xX-Evil: 1"
    monkeypatch.delenv(TOKEN_ENV)
    assert (await AgentHttp(served.base).get_json("/v1/echo"))["token"] == ""


async def test_tui_client_sends_its_token(serve_app: ServeApp) -> None:
    served = await serve_app(echo_app())
    api = AgentApi(served.base, "tui-secret")
    try:
        answer, _ = await api.call("GET", "/v1/echo")
    finally:
        await api.close()
    assert answer == {"token": "tui-secret"}
