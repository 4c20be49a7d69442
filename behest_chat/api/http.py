"""What every API route shares: method and Origin checks, CORS for the app's own origins,
``Cache-Control: no-store``, JSON bodies, and the signed-in user (401 without one).

The app's routes are same-origin, state-changing or credential-bearing POSTs. A request that
carries an ``Origin`` not in ``APP_ORIGINS`` is refused with 403 before anything runs (CSRF,
login CSRF, and same-site pages on another port, which SameSite=Lax does not stop). A request
without ``Origin`` (curl, server-to-server) is let through. CORS is never a wildcard: an
allowed origin is echoed with credentials allowed and ``Vary: Origin``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from behest_chat.accounts.sessions import SESSION_COOKIE, SessionUser, resolve
from behest_chat.origins import is_allowed

__all__ = [
    "ALL_METHODS",
    "Handler",
    "RequestError",
    "guarded",
    "json_error",
    "read_json",
    "signed_in_user",
]

Handler = Callable[[Request], Awaitable[Response]]
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_MAX_BODY_BYTES = 16 * 1024
_PREFLIGHT_MAX_AGE = "600"


class RequestError(Exception):
    """A request the route refuses before doing any work.

    Attributes:
        status: the HTTP status to answer with.
        message: a short human message.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_error(status: int, message: str, *, with_ok: bool, **extra: Any) -> JSONResponse:
    """An error answer: ``{"error": message}`` (plus ``"ok": false`` for the auth routes)."""
    body: dict[str, Any] = {"ok": False} if with_ok else {}
    body["error"] = message
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status)


async def read_json(request: Request) -> dict[str, Any]:
    """The request's JSON object body.

    Raises:
        RequestError: 415 when not ``application/json``; 413 when larger than
            ``_MAX_BODY_BYTES`` (read no further than that); 400 when not a JSON object.
    """
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/json":
        raise RequestError(415, "Send the form as JSON (Content-Type: application/json).")
    too_large = RequestError(413, "The request is too large.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > _MAX_BODY_BYTES:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_BODY_BYTES:
            raise too_large
    try:
        data = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise RequestError(400, "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise RequestError(400, "The request body must be a JSON object.")
    return data


async def signed_in_user(request: Request) -> SessionUser:
    """The user of the request's session cookie, resolved in a thread (a database read).

    Raises:
        RequestError: 401 without a live session.
    """
    user = await run_in_threadpool(resolve, request.cookies.get(SESSION_COOKIE))
    if user is None:
        raise RequestError(401, "not signed in")
    return user


def guarded(
    handler: Handler,
    *,
    methods: Iterable[str],
    app_origins: tuple[str, ...],
    with_ok: bool,
) -> Handler:
    """Wrap a route handler with the checks in the module docstring.

    Args:
        handler: the route's own logic; runs only for an allowed method and origin.
        methods: the methods it serves (besides ``OPTIONS``, answered here).
        app_origins: the app's own origins (``APP_ORIGINS``).
        with_ok: add ``"ok": false`` to error bodies (the auth routes' shape).

    Returns:
        A handler to register for every method, so that a wrong method is answered here
        with 405 even when the app is mounted in front of another catch-all app.
    """
    allowed_methods = tuple(methods)
    allow_header = ", ".join((*allowed_methods, "OPTIONS"))

    async def endpoint(request: Request) -> Response:
        origin = request.headers.get("origin")
        origin_ok = is_allowed(origin, app_origins)
        if request.method == "OPTIONS":
            response = _preflight(request, origin_ok, allowed_methods, allow_header, with_ok)
        elif request.method not in allowed_methods:
            response = json_error(405, "method not allowed", with_ok=with_ok)
            response.headers["Allow"] = allow_header
        elif origin is not None and not origin_ok:
            response = json_error(403, "origin not allowed", with_ok=with_ok)
        else:
            try:
                response = await handler(request)
            except RequestError as exc:
                response = json_error(exc.status, exc.message, with_ok=with_ok)
        if origin_ok and origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Vary"] = "Origin"
        response.headers["Cache-Control"] = "no-store"
        return response

    endpoint.__name__ = getattr(handler, "__name__", "endpoint")
    endpoint.__doc__ = handler.__doc__
    return endpoint


def _preflight(
    request: Request,
    origin_ok: bool,
    methods: tuple[str, ...],
    allow_header: str,
    with_ok: bool,
) -> Response:
    wanted = request.headers.get("access-control-request-method", "")
    if not origin_ok:
        return json_error(403, "origin not allowed", with_ok=with_ok)
    if wanted not in methods:
        response = json_error(405, "method not allowed", with_ok=with_ok)
        response.headers["Allow"] = allow_header
        return response
    response = Response(status_code=204)
    response.headers["Access-Control-Allow-Methods"] = allow_header
    response.headers["Access-Control-Allow-Headers"] = "Content-Type"
    response.headers["Access-Control-Max-Age"] = _PREFLIGHT_MAX_AGE
    return response
