"""On PostgreSQL the recursive reads of a branch are planned on every run, never prepared.

psycopg prepares a statement once it has run a few times on a connection, and PostgreSQL
then keeps one generic plan for it until the table is analysed again. A plan made while
the table was nearly empty scans it whole, once per step of the recursion: on a fresh
database growing under load, reading a branch's history went from 0.2 ms to 9 ms.
"""

from __future__ import annotations

from sqlalchemy import text

from behest_chat import db
from behest_chat.accounts import service as accounts
from behest_chat.conversations import store

RUNS = 8  # more than psycopg's prepare threshold (5)


def _prepared(session) -> list[str]:
    rows = session.execute(text("SELECT statement FROM pg_prepared_statements")).scalars()
    return list(rows)


def test_branch_reads_are_never_prepared_while_other_statements_are(
    pg_app_database: str,
) -> None:
    user = accounts.register("kim", "Kim", "correct horse battery")
    chat = store.create_conversation(user.user_id)
    question = store.add_user_message(user.user_id, chat.id, "q", None)
    answer = store.start_answer(user.user_id, chat.id, question.id, "run-1")
    assert answer is not None and answer.id is not None

    with db.session_scope() as session:  # one connection for every run
        for _ in range(RUNS):
            assert store.branch_history(chat.id, answer.id, db=session)[0]["content"] == "q"
            views, _ = store.window(user.user_id, chat.id, db=session)
            assert [v.role for v in views] == ["user", "assistant"]
            session.execute(text("SELECT count(*) FROM message WHERE id > :n"), {"n": 0})
        prepared = _prepared(session)

    # The plain statement run as often was prepared: the check can see a prepared one.
    assert any("count(*) FROM message" in statement for statement in prepared), prepared
    assert not [s for s in prepared if "RECURSIVE" in s.upper()], prepared
