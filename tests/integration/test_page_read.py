"""A page load's one trip to the database, on SQLite and on PostgreSQL (where it runs
without a transaction around it): a dead turn's answer is marked interrupted, shown so,
and the mark is stored."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import text

from behest_chat import db
from behest_chat.accounts import service as accounts
from behest_chat.accounts.models import utcnow
from behest_chat.accounts.sessions import create_session
from behest_chat.conversations import store
from behest_chat.settings import get_settings
from behest_chat.state.turn_store import read_page


@pytest.fixture(autouse=True)
def settings_with_a_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The allowance reads the budgets from the settings, which need a key.
    monkeypatch.setenv("BEHEST_KEY", "behest_sk_live_0123456789abcdef0123456789abcdef")
    monkeypatch.setenv("APP_ENV_FILE", "/nonexistent/.env")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_a_page_load_marks_a_dead_turns_answer_interrupted_and_stores_it(database: str) -> None:
    user = accounts.register("kim", "Kim", "correct horse battery")
    secret = create_session(user)
    chat = store.create_conversation(user.user_id)
    question = store.add_user_message(user.user_id, chat.id, "q", None)
    answer = store.start_answer(user.user_id, chat.id, question.id, "run-1")
    assert store.save_progress(answer.id, "run-1", "half an ans")
    # The process writing the answer died a minute ago: its heartbeat stopped then.
    with db.session_scope() as session:
        session.execute(
            text("UPDATE message SET heartbeat_at = :then WHERE id = :id"),
            {"then": utcnow() - timedelta(minutes=1), "id": answer.id},
        )

    read = read_page(secret, chat.id, "")

    assert read.user is not None and read.user.user_id == user.user_id
    assert read.conversation is not None and read.conversation.id == chat.id
    assert [(v.role, v.status, v.content) for v in read.views] == [
        ("user", "done", "q"),
        ("assistant", "interrupted", "half an ans"),
    ]
    assert [row["id"] for row in read.conversations] == [chat.id]
    stored = store.message_for_user(user.user_id, answer.id)
    assert stored is not None and stored.status == "interrupted"


def test_a_page_load_without_a_session_reads_nothing(database: str) -> None:
    read = read_page("not-a-session", "", "")
    assert read.user is None and read.conversation is None and read.views == []
