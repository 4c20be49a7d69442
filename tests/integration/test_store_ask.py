"""Storing a question with its answer (``store.ask``), on SQLite and on PostgreSQL, where a
question in an existing conversation is one statement of its own (no transaction needed)."""

from __future__ import annotations

from sqlalchemy import text

from behest_chat import db
from behest_chat.accounts import service as accounts
from behest_chat.conversations import store
from behest_chat.conversations.models import Message
from tests.fixtures.services import statements_sent

# What a stored row must equal in the returned objects (ids and times are compared apart).
FIELDS = ("conversation_id", "parent_id", "depth", "role", "content", "status", "run_id",
          "error_kind", "error", "prompt_tokens", "completion_tokens", "usage_estimated",
          "stop_requested")


def _stored(message_id: int) -> Message:
    with db.session_scope() as session:
        row = session.get(Message, message_id)
        assert row is not None
        return row


def _same(returned: Message, stored: Message) -> None:
    assert returned.id == stored.id
    assert {f: getattr(returned, f) for f in FIELDS} == {f: getattr(stored, f) for f in FIELDS}
    assert (stored.heartbeat_at is None) == (returned.heartbeat_at is None)


def test_a_question_follows_the_branchs_end_with_its_answer_streaming(database: str) -> None:
    user = accounts.register("kim", "Kim", "correct horse battery")
    first = store.ask(user.user_id, "", "first question", "run-1")
    assert first is not None
    store.finish_answer(first.answer.id, "run-1", status="done", content="first answer")

    with db.reading_scope() as session:  # on PostgreSQL, each statement commits on its own
        second = store.ask(user.user_id, first.conversation_id, "second", "run-2", db=session)

    assert second is not None
    assert (second.conversation_id, second.session_id) == (first.conversation_id,
                                                           first.session_id)
    assert second.title == "first question"  # named by the first question, kept
    question, answer = _stored(second.question.id), _stored(second.answer.id)
    _same(second.question, question)
    _same(second.answer, answer)
    assert (question.parent_id, question.depth, question.role) == (first.answer.id, 2, "user")
    assert (answer.parent_id, answer.depth, answer.status) == (question.id, 3, "streaming")
    assert (answer.run_id, answer.content) == ("run-2", "") and answer.heartbeat_at is not None
    conversation = store.get_conversation(user.user_id, first.conversation_id)
    assert conversation is not None and conversation.leaf_id == answer.id
    history = store.branch_history(first.conversation_id, question.id)
    assert [m["content"] for m in history] == ["first question", "first answer", "second"]


def test_the_first_question_names_the_conversation_unless_its_title_was_typed(
    database: str,
) -> None:
    user = accounts.register("kim", "Kim", "correct horse battery")
    untitled = store.create_conversation(user.user_id)
    named = store.ask(user.user_id, untitled.id, "what is streaming?", "run-1")
    assert named is not None and named.title == "what is streaming?"
    assert named.question.parent_id is None and named.question.depth == 0

    typed = store.create_conversation(user.user_id)
    assert store.rename_conversation(user.user_id, typed.id, "My title") == "My title"
    kept = store.ask(user.user_id, typed.id, "a question", "run-2")
    assert kept is not None and kept.title == "My title"
    conversation = store.get_conversation(user.user_id, typed.id)
    assert conversation is not None and conversation.title == "My title"


def test_a_question_in_someone_elses_conversation_stores_nothing(database: str) -> None:
    owner = accounts.register("kim", "Kim", "correct horse battery")
    other = accounts.register("lee", "Lee", "correct horse battery")
    asked = store.ask(owner.user_id, "", "mine", "run-1")
    assert asked is not None

    assert store.ask(other.user_id, asked.conversation_id, "theirs", "run-2") is None
    with db.session_scope() as session:
        count = session.execute(text("SELECT count(*) FROM message")).scalar()
    assert count == 2


def test_on_postgresql_a_question_in_a_conversation_is_one_statement(database: str) -> None:
    user = accounts.register("kim", "Kim", "correct horse battery")
    first = store.ask(user.user_id, "", "first", "run-1")
    assert first is not None
    with statements_sent() as statements, db.reading_scope() as session:
        assert store.ask(user.user_id, first.conversation_id, "second", "run-2", db=session)
    if database.startswith("sqlite"):
        assert len(statements) == 4  # the branch's end, two inserts, the update
    else:
        assert len(statements) == 1, statements
