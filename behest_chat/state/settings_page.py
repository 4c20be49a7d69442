"""The settings page: a read-only view of the Behest configuration, never the keys."""

from __future__ import annotations

import reflex as rx

from behest_chat import routes
from behest_chat.origins import is_allowed, normalize_origin, suggest_line
from behest_chat.settings import get_settings
from behest_chat.state.auth import AuthState

__all__ = ["SettingsState"]

_TIER_NAMES = {1: "free", 2: "pro", 3: "max"}


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
    allowed_origins: list[str] = []
    browser_origin: str = ""
    origin_allowed: bool = False
    origin_fix: str = ""

    @rx.event
    def load(self):
        """on_load: fill the view from the settings and the origin this browser really uses."""
        user = self._current_user()
        if user is None:
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
        self.tier = _TIER_NAMES.get(user.tier, str(user.tier))
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
                "BEHEST_ALLOWED_ORIGINS", settings.allowed_origins, self.browser_origin
            )
        )
        return None
