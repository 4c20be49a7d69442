"""Stop across workers: the turn registry shared through real Redis pub/sub."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from behest_chat.inflight import InflightTurns
from behest_chat.redis_support import create_redis
from tests.fixtures.gateway import ROOT
from tests.fixtures.services import PrivateRedis, RedisNamespace

# Another worker process: runs one turn under the key and reports how it ended.
WORKER = """
import asyncio, sys
from behest_chat.inflight import InflightTurns
from behest_chat.redis_support import create_redis

redis_url, prefix, key = sys.argv[1:4]

async def main():
    turns = InflightTurns()
    async with turns.shared_through(create_redis(redis_url), prefix):
        async def turn():
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                print("cancelled", flush=True)
                raise
        task = asyncio.create_task(turn())
        turns.register(key, task)
        await asyncio.sleep(0)
        print("running", flush=True)
        await asyncio.gather(task, return_exceptions=True)
        turns.unregister(key, task)

asyncio.run(main())
"""

Worker = Callable[[str, str], Awaitable[InflightTurns]]


@pytest.fixture
async def worker() -> AsyncIterator[Worker]:
    """``await worker(redis_url, prefix)``: a registry shared through Redis, as one worker."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(redis_url: str, prefix: str) -> InflightTurns:
            turns = InflightTurns()
            redis = create_redis(redis_url)
            stack.push_async_callback(redis.aclose)
            await stack.enter_async_context(turns.shared_through(redis, prefix))
            return turns

        yield start


async def idle_turn() -> None:
    await asyncio.Event().wait()


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)  # polling Redis with a deadline


async def test_stop_reaches_a_turn_running_in_another_worker_process(
    redis_namespace: RedisNamespace, worker: Worker
) -> None:
    other = subprocess.Popen(
        [sys.executable, "-c", WORKER, redis_namespace.url, redis_namespace.prefix, "tab-1"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert other.stdout is not None
        assert await asyncio.to_thread(other.stdout.readline) == "running\n"
        this = await worker(redis_namespace.url, redis_namespace.prefix)
        assert not this.running("tab-1")
        await wait_until(lambda: _exists(redis_namespace, "turn:tab-1"))
        assert await this.cancel("tab-1") is True
        out, _ = await asyncio.to_thread(other.communicate, timeout=10)
    finally:
        if other.poll() is None:
            other.kill()
    assert out == "cancelled\n" and other.returncode == 0
    assert not await _exists(redis_namespace, "turn:tab-1"), "the registry forgets ended turns"


async def test_stop_in_the_same_worker_needs_no_redis_round_trip(
    redis_namespace: RedisNamespace, worker: Worker
) -> None:
    turns = await worker(redis_namespace.url, redis_namespace.prefix)
    task = asyncio.create_task(idle_turn())
    turns.register("tab-2", task)
    assert turns.running("tab-2")
    assert await turns.cancel("tab-2") is True
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_unknown_turn_is_not_running_anywhere(
    redis_namespace: RedisNamespace, worker: Worker
) -> None:
    first = await worker(redis_namespace.url, redis_namespace.prefix)
    await worker(redis_namespace.url, redis_namespace.prefix)
    assert await first.cancel("nobody") is False


async def test_an_ended_older_turn_does_not_unregister_the_newer_one(
    redis_namespace: RedisNamespace, worker: Worker
) -> None:
    first = await worker(redis_namespace.url, redis_namespace.prefix)
    second = await worker(redis_namespace.url, redis_namespace.prefix)
    old, new = asyncio.create_task(idle_turn()), asyncio.create_task(idle_turn())
    first.register("tab-3", old)
    first.register("tab-3", new)
    first.unregister("tab-3", old)
    assert first.running("tab-3")
    await wait_until(lambda: _exists(redis_namespace, "turn:tab-3"))
    assert await second.cancel("tab-3") is True
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(new, 5)
    old.cancel()


async def test_prefixes_keep_deployments_apart(
    redis_namespace: RedisNamespace, worker: Worker
) -> None:
    ours = await worker(redis_namespace.url, redis_namespace.prefix)
    ours_too = await worker(redis_namespace.url, redis_namespace.prefix)
    theirs = await worker(redis_namespace.url, redis_namespace.prefix + "other:")
    task, marker = asyncio.create_task(idle_turn()), asyncio.create_task(idle_turn())
    ours.register("tab-4", task)
    ours.register("marker", marker)
    assert await theirs.cancel("tab-4") is False
    # Redis delivers in publish order: once the later cancel has arrived, so had the first.
    await ours_too.cancel("marker")
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(marker, 5)
    assert not task.done()
    task.cancel()


async def test_stop_reaches_other_workers_again_after_redis_restarts(
    private_redis: PrivateRedis, worker: Worker
) -> None:
    runner = await worker(private_redis.url, "t:")
    stopper = await worker(private_redis.url, "t:")
    await asyncio.to_thread(private_redis.restart)
    task = asyncio.create_task(idle_turn())
    runner.register("tab-5", task)

    async def stopped() -> bool:
        await stopper.cancel("tab-5")
        await asyncio.sleep(0.05)  # give the message time to arrive before asking again
        return task.done()

    await wait_until(stopped, timeout=10)
    assert task.cancelled()


async def test_without_redis_stop_still_works_inside_one_worker(
    private_redis: PrivateRedis, worker: Worker
) -> None:
    turns = await worker(private_redis.url, "t:")
    private_redis.stop()
    task = asyncio.create_task(idle_turn())
    turns.register("tab-6", task)
    assert await turns.cancel("tab-6") is True
    assert await turns.cancel("elsewhere") is False  # cannot reach Redis: not found, no crash
    with pytest.raises(asyncio.CancelledError):
        await task


async def _exists(namespace: RedisNamespace, key: str) -> bool:
    async with aioredis.Redis.from_url(namespace.url) as redis:
        return bool(await redis.exists(namespace.prefix + key))


async def test_a_page_can_tell_a_turn_running_elsewhere_from_one_that_ended(
    redis_namespace: RedisNamespace, worker: Worker
) -> None:
    runner = await worker(redis_namespace.url, redis_namespace.prefix)
    viewer = await worker(redis_namespace.url, redis_namespace.prefix)
    task = asyncio.create_task(idle_turn())
    runner.register("tab-7", task)
    await wait_until(lambda: viewer.running_anywhere("tab-7"))
    assert not viewer.running("tab-7"), "not in this worker"
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    runner.unregister("tab-7", task)

    async def over() -> bool:
        return not await viewer.running_anywhere("tab-7")

    await wait_until(over)
    assert not await InflightTurns().running_anywhere("tab-7"), "no Redis: only local turns"


async def test_a_turn_that_ends_at_once_leaves_no_record(redis_namespace: RedisNamespace) -> None:
    turns = InflightTurns()
    redis = create_redis(redis_namespace.url)
    try:
        async with turns.shared_through(redis, redis_namespace.prefix):
            for n in range(20):  # registration and removal race on separate connections
                task = asyncio.create_task(idle_turn())
                turns.register(f"quick-{n}", task)
                turns.unregister(f"quick-{n}", task)
                task.cancel()
        # Leaving the block waits for the registry's writes.
        assert redis_namespace.keys() == []
    finally:
        await redis.aclose()
