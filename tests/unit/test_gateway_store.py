"""The local gateway's in-memory store: usage kept per completion, within a bound."""

from __future__ import annotations

from behest_chat.gateway.store import USAGE_RECORDS_KEPT, Store, UsageRecord


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
