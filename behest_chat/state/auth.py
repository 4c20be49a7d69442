"""Who is signed in, derived on every event from the server-side session.

The browser holds only an HttpOnly cookie with a random secret. Reflex sees it in the
websocket handshake (`router.headers.cookie`); each handler resolves it again through
`accounts.sessions.resolve`, so sign-out and expiry take effect on the next event. User id
and tier never enter a public var: substates call `_look_up_user()` (or `_as_user(work)`,
which does the database work of the event in the same trip to a thread) and keep the result
local.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from http.cookies import CookieError, SimpleCookie
from typing import TypeVar

import reflex as rx

from behest_chat import routes
from behest_chat.accounts.sessions import SESSION_COOKIE, SessionUser, resolve

__all__ = ["AuthState"]

T = TypeVar("T")


class AuthState(rx.State):
    """Base state for every page: display name and sign-in flag only."""

    display_name: str = ""
    signed_in: bool = False

    def _session_secret(self) -> str:
        try:
            cookie = SimpleCookie(self.router.headers.cookie or "")
        except CookieError:
            return ""
        morsel = cookie.get(SESSION_COOKIE)
        return morsel.value if morsel else ""

    async def _look_up_user(self) -> SessionUser | None:
        """The signed-in user, looked up now (revocation and expiry are honoured), in a
        database thread (the event loop serves other tabs meanwhile)."""
        secret = self._session_secret()
        user = await asyncio.to_thread(resolve, secret) if secret else None
        self._show_user(user)
        return user

    async def _as_user(
        self, work: Callable[[SessionUser], T]
    ) -> tuple[SessionUser | None, T | None]:
        """The signed-in user and what ``work(user)`` returns, both in one trip to a
        database thread (the event loop serves other tabs meanwhile); ``(None, None)``
        without a signed-in user. ``work`` must not touch the state."""
        secret = self._session_secret()

        def look_up_and_work() -> tuple[SessionUser | None, T | None]:
            user = resolve(secret) if secret else None
            return user, (work(user) if user is not None else None)

        user, result = await asyncio.to_thread(look_up_and_work)
        self._show_user(user)
        return user, result

    def _show_user(self, user: SessionUser | None) -> None:
        self.signed_in = user is not None
        self.display_name = user.display_name if user else ""

    @rx.event
    async def require_login(self):
        """on_load of private pages: send visitors without a session to the login page."""
        if await self._look_up_user() is None:
            return rx.redirect(routes.LOGIN)
        return None

    @rx.event
    async def redirect_signed_in(self):
        """on_load of the login and register pages: a signed-in user goes straight to chat."""
        if await self._look_up_user() is not None:
            return rx.redirect(routes.CHAT)
        return None
