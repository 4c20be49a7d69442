"""PostgreSQL connections are kept for the threads that run the app's database work."""

from __future__ import annotations

import asyncio
import os
import threading

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
