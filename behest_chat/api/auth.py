"""``POST /api/auth/register|login|logout``: the HttpOnly session cookie's whole life.

Bodies are JSON; answers are ``{"ok": true, "redirect": <path>}`` or
``{"ok": false, "error": <human message>}`` with 400, 401, 415 or 429. Sign-in never tells
whether a username exists. Each sign-in starts a new session (a cookie the browser already
had is revoked), so a session secret planted before sign-in is worthless afterwards.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from behest_chat.accounts.service import (
    LoginFailedError,
    RegistrationError,
    TooManyAttemptsError,
    authenticate,
    register,
)
from behest_chat.accounts.sessions import SESSION_COOKIE, SessionUser, create_session, revoke
from behest_chat.api.http import Handler, json_error, read_json
from behest_chat.settings import Settings

__all__ = ["login_handler", "logout_handler", "register_handler"]


def register_handler(settings: Settings, after_sign_in: str) -> Handler:
    """Create the account, then sign it in."""

    async def register_user(request: Request) -> Response:
        data = await read_json(request)
        try:
            user = await run_in_threadpool(
                register,
                _text(data, "username"),
                _text(data, "display_name"),
                _text(data, "password"),
                client_ip=request.client.host if request.client else None,
                per_hour=settings.registrations_per_hour,
            )
        except RegistrationError as exc:
            return json_error(400, str(exc), with_ok=True, field=exc.field)
        except TooManyAttemptsError as exc:
            return _too_many(exc)
        return await _signed_in(request, settings, user, after_sign_in)

    return register_user


def login_handler(settings: Settings, after_sign_in: str) -> Handler:
    """Check the password (with throttling) and set the session cookie."""

    async def login(request: Request) -> Response:
        data = await read_json(request)
        username, password = _text(data, "username"), _text(data, "password")
        if not username.strip() or not password:
            return json_error(400, "Enter your username and password.", with_ok=True)
        client_ip = request.client.host if request.client else None
        try:
            user = await run_in_threadpool(authenticate, username, password, client_ip)
        except TooManyAttemptsError as exc:
            return _too_many(exc)
        except LoginFailedError as exc:
            return json_error(401, str(exc), with_ok=True)
        return await _signed_in(request, settings, user, after_sign_in)

    return login


def logout_handler(settings: Settings, after_sign_out: str) -> Handler:
    """Revoke the session (if any) and clear the cookie; always succeeds."""

    async def logout(request: Request) -> Response:
        secret = request.cookies.get(SESSION_COOKIE)
        if secret:
            await run_in_threadpool(revoke, secret)
        response = JSONResponse({"ok": True, "redirect": after_sign_out})
        response.delete_cookie(
            SESSION_COOKIE,
            path="/",
            secure=settings.secure_cookies,
            httponly=True,
            samesite="lax",
        )
        return response

    return logout


def _too_many(exc: TooManyAttemptsError) -> Response:
    response = json_error(429, str(exc), with_ok=True)
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


async def _signed_in(
    request: Request, settings: Settings, user: SessionUser, redirect: str
) -> Response:
    ttl = timedelta(hours=settings.session_ttl_hours)
    secret = await run_in_threadpool(create_session, user, ttl)
    previous = request.cookies.get(SESSION_COOKIE)
    if previous:
        await run_in_threadpool(revoke, previous)
    response = JSONResponse({"ok": True, "redirect": redirect})
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=int(ttl.total_seconds()),
        path="/",
        secure=settings.secure_cookies,
        httponly=True,
        samesite="lax",
    )
    return response


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    return value if isinstance(value, str) else ""
