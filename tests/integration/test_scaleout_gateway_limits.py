"""Tier counters in Redis: two gateway processes enforce one limit; the store's rules."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import redis.asyncio as aioredis

from behest_chat.gateway.config import GatewayConfig
from behest_chat.gateway.tiers import (
    QuotaExceededError,
    RateLimitedError,
    RedisLimitStore,
    TierLimit,
)
from tests.fixtures.gateway import RunningGateway, bearer, shared_signing_key_pem
from tests.fixtures.services import RedisNamespace

SHARED_KID = "kid_shared"
NOW = 1_800_000_000.0  # 2027-01-15, mid-day UTC
LIMIT = TierLimit(rpm=10, requests_per_day=100, tokens_per_day=50_000)


@pytest.fixture
async def store(redis_namespace: RedisNamespace) -> AsyncIterator[RedisLimitStore]:
    async with aioredis.Redis.from_url(redis_namespace.url) as redis:
        yield RedisLimitStore(redis, redis_namespace.prefix)


def test_ten_rpm_holds_across_two_gateway_processes(
    gateway_factory: Callable[..., RunningGateway], redis_namespace: RedisNamespace
) -> None:
    env = {
        "REDIS_URL": redis_namespace.url,
        "BEHEST_GATEWAY_REDIS_PREFIX": redis_namespace.prefix,
        "BEHEST_GATEWAY_LIMITS": json.dumps({"free": {"rpm": 10}}),
    }
    # Both serve the same project and trust the same tenant key, as two replicas would.
    project = {"signing_keys": {SHARED_KID: shared_signing_key_pem()}}
    first, second = gateway_factory(env, project=project), gateway_factory(env, project=project)
    token = first.sign("rpm-user", header={"kid": SHARED_KID}, tier=1)
    statuses, retry_after = [], []
    for n in range(12):
        gateway = (first, second)[n % 2]
        response = httpx.post(
            f"{gateway.base_url}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "echo: hi"}]},
            headers=bearer(token),
            timeout=10,
        )
        statuses.append(response.status_code)
        retry_after.append(response.headers.get("retry-after"))
    assert statuses == [200] * 10 + [429, 429]
    assert all(value is not None and 1 <= int(value) <= 60 for value in retry_after[10:])
    assert first.stats()["chat_requests"] + second.stats()["chat_requests"] >= 10
    assert any(key.endswith(":minute") for key in redis_namespace.keys())  # noqa: SIM118 (a Redis scan, not a dict)


async def test_rolling_minute_is_shared_by_stores_and_slides(
    redis_namespace: RedisNamespace, store: RedisLimitStore
) -> None:
    async with aioredis.Redis.from_url(redis_namespace.url) as other_redis:
        other = RedisLimitStore(other_redis, redis_namespace.prefix)
        results = await asyncio.gather(
            *(
                (store, other)[n % 2].admit("p", "u", "free", LIMIT, NOW + n / 100)
                for n in range(20)
            ),
            return_exceptions=True,
        )
    assert sum(result is None for result in results) == 10, "exactly rpm requests admitted"
    refused = [r for r in results if isinstance(r, RateLimitedError)]
    # Requests ran in any order, so one may see an oldest entry slightly in its future.
    assert len(refused) == 10 and all(1 <= r.retry_after <= 61 for r in refused)
    await store.admit("p", "u", "free", LIMIT, NOW + 60.5)  # the first ones left the window


async def test_daily_caps_answer_with_usage_and_are_per_user(store: RedisLimitStore) -> None:
    limit = TierLimit(rpm=1000, requests_per_day=3, tokens_per_day=100)
    for n in range(3):
        await store.admit("p", "u", "free", limit, NOW + n)
    with pytest.raises(QuotaExceededError) as exc_info:
        await store.admit("p", "u", "free", limit, NOW + 5)
    assert exc_info.value.details == {
        "tier": "free", "limit": {"requests_per_day": 3}, "usage": {"requests_today": 3},
    }
    await store.admit("p", "someone-else", "free", limit, NOW + 5)
    await store.add_tokens("p", "someone-else", 150, NOW + 6)
    with pytest.raises(QuotaExceededError) as exc_info:
        await store.admit("p", "someone-else", "free", limit, NOW + 7)
    assert exc_info.value.usage == {"tokens_today": 150}
    await store.admit("p", "u", "free", limit, NOW + 86_400)  # a new UTC day


async def test_reset_forgets_only_its_own_keys(
    redis_namespace: RedisNamespace, store: RedisLimitStore
) -> None:
    await store.admit("p", "u", "free", LIMIT, NOW)
    await store.add_tokens("p", "u", 10, NOW)
    async with aioredis.Redis.from_url(redis_namespace.url) as redis:
        await redis.set(f"{redis_namespace.prefix}token:someone", "kept")
        await store.reset()
        assert redis_namespace.keys() == [f"{redis_namespace.prefix}token:someone"]


def test_redis_settings_are_read_and_checked() -> None:
    key = {"BEHEST_KEY": "behest_sk_live_" + "a" * 32}
    config = GatewayConfig.from_env(
        {**key, "REDIS_URL": "redis://:pw@127.0.0.1:6379/2", "BEHEST_GATEWAY_REDIS_PREFIX": "g1:"}
    )
    assert isinstance(config.limit_store(), RedisLimitStore)
    assert "pw" not in repr(config)
    assert type(GatewayConfig.from_env(key).limit_store()).__name__ == "MemoryLimitStore"
    with pytest.raises(ValueError, match=r"^REDIS_URL: expected redis://") as exc_info:
        GatewayConfig.from_env({**key, "REDIS_URL": "http://user:secret@host"})
    assert "secret" not in str(exc_info.value)
    with pytest.raises(ValueError, match=r"^BEHEST_GATEWAY_REDIS_PREFIX: "):
        GatewayConfig.from_env(
            {**key, "REDIS_URL": "redis://h", "BEHEST_GATEWAY_REDIS_PREFIX": "a*"}
        )


async def test_without_redis_a_request_is_refused_not_let_through(
    private_redis, caplog: pytest.LogCaptureFixture
) -> None:
    from behest_chat.gateway.errors import GatewayError

    async with aioredis.Redis.from_url(private_redis.url, socket_connect_timeout=1) as redis:
        store = RedisLimitStore(redis, "g:")
        private_redis.stop()
        with pytest.raises(GatewayError) as exc_info:
            await store.admit("p", "u", "free", LIMIT, NOW)
        assert exc_info.value.status == 503
        await store.add_tokens("p", "u", 12, NOW)  # logged, not raised
        assert "12 tokens of u not counted" in caplog.text
        private_redis.start()
        await store.admit("p", "u", "free", LIMIT, NOW)  # works again once Redis is back
