"""The turn recorder saves a streaming answer on a schedule and notices a takeover."""

from __future__ import annotations

import asyncio
import threading
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
    recorder.start_saving(on_lost=lambda: None)
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
    recorder.stop_saving()


async def test_a_takeover_stops_the_recorder(app_db) -> None:
    user = accounts.register("gus", "Gus", "correct horse battery")
    chat, answer = _answer(user.user_id, "run-1")
    lost = asyncio.Event()
    recorder = TurnRecorder(answer.id, "run-1", interval=0.02)
    # Another process decided this run is gone and marked the answer interrupted.
    from datetime import timedelta

    from behest_chat.accounts.models import utcnow

    assert store.interrupt_stale(chat.id, now=utcnow() + timedelta(seconds=30)) == [answer.id]
    recorder.start_saving(on_lost=lost.set)
    await asyncio.wait_for(lost.wait(), 2)
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
    kept_recorder.start_saving(on_lost=kept_lost.set)
    kept_recorder.append("still here")
    taken_recorder.start_saving(on_lost=taken_lost.set)
    await asyncio.wait_for(taken_lost.wait(), 2)
    deadline = time.monotonic() + 2
    while store.streaming_answer(user.user_id, kept_chat.id).content != "still here":
        assert time.monotonic() < deadline, "the other answer was not saved"
        await asyncio.sleep(0.01)  # polling the database, bounded by the deadline
    assert taken_recorder.lost and taken_lost.is_set()
    assert not kept_recorder.lost and not kept_lost.is_set()
    kept_recorder.stop_saving()


async def test_a_turn_that_stops_saving_while_a_save_is_in_flight_is_not_reported_lost(
    app_db, monkeypatch
) -> None:
    from datetime import timedelta

    from behest_chat.accounts.models import utcnow

    user = accounts.register("ivy", "Ivy", "correct horse battery")
    ending_chat, ending = _answer(user.user_id, "run-ending")
    other_chat, other = _answer(user.user_id, "run-other")
    # Both look taken over to the save: the ending turn because it stored its own end.
    later = utcnow() + timedelta(seconds=30)
    assert store.interrupt_stale(ending_chat.id, now=later)
    assert store.interrupt_stale(other_chat.id, now=later)
    in_save, release = threading.Event(), threading.Event()
    save = store.save_progress_many

    def held_save(answers):
        in_save.set()
        release.wait(5)
        return save(answers)

    monkeypatch.setattr(store, "save_progress_many", held_save)
    ending_lost, other_lost = asyncio.Event(), asyncio.Event()
    ending_recorder = TurnRecorder(ending.id, "run-ending", interval=0.01)
    other_recorder = TurnRecorder(other.id, "run-other", interval=0.01)
    ending_recorder.start_saving(on_lost=ending_lost.set)
    other_recorder.start_saving(on_lost=other_lost.set)
    assert await asyncio.to_thread(in_save.wait, 5)
    ending_recorder.stop_saving()
    release.set()
    await asyncio.wait_for(other_lost.wait(), 2)  # the same save's answers are handled
    assert not ending_lost.is_set() and not ending_recorder.lost
    assert other_recorder.lost


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
