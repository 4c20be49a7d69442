"""Turns in flight, so that Stop can end a turn that another event started.

A turn runs as a background task; Stop arrives as a separate event. `register` records the
running task under a key (the conversation, or the tab), `cancel` cancels it.

With several workers (scale-out mode), the worker that receives Stop may not be the one
running the turn: a reload can move the tab's websocket to another worker while the turn
goes on. `shared_through(redis, prefix)` connects the registry to Redis for the life of the
worker: `register` also writes `<prefix>turn:<key>` (the owning worker's id, for 15 minutes),
and `cancel` for a turn that is not local publishes the key on `<prefix>turns:cancel`; every
worker listens there and cancels the turn if it runs it. When Redis does not answer, Stop
still works for turns of the same worker; the listener reconnects by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["InflightTurns", "turns"]

logger = logging.getLogger("behest_chat.inflight")

# A turn outliving this (or a worker that died mid-turn) no longer counts as running.
_TURN_TTL_S = 900
_RECONNECT_DELAY_S = (0.1, 0.25, 0.5, 1.0, 2.0)
_FORGET_OWN = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class InflightTurns:
    """A map from a turn key to its running task; shared across workers through Redis."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self.worker_id = uuid.uuid4().hex
        self._redis: Redis | None = None
        self._prefix = ""
        self._writes: set[asyncio.Task[None]] = set()
        self._write_order = asyncio.Lock()
        self._listening = asyncio.Event()
        self._cancelled: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()
        # Turns whose update Reflex is sending, and those of them a cancel waits for.
        self._sending: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()
        self._deferred: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()

    def register(self, key: str, task: asyncio.Task[Any]) -> None:
        """Record `task` as the turn running under `key`."""
        self._tasks[key] = task
        if self._redis is not None:
            self._in_background(
                self._redis.set(self._turn_key(key), self.worker_id, ex=_TURN_TTL_S)
            )

    def unregister(self, key: str, task: asyncio.Task[Any]) -> None:
        """Forget `key`, unless a newer turn has replaced `task` already."""
        if self._tasks.get(key) is not task:
            return
        del self._tasks[key]
        if self._redis is not None:
            self._in_background(
                self._redis.eval(_FORGET_OWN, 1, self._turn_key(key), self.worker_id)
            )

    def running(self, key: str) -> bool:
        """Whether a turn is running under `key` in this process."""
        task = self._tasks.get(key)
        return task is not None and not task.done()

    def cancel_once(self, task: asyncio.Task[Any]) -> None:
        """Cancel a turn's task, unless it was cancelled through here already.

        A cancelled turn goes on to store its ending; a second cancel (Stop pressed twice,
        a shutdown during a Stop) would interrupt that, and the answer would end as
        interrupted instead of stopped.
        """
        if task in self._cancelled or task.done():
            return
        self._cancelled.add(task)
        if task in self._sending:
            self._deferred.add(task)
        else:
            task.cancel()

    @contextlib.contextmanager
    def sending(self, task: asyncio.Task[Any]) -> Iterator[None]:
        """Around a turn's ``yield``: Reflex then sends the update, outside the turn's code.

        A cancel meanwhile waits until the turn has its hands back. Landing in Reflex, it
        would leave the turn to be closed at that ``yield`` only when it is collected,
        seconds later, and the page would learn of the Stop only then.
        """
        self._sending.add(task)
        try:
            yield
        finally:
            self._sending.discard(task)
            if task in self._deferred:
                self._deferred.discard(task)
                task.cancel()

    def count_here(self) -> int:
        """How many turns are running in this process."""
        return len(self._tasks)

    async def end_all_here(self, timeout: float) -> None:
        """Cancel this process's turns and wait up to ``timeout`` seconds for them to end.

        For shutdown, before the connections to Behest close: a cancelled turn stores its
        partial answer as interrupted, where a turn whose connection closed under it would
        end as an error.
        """
        running = [task for task in self._tasks.values() if not task.done()]
        for task in running:
            self.cancel_once(task)
        if running:
            await asyncio.wait(running, timeout=timeout)

    async def running_anywhere(self, key: str) -> bool:
        """Whether a turn runs under `key` in this worker or, shared through Redis, any other.

        A page can use it on load to tell a turn that goes on elsewhere from one whose worker
        died. When Redis does not answer, the answer is True (nothing is known to be over).
        """
        if self.running(key):
            return True
        if self._redis is None:
            return False
        from redis.exceptions import RedisError

        try:
            return bool(await self._redis.exists(self._turn_key(key)))
        except RedisError:
            return True

    async def cancel(self, key: str) -> bool:
        """Cancel the turn running under `key`, in this worker or another; True if one was.

        For a turn of another worker, True means the turn was registered in Redis when the
        cancel request was sent; that worker cancels it when the message arrives (within
        milliseconds).
        """
        task = self._tasks.get(key)
        if task is not None and not task.done():
            self.cancel_once(task)
            return True
        if self._redis is None:
            return False
        from redis.exceptions import RedisError

        try:
            owner = await self._redis.get(self._turn_key(key))
            # Published even when no owner is recorded yet: its registration may be in flight.
            await self._redis.publish(self._channel, key)
        except RedisError as exc:
            logger.warning("Stop could not reach other workers: Redis error %s", type(exc).__name__)
            return False
        return owner is not None

    @contextlib.asynccontextmanager
    async def shared_through(self, redis: Redis, prefix: str) -> AsyncIterator[None]:
        """Share the registry through `redis` (keys under `prefix`) until the block ends.

        The listener is subscribed before the block's body runs, so a cancel published
        after this returns reaches this worker.
        """
        self._redis, self._prefix = redis, prefix
        self._listening = asyncio.Event()
        self._write_order = asyncio.Lock()
        listener = asyncio.create_task(self._listen(redis), name="inflight-cancel-listener")
        subscribed = asyncio.create_task(self._listening.wait())
        try:
            await asyncio.wait(
                [listener, subscribed], return_when=asyncio.FIRST_COMPLETED, timeout=3
            )
            subscribed.cancel()
            yield
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            self._redis = None
            if self._writes:
                await asyncio.wait(self._writes, timeout=2)

    @property
    def _channel(self) -> str:
        return f"{self._prefix}turns:cancel"

    def _turn_key(self, key: str) -> str:
        return f"{self._prefix}turn:{key}"

    def _in_background(self, command: Any) -> None:
        async def run() -> None:
            from redis.exceptions import RedisError

            # One at a time, in the order they were asked for: a turn's removal must never
            # overtake its registration on another connection.
            async with self._write_order:
                try:
                    await command
                except RedisError as exc:
                    logger.warning("turn registry not updated in Redis: %s", type(exc).__name__)

        task = asyncio.get_running_loop().create_task(run())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _listen(self, redis: Redis) -> None:
        """Cancel local turns named on the channel; resubscribe after Redis comes back."""
        from redis.exceptions import RedisError

        failures = 0
        while True:
            try:
                async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    self._listening.set()
                    if failures:
                        logger.warning("Stop reaches other workers again")
                    failures = 0
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._cancel_local(message["data"])
            except (RedisError, OSError) as exc:
                if failures == 0:
                    logger.warning(
                        "lost the Redis channel for Stop (%s); reconnecting", type(exc).__name__
                    )
                delay = _RECONNECT_DELAY_S[min(failures, len(_RECONNECT_DELAY_S) - 1)]
                failures += 1
                await asyncio.sleep(delay)

    def _cancel_local(self, raw: bytes | str) -> None:
        key = raw.decode() if isinstance(raw, bytes) else raw
        task = self._tasks.get(key)
        if task is not None:
            self.cancel_once(task)


turns = InflightTurns()
