"""``POST /api/behest/token``: the signed-in user's Behest token, for the browser.

Session cookie → ``accounts.sessions.resolve`` → ``client.mint(user.behest_user_id,
user.tier, ttl=BEHEST_TOKEN_TTL)`` → ``{token, ttl, sessionId, expiresAt}``. The user id and
tier come only from the server-side session: anything the request says about them (body,
query string, headers) is never read. Answers: 200, 401 ``{"error": "not signed in"}``,
403 (foreign Origin), 405, and 502 when Behest does not issue a token (with its ``code``
and ``traceId``, nothing else from upstream).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from behest_chat.api.http import Handler, json_error, signed_in_user
from behest_chat.behest import BehestClient
from behest_chat.behest.errors import BehestError
from behest_chat.settings import Settings

__all__ = ["token_handler"]

logger = logging.getLogger("behest_chat.api")


def token_handler(settings: Settings, client_provider: Callable[[], BehestClient]) -> Handler:
    """The token route's logic (method and origin checks are added by ``guarded``)."""

    async def issue_token(request: Request) -> Response:
        user = await signed_in_user(request)
        try:
            minted = await client_provider().mint(
                user.behest_user_id, user.tier, ttl=settings.token_ttl
            )
        except BehestError as exc:
            logger.warning(
                "token mint failed for %s: %s status=%s code=%s trace=%s",
                user.behest_user_id,
                type(exc).__name__,
                exc.status,
                exc.code,
                exc.trace_id,
            )
            return json_error(
                502,
                "Behest did not issue a token. Try again shortly.",
                with_ok=False,
                code=exc.code,
                traceId=exc.trace_id,
            )
        return JSONResponse(minted.to_json())

    return issue_token
