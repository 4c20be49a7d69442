"""The database: one SQLModel engine per process, a session helper, and migrations.

The URL is ``DATABASE_URL`` (default ``sqlite:///behest_chat.db``), read through
:func:`behest_chat.settings.load_database_url` so database tools work before the Behest key
is set up. SQLite runs in WAL mode with foreign keys on. ``postgresql://`` URLs use psycopg 3
with a pool per process (each app worker has its own, of cores + 6 connections).
Connections are checked before use (``pool_pre_ping``), so after PostgreSQL restarts or
drops a connection only the statement that was running fails and the next one
reconnects; connecting gives up after 5 s and a statement after 30 s rather than holding
a worker.

Migrations are Alembic revisions in ``alembic/versions``, applied with::

    python -m behest_chat.db upgrade
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from behest_chat.settings import SettingsError, env_file_path, load_database_url

__all__ = [
    "ALEMBIC_INI",
    "PLAN_EVERY_TIME",
    "database_url",
    "engine_for",
    "get_engine",
    "reading_scope",
    "reset",
    "session_scope",
    "upgrade",
]

ALEMBIC_INI = Path(__file__).resolve().parent.parent / "alembic.ini"
_SQLITE_BUSY_TIMEOUT_S = 15
_PG_CONNECT_TIMEOUT_S = 5
_PG_STATEMENT_TIMEOUT_MS = 30_000
# The app's database work runs in the event loop's default thread pool, min(32, cores + 4)
# threads, and the API's in Starlette's. A pool smaller than that opens and closes a
# connection (a PostgreSQL backend process) whenever the threads are all busy at once.
_PG_POOL_SIZE = min(32, (os.cpu_count() or 1) + 4) + 2
# Any fixed number; every instance of the app uses the same one for its migration lock.
_MIGRATION_LOCK_KEY = 7_351_204_881
_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


@functools.cache
def database_url() -> str:
    """The process's database URL, read once (see the module docstring)."""
    return load_database_url(env_file_path())


def engine_for(url: str) -> Engine:
    """The engine for ``url``, created once per URL.

    Args:
        url: a ``sqlite://`` or ``postgresql[+psycopg]://`` SQLAlchemy URL.
    """
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = _create_engine(url)
        return engine


def _create_engine(url: str) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not url.startswith("sqlite"):
        engine = create_engine(
            url,
            pool_pre_ping=True,
            pool_size=_PG_POOL_SIZE,
            max_overflow=10,
            pool_timeout=10,
            # Servers and proxies close idle connections; renew them before that happens.
            pool_recycle=1800,
            connect_args={
                "connect_timeout": _PG_CONNECT_TIMEOUT_S,
                "application_name": "behest-chat",
                "options": f"-c statement_timeout={_PG_STATEMENT_TIMEOUT_MS}",
            },
        )
        event.listen(engine, "do_execute", _plan_every_time)
        return engine
    engine = create_engine(
        url,
        # Starlette runs sync work in a thread pool; SQLite's own thread check would refuse it.
        connect_args={"check_same_thread": False, "timeout": _SQLITE_BUSY_TIMEOUT_S},
    )
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


# The execution option for statements PostgreSQL must plan on every run. psycopg prepares a
# statement after a few runs on a connection, and PostgreSQL then keeps one generic plan for
# it until the table is analysed again. A plan made while a table was nearly empty scans
# it whole; for a recursive query that is one scan per step of the recursion, so a history
# read that takes 0.2 ms took 9 ms once a fresh database had 12,000 messages.
PLAN_EVERY_TIME = "plan_every_time"


def _plan_every_time(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
    """Run a statement marked with :data:`PLAN_EVERY_TIME` unprepared (psycopg)."""
    if not context.execution_options.get(PLAN_EVERY_TIME):
        return False  # SQLAlchemy runs it as usual
    cursor.execute(statement, parameters, prepare=False)
    return True


def get_engine() -> Engine:
    """The process's engine, for :func:`database_url`."""
    return engine_for(database_url())


@contextlib.contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits when the block ends and rolls back if it raises.

    Objects stay readable after the commit (``expire_on_commit=False``).
    """
    with Session(get_engine(), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


@contextlib.contextmanager
def reading_scope() -> Iterator[Session]:
    """A session whose statements each commit on their own, without ``BEGIN``/``COMMIT``.

    For a unit of reads (and writes that may land on their own) that needs no transaction
    around it: on PostgreSQL each statement sees what is committed when it runs whether or
    not a transaction surrounds it (read committed), so the two round trips buy nothing.
    On SQLite, which has no round trips to save, it is :func:`session_scope`: handing back
    a connection set to autocommit resets it with a PRAGMA after which SQLite prepares
    every statement again, and that costs more than the transaction.
    """
    engine = get_engine()
    if engine.dialect.name == "sqlite":
        with session_scope() as session:
            yield session
        return
    with Session(_autocommit(engine), expire_on_commit=False) as session:
        yield session


@functools.cache
def _autocommit(engine: Engine) -> Engine:
    return engine.execution_options(isolation_level="AUTOCOMMIT")


@contextlib.contextmanager
def joined(db: Session | None) -> Iterator[Session]:
    """``db`` itself when a caller's transaction is given (it commits), else :func:`session_scope`.

    Lets one function serve both alone and as one step of a larger transaction.
    """
    if db is not None:
        yield db
    else:
        with session_scope() as session:
            yield session


def reset() -> None:
    """Close every engine and forget the URL, so the next use reads the settings again."""
    with _engines_lock:
        engines = list(_engines.values())
        _engines.clear()
    _autocommit.cache_clear()
    for engine in engines:
        engine.dispose()
    database_url.cache_clear()


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Apply Alembic migrations (``alembic upgrade head``).

    Args:
        url: the database to migrate; ``None`` means :func:`database_url`.
        revision: the target revision.
    """
    from alembic.config import Config

    from alembic import command

    url = url or database_url()
    config = Config(str(ALEMBIC_INI))
    config.attributes["database_url"] = url
    # Called from inside the app or tests: leave the process's logging alone.
    config.attributes["configure_logging"] = False
    with _migration_lock(url):
        command.upgrade(config, revision)


@contextlib.contextmanager
def _migration_lock(url: str) -> Iterator[None]:
    """On PostgreSQL, one migration at a time: instances started together wait in turn."""
    if url.startswith("sqlite"):
        yield
        return
    with engine_for(url).connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        try:
            yield
        finally:
            connection.execute(
                text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK_KEY}
            )


def main(argv: list[str] | None = None) -> int:
    """``python -m behest_chat.db upgrade``: migrate the database to the newest revision."""
    args = sys.argv[1:] if argv is None else argv
    if args != ["upgrade"]:
        print("usage: python -m behest_chat.db upgrade", file=sys.stderr)
        return 2
    try:
        upgrade()
    except SettingsError as exc:
        print(f"db: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # one line for the run script, not a traceback
        print(f"db: migration failed: {type(exc).__name__}: {_first_line(exc)}", file=sys.stderr)
        return 1
    print("db: schema is up to date")
    return 0


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL lets readers continue while one writer commits (several workers, one file).
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else ""


if __name__ == "__main__":
    sys.exit(main())
