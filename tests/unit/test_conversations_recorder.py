"""The turn recorder saves a streaming answer on a schedule and notices a takeover."""

from __future__ import annotations

import asyncio
import time

from behest_chat.accounts import service as accounts
from behest_chat.conversations import store
from behest_chat.conversations.recorder import TurnRecorder


def _answer(user_id: int, run_id: str):
    chat = store.create_conversation(user_id)
    question = store.add_user_message(user_id, chat.id, "q", None)
    return chat, store.start_answer(user_id, chat.id, question.id, run_id)


async def test_the_text_and_heartbeat_are_saved_every_interval(app_db) -> None:
    user = accounts.register("fay", "Fay", "correct horse battery")
    chat, answer = _answer(user.user_id, "run-1")
    recorder = TurnRecorder(answer.id, "run-1", prefix="Earlier part. ", interval=0.05)
    saver = asyncio.create_task(recorder.keep_saving(on_lost=lambda: None))
    first_beat = store.streaming_answer(user.user_id, chat.id).heartbeat_at
    recorder.append("new ")
    recorder.append("words")
    deadline = time.monotonic() + 2
    while store.streaming_answer(user.user_id, chat.id).content != "Earlier part. new words":
        assert time.monotonic() < deadline, "the text was not saved"
        await asyncio.sleep(0.01)  # polling the database, bounded by the deadline
    saved = store.streaming_answer(user.user_id, chat.id)
    assert saved.heartbeat_at > first_beat and store.is_live(saved)
    assert recorder.chunks == 2
    saver.cancel()


async def test_a_takeover_stops_the_recorder(app_db) -> None:
    user = accounts.register("gus", "Gus", "correct horse battery")
    chat, answer = _answer(user.user_id, "run-1")
    lost = asyncio.Event()
    recorder = TurnRecorder(answer.id, "run-1", interval=0.02)
    # Another process decided this run is gone and marked the answer interrupted.
    from datetime import timedelta

    from behest_chat.accounts.models import utcnow

    assert store.interrupt_stale(chat.id, now=utcnow() + timedelta(seconds=30)) == [answer.id]
    await asyncio.wait_for(recorder.keep_saving(on_lost=lost.set), 2)
    assert lost.is_set() and recorder.lost
    assert not store.save_progress(answer.id, "run-1", recorder.text)


async def test_answers_in_progress_are_saved_together_and_a_takeover_stops_only_its_own(
    app_db,
) -> None:
    from datetime import timedelta

    from behest_chat.accounts.models import utcnow

    user = accounts.register("hal", "Hal", "correct horse battery")
    kept_chat, kept = _answer(user.user_id, "run-kept")
    taken_chat, taken = _answer(user.user_id, "run-taken")
    assert store.interrupt_stale(taken_chat.id, now=utcnow() + timedelta(seconds=30))
    kept_recorder = TurnRecorder(kept.id, "run-kept", interval=0.02)
    taken_recorder = TurnRecorder(taken.id, "run-taken", interval=0.02)
    kept_lost, taken_lost = asyncio.Event(), asyncio.Event()
    kept_saver = asyncio.create_task(kept_recorder.keep_saving(on_lost=kept_lost.set))
    kept_recorder.append("still here")
    await asyncio.wait_for(taken_recorder.keep_saving(on_lost=taken_lost.set), 2)
    deadline = time.monotonic() + 2
    while store.streaming_answer(user.user_id, kept_chat.id).content != "still here":
        assert time.monotonic() < deadline, "the other answer was not saved"
        await asyncio.sleep(0.01)  # polling the database, bounded by the deadline
    assert taken_recorder.lost and taken_lost.is_set()
    assert not kept_recorder.lost and not kept_lost.is_set() and not kept_saver.done()
    kept_saver.cancel()


def test_save_progress_many_saves_only_the_answers_their_runs_still_own(app_db) -> None:
    user = accounts.register("ida", "Ida", "correct horse battery")
    _, mine = _answer(user.user_id, "run-1")
    _, other = _answer(user.user_id, "run-2")
    saved = store.save_progress_many(
        [(mine.id, "run-1", "mine so far"), (other.id, "someone-else", "hijack")]
    )
    assert saved == {mine.id}
    assert store.message_for_user(user.user_id, mine.id).content == "mine so far"
    assert store.message_for_user(user.user_id, other.id).content == ""
    assert store.save_progress_many([]) == set()
