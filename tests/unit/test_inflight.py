"""Shutdown ends this process's turns the way Stop does, before Behest's connections close."""

from __future__ import annotations

import asyncio
import contextlib
import time

from behest_chat.inflight import InflightTurns


async def _turn(started: asyncio.Event, ended: list[str], name: str, stubborn: bool = False):
    started.set()
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        asyncio.current_task().uncancel()  # as a chat turn does: it goes on to store its end
        if stubborn:
            await asyncio.Event().wait()
        await asyncio.to_thread(ended.append, name)


async def test_ending_all_turns_here_waits_for_each_to_store_its_ending() -> None:
    turns, ended = InflightTurns(), []
    tasks = {}
    for name in ("a", "b"):
        started = asyncio.Event()
        tasks[name] = asyncio.create_task(_turn(started, ended, name))
        turns.register(name, tasks[name])
        await started.wait()
    await turns.end_all_here(timeout=5)
    assert sorted(ended) == ["a", "b"]
    assert all(task.done() and not task.cancelled() for task in tasks.values())


async def test_a_turn_that_does_not_end_delays_shutdown_only_until_the_timeout() -> None:
    turns, ended = InflightTurns(), []
    started = asyncio.Event()
    task = asyncio.create_task(_turn(started, ended, "stuck", stubborn=True))
    turns.register("stuck", task)
    await started.wait()
    began = time.monotonic()
    await turns.end_all_here(timeout=0.2)
    assert 0.15 <= time.monotonic() - began < 2 and not task.done() and ended == []
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_a_turn_is_cancelled_once_however_often_it_is_stopped() -> None:
    turns, ended = InflightTurns(), []
    started, storing, stored = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def turn() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            asyncio.current_task().uncancel()
            storing.set()
            await stored.wait()  # storing its ending when the second Stop comes
            ended.append("stopped")

    task = asyncio.create_task(turn())
    turns.register("c1", task)
    await started.wait()
    assert await turns.cancel("c1")
    await storing.wait()
    assert await turns.cancel("c1")  # pressed again: the turn is already ending
    await turns.end_all_here(timeout=0.05)  # and a shutdown meanwhile
    stored.set()
    await asyncio.wait_for(task, 5)
    assert ended == ["stopped"] and not task.cancelled()
