"""Tier parsing, limit overrides and the in-memory counters (explicit clock)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from behest_chat.gateway.tiers import (
    DEFAULT_LIMITS,
    MemoryLimitStore,
    QuotaExceededError,
    RateLimitedError,
    TierLimit,
    merge_limits,
    parse_tier,
)

NOON = datetime(2026, 5, 1, 12, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (None, "free"),
        (1, "free"),
        (2, "pro"),
        (3, "max"),
        ("pro", "pro"),
        ("MAX", "max"),
        ("2", "pro"),
    ],
)
def test_parse_tier_accepts_ids_and_names(value: object, name: str) -> None:
    assert parse_tier(value) == name


@pytest.mark.parametrize("value", [0, 4, True, "gold", 2.0, [], ""])
def test_parse_tier_rejects_anything_else(value: object) -> None:
    with pytest.raises(ValueError, match="tier must be"):
        parse_tier(value)


def test_merge_limits_changes_only_named_fields() -> None:
    merged = merge_limits(DEFAULT_LIMITS, {"free": {"rpm": 2}}, source="X")
    assert merged["free"] == TierLimit(rpm=2, requests_per_day=100, tokens_per_day=50_000)
    assert merged["pro"] == DEFAULT_LIMITS["pro"]
    assert merge_limits(DEFAULT_LIMITS, None, source="X") == dict(DEFAULT_LIMITS)


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        {"gold": {}},
        {"free": 3},
        {"free": {"burst": 1}},
        {"free": {"rpm": 0}},
        {"free": {"rpm": True}},
    ],
)
def test_merge_limits_errors_name_the_source(overrides: object) -> None:
    with pytest.raises(ValueError, match=r"^SOURCE: "):
        merge_limits(DEFAULT_LIMITS, overrides, source="SOURCE")


async def test_rpm_is_a_rolling_minute_with_a_useful_retry_after() -> None:
    store, limit = MemoryLimitStore(), TierLimit(rpm=2, requests_per_day=100, tokens_per_day=1000)
    await store.admit("p", "u", "free", limit, NOON)
    await store.admit("p", "u", "free", limit, NOON + 20)
    with pytest.raises(RateLimitedError) as caught:
        await store.admit("p", "u", "free", limit, NOON + 30)
    assert caught.value.retry_after == 30
    await store.admit("p", "other", "free", limit, NOON + 30)  # per uid
    await store.admit("q", "u", "free", limit, NOON + 30)  # per project
    await store.admit("p", "u", "free", limit, NOON + 60.5)  # the first request left the window
    with pytest.raises(RateLimitedError) as again:
        await store.admit("p", "u", "free", limit, NOON + 79.9)
    assert again.value.retry_after == 1


async def test_daily_caps_come_before_rpm_and_reset_at_utc_midnight() -> None:
    store, limit = MemoryLimitStore(), TierLimit(rpm=1, requests_per_day=1, tokens_per_day=1000)
    await store.admit("p", "u", "pro", limit, NOON)
    with pytest.raises(QuotaExceededError) as caught:
        await store.admit("p", "u", "pro", limit, NOON + 1)
    assert caught.value.details == {
        "tier": "pro",
        "limit": {"requests_per_day": 1},
        "usage": {"requests_today": 1},
    }
    await store.admit("p", "u", "pro", limit, NOON + 12 * 3600)  # next UTC day


async def test_token_cap_counts_finished_tokens() -> None:
    store, limit = MemoryLimitStore(), TierLimit(rpm=100, requests_per_day=100, tokens_per_day=50)
    await store.admit("p", "u", "free", limit, NOON)
    await store.add_tokens("p", "u", 49, NOON)
    await store.admit("p", "u", "free", limit, NOON + 1)
    await store.add_tokens("p", "u", 5, NOON + 1)
    with pytest.raises(QuotaExceededError) as caught:
        await store.admit("p", "u", "free", limit, NOON + 2)
    assert caught.value.details["usage"] == {"tokens_today": 54}
    await store.reset()
    await store.admit("p", "u", "free", limit, NOON + 3)
