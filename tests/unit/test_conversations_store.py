"""The conversation store on a real, migrated SQLite file: ownership, versions, paging, turns."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import behest_chat.conversations.models  # noqa: F401  (registers the tables)
from behest_chat import db
from behest_chat.accounts import service as accounts
from behest_chat.accounts.models import utcnow
from behest_chat.conversations import store
from behest_chat.conversations.models import Message


@pytest.fixture
def alice(app_db):
    return accounts.register("alice", "Alice", "correct horse battery")


@pytest.fixture
def bob(app_db):
    return accounts.register("bob", "Bob", "correct horse battery")


def answer(user, conversation_id: str, question_id: int, text: str, run: str = "run") -> int:
    reply = store.start_answer(user.user_id, conversation_id, question_id, run)
    assert reply is not None and reply.id is not None
    assert store.finish_answer(reply.id, run, status="done", content=text)
    return reply.id


def turn(user, conversation_id: str, parent: int | None, question: str, reply: str) -> int:
    asked = store.add_user_message(user.user_id, conversation_id, question, parent)
    assert asked is not None and asked.id is not None
    return answer(user, conversation_id, asked.id, reply)


def test_migration_creates_exactly_the_model_tables(app_db) -> None:
    with db.engine_for(app_db.url).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []


def test_title_comes_from_the_first_question_and_a_rename_sticks(alice) -> None:
    long_question = "How do I read a large CSV file in Python without running out of memory?"
    chat = store.create_conversation(alice.user_id)
    first = store.add_user_message(alice.user_id, chat.id, long_question, None)
    assert first is not None
    title = store.get_conversation(alice.user_id, chat.id).title
    assert title.endswith("…") and long_question.startswith(title[:-1]) and len(title) <= 61
    store.add_user_message(alice.user_id, chat.id, "An edit of the first question", None)
    assert store.get_conversation(alice.user_id, chat.id).title == title
    assert store.rename_conversation(alice.user_id, chat.id, "  CSV   tips ") == "CSV tips"
    store.add_user_message(alice.user_id, chat.id, "Another first question", None)  # an edit
    assert store.get_conversation(alice.user_id, chat.id).title == "CSV tips"
    with pytest.raises(ValueError, match=r"^title: "):
        store.rename_conversation(alice.user_id, chat.id, "   ")


def test_another_user_can_neither_read_nor_change_a_conversation(alice, bob) -> None:
    chat = store.create_conversation(alice.user_id)
    reply = turn(alice, chat.id, None, "secret plan", "the answer")
    assert store.get_conversation(bob.user_id, chat.id) is None
    assert store.window(bob.user_id, chat.id) == ([], False)
    assert store.list_conversations(bob.user_id) == []
    assert store.list_conversations(bob.user_id, "secret") == []
    assert store.rename_conversation(bob.user_id, chat.id, "mine") is None
    assert store.delete_conversation(bob.user_id, chat.id) is False
    assert store.save_draft(bob.user_id, chat.id, "x") is False
    assert store.add_user_message(bob.user_id, chat.id, "hi", reply) is None
    assert store.message_for_user(bob.user_id, reply) is None
    assert store.select_version(bob.user_id, reply, -1) is False
    assert store.request_stop(bob.user_id, chat.id) is None
    assert store.get_conversation(alice.user_id, chat.id).title == "secret plan"
    for bad in ("", "../etc", "A" * 32, 42, None):
        assert store.get_conversation(alice.user_id, bad) is None  # type: ignore[arg-type]


def test_a_parent_from_another_conversation_is_refused(alice) -> None:
    one, two = store.create_conversation(alice.user_id), store.create_conversation(alice.user_id)
    reply = turn(alice, one.id, None, "q", "a")
    assert store.add_user_message(alice.user_id, two.id, "q2", reply) is None
    question = store.add_user_message(alice.user_id, one.id, "q3", reply)
    assert store.start_answer(alice.user_id, two.id, question.id, "r") is None


def test_regenerated_answers_are_versions_and_stay_reachable(alice) -> None:
    chat = store.create_conversation(alice.user_id)
    question = store.add_user_message(alice.user_id, chat.id, "pick a number", None)
    first = answer(alice, chat.id, question.id, "four")
    second = answer(alice, chat.id, question.id, "seven")
    views, _ = store.window(alice.user_id, chat.id)
    assert [(v.content, v.version, v.versions) for v in views] == [
        ("pick a number", 1, 1),
        ("seven", 2, 2),
    ]
    assert store.select_version(alice.user_id, second, -1)
    views, _ = store.window(alice.user_id, chat.id)
    assert [(v.content, v.version) for v in views] == [("pick a number", 1), ("four", 1)]
    assert not store.select_version(alice.user_id, first, -1)  # no earlier version
    assert store.select_version(alice.user_id, first, +1)
    assert store.window(alice.user_id, chat.id)[0][-1].content == "seven"


def test_an_edited_question_starts_a_branch_and_switching_back_restores_the_tail(alice) -> None:
    chat = store.create_conversation(alice.user_id)
    a1 = turn(alice, chat.id, None, "q1", "a1")
    turn(alice, chat.id, a1, "q2", "a2")
    q2 = store.window(alice.user_id, chat.id)[0][2]
    edited = store.add_user_message(alice.user_id, chat.id, "q2 edited", a1)
    answer(alice, chat.id, edited.id, "a2 for the edit")
    views, _ = store.window(alice.user_id, chat.id)
    assert [v.content for v in views] == ["q1", "a1", "q2 edited", "a2 for the edit"]
    assert (views[2].version, views[2].versions) == (2, 2)
    assert store.select_version(alice.user_id, edited.id, -1)
    assert [v.content for v in store.window(alice.user_id, chat.id)[0]] == ["q1", "a1", "q2", "a2"]
    assert store.window(alice.user_id, chat.id)[0][2].id == q2.id


def test_a_long_conversation_is_paged_from_the_newest_message(alice) -> None:
    chat = store.create_conversation(alice.user_id)
    parent = None
    for i in range(120):
        parent = turn(alice, chat.id, parent, f"q{i}", f"a{i}")
    started = time.perf_counter()
    page, older = store.window(alice.user_id, chat.id, limit=50)
    assert time.perf_counter() - started < 0.5
    assert older and len(page) == 50
    assert (page[0].content, page[-1].content) == ("q95", "a119")
    page2, older2 = store.window(alice.user_id, chat.id, before_id=page[0].id, limit=50)
    assert older2 and (page2[0].content, page2[-1].content) == ("q70", "a94")
    rest, more = store.window(alice.user_id, chat.id, before_id=page2[0].id, limit=500)
    assert not more and rest[0].content == "q0" and len(rest) == 140
    history = store.branch_history(chat.id, parent)
    assert len(history) == 240 and history[0] == {"role": "user", "content": "q0"}


def test_search_matches_titles_and_text_without_wildcards(alice) -> None:
    lists = store.create_conversation(alice.user_id)
    turn(alice, lists.id, None, "Tell me about lists", "Lists hold items in order.")
    dicts = store.create_conversation(alice.user_id)
    turn(alice, dicts.id, None, "And dictionaries?", "They map keys to 100% of values_x.")
    assert [c.id for c in store.list_conversations(alice.user_id)] == [dicts.id, lists.id]
    assert [c.id for c in store.list_conversations(alice.user_id, "LISTS")] == [lists.id]
    assert [c.id for c in store.list_conversations(alice.user_id, "in order")] == [lists.id]
    assert [c.id for c in store.list_conversations(alice.user_id, "100%")] == [dicts.id]
    assert [c.id for c in store.list_conversations(alice.user_id, "values_x")] == [dicts.id]
    # % and _ are literal characters, not wildcards.
    assert store.list_conversations(alice.user_id, "keys%values") == []
    assert store.list_conversations(alice.user_id, "map_keys") == []


def test_a_streaming_answer_is_saved_and_a_late_run_cannot_overwrite_its_end(alice) -> None:
    chat = store.create_conversation(alice.user_id)
    question = store.add_user_message(alice.user_id, chat.id, "q", None)
    reply = store.start_answer(alice.user_id, chat.id, question.id, "run-a")
    assert store.is_live(reply)
    assert store.save_progress(reply.id, "run-a", "partial text")
    assert not store.save_progress(reply.id, "run-b", "hijack")
    assert store.streaming_answer(alice.user_id, chat.id).content == "partial text"
    # Nothing is stale yet; ten seconds later the process counts as gone.
    assert store.interrupt_stale(chat.id) == []
    assert store.interrupt_stale(chat.id, now=utcnow() + timedelta(seconds=10)) == [reply.id]
    kept = store.message_for_user(alice.user_id, reply.id)
    assert (kept.status, kept.content) == ("interrupted", "partial text")
    assert not store.save_progress(reply.id, "run-a", "more")
    assert not store.finish_answer(reply.id, "run-a", status="done", content="late")
    assert store.message_for_user(alice.user_id, reply.id).content == "partial text"


def test_a_send_sees_the_branch_end_and_whether_an_answer_is_being_written(alice, bob) -> None:
    chat = store.create_conversation(alice.user_id)
    empty = store.send_target(alice.user_id, chat.id)
    assert empty == store.SendTarget(None, chat.session_id, busy=False)
    last = turn(alice, chat.id, None, "q", "a")
    assert store.send_target(alice.user_id, chat.id) == store.SendTarget(
        last, chat.session_id, busy=False
    )
    question = store.add_user_message(alice.user_id, chat.id, "q2", last)
    reply = store.start_answer(alice.user_id, chat.id, question.id, "run")
    assert store.send_target(alice.user_id, chat.id).busy
    # A streaming answer whose process went quiet no longer makes the conversation busy.
    with db.session_scope() as session:
        session.connection().execute(
            sa.update(Message)
            .where(Message.id == reply.id)
            .values(heartbeat_at=utcnow() - store.STALE_AFTER - timedelta(seconds=1))
        )
    assert not store.send_target(alice.user_id, chat.id).busy
    assert store.send_target(bob.user_id, chat.id) is None
    assert store.send_target(alice.user_id, "not-an-id") is None


def test_stop_is_recorded_on_the_streaming_answer(alice) -> None:
    chat = store.create_conversation(alice.user_id)
    question = store.add_user_message(alice.user_id, chat.id, "q", None)
    reply = store.start_answer(alice.user_id, chat.id, question.id, "run")
    assert not store.stop_requested(reply.id)
    assert store.request_stop(alice.user_id, chat.id) == reply.id
    assert store.stop_requested(reply.id)


def test_continue_reopens_an_ended_answer_and_adds_its_tokens(alice) -> None:
    chat = store.create_conversation(alice.user_id)
    question = store.add_user_message(alice.user_id, chat.id, "q", None)
    reply = store.start_answer(alice.user_id, chat.id, question.id, "one")
    store.finish_answer(
        reply.id, "one", status="stopped", content="half", prompt_tokens=5, completion_tokens=2
    )
    assert store.resume_answer(alice.user_id, chat.id, reply.id, "two") is not None
    assert store.resume_answer(alice.user_id, chat.id, reply.id, "three") is None  # streaming
    store.finish_answer(
        reply.id,
        "two",
        status="done",
        content="half and whole",
        prompt_tokens=7,
        completion_tokens=3,
    )
    done = store.message_for_user(alice.user_id, reply.id)
    assert (done.status, done.content) == ("done", "half and whole")
    assert (done.prompt_tokens, done.completion_tokens) == (12, 5)


def test_deleting_a_conversation_keeps_its_usage(alice) -> None:
    from behest_chat.conversations.budgets import allowance_for

    chat = store.create_conversation(alice.user_id)
    store.record_usage(store.ledger_entry(
        user_id=alice.user_id,
        conversation_id=chat.id,
        session_id=chat.session_id,
        message_id=None,
        prompt_tokens=10,
        completion_tokens=20,
        estimated=False,
    ))
    assert store.delete_conversation(alice.user_id, chat.id)
    assert store.get_conversation(alice.user_id, chat.id) is None
    kept = allowance_for(alice.user_id, 1, None, daily_budget=0, conversation_cap=None)
    assert kept.used_today == 30


def test_drafts_are_kept_per_conversation_and_cleared_by_sending(alice) -> None:
    chat = store.create_conversation(alice.user_id)
    assert store.save_draft(alice.user_id, chat.id, "half-typed")
    assert store.get_conversation(alice.user_id, chat.id).draft == "half-typed"
    store.add_user_message(alice.user_id, chat.id, "sent", None)
    assert store.get_conversation(alice.user_id, chat.id).draft == ""


def test_ask_stores_the_question_and_its_answer_as_the_two_step_store_does(alice, bob) -> None:
    question = "How do I sort a dict by value?"
    asked = store.ask(alice.user_id, "", question, "run-1", session_id="s-1")
    assert asked is not None and asked.question.id is not None and asked.answer.id is not None
    chat = store.get_conversation(alice.user_id, asked.conversation_id)
    assert (chat.title, chat.session_id, chat.leaf_id) == (
        "How do I sort a dict by value?", "s-1", asked.answer.id
    )
    assert (asked.question.parent_id, asked.question.depth) == (None, 0)
    assert store.streaming_answer(alice.user_id, chat.id).id == asked.answer.id
    assert store.finish_answer(asked.answer.id, "run-1", status="done", content="sorted()")
    store.save_draft(alice.user_id, chat.id, "half a thought")
    # The next question follows the branch's end; the draft is cleared, the title kept.
    second = store.ask(alice.user_id, chat.id, "And in reverse?", "run-2")
    assert second is not None and second.session_id == "s-1"
    assert (second.question.parent_id, second.question.depth) == (asked.answer.id, 2)
    assert (second.answer.parent_id, second.answer.depth) == (second.question.id, 3)
    chat = store.get_conversation(alice.user_id, chat.id)
    assert (chat.leaf_id, chat.draft, chat.title) == (
        second.answer.id, "", "How do I sort a dict by value?"
    )
    assert [m["content"] for m in store.branch_history(chat.id, second.question.id)] == [
        "How do I sort a dict by value?", "sorted()", "And in reverse?"
    ]
    views, _ = store.window(alice.user_id, chat.id)
    assert [(v.role, v.status, v.versions) for v in views] == [
        ("user", "done", 1), ("assistant", "done", 1), ("user", "done", 1),
        ("assistant", "streaming", 1),
    ]
    # Someone else's conversation, or one that does not exist, stores nothing.
    assert store.ask(bob.user_id, chat.id, "mine now?", "run-3") is None
    assert store.ask(alice.user_id, "0" * 32, "anyone?", "run-4") is None
    assert store.get_conversation(alice.user_id, chat.id).leaf_id == second.answer.id


def test_ask_names_an_empty_conversation_unless_it_was_renamed(alice) -> None:
    chat = store.create_conversation(alice.user_id)
    assert store.ask(alice.user_id, chat.id, "First question here", "run").title == (
        "First question here"
    )
    renamed = store.create_conversation(alice.user_id)
    store.rename_conversation(alice.user_id, renamed.id, "Mine")
    assert store.ask(alice.user_id, renamed.id, "First question", "run").title == "Mine"
