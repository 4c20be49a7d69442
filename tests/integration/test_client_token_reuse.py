"""Token cache over real HTTP: mint counts, refresh margin, tier change, 401 → re-mint."""

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from behest_chat.behest import BehestClient, errors
from tests.fixtures.gateway import RunningGateway

ECHO = [{"role": "user", "content": "echo: ok"}]
TIMEOUT = httpx.Timeout(10.0, connect=2.0)


class SkewedClock:
    """Real time plus an offset the test moves forward (no sleeping)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def gw(gateway: RunningGateway) -> RunningGateway:
    gateway.reset()
    return gateway


@pytest.fixture
def clock() -> SkewedClock:
    return SkewedClock()


@pytest.fixture
async def client(gw: RunningGateway, clock: SkewedClock) -> AsyncIterator[BehestClient]:
    async with BehestClient(
        key=gw.api_key, base_url=gw.base_url, timeout=TIMEOUT, clock=clock, default_ttl=900
    ) as client:
        yield client


async def chat_once(client: BehestClient, user_id: str = "alice", tier: int | str = 1) -> str:
    stream = await client.chat.completions.create(
        messages=ECHO, stream=True, user_id=user_id, tier=tier
    )
    parts = []
    async with stream:
        async for chunk in stream:
            if chunk["choices"]:
                parts.append(chunk["choices"][0]["delta"].get("content") or "")
    return "".join(parts)


async def test_one_mint_for_twenty_sequential_chats(
    client: BehestClient, gw: RunningGateway
) -> None:
    for _ in range(20):
        assert await chat_once(client) == "ok"
    stats = gw.stats()
    assert stats["mints"] == 1
    assert stats["chat_requests"] == 20


async def test_one_mint_for_twenty_concurrent_chats(
    client: BehestClient, gw: RunningGateway
) -> None:
    answers = await asyncio.gather(*(chat_once(client) for _ in range(20)))
    assert answers == ["ok"] * 20
    stats = gw.stats()
    assert stats["mints"] == 1
    assert stats["chat_requests"] == 20


async def test_each_user_gets_their_own_mint(client: BehestClient, gw: RunningGateway) -> None:
    for user in ("u1", "u2", "u3", "u1", "u2", "u3"):
        await chat_once(client, user)
    assert gw.stats()["mints"] == 3


async def test_refresh_when_sixty_seconds_or_less_are_left(
    client: BehestClient, gw: RunningGateway, clock: SkewedClock
) -> None:
    await chat_once(client)
    clock.offset = 900 - 75  # about 75 s left: reused
    await chat_once(client)
    assert gw.stats()["mints"] == 1
    clock.offset = 900 - 60  # 60 s or less left: minted again before the request
    await chat_once(client)
    assert gw.stats()["mints"] == 2


async def test_tier_change_mints_a_new_token(client: BehestClient, gw: RunningGateway) -> None:
    await chat_once(client, tier="free")
    await chat_once(client, tier=1)
    assert gw.stats()["mints"] == 1
    await chat_once(client, tier="pro")
    assert gw.stats()["mints"] == 2


async def test_401_re_mints_and_retries_once(client: BehestClient, gw: RunningGateway) -> None:
    await chat_once(client)
    before = await client.token_for("alice", 1)
    gw.set_fault(status=401, code="invalid_token", message="token expired", count=1)
    assert await chat_once(client) == "ok"
    after = await client.token_for("alice", 1)
    assert after.token != before.token
    stats = gw.stats()
    assert stats["mints"] == 2
    assert stats["chat_requests"] == 3  # first chat, the refused one, the retry


async def test_second_401_in_a_row_is_raised(client: BehestClient, gw: RunningGateway) -> None:
    gw.set_fault(status=401, code="invalid_token", message="nope", count=2)
    with pytest.raises(errors.AuthenticationError) as caught:
        await chat_once(client)
    assert caught.value.message == "nope"
    stats = gw.stats()
    assert stats["mints"] == 2
    assert stats["chat_requests"] == 2


async def test_401_on_non_streaming_call_is_retried_too(
    client: BehestClient, gw: RunningGateway
) -> None:
    gw.set_fault(status=401, count=1)
    response = await client.chat.completions.create(messages=ECHO, user_id="alice", tier=1)
    assert response["choices"][0]["message"]["content"] == "ok"
    assert gw.stats()["mints"] == 2


async def test_concurrent_401s_cause_one_re_mint(client: BehestClient, gw: RunningGateway) -> None:
    await chat_once(client)
    gw.set_fault(status=401, count=5)
    answers = await asyncio.gather(*(chat_once(client) for _ in range(5)))
    assert answers == ["ok"] * 5
    stats = gw.stats()
    assert stats["mints"] == 2  # the first mint and one shared re-mint
    assert stats["chat_requests"] == 1 + 5 + 5


async def test_failed_mint_is_not_cached(client: BehestClient, gw: RunningGateway) -> None:
    gw.set_fault(path="/v1/auth/mint", status=400, message="bad mint", count=1)
    with pytest.raises(errors.BadRequestError):
        await chat_once(client)
    assert gw.stats()["chat_requests"] == 0
    assert await chat_once(client) == "ok"
    assert gw.stats()["mints"] == 1


async def test_invalidate_forces_a_new_mint(client: BehestClient, gw: RunningGateway) -> None:
    await chat_once(client)
    assert client.invalidate("alice") is True
    await chat_once(client)
    assert gw.stats()["mints"] == 2
