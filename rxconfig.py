"""Reflex configuration. Values come from the environment (and .env); nothing secret here."""

import os

import reflex as rx
from dotenv import dotenv_values

_env = {**dotenv_values(os.environ.get("APP_ENV_FILE", ".env")), **os.environ}
_app_origins = [
    o.strip().rstrip("/")
    for o in (_env.get("APP_ORIGINS") or "http://localhost:3000").split(",")
    if o.strip()
]

config = rx.Config(
    app_name="behest_chat",
    # The websocket and API accept only the app's own origins, never "*".
    cors_allowed_origins=_app_origins,
    telemetry_enabled=False,
    show_built_with_reflex=False,
    disable_plugins=[rx.plugins.SitemapPlugin],
    plugins=[rx.plugins.RadixThemesPlugin(theme=rx.theme(accent_color="indigo", radius="medium"))],
)
