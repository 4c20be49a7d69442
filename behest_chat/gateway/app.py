"""The gateway as a Starlette app: routes (contract §12), middleware and error handling.

Routes:

- ``POST /v1/auth/mint`` and ``POST /auth/v1/auth/mint``: API key → per-user JWT.
- ``GET /.well-known/jwks.json``: the gateway key and every registered tenant key.
- ``POST /v1/chat/completions``: see :mod:`behest_chat.gateway.chat`.
- ``GET /v1/models``.
- ``GET /v1/threads``, ``GET|DELETE /v1/threads/{id}``, ``GET /v1/threads/{id}/messages``.
- ``GET /v1/billing/usage`` and ``GET /v1/usage``: see :mod:`behest_chat.gateway.usage`.
- ``/_gateway/faults``, ``/_gateway/stats``, ``/_gateway/reset``: only with the fault switch
  on, loopback only; see :mod:`behest_chat.gateway.faults`.

Every response carries ``X-Trace-Id``; every error uses the nested envelope, including
unknown routes (404) and wrong methods (405).

Mint request ``{user_id, ttl?, tier?, session_id?, role?}`` (``role`` is ignored: minted
tokens are always ``user``). Response, the union of both documented shapes::

    {"jwt", "access_token", "token_type": "Bearer", "project_id", "ttl", "expires_in",
     "session_id"}

Minted claims, in order: ``tid, pid, uid, role, scp, iss, aud, iat, nbf, exp, jti, sid,
tier`` (tier as its numeric id).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from behest_chat.gateway.auth import bearer_token, match_api_key
from behest_chat.gateway.chat import chat_completions
from behest_chat.gateway.config import GatewayConfig
from behest_chat.gateway.cors import CORSMiddleware
from behest_chat.gateway.errors import GatewayError, error_response
from behest_chat.gateway.faults import MINT_PATH, FaultPlan, is_loopback
from behest_chat.gateway.requestlog import RequestLogMiddleware
from behest_chat.gateway.runtime import Gateway, read_json, wait_for_disconnect
from behest_chat.gateway.tiers import TIER_IDS, parse_tier
from behest_chat.gateway.usage import billing_usage, sdk_usage

__all__ = ["create_app"]

_TTL_MIN, _TTL_MAX, _TTL_DEFAULT = 60, 86_400, 3600
_MAX_ID_LENGTH = 255


def create_app(config: GatewayConfig) -> Starlette:
    """Build the gateway app.

    Args:
        config: validated settings (see :class:`GatewayConfig`).

    Returns:
        A Starlette app; its ``state.gateway`` is the live :class:`Gateway`.
    """
    gateway = Gateway(config)
    routes = [
        Route("/v1/auth/mint", mint, methods=["POST"]),
        Route("/auth/v1/auth/mint", mint, methods=["POST"]),
        Route("/.well-known/jwks.json", jwks, methods=["GET"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/threads", list_threads, methods=["GET"]),
        Route("/v1/threads/{thread_id}", thread, methods=["GET", "DELETE"]),
        Route("/v1/threads/{thread_id}/messages", thread_messages, methods=["GET"]),
        Route("/v1/billing/usage", billing_usage, methods=["GET"]),
        Route("/v1/usage", sdk_usage, methods=["GET"]),
    ]
    if config.faults_enabled:
        routes += [
            Route("/_gateway/faults", faults, methods=["POST", "DELETE"]),
            Route("/_gateway/stats", stats, methods=["GET"]),
            Route("/_gateway/reset", reset, methods=["POST"]),
        ]

    def count_response(path: str, status: int | None) -> None:
        if status != 404:  # unknown paths would let the counter grow without bound
            gateway.store.stats.requests_by_path[path] += 1
        if status is not None:
            gateway.store.stats.responses_by_status[status] += 1

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await gateway.startup()
        try:
            yield
        finally:
            await gateway.shutdown()

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestLogMiddleware, on_response=count_response),
            Middleware(CORSMiddleware, origins_for_host=gateway.origins_for_host),
        ],
        exception_handlers={GatewayError: _gateway_error, HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    return app


async def _gateway_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return exc.to_response()


async def _http_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: "no such route", 405: "method not allowed on this route"}
    return error_response(
        exc.status_code, messages.get(exc.status_code, exc.detail), headers=exc.headers
    )


async def mint(request: Request) -> Response:
    """Handle ``POST /v1/auth/mint`` (and the ``/auth/v1/auth/mint`` alias)."""
    gateway: Gateway = request.app.state.gateway
    config = gateway.config
    body = await read_json(request, config.max_body_bytes)
    plan = gateway.faults.take(MINT_PATH, streaming=False) if config.faults_enabled else None
    if plan is not None:
        if plan.stall_ms and await wait_for_disconnect(request.receive, plan.stall_ms / 1000):
            gateway.store.stats.client_disconnects += 1
            return Response(status_code=499)
        if plan.status is not None:
            raise plan.to_error()
    credential = bearer_token(request.headers.get("authorization"))
    project = match_api_key(credential, config.projects)
    if project is None:
        raise GatewayError(401, "API key is not recognised; mint needs a behest_sk_live_ key")
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise GatewayError(400, "request body must be a JSON object")
    user_id = body.get("user_id")
    if not isinstance(user_id, str) or not 1 <= len(user_id) <= _MAX_ID_LENGTH:
        raise GatewayError(400, "user_id: required, a string of 1-255 characters")
    if user_id in config.reserved_user_ids:
        raise GatewayError(400, f"user_id: {user_id!r} is reserved")
    ttl = body.get("ttl", _TTL_DEFAULT)
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not _TTL_MIN <= ttl <= _TTL_MAX:
        raise GatewayError(
            400, f"ttl: must be an integer between {_TTL_MIN} and {_TTL_MAX} seconds"
        )
    try:
        tier = parse_tier(body.get("tier"))
    except ValueError as exc:
        raise GatewayError(400, f"tier: {exc}") from None
    session_id = body.get("session_id")
    if session_id is None or session_id == "":
        session_id = str(uuid.uuid4())
    elif not isinstance(session_id, str) or len(session_id) > _MAX_ID_LENGTH:
        raise GatewayError(400, "session_id: must be a string of 1-255 characters")
    now = int(time.time())
    claims: dict[str, Any] = {
        "tid": project.tenant_id,
        "pid": project.project_id,
        "uid": user_id,
        "role": "user",
        "scp": [],
        "iss": config.issuer,
        "aud": config.audience,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": str(uuid.uuid4()),
        "sid": session_id,
        "tier": TIER_IDS[tier],
    }
    token = gateway.keyring.sign(claims)
    gateway.store.stats.mints += 1
    request.state.uid = user_id
    return JSONResponse(
        {
            "jwt": token,
            "access_token": token,
            "token_type": "Bearer",
            "project_id": project.project_id,
            "ttl": ttl,
            "expires_in": ttl,
            "session_id": session_id,
        },
        headers={"Cache-Control": "no-store"},
    )


async def jwks(request: Request) -> Response:
    """Handle ``GET /.well-known/jwks.json``."""
    gateway: Gateway = request.app.state.gateway
    return JSONResponse(gateway.keyring.jwks(), headers={"Cache-Control": "public, max-age=300"})


async def models(request: Request) -> Response:
    """Handle ``GET /v1/models``: the project's one model, OpenAI list shape."""
    gateway: Gateway = request.app.state.gateway
    gateway.authenticate(request)
    return JSONResponse(
        {
            "object": "list",
            "data": [
                {"id": gateway.model_id, "object": "model", "created": 0, "owned_by": "behest"}
            ],
        }
    )


