"""Reflex configuration. Values come from the environment (and .env); nothing secret here."""

import reflex as rx

from behest_chat.redis_support import load_redis_url
from behest_chat.settings import env_file_path, load_app_origins

config = rx.Config(
    app_name="behest_chat",
    # The websocket and API accept only the app's own origins, never "*".
    cors_allowed_origins=list(load_app_origins(env_file_path())),
    # REDIS_URL set: tab state lives in Redis and several workers serve the app (scale-out).
    redis_url=load_redis_url(env_file_path()),
    telemetry_enabled=False,
    show_built_with_reflex=False,
    disable_plugins=[rx.plugins.SitemapPlugin],
    plugins=[rx.plugins.RadixThemesPlugin(theme=rx.theme(accent_color="indigo", radius="medium"))],
)
