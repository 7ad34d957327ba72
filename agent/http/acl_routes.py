"""`/v1/acl/*`: bootstrap, tokens and policies, as Consul's API has them.

With ACLs off (no AclAccess installed) every call answers 401 `ACL support
disabled`, as Consul does; clients key on it (py-consul raises ACLDisabled).

Permissions, as Consul documents them: reading tokens or policies needs
`acl = "read"`, changing them `acl = "write"`; `token/self` needs only a
token; bootstrap needs nothing, and works once. A token or policy that
does not exist answers 403 `ACL not found`, as Consul's does.

Bootstrap again (Consul's reset procedure): the 403 names the reset index;
write that number into `<data_dir>/acl-bootstrap-reset` on the agent you
call and bootstrap there once more.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from gossamer.agent.acl.api_bodies import (
    AclBodyError,
    policy_json,
    random_id,
    read_policy,
    read_token,
    token_json,
)
from gossamer.agent.acl.authorize import MANAGEMENT_POLICY_ID
from gossamer.agent.acl.identities import identities_json
from gossamer.agent.acl.resolve import AclDisabled, AclNotFound, PermissionDenied
from gossamer.agent.acl.rules import Access
from gossamer.agent.acl.tokens import ANONYMOUS_ACCESSOR, POLICY, TOKEN, Token
from gossamer.agent.http.acl_access import AclAccess, acl_of, identity_of, require
from gossamer.agent.http.render import json_response, read_json

ACL_DISABLED = "ACL support disabled"
RESET_FILE = "acl-bootstrap-reset"


def acl_access(request: web.Request, need: Access | None = None) -> AclAccess:
    """The ACL state, after checking `acl:<need>`; AclDisabled (401) with ACLs off."""
    access = acl_of(request)
    if access is None:
        raise AclDisabled(ACL_DISABLED)
    if need is not None:
        require(request, "acl", "", need)
    return access


async def acl_disabled(request: web.Request) -> web.Response:
    """Any other ACL path: 401 with ACLs off (Consul's answer), 404 with them on."""
    if acl_of(request) is not None:
        raise web.HTTPNotFound()
    return web.Response(status=401, text=ACL_DISABLED)


def _reset_allowed(access: AclAccess, reset_index: int) -> bool:
    """Consul's reset: the file holds the reset index the refusal named; used once."""
    if access.data_dir is None:
        return False
    path = Path(access.data_dir) / RESET_FILE
    try:
        ok = path.read_text().strip() == str(reset_index)
    except OSError:
        return False
    if ok:
        path.unlink(missing_ok=True)
    return ok


async def bootstrap(request: web.Request) -> web.Response:
    access = acl_access(request)
    held = access.store.state.bootstrap
    reset_index = int(held.get("ResetIndex", 0)) if held else 0
    if held is not None and not _reset_allowed(access, reset_index):
        raise PermissionDenied(
            f"Permission denied: ACL bootstrap no longer allowed (reset index: {reset_index})"
        )
    body = await read_json(request) if request.can_read_body else None
    secret = body.get("BootstrapSecret") if isinstance(body, dict) else None
    made = read_token(
        {"Description": "Bootstrap Token (Global Management)", "SecretID": secret,
         "Policies": [{"ID": MANAGEMENT_POLICY_ID}]},
        access.store.state, now=access.now(), datacenter=access.datacenter, new_id=random_id,
    )  # fmt: skip
    if access.bootstrap_guard is not None:  # at most one bootstrap wins (acl/bootstrap_race.py)
        verdict = await access.bootstrap_guard(reset_index + 1)
        if not verdict.won:
            raise PermissionDenied(f"Permission denied: ACL bootstrap refused: {verdict.reason}")
    try:
        access.store.put_token(made.token)
        access.store.mark_bootstrapped(made.token.accessor, reset_index + 1)
    finally:
        access.store.bootstrap_lock.end()
    return json_response(
        token_json(made.token, access.store.state, made.secret, access.store.index)
    )


def _held_token(access: AclAccess, accessor: str) -> Token:
    token = access.store.state.tokens.get(accessor)
    if token is None:
        raise AclNotFound()
    return token


async def token_create(request: web.Request) -> web.Response:
    access = acl_access(request, Access.WRITE)
    made = read_token(
        await read_json(request), access.store.state, now=access.now(),
        datacenter=access.datacenter, new_id=random_id,
    )  # fmt: skip
    access.store.put_token(made.token)
    return json_response(
        token_json(made.token, access.store.state, made.secret, access.store.index)
    )


async def token_self(request: web.Request) -> web.Response:
    access = acl_access(request)
    identity = identity_of(request)
    if identity.token is None:
        anonymous = Token(ANONYMOUS_ACCESSOR, "", description="Anonymous Token")
        return json_response(token_json(anonymous, access.store.state))
    return json_response(token_json(identity.token, access.store.state, index=access.store.index))


async def token_read(request: web.Request) -> web.Response:
    access = acl_access(request, Access.READ)
    token = _held_token(access, request.match_info["accessor"])
    return json_response(token_json(token, access.store.state, index=access.store.index))


async def token_update(request: web.Request) -> web.Response:
    access = acl_access(request, Access.WRITE)
    held = _held_token(access, request.match_info["accessor"])
    body = await read_json(request)
    if isinstance(body, dict) and body.get("AccessorID", held.accessor) != held.accessor:
        raise AclBodyError(["AccessorID: does not match the token in the path"])
    made = read_token(
        body, access.store.state, now=access.now(), datacenter=access.datacenter,
        new_id=random_id, held=held,
    )  # fmt: skip
    access.store.put_token(made.token)
    return json_response(token_json(made.token, access.store.state, index=access.store.index))


async def token_clone(request: web.Request) -> web.Response:
    access = acl_access(request, Access.WRITE)
    held = _held_token(access, request.match_info["accessor"])
    body = await read_json(request) if request.can_read_body else None
    description = body.get("Description") if isinstance(body, dict) else None
    made = read_token(
        {"Description": description or held.description, "Local": held.local,
         "Policies": [{"ID": p} for p in held.policies],
         "ServiceIdentities": identities_json(held.service_identities)},
        access.store.state, now=access.now(), datacenter=access.datacenter, new_id=random_id,
    )  # fmt: skip
    access.store.put_token(made.token)
    return json_response(
        token_json(made.token, access.store.state, made.secret, access.store.index)
    )


async def token_delete(request: web.Request) -> web.Response:
    access = acl_access(request, Access.WRITE)
    _held_token(access, request.match_info["accessor"])
    access.store.delete(TOKEN + request.match_info["accessor"])
    return json_response(True)


async def token_list(request: web.Request) -> web.Response:
    access = acl_access(request, Access.READ)
    state = access.store.state
    policy = request.query.get("policy")
    tokens = [t for t in state.tokens.values() if policy is None or policy in t.policies]
    rows = [token_json(t, state, index=access.store.index) for t in tokens]
    return json_response(sorted(rows, key=lambda r: str(r["AccessorID"])))


def _held_policy(access: AclAccess, policy_id: str) -> Any:
    policy = access.store.state.policies.get(policy_id)
    if policy is None:
        raise AclNotFound()
    return policy


def _not_builtin(policy_id: str) -> None:
    if policy_id == MANAGEMENT_POLICY_ID:
        raise AclBodyError(["ID: the builtin global-management policy cannot be changed"])


async def policy_create(request: web.Request) -> web.Response:
    access = acl_access(request, Access.WRITE)
    policy = read_policy(await read_json(request), access.store.state, random_id)
    access.store.put_policy(policy)
    return json_response(policy_json(policy, access.store.index))


async def policy_read(request: web.Request) -> web.Response:
    access = acl_access(request, Access.READ)
    policy = _held_policy(access, request.match_info["policy_id"])
    return json_response(policy_json(policy, access.store.index))


async def policy_read_by_name(request: web.Request) -> web.Response:
    access = acl_access(request, Access.READ)
    policy_id = access.store.state.by_name.get(request.match_info["name"], "")
    return json_response(policy_json(_held_policy(access, policy_id), access.store.index))


async def policy_update(request: web.Request) -> web.Response:
    access = acl_access(request, Access.WRITE)
    policy_id = request.match_info["policy_id"]
    _not_builtin(policy_id)
    _held_policy(access, policy_id)
    policy = read_policy(await read_json(request), access.store.state, random_id, policy_id)
    access.store.put_policy(policy)
    return json_response(policy_json(policy, access.store.index))


async def policy_delete(request: web.Request) -> web.Response:
    access = acl_access(request, Access.WRITE)
    policy_id = request.match_info["policy_id"]
    _not_builtin(policy_id)
    _held_policy(access, policy_id)
    access.store.delete(POLICY + policy_id)
    return json_response(True)


async def policy_list(request: web.Request) -> web.Response:
    access = acl_access(request, Access.READ)
    policies = sorted(access.store.state.policies.values(), key=lambda p: p.name)
    return json_response([policy_json(p, access.store.index) for p in policies])


def add_acl_routes(router: web.UrlDispatcher) -> None:
    router.add_put("/v1/acl/bootstrap", bootstrap)
    router.add_put("/v1/acl/token", token_create)
    router.add_get("/v1/acl/token/self", token_self)
    router.add_put("/v1/acl/token/{accessor}/clone", token_clone)
    router.add_get("/v1/acl/token/{accessor}", token_read)
    router.add_put("/v1/acl/token/{accessor}", token_update)
    router.add_delete("/v1/acl/token/{accessor}", token_delete)
    router.add_get("/v1/acl/tokens", token_list)
    router.add_put("/v1/acl/policy", policy_create)
    router.add_get("/v1/acl/policy/name/{name}", policy_read_by_name)
    router.add_get("/v1/acl/policy/{policy_id}", policy_read)
    router.add_put("/v1/acl/policy/{policy_id}", policy_update)
    router.add_delete("/v1/acl/policy/{policy_id}", policy_delete)
    router.add_get("/v1/acl/policies", policy_list)
    router.add_route("*", "/v1/acl/{rest:.*}", acl_disabled)
    router.add_route("*", "/v1/agent/token/{rest:.*}", acl_disabled)
