"""In-memory threads, usage records and counters; a restart forgets them all.

Threads (contract §5.1-5.2) are keyed by (project, uid, thread id), so one user never sees
another's. Usage is kept as one record per chat completion and summed on read, which keeps
per-uid, per-session and per-time-bucket views consistent with each other.

A gateway left running does not grow without bound: only the last
:data:`USAGE_RECORDS_KEPT` completions are kept (the app keeps its own ledger in its
database); a thread keeps its newest :data:`THREAD_MESSAGES_KEPT` messages, and once all
threads together hold :data:`MESSAGES_KEPT`, the least recently active threads go.
"""

from __future__ import annotations

import itertools
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "MESSAGES_KEPT",
    "THREAD_MESSAGES_KEPT",
    "USAGE_RECORDS_KEPT",
    "Stats",
    "Store",
    "Thread",
    "ThreadMessage",
    "UsageRecord",
    "iso",
]

_TITLE_LENGTH = 60
# About 35 MB of records (UUID session ids): weeks of a busy demo.
USAGE_RECORDS_KEPT = 100_000
# Messages are as long as the answers: a few hundred MB at most for a busy demo.
MESSAGES_KEPT = 200_000
THREAD_MESSAGES_KEPT = 1_000


def iso(timestamp: float) -> str:
    """Unix seconds as ISO-8601 UTC with a ``Z`` suffix (second precision)."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ThreadMessage:
    """One stored message of a thread."""

    id: str
    role: str
    content: str
    created_at: float

    def to_json(self) -> dict[str, Any]:
        """The API shape."""
        return {
            "id": self.id,
            "role": self.role,
            "content": self.content,
            "created_at": iso(self.created_at),
        }


@dataclass
class Thread:
    """A persistent conversation created by the first ``X-Thread-Id`` chat call."""

    id: str
    title: str
    created_at: float
    last_message_at: float
    messages: list[ThreadMessage] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The API shape (messages are served separately)."""
        return {
            "id": self.id,
            "object": "thread",
            "title": self.title,
            "created_at": iso(self.created_at),
            "last_message_at": iso(self.last_message_at),
            "message_count": len(self.messages),
        }


@dataclass(frozen=True)
class UsageRecord:
    """The tokens of one chat completion (complete or interrupted)."""

    project_id: str
    uid: str
    session_id: str | None
    model: str
    timestamp: float
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Stats:
    """Counters served by ``GET /_gateway/stats``."""

    mints: int = 0
    chat_requests: int = 0
    streams_open: int = 0
    streams_completed: int = 0
    streams_cut: int = 0
    client_disconnects: int = 0
    upstream_requests: int = 0
    requests_by_path: Counter[str] = field(default_factory=Counter)
    responses_by_status: Counter[int] = field(default_factory=Counter)


class Store:
    """Threads, usage and counters of one gateway."""

    def __init__(
        self,
        usage_records_kept: int = USAGE_RECORDS_KEPT,
        messages_kept: int = MESSAGES_KEPT,
        thread_messages_kept: int = THREAD_MESSAGES_KEPT,
    ) -> None:
        self.stats = Stats()
        # Least recently active first: the next to go once too many messages are kept.
        self._threads: OrderedDict[tuple[str, str, str], Thread] = OrderedDict()
        self._messages = 0
        self._messages_kept = messages_kept
        self._thread_messages_kept = thread_messages_kept
        # The oldest record goes once the limit is reached.
        self._usage: deque[UsageRecord] = deque(maxlen=usage_records_kept)
        self._ids = itertools.count(1)

    def reset(self) -> None:
        """Forget threads, usage and counters (open streams stay counted)."""
        open_streams = self.stats.streams_open
        self.stats = Stats(streams_open=open_streams)
        self._threads.clear()
        self._messages = 0
        self._usage.clear()

    def append_message(
        self, project_id: str, uid: str, thread_id: str, role: str, content: str, now: float
    ) -> Thread:
        """Add a message to a thread, creating the thread on first use.

        Args:
            project_id: owning project.
            uid: owning user.
            thread_id: client-chosen id.
            role: ``user`` or ``assistant``.
            content: message text.
            now: Unix time.

        Returns:
            The thread.
        """
        key = (project_id, uid, thread_id)
        thread = self._threads.get(key)
        if thread is None:
            title = " ".join(content.split())[:_TITLE_LENGTH] or "New conversation"
            thread = Thread(id=thread_id, title=title, created_at=now, last_message_at=now)
            self._threads[key] = thread
        else:
            self._threads.move_to_end(key)
        thread.messages.append(ThreadMessage(f"msg_{next(self._ids)}", role, content, now))
        thread.last_message_at = now
        if len(thread.messages) > self._thread_messages_kept:
            del thread.messages[0]
        else:
            self._messages += 1
        while self._messages > self._messages_kept and len(self._threads) > 1:
            _, oldest = self._threads.popitem(last=False)
            self._messages -= len(oldest.messages)
        return thread

    def threads(self, project_id: str, uid: str) -> list[Thread]:
        """The user's threads, most recently active first."""
        owned = [
            t for (pid, owner, _), t in self._threads.items() if (pid, owner) == (project_id, uid)
        ]
        return sorted(owned, key=lambda t: t.last_message_at, reverse=True)

    def thread(self, project_id: str, uid: str, thread_id: str) -> Thread | None:
        """One of the user's threads, or None (also for other users' threads)."""
        return self._threads.get((project_id, uid, thread_id))

    def delete_thread(self, project_id: str, uid: str, thread_id: str) -> bool:
        """Delete one of the user's threads; False when it does not exist."""
        thread = self._threads.pop((project_id, uid, thread_id), None)
        if thread is None:
            return False
        self._messages -= len(thread.messages)
        return True

    def record_usage(self, record: UsageRecord) -> None:
        """Keep the usage of one completion."""
        self._usage.append(record)

    def usage(
        self,
        project_id: str,
        uid: str,
        *,
        start: float,
        end: float,
        session_id: str | None = None,
    ) -> list[UsageRecord]:
        """The user's usage records in ``[start, end)``, optionally for one session."""
        return [
            r
            for r in self._usage
            if r.project_id == project_id
            and r.uid == uid
            and start <= r.timestamp < end
            and (session_id is None or r.session_id == session_id)
        ]

    def usage_summary(self) -> list[dict[str, Any]]:
        """Totals per (project, uid, session) for ``/_gateway/stats``."""
        return summarize(self._usage, keys=("project_id", "uid", "session_id"))


def summarize(records: Iterable[UsageRecord], *, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """Sum records grouped by the given attribute names.

    Args:
        records: usage records.
        keys: attribute names to group by, e.g. ``("session_id",)``.

    Returns:
        One dict per group with the key values, ``requests``, ``prompt_tokens``,
        ``completion_tokens`` and ``total_tokens``, in first-seen order.
    """
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for record in records:
        group_key = tuple(getattr(record, k) for k in keys)
        group = groups.setdefault(
            group_key,
            {
                **dict(zip(keys, group_key, strict=True)),
                "requests": 0,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "total_tokens": 0,
            },
        )
        group["requests"] += 1
        group["prompt_tokens"] += record.prompt_tokens
        group["completion_tokens"] += record.completion_tokens
        group["total_tokens"] += record.prompt_tokens + record.completion_tokens
    return list(groups.values())
