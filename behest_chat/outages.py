"""What the user is told when an event fails because Redis or the database is not answering.

Reflex answers an event that raised with a generic "An error occurred" toast. In
scale-out mode the likely causes are a Redis or PostgreSQL outage, which pass by
themselves; :func:`backend_exception_handler` names them in one calm sentence and
logs one line (no URL, no secret), and leaves every other error to Reflex's handler.
Wire it with ``rx.App(backend_exception_handler=backend_exception_handler)``.
"""

from __future__ import annotations

import logging

from reflex.app import default_backend_exception_handler
from reflex.event import EventSpec
from reflex_components_sonner.toast import toast

__all__ = ["DATABASE_DOWN", "REDIS_DOWN", "backend_exception_handler", "outage_message"]

logger = logging.getLogger("behest_chat.outages")

REDIS_DOWN = "The app's session store is not answering. Try again in a moment."
DATABASE_DOWN = "The database is not answering. Try again in a moment."


def outage_message(exception: BaseException) -> str | None:
    """The sentence for an outage of Redis or the database, or None for any other error."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import DBAPIError

    if isinstance(exception, RedisConnectionError | RedisTimeoutError):
        return REDIS_DOWN
    if isinstance(exception, DBAPIError) and exception.connection_invalidated:
        return DATABASE_DOWN
    if isinstance(exception, DBAPIError) and type(exception.orig).__name__ in (
        "OperationalError",
        "InterfaceError",
    ):
        return DATABASE_DOWN
    return None


def backend_exception_handler(exception: Exception) -> EventSpec | None:
    """Reflex's backend exception handler with clear words for Redis and database outages."""
    message = outage_message(exception)
    if message is None:
        return default_backend_exception_handler(exception)
    logger.warning("event failed: %s (%s)", message, type(exception).__name__)
    return toast(
        message, level="error", fallback_to_alert=True, position="top-center",
        id="service_outage",
    )
