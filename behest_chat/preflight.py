"""Start-up checks for scale-out mode: is PostgreSQL reachable, is Redis reachable?

``python -m behest_chat.preflight`` (run by ``scripts/run`` before migrations) connects to
``DATABASE_URL`` when it is PostgreSQL and to ``REDIS_URL`` when it is set. Each answers
within a few seconds; the first that does not stops start-up with exit status 1 and one
line on stderr naming the variable, where it points (without user name or password) and
what went wrong, e.g.::

    preflight: REDIS_URL: Redis at redis://127.0.0.1:6390/0 is not reachable (connection
    refused); check that it runs and that REDIS_URL is right

On success it prints one line saying what the app will use.

``python -m behest_chat.preflight plan`` prints, for ``scripts/run``, one line of four
words: ``<scale_out> <own_gateway> <gateway host> <gateway port>``, where ``scale_out`` is
1 when ``REDIS_URL`` is set and ``own_gateway`` is 1 when the gateway must run as a process
of its own next to the app (scale-out mode with ``BEHEST_BASE_URL`` unset).
"""

from __future__ import annotations

import sys
from urllib.parse import urlsplit

from redis import Redis
from redis.exceptions import AuthenticationError, RedisError

from behest_chat.redis_support import describe_redis_url, load_redis_url
from behest_chat.settings import SettingsError, env_file_path, load_database_url, load_settings

__all__ = ["PreflightError", "check_database", "check_redis", "main"]

_TIMEOUT_S = 3


class PreflightError(RuntimeError):
    """A service the app needs is not reachable; the message is one line, no secrets."""


def describe_database_url(url: str) -> str:
    """``postgresql://host:port/db`` (or the SQLite path) without user name or password."""
    if url.startswith("sqlite"):
        return url
    parts = urlsplit(url)
    try:
        port = parts.port or 5432
    except ValueError:
        port = "?"
    return f"postgresql://{parts.hostname}:{port}{parts.path}"


def check_database(url: str) -> str:
    """Open one connection to a PostgreSQL ``url`` and run ``SELECT 1``.

    Returns:
        A short description of the database, for the success line.

    Raises:
        PreflightError: naming ``DATABASE_URL`` and the reason.
    """
    where = describe_database_url(url)
    if url.startswith("sqlite"):
        return f"SQLite {url.removeprefix('sqlite:///')}"
    import psycopg

    conninfo = "postgresql://" + url.split("://", 1)[1]
    try:
        with psycopg.connect(conninfo, connect_timeout=_TIMEOUT_S) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise PreflightError(
            f"DATABASE_URL: PostgreSQL at {where} is not reachable ({_pg_reason(exc)}); "
            "check that it runs and that DATABASE_URL is right"
        ) from None
    return f"PostgreSQL {where}"


def check_redis(url: str) -> str:
    """PING the Redis at ``url``.

    Returns:
        A short description of the server, for the success line.

    Raises:
        PreflightError: naming ``REDIS_URL`` and the reason.
    """
    where = describe_redis_url(url)
    client = Redis.from_url(url, socket_connect_timeout=_TIMEOUT_S, socket_timeout=_TIMEOUT_S)
    try:
        client.ping()
    except AuthenticationError:
        raise PreflightError(
            f"REDIS_URL: Redis at {where} refused the credentials; check the user and password"
        ) from None
    except RedisError as exc:
        raise PreflightError(
            f"REDIS_URL: Redis at {where} is not reachable ({_redis_reason(exc)}); "
            "check that it runs and that REDIS_URL is right"
        ) from None
    finally:
        client.close()
    return f"Redis {where}"


def _pg_reason(exc: BaseException) -> str:
    text = str(exc).lower()
    for needle, reason in (
        ("connection refused", "connection refused"),
        ("timeout", "no answer in time"),
        ("password authentication failed", "the password was refused"),
        ("no password supplied", "a password is required"),
        ("does not exist", "no such database or user"),
        ("could not translate host name", "unknown host"),
        ("name or service not known", "unknown host"),
    ):
        if needle in text:
            return reason
    return type(exc).__name__


def _redis_reason(exc: BaseException) -> str:
    text = str(exc).lower()
    for needle, reason in (
        ("connection refused", "connection refused"),
        ("timeout", "no answer in time"),
        ("timed out", "no answer in time"),
        ("name or service not known", "unknown host"),
        ("noauth", "a password is required"),
    ):
        if needle in text:
            return reason
    return type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Check the configured services; see the module docstring. Returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["plan"]):
        print("usage: python -m behest_chat.preflight [plan]", file=sys.stderr)
        return 2
    env_file = env_file_path()
    if args == ["plan"]:
        try:
            settings = load_settings(env_file)
        except SettingsError as exc:
            print(f"preflight: {exc}", file=sys.stderr)
            return 1
        scale_out = settings.redis_url is not None
        own_gateway = scale_out and settings.uses_embedded_gateway
        print(
            f"{int(scale_out)} {int(own_gateway)} {settings.gateway_host} {settings.gateway_port}"
        )
        return 0
    try:
        used = [check_database(load_database_url(env_file))]
        redis_url = load_redis_url(env_file)
        if redis_url is not None:
            used.append(check_redis(redis_url))
    except (SettingsError, PreflightError) as exc:
        print(f"preflight: {exc}", file=sys.stderr)
        return 1
    print("preflight OK: " + ", ".join(used))
    return 0


if __name__ == "__main__":
    sys.exit(main())
