"""Ending an answer with its ledger entry (``store.finish_answer(ledger=…)``), on SQLite and
on PostgreSQL, where it is one statement of its own (no transaction needed)."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlmodel import Session

from behest_chat import db
from behest_chat.accounts import service as accounts
from behest_chat.accounts.sessions import SessionUser
from behest_chat.conversations import store
from behest_chat.conversations.models import Conversation, TokenUsage
from behest_chat.state import turn_store
from tests.fixtures.services import statements_sent


def _asked() -> tuple[int, store.Asked]:
    user = accounts.register("kim", "Kim", "correct horse battery")
    asked = store.ask(user.user_id, "", "a question", "run-1")
    assert asked is not None
    return user.user_id, asked


def _entry(user_id: int, asked: store.Asked, prompt: int, completion: int) -> TokenUsage:
    return store.ledger_entry(
        user_id=user_id,
        conversation_id=asked.conversation_id,
        session_id=asked.session_id,
        message_id=asked.answer.id,
        prompt_tokens=prompt,
        completion_tokens=completion,
        estimated=False,
    )


def _end_counted(
    user_id: int,
    asked: store.Asked,
    status: str,
    content: str,
    tokens: tuple[int, int],
    session: Session,
    *,
    count_unowned: bool = False,
) -> bool:
    """End run-1's answer with ``tokens`` (prompt, completion) and their ledger entry."""
    return store.finish_answer(
        asked.answer.id,
        "run-1",
        status=status,
        content=content,
        prompt_tokens=tokens[0],
        completion_tokens=tokens[1],
        ledger=_entry(user_id, asked, *tokens),
        count_unowned=count_unowned,
        db=session,
    )


def _ledger() -> list[tuple[int | None, int, int]]:
    with db.session_scope() as session:
        rows = session.execute(
            select(TokenUsage.message_id, TokenUsage.prompt_tokens, TokenUsage.completion_tokens)
            .order_by(TokenUsage.id)  # type: ignore[arg-type]
        )
        return [tuple(row) for row in rows]


def _updated_at(conversation_id: str):
    with db.session_scope() as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        return conversation.updated_at


def test_an_ending_is_stored_with_its_tokens_and_moves_the_conversation_up(
    database: str,
) -> None:
    user_id, asked = _asked()
    asked_at = _updated_at(asked.conversation_id)

    with statements_sent() as statements, db.reading_scope() as session:
        assert _end_counted(user_id, asked, "done", "the answer", (12, 30), session)

    answer = store.message_for_user(user_id, asked.answer.id)
    assert answer is not None
    assert (answer.status, answer.content, answer.heartbeat_at) == ("done", "the answer", None)
    assert (answer.prompt_tokens, answer.completion_tokens) == (12, 30)
    assert _ledger() == [(asked.answer.id, 12, 30)]
    assert _updated_at(asked.conversation_id) > asked_at
    if database.startswith("sqlite"):
        assert len(statements) == 3  # the ending, the conversation's time, the entry
    else:
        assert len(statements) == 1, statements


def test_a_late_ending_changes_nothing_and_counts_only_when_told(database: str) -> None:
    user_id, asked = _asked()
    assert store.finish_answer(asked.answer.id, "run-1", status="stopped", content="half")
    asked_at = _updated_at(asked.conversation_id)

    for count_unowned in (False, True):
        with db.reading_scope() as session:
            assert not _end_counted(
                user_id, asked, "done", "too late", (5, 7), session, count_unowned=count_unowned
            )

    answer = store.message_for_user(user_id, asked.answer.id)
    assert answer is not None
    assert (answer.status, answer.content, answer.prompt_tokens) == ("stopped", "half", 0)
    assert _ledger() == [(asked.answer.id, 5, 7)]  # once: the request went out
    assert _updated_at(asked.conversation_id) == asked_at


def test_an_ending_without_tokens_adds_no_entry(database: str) -> None:
    user_id, asked = _asked()
    with db.reading_scope() as session:
        assert store.finish_answer(
            asked.answer.id, "run-1", status="error", content="", error="failed", db=session
        )
    answer = store.message_for_user(user_id, asked.answer.id)
    assert answer is not None and (answer.status, answer.error) == ("error", "failed")
    assert _ledger() == []


def test_an_ending_whose_allowance_cannot_be_read_is_kept_and_counted_once(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_id, asked = _asked()
    user = SessionUser(user_id, "kim", "Kim", 1)
    turn = turn_store.Turn(user, asked.conversation_id, asked.session_id, asked.question.id)
    outcome = turn_store.Outcome()
    outcome.end("done", "")
    ending = turn_store.Ending(turn, asked.answer.id, "run-1", outcome, "the answer", 12, 30,
                               estimated=False)

    def unreadable(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(turn_store, "user_allowance", unreadable)
    assert turn_store.store_send_ending(ending, str(asked.question.id)) is None

    answer = store.message_for_user(user_id, asked.answer.id)
    assert answer is not None and (answer.status, answer.content) == ("done", "the answer")
    assert _ledger() == [(asked.answer.id, 12, 30)]
