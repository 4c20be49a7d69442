"""The settings page: the Behest configuration (never the keys), the user's transport, and
the allowed-origins check, both as configured and as this browser really experiences it.

"Check from this browser" runs ``behestDirect.checkOrigin`` (``assets/direct.js``) in the
page through ``rx.call_script``; the page reports back only a verdict (never the token),
and :meth:`SettingsState.origin_checked` turns it into a sentence and, for a blocked
origin, the ``.env`` line that adds it. The origin in that line is the one the server saw
in the websocket handshake, not one the page claims.
"""

from __future__ import annotations

import json
from typing import Any

import reflex as rx

from behest_chat import routes
from behest_chat.accounts.models import TIER_NAMES
from behest_chat.api import TOKEN_PATH
from behest_chat.origins import OriginError, is_allowed, normalize_origin, suggest_line
from behest_chat.preferences import TRANSPORTS, get_transport, set_transport
from behest_chat.settings import Settings, get_settings
from behest_chat.state.auth import AuthState

__all__ = ["CHECK_RESULTS", "SettingsState"]

_ORIGINS_VARIABLE = "BEHEST_ALLOWED_ORIGINS"
# Verdicts of behestDirect.checkOrigin; anything else the page sends is shown as "error".
CHECK_RESULTS = (
    "pass",
    "origin_blocked",
    "token_unreachable",
    "gateway_unreachable",
    "gateway_error",
    "signed_out",
)
_MAX_DETAIL_CHARS = 300


class SettingsState(AuthState):
    """Configuration as the signed-in user may see it, and the check of the browser's origin."""

    mode: str = ""
    base_url: str = ""
    public_base_url: str = ""
    kid: str = ""
    tenant_id: str = ""
    project_id: str = ""
    token_ttl: int = 0
    key_fingerprint: str = ""
    tier: str = ""
    # Reflex copies var defaults into every tab's state, so a list default is safe here.
    allowed_origins: list[str] = []  # noqa: RUF012
    browser_origin: str = ""
    origin_allowed: bool = False
    origin_fix: str = ""
    transport: str = "relay"
    # "" (not run) | "running" | one of CHECK_RESULTS | "error"
    check_result: str = ""
    check_message: str = ""
    check_detail: str = ""
    check_fix: str = ""

    @rx.event
    async def load(self):
        """on_load: fill the view from the settings and the origin this browser really uses."""
        user, transport = await self._as_user(lambda user: get_transport(user.user_id))
        if user is None or transport is None:
            return rx.redirect(routes.LOGIN)
        settings = get_settings()
        self.mode = settings.mode
        self.base_url = settings.effective_base_url
        self.public_base_url = settings.behest_public_base_url
        self.kid = settings.behest_kid or "—"
        self.tenant_id = settings.behest_tenant_id or "—"
        self.project_id = settings.behest_project_id or "—"
        self.token_ttl = settings.token_ttl
        self.key_fingerprint = settings.key_fingerprint
        self.tier = TIER_NAMES.get(user.tier, str(user.tier))
        self.allowed_origins = list(settings.allowed_origins)
        origin = self.router.headers.origin or ""
        self.browser_origin = normalize_origin(origin) if origin else ""
        self.origin_allowed = bool(origin) and is_allowed(
            self.browser_origin, settings.allowed_origins
        )
        self.origin_fix = (
            ""
            if self.origin_allowed or not self.browser_origin
            else suggest_line(
                _ORIGINS_VARIABLE, settings.allowed_origins, self.browser_origin
            )
        )
        self.transport = transport
        self._clear_check()
        return None

    @rx.event
    async def choose_transport(self, value: str):
        """Store how this user's chat turns reach Behest: "relay" or "direct"."""
        if value not in TRANSPORTS:
            return None
        user, chosen = await self._as_user(lambda user: set_transport(user.user_id, value))
        if user is None or chosen is None:
            return rx.redirect(routes.LOGIN)
        self.transport = chosen
        return None

    @rx.event
    async def run_origin_check(self):
        """Run the check in the page: token fetch, CORS preflight, one-token request."""
        if await self._look_up_user() is None:
            return rx.redirect(routes.LOGIN)
        self._clear_check()
        self.check_result = "running"
        options = json.dumps({"baseUrl": get_settings().behest_public_base_url})
        # Page scripts load after hydration; before that the check reports an error.
        return rx.call_script(
            f"window.behestDirect ? window.behestDirect.checkOrigin({options})"
            " : Promise.resolve({result: 'error', detail: 'direct.js not loaded'})",
            callback=SettingsState.origin_checked,
        )

    @rx.event
    async def origin_checked(self, report: dict[str, Any]):
        """Show the verdict the page reported (see ``checkOrigin`` in assets/direct.js)."""
        if await self._look_up_user() is None:
            return rx.redirect(routes.LOGIN)
        data = report if isinstance(report, dict) else {}
        result = data.get("result")
        result = result if result in CHECK_RESULTS else "error"
        origin = self.browser_origin or _origin_or_empty(data.get("origin"))
        detail = data.get("detail")
        self.check_result = result
        self.check_detail = detail[:_MAX_DETAIL_CHARS] if isinstance(detail, str) else ""
        settings = get_settings()
        self.check_message = _verdict(result, origin, settings)
        self.check_fix = (
            suggest_line(_ORIGINS_VARIABLE, settings.allowed_origins, origin)
            if result == "origin_blocked" and origin
            else ""
        )
        return None

    def _clear_check(self) -> None:
        self.check_result = ""
        self.check_message = ""
        self.check_detail = ""
        self.check_fix = ""


def _origin_or_empty(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    try:
        return normalize_origin(value)
    except OriginError:
        return ""


def _verdict(result: str, origin: str, settings: Settings) -> str:
    """One or two sentences for a check result."""
    base = settings.behest_public_base_url
    here = origin or "this page's origin"
    if result == "pass":
        return (
            f"Passed: this browser ({here}) got a token from the app and called {base} "
            "directly (CORS preflight and a one-token request)."
        )
    if result == "origin_blocked":
        if origin and is_allowed(origin, settings.allowed_origins):
            return (
                f"Blocked by CORS: the gateway at {base} is up but refuses {origin}, although "
                f"{_ORIGINS_VARIABLE} lists it. That gateway keeps its own list: add {origin} "
                "under Project → Settings → Allowed Origins."
            )
        where = (
            "Add it to .env and restart the app:"
            if settings.uses_embedded_gateway
            else "Add it under Project → Settings → Allowed Origins in the Behest dashboard, "
            "and to .env:"
        )
        return (
            f"Blocked by CORS: the gateway at {base} is up, but {here} is not an allowed "
            f"origin. {where}"
        )
    if result == "token_unreachable":
        return (
            f"The app's token endpoint ({TOKEN_PATH}) gave no token, so nothing was sent to "
            "the gateway."
        )
    if result == "gateway_unreachable":
        return (
            f"The gateway at {base} could not be reached. Is it running, and is "
            "BEHEST_PUBLIC_BASE_URL the address browsers use?"
        )
    if result == "gateway_error":
        return f"CORS allows {here}, but the gateway at {base} refused the test request."
    if result == "signed_out":
        return "You are signed out. Sign in again, then run the check."
    return "The check did not finish with a usable answer. Reload the page and try again."
