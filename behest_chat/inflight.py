"""Turns in flight, so that Stop can end a turn that another event started.

A turn runs as a background task; Stop arrives as a separate event. `register` records the
running task under a key (the conversation, or the tab), `cancel` cancels it. This registry
lives in the process; with several workers behind Redis, the worker that receives Stop may
not be the one running the turn, so `cancel` must also reach other processes.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["InflightTurns", "turns"]


class InflightTurns:
    """A process-local map from a turn key to its running task."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[Any]] = {}

    def register(self, key: str, task: asyncio.Task[Any]) -> None:
        """Record `task` as the turn running under `key`."""
        self._tasks[key] = task

    def unregister(self, key: str, task: asyncio.Task[Any]) -> None:
        """Forget `key`, unless a newer turn has replaced `task` already."""
        if self._tasks.get(key) is task:
            del self._tasks[key]

    def running(self, key: str) -> bool:
        """Whether a turn is running under `key` in this process."""
        task = self._tasks.get(key)
        return task is not None and not task.done()

    async def cancel(self, key: str) -> bool:
        """Cancel the turn running under `key`; True if there was one."""
        task = self._tasks.get(key)
        if task is None or task.done():
            return False
        task.cancel()
        return True


turns = InflightTurns()
