"""``GET /api/health``: whether this instance can serve, for a load balancer or an uptime check.

200 ``{"status": "ok", "database": "ok", "redis": "ok" | "not used"}``; 503 with
``"status": "unavailable"`` and ``"unreachable"`` for each service that did not answer
within ``_TIMEOUT_S``. No session is needed, and nothing else about the services (address,
error) is said. Reflex's own ``/_health`` knows neither the app's database nor its Redis
client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import sqlalchemy as sa
from redis.asyncio import Redis
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from behest_chat import db
from behest_chat.api.http import ALL_METHODS, guarded
from behest_chat.redis_support import create_redis
from behest_chat.settings import Settings

__all__ = ["HEALTH_PATH", "health_routes"]

HEALTH_PATH = "/api/health"
_TIMEOUT_S = 2.0


def health_routes(settings: Settings) -> list[Route]:
    """The route of this module, for ``create_api``."""

    clients: list[Redis] = []  # made on first use, in the server's event loop

    def redis() -> Redis | None:
        if settings.redis_url is None:
            return None
        if not clients:
            clients.append(create_redis(settings.redis_url.get()))
        return clients[0]

    async def health(request: Request) -> Response:
        cache_client = redis()
        database, cache = await asyncio.gather(
            _answers(run_in_threadpool(_select_one)),
            _answers(cache_client.ping()) if cache_client is not None else _not_used(),
        )
        ok = database == "ok" and cache in ("ok", "not used")
        body = {"status": "ok" if ok else "unavailable", "database": database, "redis": cache}
        return JSONResponse(body, status_code=200 if ok else 503)

    endpoint = guarded(health, methods=["GET"], app_origins=settings.app_origins, with_ok=False)
    return [Route(HEALTH_PATH, endpoint, methods=ALL_METHODS)]


def _select_one() -> None:
    with db.get_engine().connect() as connection:
        connection.execute(sa.text("SELECT 1"))


async def _answers(check: Awaitable[Any]) -> str:
    try:
        await asyncio.wait_for(check, _TIMEOUT_S)
    except Exception:  # any failure means the same to a load balancer
        return "unreachable"
    return "ok"


async def _not_used() -> str:
    return "not used"
