"""The shared token cache over real Redis and a real gateway: one mint per user for all
processes, tier changes, refused tokens, and Redis going away and coming back."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import redis.asyncio as aioredis

from behest_chat.behest import BehestClient
from behest_chat.behest.cache import SharedTokenCache
from behest_chat.redis_support import create_redis
from tests.fixtures.gateway import ROOT, RunningGateway
from tests.fixtures.services import PrivateRedis, RedisNamespace

ECHO = [{"role": "user", "content": "echo: ok"}]
TIMEOUT = httpx.Timeout(10.0, connect=2.0)
WORKERS = 4
USERS = ["user-a", "user-b", "user-c"]
CHATS_PER_USER = 3

# One app worker: its own client and cache, all users' chats at once, after the "go" line.
WORKER = """
import asyncio, json, sys
from behest_chat.behest import BehestClient
from behest_chat.behest.cache import SharedTokenCache
from behest_chat.redis_support import create_redis

base_url, key, redis_url, prefix, users, chats = sys.argv[1:7]

async def main():
    async with BehestClient(key=key, base_url=base_url) as client:
        client.cache = SharedTokenCache(create_redis(redis_url), prefix=prefix)
        print("ready", flush=True)
        sys.stdin.readline()
        async def chat(user):
            await client.chat.completions.create(
                messages=[{"role": "user", "content": "echo: ok"}], user_id=user, tier=1)
            return user, (await client.token_for(user, 1)).token
        pairs = await asyncio.gather(
            *(chat(u) for u in users.split(",") for _ in range(int(chats))))
        print(json.dumps(dict(pairs)), flush=True)

asyncio.run(main())
"""


@pytest.fixture
def gw(gateway: RunningGateway) -> RunningGateway:
    gateway.reset()
    return gateway


@pytest.fixture
async def make_client(
    gw: RunningGateway,
) -> AsyncIterator[Callable[[str, str], BehestClient]]:
    """``make_client(redis_url, prefix)``: one more "process" with its own shared cache."""
    clients: list[BehestClient] = []
    redises: list[aioredis.Redis] = []

    def make(redis_url: str, prefix: str) -> BehestClient:
        client = BehestClient(key=gw.api_key, base_url=gw.base_url, timeout=TIMEOUT)
        redis = create_redis(redis_url)
        client.cache = SharedTokenCache(redis, prefix=prefix)
        clients.append(client)
        redises.append(redis)
        return client

    yield make
    for client in clients:
        await client.aclose()
    for redis in redises:
        await redis.aclose()


async def chat(client: BehestClient, user_id: str, tier: int = 1) -> None:
    await client.chat.completions.create(messages=ECHO, user_id=user_id, tier=tier)


def test_one_mint_per_user_across_worker_processes(
    gw: RunningGateway, redis_namespace: RedisNamespace
) -> None:
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, gw.base_url, gw.api_key, redis_namespace.url,
             redis_namespace.prefix, ",".join(USERS), str(CHATS_PER_USER)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        for _ in range(WORKERS)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        for worker in workers:  # all start together: every user is missed by every worker
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results = [json.loads(worker.communicate(timeout=30)[0]) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    assert all(worker.returncode == 0 for worker in workers)
    stats = gw.stats()
    assert stats["chat_requests"] == WORKERS * len(USERS) * CHATS_PER_USER
    assert stats["mints"] == len(USERS), "one mint per user for all worker processes"
    for user in USERS:
        assert len({result[user] for result in results}) == 1, f"{user} has one token everywhere"
    assert redis_namespace.keys() == [f"{redis_namespace.prefix}token:{u}" for u in USERS]


async def test_shared_token_expires_from_redis_when_it_would_be_refreshed(
    make_client: Callable[[str, str], BehestClient], redis_namespace: RedisNamespace
) -> None:
    client = make_client(redis_namespace.url, redis_namespace.prefix)
    token = await client.token_for("alice", 1)
    async with aioredis.Redis.from_url(redis_namespace.url) as redis:
        ttl_ms = await redis.pttl(f"{redis_namespace.prefix}token:alice")
        stored = json.loads(await redis.get(f"{redis_namespace.prefix}token:alice"))
    expected_ms = (token.expires_at - 60 - time.time()) * 1000
    assert abs(ttl_ms - expected_ms) < 5_000
    assert stored["token"] == token.token and stored["tier"] == 1


async def test_tier_change_mints_once_and_every_process_follows(
    gw: RunningGateway,
    make_client: Callable[[str, str], BehestClient],
    redis_namespace: RedisNamespace,
) -> None:
    first = make_client(redis_namespace.url, redis_namespace.prefix)
    second = make_client(redis_namespace.url, redis_namespace.prefix)
    await chat(first, "bob", tier=1)
    await chat(second, "bob", tier=1)
    assert gw.stats()["mints"] == 1
    await chat(second, "bob", tier=2)  # upgraded: the free token no longer fits
    await chat(first, "bob", tier=2)
    assert gw.stats()["mints"] == 2
    assert (await first.token_for("bob", 2)).token == (await second.token_for("bob", 2)).token


async def test_token_refused_by_the_gateway_is_replaced_once_for_everyone(
    gw: RunningGateway,
    make_client: Callable[[str, str], BehestClient],
    redis_namespace: RedisNamespace,
) -> None:
    first = make_client(redis_namespace.url, redis_namespace.prefix)
    second = make_client(redis_namespace.url, redis_namespace.prefix)
    # A token the gateway will refuse (as after a key rotation), left in the shared cache.
    forged = gw.sign("carol", key_pem=_other_key_pem(), tier=1)
    async with aioredis.Redis.from_url(redis_namespace.url) as redis:
        await redis.set(
            f"{redis_namespace.prefix}token:carol",
            json.dumps({"token": forged, "ttl": 900, "session_id": "s", "user_id": "carol",
                        "expires_at": int(time.time()) + 900, "tier": 1}),
        )
    await chat(first, "carol")  # 401 with the stale token, then a fresh mint, then 200
    await chat(second, "carol")  # finds the fresh token in Redis
    stats = gw.stats()
    assert stats["mints"] == 1
    assert stats["responses_by_status"].get("401") == 1
    assert (await second.token_for("carol", 1)).token != forged


async def test_without_redis_each_process_mints_and_sharing_resumes_when_it_is_back(
    gw: RunningGateway,
    make_client: Callable[[str, str], BehestClient],
    private_redis: PrivateRedis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    prefix = "behest_chat_test:"
    first = make_client(private_redis.url, prefix)
    second = make_client(private_redis.url, prefix)
    third = make_client(private_redis.url, prefix)
    private_redis.stop()
    await chat(first, "dave")  # Redis is down: the chat still works, minted here
    await chat(first, "dave")  # and this process reuses its own token
    assert gw.stats()["mints"] == 1
    assert "minting tokens per process" in caplog.text
    private_redis.start()
    await chat(second, "dave")  # Redis is back and empty: one mint, stored there
    await chat(third, "dave")  # found in Redis
    assert gw.stats()["mints"] == 2


def _other_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def test_bad_timings_are_refused() -> None:
    with pytest.raises(ValueError, match="must be positive"):
        SharedTokenCache(aioredis.Redis(), wait_seconds=0)


async def test_concurrent_misses_in_one_process_share_one_lookup(
    gw: RunningGateway,
    make_client: Callable[[str, str], BehestClient],
    redis_namespace: RedisNamespace,
) -> None:
    client = make_client(redis_namespace.url, redis_namespace.prefix)
    await asyncio.gather(*(chat(client, "erin") for _ in range(10)))
    assert gw.stats()["mints"] == 1
