"""Keep a streaming answer in the database while it is being written.

The turn appends pieces with :meth:`TurnRecorder.append`. Between
:meth:`TurnRecorder.start_saving` and :meth:`TurnRecorder.stop_saving`, the text so far (and a
fresh heartbeat) is written every ``interval`` seconds, even when nothing new arrived, so other
processes can tell the turn is alive. The answers in progress in one process are written
together, one statement per interval, however many there are. If a write finds that a turn is
no longer its run's (another process marked it interrupted after a long silence), its
recorder's ``lost`` is set and ``on_lost`` is called so the turn can stop. ``stop_saving``
takes effect at once: a turn that is ending stores its own last text, and a save in flight
must not take that for a lost turn.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable

from behest_chat.conversations import store

__all__ = ["SAVE_INTERVAL_S", "TurnRecorder"]

SAVE_INTERVAL_S = 1.0

logger = logging.getLogger("behest_chat.recorder")


class TurnRecorder:
    """The text of one answer in progress and its periodic persistence.

    Attributes:
        message_id: the assistant message being written.
        run_id: this run's stamp on the message.
        text: the whole answer so far (an earlier part first, when continuing).
        chunks: content pieces received in this run (the estimate of its completion tokens).
        lost: set once a save finds that another process took the turn over.
    """

    def __init__(
        self, message_id: int, run_id: str, prefix: str = "", interval: float = SAVE_INTERVAL_S
    ) -> None:
        """Start recording ``message_id`` for ``run_id``; ``prefix`` is text kept from before."""
        self.message_id = message_id
        self.run_id = run_id
        self.text = prefix
        self.chunks = 0
        self.lost = False
        self._interval = interval
        self._batch: _Batch | None = None

    def append(self, piece: str) -> None:
        """Add one streamed piece of the answer."""
        self.text += piece
        self.chunks += 1

    def start_saving(self, on_lost: Callable[[], None]) -> None:
        """Save every ``interval`` seconds from now; ``on_lost`` is called if the turn is lost."""
        self._batch = _batch(self._interval)
        self._batch.add(self, on_lost)

    def stop_saving(self) -> None:
        """Stop saving now: from here on, no save reports this turn lost."""
        if self._batch is not None:
            self._batch.discard(self)


class _Batch:
    """The recorders of one event loop with one interval, saved together."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.members: dict[TurnRecorder, Callable[[], None]] = {}
        self._task: asyncio.Task[None] | None = None

    def add(self, recorder: TurnRecorder, on_lost: Callable[[], None]) -> None:
        self.members[recorder] = on_lost
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def discard(self, recorder: TurnRecorder) -> None:
        self.members.pop(recorder, None)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            recorders = list(self.members)
            if not recorders:  # the next recorder starts a new task
                return
            answers = [(r.message_id, r.run_id, r.text) for r in recorders]
            try:
                saved = await asyncio.to_thread(store.save_progress_many, answers)
            except Exception as exc:  # the database is away: try again next interval
                logger.warning("answers in progress not saved: %s", type(exc).__name__)
                continue
            for recorder in recorders:
                if recorder.message_id in saved:
                    continue
                on_lost = self.members.pop(recorder, None)
                if on_lost is not None:  # still running: a turn that ended is not lost
                    recorder.lost = True
                    on_lost()


# One batch per event loop and interval (tests run several loops, one after another).
_batches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, _Batch]] = (
    weakref.WeakKeyDictionary()
)


def _batch(interval: float) -> _Batch:
    by_interval = _batches.setdefault(asyncio.get_running_loop(), {})
    if interval not in by_interval:
        by_interval[interval] = _Batch(interval)
    return by_interval[interval]
