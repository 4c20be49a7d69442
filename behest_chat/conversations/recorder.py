"""Keep a streaming answer in the database while it is being written.

The turn appends pieces with :meth:`TurnRecorder.append`; :meth:`TurnRecorder.keep_saving`
runs beside it and writes the text so far (and a fresh heartbeat) every ``interval`` seconds,
even when nothing new arrived, so other processes can tell the turn is alive. If a write
finds that the turn is no longer this run's (another process marked it interrupted after
a long silence), ``lost`` is set and ``on_lost`` is called so the turn can stop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from behest_chat.conversations import store

__all__ = ["SAVE_INTERVAL_S", "TurnRecorder"]

SAVE_INTERVAL_S = 1.0


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

    def append(self, piece: str) -> None:
        """Add one streamed piece of the answer."""
        self.text += piece
        self.chunks += 1

    async def save(self) -> bool:
        """Write the text so far and the heartbeat now; ``False`` once the turn is lost."""
        ok = await asyncio.to_thread(store.save_progress, self.message_id, self.run_id, self.text)
        self.lost = self.lost or not ok
        return ok

    async def keep_saving(self, on_lost: Callable[[], None]) -> None:
        """Save every ``interval`` seconds until cancelled, or until the turn is lost."""
        while True:
            await asyncio.sleep(self._interval)
            if not await self.save():
                on_lost()
                return
