"""PostgreSQL connections: one per database thread, kept; reads without a transaction."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest
from sqlalchemy import event, text

from behest_chat import db
from tests.fixtures.services import PgDatabase

# asyncio's default thread pool, where the app's database work runs (asyncio.to_thread).
LOOP_THREADS = min(32, (os.cpu_count() or 1) + 4)


def test_every_loop_thread_at_once_reuses_its_connection(pg_database: PgDatabase) -> None:
    engine = db.engine_for(pg_database.url)
    opened: list[object] = []
    event.listen(engine, "connect", lambda *_: opened.append(None))
    together = threading.Barrier(LOOP_THREADS)

    def hold_a_connection_while_all_do() -> None:
        with engine.connect() as connection:
            together.wait(timeout=10)
            connection.execute(text("SELECT 1"))

    async def rounds() -> None:
        for _ in range(10):
            await asyncio.gather(
                *(asyncio.to_thread(hold_a_connection_while_all_do) for _ in range(LOOP_THREADS))
            )

    asyncio.run(rounds())
    # One connection per thread, opened once: not a PostgreSQL backend per busy moment.
    assert len(opened) == LOOP_THREADS


def test_a_reading_scope_runs_each_statement_on_its_own(
    pg_database: PgDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No transaction around it (no BEGIN/COMMIT round trips): a write lands at once."""
    monkeypatch.setenv("DATABASE_URL", pg_database.url)
    db.reset()
    try:
        with db.get_engine().begin() as connection:
            connection.execute(text("CREATE TABLE landed (n integer)"))

        def count() -> int:  # from another connection: what is committed
            with db.get_engine().connect() as other:
                return other.execute(text("SELECT count(*) FROM landed")).scalar_one()

        with db.session_scope() as session:
            session.execute(text("INSERT INTO landed VALUES (1)"))
            assert count() == 0  # a session_scope commits at its end
        with db.reading_scope() as session:
            session.execute(text("INSERT INTO landed VALUES (2)"))
            assert count() == 2
    finally:
        db.reset()
