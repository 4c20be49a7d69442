"""The app's own Redis connection and key prefix, used in scale-out mode (``REDIS_URL`` set).

With ``REDIS_URL`` set, Reflex keeps tab state in Redis and several workers serve the app.
What the app itself shares between processes also goes there: the per-user token cache
(:class:`behest_chat.behest.cache.SharedTokenCache`) and the registry of running turns that
Stop reaches (:mod:`behest_chat.inflight`). Every key the app writes starts with
``APP_REDIS_PREFIX`` (default ``behest_chat:``), so one Redis can hold several deployments
or test runs side by side. Reflex's own keys (tab state, socket records) cannot be prefixed:
give each deployment its own database number (``redis://host:6379/3``) when that matters.

The client times out quickly and retries a few times with a short backoff, so a Redis that
restarts costs the requests in flight an error, not a hung worker; the next command
reconnects by itself.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from behest_chat.settings import SettingsError, env_file_path, get_settings

__all__ = [
    "DEFAULT_PREFIX",
    "close_redis",
    "create_redis",
    "describe_redis_url",
    "get_redis",
    "load_redis_prefix",
    "load_redis_url",
    "redis_prefix",
]

logger = logging.getLogger("behest_chat.redis")

DEFAULT_PREFIX = "behest_chat:"
_PREFIX_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_REDIS_SCHEMES = ("redis", "rediss", "unix")
_CONNECT_TIMEOUT_S = 2.0
_COMMAND_TIMEOUT_S = 5.0
_HEALTH_CHECK_S = 15

_client: Redis | None = None
_prefix: str | None = None


def _values(env_file: str | Path | None, environ: Mapping[str, str] | None) -> dict[str, str]:
    # Same precedence as the settings: the environment wins over the env file.
    merged: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        merged.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    merged.update(os.environ if environ is None else environ)
    return {k: v.strip() for k, v in merged.items() if v and v.strip()}


def load_redis_url(
    env_file: str | Path | None = ".env", environ: Mapping[str, str] | None = None
) -> str | None:
    """Read ``REDIS_URL`` alone (``rxconfig.py`` needs only this), or None when unset.

    Raises:
        SettingsError: one line naming ``REDIS_URL``; the URL itself is never echoed.
    """
    url = _values(env_file, environ).get("REDIS_URL")
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in _REDIS_SCHEMES or (parts.scheme != "unix" and not parts.hostname):
        raise SettingsError("REDIS_URL: expected redis://host[:port][/db] or rediss://…")
    return url


def load_redis_prefix(
    env_file: str | Path | None = ".env", environ: Mapping[str, str] | None = None
) -> str:
    """Read ``APP_REDIS_PREFIX``: 1 to 64 of ``A-Z a-z 0-9 _ . : -``; default ``behest_chat:``.

    Raises:
        SettingsError: one line naming ``APP_REDIS_PREFIX``.
    """
    prefix = _values(env_file, environ).get("APP_REDIS_PREFIX", DEFAULT_PREFIX)
    if not _PREFIX_RE.fullmatch(prefix):
        raise SettingsError(
            "APP_REDIS_PREFIX: expected 1 to 64 letters, digits or _ . : - (e.g. behest_chat:)"
        )
    return prefix


def describe_redis_url(url: str) -> str:
    """``redis://host:port/db`` without user name or password, for messages and logs."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    try:
        port = parts.port or 6379
    except ValueError:
        port = "?"
    database = parts.path.strip("/") or "0"
    return f"{parts.scheme}://{parts.hostname}:{port}/{database}"


def create_redis(url: str) -> Redis:
    """A new asyncio Redis client for ``url`` with the timeouts and retries described above.

    No connection is made until the first command.
    """
    return Redis.from_url(
        url,
        socket_connect_timeout=_CONNECT_TIMEOUT_S,
        socket_timeout=_COMMAND_TIMEOUT_S,
        health_check_interval=_HEALTH_CHECK_S,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


def get_redis() -> Redis | None:
    """The process's Redis client for ``REDIS_URL``, or None when Redis is not configured."""
    global _client
    url = get_settings().redis_url
    if url is None:
        return None
    if _client is None:
        _client = create_redis(url.get())
        logger.info("app data shared through Redis at %s", describe_redis_url(url.get()))
    return _client


def redis_prefix() -> str:
    """The process's ``APP_REDIS_PREFIX``, read once."""
    global _prefix
    if _prefix is None:
        _prefix = load_redis_prefix(env_file_path())
    return _prefix


async def close_redis() -> None:
    """Close the process's Redis client (the next :func:`get_redis` opens a new one)."""
    global _client, _prefix
    client, _client, _prefix = _client, None, None
    if client is not None:
        await client.aclose()
