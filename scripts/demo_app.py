"""The demo's app: a web front end that calls two backends, each its own process.

Shaped like Linkerd's emojivoto so the two demos compare side by side:
`web` renders a page from `emoji` (the list to vote on) and `voting` (the
leaderboard), and takes votes. It reaches both only through its sidecar's
upstream listeners; when one backend fails (its connection refused or cut,
as a deny does) the page still renders, with that half marked unavailable:
the front end degrades instead of failing, which is what a deny should look
like to a user. `GET /api/status` says which half works, for scripts.

    python -m scripts.demo_app web --listen IP:PORT --emoji 127.0.0.1:P --voting 127.0.0.1:P
    python -m scripts.demo_app emoji --listen 127.0.0.1:P
    python -m scripts.demo_app voting --listen 127.0.0.1:P
"""

from __future__ import annotations

import argparse
import html
from collections import Counter
from typing import Any

import aiohttp
from aiohttp import web

EMOJI = {"rocket": "🚀", "owl": "🦉", "taco": "🌮", "cactus": "🌵", "octopus": "🐙"}
CALL_TIMEOUT_S = 2.0


def emoji_app() -> web.Application:
    async def listing(_: web.Request) -> web.Response:
        return web.json_response(EMOJI)

    app = web.Application()
    app.router.add_get("/list", listing)
    return app


def voting_app() -> web.Application:
    votes: Counter[str] = Counter()

    async def leaderboard(_: web.Request) -> web.Response:
        return web.json_response(dict(votes.most_common()))

    async def vote(request: web.Request) -> web.Response:
        votes[request.match_info["name"]] += 1
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/leaderboard", leaderboard)
    app.router.add_post("/vote/{name}", vote)
    return app


async def _call(session: aiohttp.ClientSession, method: str, url: str) -> tuple[bool, Any]:
    """(True, JSON) or (False, what went wrong): a failing backend is a value here."""
    try:
        async with session.request(method, url) as resp:
            if resp.status != 200:
                return False, f"HTTP {resp.status}"
            return True, await resp.json()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def web_app(emoji: str, voting: str) -> web.Application:
    timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT_S)

    async def fetch_both() -> dict[str, tuple[bool, Any]]:
        async with aiohttp.ClientSession(timeout=timeout) as s:  # no pooling: each call is new
            return {
                "emoji": await _call(s, "GET", f"http://{emoji}/list"),
                "voting": await _call(s, "GET", f"http://{voting}/leaderboard"),
            }

    async def status(_: web.Request) -> web.Response:
        got = await fetch_both()
        return web.json_response(
            {name: {"ok": ok, "detail": "" if ok else body} for name, (ok, body) in got.items()}
        )

    async def page(_: web.Request) -> web.Response:
        got = await fetch_both()
        return web.Response(text=_render(got), content_type="text/html")

    async def vote(request: web.Request) -> web.Response:
        async with aiohttp.ClientSession(timeout=timeout) as s:
            ok, body = await _call(s, "POST", f"http://{voting}/vote/{request.match_info['name']}")
        if not ok:
            return web.Response(status=502, text=f"voting unavailable: {body}")
        raise web.HTTPSeeOther("/")

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/api/status", status)
    app.router.add_post("/vote/{name}", vote)
    return app


def _render(got: dict[str, tuple[bool, Any]]) -> str:
    emoji_ok, emoji = got["emoji"]
    voting_ok, board = got["voting"]
    if emoji_ok:
        buttons = "".join(
            f'<form method="post" action="/vote/{html.escape(k)}" style="display:inline">'
            f'<button style="font-size:2em">{html.escape(v)}</button></form>'
            for k, v in emoji.items()
        )
    else:
        buttons = f'<p class="down">emoji service unavailable: {html.escape(str(emoji))}</p>'
    if voting_ok:
        rows = "".join(f"<li>{html.escape(k)}: {n}</li>" for k, n in board.items())
        leaderboard = f"<ol>{rows or '<li>no votes yet</li>'}</ol>"
    else:
        leaderboard = f'<p class="down">voting service unavailable: {html.escape(str(board))}</p>'
    return (
        "<!doctype html><title>gossamer demo</title>"
        "<style>body{font-family:sans-serif;margin:2em}.down{color:#b00}</style>"
        "<h1>Vote for your favourite emoji</h1>"
        f"<h2>emoji</h2>{buttons}<h2>leaderboard</h2>{leaderboard}"
        "<p><small>web calls emoji and voting through its gossamer sidecar</small></p>"
    )


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="demo_app")
    parser.add_argument("role", choices=("web", "emoji", "voting"))
    parser.add_argument("--listen", required=True, metavar="IP:PORT")
    parser.add_argument("--emoji", metavar="IP:PORT", help="web: emoji's upstream listener")
    parser.add_argument("--voting", metavar="IP:PORT", help="web: voting's upstream listener")
    args = parser.parse_args(argv)
    if args.role == "web":
        if not (args.emoji and args.voting):
            parser.error("web needs --emoji and --voting")
        app = web_app(args.emoji, args.voting)
    else:
        app = emoji_app() if args.role == "emoji" else voting_app()
    host, port = _host_port(args.listen)
    web.run_app(app, host=host, port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
