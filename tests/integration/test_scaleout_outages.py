"""The words shown when an event fails because Redis or PostgreSQL is not answering."""

from __future__ import annotations

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from behest_chat.outages import DATABASE_DOWN, REDIS_DOWN, backend_exception_handler, outage_message
from tests.fixtures.app import free_port
from tests.fixtures.services import PgDatabase


def raised(call) -> Exception:
    with pytest.raises(Exception) as exc_info:
        call()
    return exc_info.value


def test_redis_that_does_not_answer_is_named() -> None:
    client = redis.Redis(port=free_port(), socket_connect_timeout=1)
    exc = raised(client.ping)
    assert outage_message(exc) == REDIS_DOWN
    assert REDIS_DOWN in str(backend_exception_handler(exc))


def test_database_that_does_not_answer_is_named() -> None:
    engine = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x")
    exc = raised(lambda: engine.connect())
    assert isinstance(exc, DBAPIError) and outage_message(exc) == DATABASE_DOWN


def test_dropped_database_connection_is_named(pg_database: PgDatabase) -> None:
    engine = create_engine(pg_database.url)  # no pre-ping: the drop surfaces in the query
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
        pg_database.terminate_connections()
        exc = raised(lambda: connection.execute(text("SELECT 1")))
    engine.dispose()
    assert outage_message(exc) == DATABASE_DOWN


def test_other_errors_keep_reflex_default_toast() -> None:
    exc = ValueError("a bug")
    assert outage_message(exc) is None
    assert "An error occurred." in str(backend_exception_handler(exc))