async def list_threads(request: Request) -> Response:
    """Handle ``GET /v1/threads``: the token user's threads, most recent first."""
    gateway: Gateway = request.app.state.gateway
    principal = gateway.authenticate(request)
    return JSONResponse(
        [t.to_json() for t in gateway.store.threads(principal.project_id, principal.uid)]
    )


async def thread(request: Request) -> Response:
    """Handle ``GET`` and ``DELETE /v1/threads/{thread_id}``."""
    gateway: Gateway = request.app.state.gateway
    principal = gateway.authenticate(request)
    thread_id = request.path_params["thread_id"]
    if request.method == "DELETE":
        if not gateway.store.delete_thread(principal.project_id, principal.uid, thread_id):
            raise GatewayError(404, "thread not found")
        return Response(status_code=204)
    found = gateway.store.thread(principal.project_id, principal.uid, thread_id)
    if found is None:
        raise GatewayError(404, "thread not found")
    return JSONResponse(found.to_json())


async def thread_messages(request: Request) -> Response:
    """Handle ``GET /v1/threads/{thread_id}/messages``."""
    gateway: Gateway = request.app.state.gateway
    principal = gateway.authenticate(request)
    found = gateway.store.thread(
        principal.project_id, principal.uid, request.path_params["thread_id"]
    )
    if found is None:
        raise GatewayError(404, "thread not found")
    return JSONResponse([m.to_json() for m in found.messages])


def _require_loopback(request: Request) -> None:
    if not is_loopback(request.client.host if request.client else ""):
        raise GatewayError(404, "no such route")


async def faults(request: Request) -> Response:
    """Handle ``POST`` (queue a plan) and ``DELETE`` (clear) on ``/_gateway/faults``."""
    _require_loopback(request)
    gateway: Gateway = request.app.state.gateway
    if request.method == "DELETE":
        gateway.faults.clear()
        return Response(status_code=204)
    try:
        plan = FaultPlan.from_json(await read_json(request, gateway.config.max_body_bytes))
    except ValueError as exc:
        raise GatewayError(400, str(exc)) from None
    gateway.faults.add(plan)
    return JSONResponse({"pending": gateway.faults.describe()}, status_code=201)


async def stats(request: Request) -> Response:
    """Handle ``GET /_gateway/stats``."""
    _require_loopback(request)
    gateway: Gateway = request.app.state.gateway
    counters = gateway.store.stats
    return JSONResponse(
        {
            "mints": counters.mints,
            "chat_requests": counters.chat_requests,
            "streams_open": counters.streams_open,
            "streams_completed": counters.streams_completed,
            "streams_cut": counters.streams_cut,
            "client_disconnects": counters.client_disconnects,
            "upstream_requests": counters.upstream_requests,
            "requests_by_path": dict(counters.requests_by_path),
            "responses_by_status": {str(k): v for k, v in counters.responses_by_status.items()},
            "usage": gateway.store.usage_summary(),
            "faults_pending": gateway.faults.describe(),
            "model": gateway.model_id,
        }
    )


async def reset(request: Request) -> Response:
    """Handle ``POST /_gateway/reset``: forget counters, limits, usage, threads and faults."""
    _require_loopback(request)
    gateway: Gateway = request.app.state.gateway
    await gateway.reset()
    return Response(status_code=204)
