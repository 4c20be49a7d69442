"""The app's HTTP API as one Starlette app, mounted through ``rx.App(api_transformer=...)``."""

from __future__ import annotations

from collections.abc import Callable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from behest_chat.api.auth import login_handler, logout_handler, register_handler
from behest_chat.api.examples import example_routes
from behest_chat.api.export import export_routes
from behest_chat.api.health import health_routes
from behest_chat.api.http import ALL_METHODS, Handler, guarded
from behest_chat.api.token import token_handler
from behest_chat.behest import BehestClient
from behest_chat.settings import Settings

__all__ = ["TOKEN_PATH", "create_api"]

TOKEN_PATH = "/api/behest/token"


def create_api(
    settings: Settings,
    client_provider: Callable[[], BehestClient],
    *,
    after_sign_in: str = "/chat",
    after_sign_out: str = "/login",
) -> Starlette:
    """Build the API routes.

    Routes: ``POST /api/auth/register``, ``POST /api/auth/login``, ``POST /api/auth/logout``,
    ``POST /api/behest/token``, ``GET /api/conversations/{id}/export`` and ``GET
    /api/health`` (see ``api/auth.py``, ``api/token.py``, ``api/export.py`` and
    ``api/health.py``), and the example page's (``api/examples.py``). The database is
    the process's (``behest_chat.db``). With ``APP_TRUSTED_PROXIES``, a request from one of
    those proxies is taken to come from the client its ``X-Forwarded-For`` names (for the
    sign-in and sign-up limits).

    Args:
        settings: origins, cookie flags, session and token lifetimes.
        client_provider: returns the process's ``BehestClient``; called per token request,
            inside the server's event loop.
        after_sign_in: path the browser goes to after sign-in or registration.
        after_sign_out: path the browser goes to after sign-out.

    Returns:
        A Starlette app; Reflex mounts its own app behind these routes.
    """

    def route(path: str, handler: Handler, *, with_ok: bool) -> Route:
        endpoint = guarded(
            handler, methods=["POST"], app_origins=settings.app_origins, with_ok=with_ok
        )
        return Route(path, endpoint, methods=ALL_METHODS)

    # uvicorn's middleware, used here whatever server runs the app (Granian in production).
    proxies = (
        [Middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.trusted_proxies))]
        if settings.trusted_proxies
        else []
    )
    return Starlette(
        middleware=proxies,
        routes=[
            route("/api/auth/register", register_handler(settings, after_sign_in), with_ok=True),
            route("/api/auth/login", login_handler(settings, after_sign_in), with_ok=True),
            route("/api/auth/logout", logout_handler(settings, after_sign_out), with_ok=True),
            route(TOKEN_PATH, token_handler(settings, client_provider), with_ok=False),
            *example_routes(settings),
            *export_routes(settings),
            *health_routes(settings),
        ]
    )
