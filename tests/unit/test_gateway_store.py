"""The local gateway's in-memory store: usage and threads kept within bounds."""

from __future__ import annotations

from behest_chat.gateway.store import (
    MESSAGES_KEPT,
    THREAD_MESSAGES_KEPT,
    USAGE_RECORDS_KEPT,
    Store,
    UsageRecord,
)


def record(n: int, uid: str = "alice") -> UsageRecord:
    return UsageRecord("proj", uid, f"s-{n}", "offline", 1_000.0 + n, n, 1)


def test_usage_keeps_the_newest_records_up_to_its_bound() -> None:
    store = Store(usage_records_kept=3)
    for n in range(1, 6):
        store.record_usage(record(n))
    kept = store.usage("proj", "alice", start=0, end=10**10)
    assert [r.prompt_tokens for r in kept] == [3, 4, 5]
    assert [row["prompt_tokens"] for row in store.usage_summary()] == [3, 4, 5]


def test_the_default_bound_holds_weeks_of_a_busy_demo() -> None:
    store = Store()
    for n in range(1_000):
        store.record_usage(record(n, uid=f"user-{n % 7}"))
    assert len(store.usage("proj", "user-3", start=0, end=10**10)) == 143
    assert USAGE_RECORDS_KEPT >= 100_000


def contents(store: Store, thread_id: str, uid: str = "alice") -> list[str]:
    thread = store.thread("proj", uid, thread_id)
    return [] if thread is None else [m.content for m in thread.messages]


def test_a_thread_keeps_its_newest_messages() -> None:
    store = Store(thread_messages_kept=3)
    for n in range(1, 6):
        store.append_message("proj", "alice", "t1", "user", f"m{n}", float(n))
    assert contents(store, "t1") == ["m3", "m4", "m5"]


def test_the_least_recently_active_threads_go_first() -> None:
    store = Store(messages_kept=4)
    store.append_message("proj", "alice", "old", "user", "a", 1.0)
    store.append_message("proj", "bob", "other", "user", "b", 2.0)
    store.append_message("proj", "alice", "old", "assistant", "c", 3.0)  # "old" is active again
    store.append_message("proj", "alice", "new", "user", "d", 4.0)
    assert [contents(store, t) for t in ("old", "new")] == [["a", "c"], ["d"]]
    store.append_message("proj", "alice", "new", "assistant", "e", 5.0)  # a fifth message
    assert contents(store, "other", uid="bob") == []  # the least recently active thread
    assert [t.id for t in store.threads("proj", "alice")] == ["new", "old"]
    assert store.delete_thread("proj", "alice", "old")
    for n in range(2):  # room again for two messages without losing "new"
        store.append_message("proj", "carol", "c", "user", f"x{n}", 6.0 + n)
    assert contents(store, "new") == ["d", "e"]
    store.append_message("proj", "carol", "c", "user", "x2", 8.0)
    assert contents(store, "new") == []
    assert contents(store, "c", uid="carol") == ["x0", "x1", "x2"]


def test_the_default_bounds_hold_a_busy_demo() -> None:
    assert MESSAGES_KEPT >= 100_000
    assert 100 <= THREAD_MESSAGES_KEPT <= MESSAGES_KEPT
