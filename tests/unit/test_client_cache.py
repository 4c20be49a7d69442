"""Token cache: reuse, 60-second refresh, tier change, LRU bound, single flight, failures.

The clock is injected, so nothing here waits for real time to pass.
"""

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from behest_chat.behest.cache import TokenCache
from behest_chat.behest.tokens import MintedToken


class FakeClock:
    """A settable Unix-seconds clock."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingMinter:
    """Mints numbered tokens; can be held open on an event to make calls overlap."""

    def __init__(self, clock: FakeClock, ttl: int = 900) -> None:
        self.clock = clock
        self.ttl = ttl
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()
        self.fail_with: Exception | None = None

    def for_user(self, user_id: str, tier: int | None) -> Callable[[], Awaitable[MintedToken]]:
        async def mint() -> MintedToken:
            self.calls += 1
            number = self.calls
            self.started.set()
            if self.gate is not None:
                await self.gate.wait()
            if self.fail_with is not None:
                raise self.fail_with
            return MintedToken(
                token=f"jwt.{user_id}.{number}",
                ttl=self.ttl,
                session_id=f"s{number}",
                expires_at=int(self.clock.now) + self.ttl,
                user_id=user_id,
                tier=tier,
            )

        return mint


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def minter(clock: FakeClock) -> CountingMinter:
    return CountingMinter(clock)


async def test_second_request_is_a_cache_hit(clock: FakeClock, minter: CountingMinter) -> None:
    cache = TokenCache(clock=clock)
    first = await cache.get_or_mint("alice", 1, minter.for_user("alice", 1))
    second = await cache.get_or_mint("alice", 1, minter.for_user("alice", 1))
    assert first is second
    assert minter.calls == 1
    assert "alice" in cache
    assert len(cache) == 1


async def test_token_is_reused_until_61_seconds_left_and_refreshed_at_60(
    clock: FakeClock, minter: CountingMinter
) -> None:
    cache = TokenCache(clock=clock)
    first = await cache.get_or_mint("alice", 1, minter.for_user("alice", 1))
    clock.now = first.expires_at - 61
    assert await cache.get_or_mint("alice", 1, minter.for_user("alice", 1)) is first
    clock.now = first.expires_at - 60
    refreshed = await cache.get_or_mint("alice", 1, minter.for_user("alice", 1))
    assert refreshed is not first
    assert refreshed.token == "jwt.alice.2"
    assert minter.calls == 2


async def test_expired_token_is_never_served(clock: FakeClock, minter: CountingMinter) -> None:
    cache = TokenCache(clock=clock)
    first = await cache.get_or_mint("alice", 1, minter.for_user("alice", 1))
    clock.now = first.expires_at + 5
    assert cache.get("alice", 1) is None


async def test_tier_change_mints_a_new_token(clock: FakeClock, minter: CountingMinter) -> None:
    cache = TokenCache(clock=clock)
    free = await cache.get_or_mint("alice", 1, minter.for_user("alice", 1))
    pro = await cache.get_or_mint("alice", 2, minter.for_user("alice", 2))
    assert (free.tier, pro.tier) == (1, 2)
    assert minter.calls == 2
    assert cache.get("alice", 2) is pro
    assert cache.get("alice", 1) is None


async def test_users_do_not_share_tokens(clock: FakeClock, minter: CountingMinter) -> None:
    cache = TokenCache(clock=clock)
    alice = await cache.get_or_mint("alice", 1, minter.for_user("alice", 1))
    bob = await cache.get_or_mint("bob", 1, minter.for_user("bob", 1))
    assert alice.token != bob.token
    assert minter.calls == 2


async def test_least_recently_used_user_is_evicted(
    clock: FakeClock, minter: CountingMinter
) -> None:
    cache = TokenCache(max_size=2, clock=clock)
    await cache.get_or_mint("a", 1, minter.for_user("a", 1))
    await cache.get_or_mint("b", 1, minter.for_user("b", 1))
    await cache.get_or_mint("a", 1, minter.for_user("a", 1))  # a is now most recent
    await cache.get_or_mint("c", 1, minter.for_user("c", 1))
    assert len(cache) == 2
    assert "a" in cache and "c" in cache and "b" not in cache


async def test_concurrent_callers_share_one_mint(clock: FakeClock, minter: CountingMinter) -> None:
    cache = TokenCache(clock=clock)
    minter.gate = asyncio.Event()
    callers = [
        asyncio.create_task(cache.get_or_mint("alice", 1, minter.for_user("alice", 1)))
        for _ in range(20)
    ]
    await minter.started.wait()  # tasks run in creation order: all callers have joined
    minter.gate.set()
    tokens = await asyncio.gather(*callers)
    assert minter.calls == 1
    assert {t.token for t in tokens} == {"jwt.alice.1"}


async def test_concurrent_callers_for_different_tiers_do_not_share(
    clock: FakeClock, minter: CountingMinter
) -> None:
    cache = TokenCache(clock=clock)
    free, pro = await asyncio.gather(
        cache.get_or_mint("alice", 1, minter.for_user("alice", 1)),
        cache.get_or_mint("alice", 2, minter.for_user("alice", 2)),
    )
    assert (free.tier, pro.tier) == (1, 2)
    assert minter.calls == 2


async def test_failed_mint_reaches_every_waiter_and_is_not_cached(
    clock: FakeClock, minter: CountingMinter
) -> None:
    cache = TokenCache(clock=clock)
    minter.gate = asyncio.Event()
    minter.fail_with = RuntimeError("mint refused")
    callers = [
        asyncio.create_task(cache.get_or_mint("alice", 1, minter.for_user("alice", 1)))
        for _ in range(3)
    ]
    await minter.started.wait()
    minter.gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert minter.calls == 1
    assert len(cache) == 0
    minter.fail_with = None
    minter.gate = None
    token = await cache.get_or_mint("alice", 1, minter.for_user("alice", 1))
    assert token.token == "jwt.alice.2"


async def test_cancelled_caller_does_not_cancel_the_shared_mint(
    clock: FakeClock, minter: CountingMinter
) -> None:
    cache = TokenCache(clock=clock)
    minter.gate = asyncio.Event()
    impatient = asyncio.create_task(cache.get_or_mint("alice", 1, minter.for_user("alice", 1)))
    patient = asyncio.create_task(cache.get_or_mint("alice", 1, minter.for_user("alice", 1)))
    await minter.started.wait()
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    minter.gate.set()
    token = await patient
    assert token.token == "jwt.alice.1"
    assert cache.get("alice", 1) is token


async def test_invalidate_by_user(clock: FakeClock, minter: CountingMinter) -> None:
    cache = TokenCache(clock=clock)
    await cache.get_or_mint("alice", 1, minter.for_user("alice", 1))
    assert cache.invalidate("alice") is True
    assert cache.invalidate("alice") is False
    fresh = await cache.get_or_mint("alice", 1, minter.for_user("alice", 1))
    assert fresh.token == "jwt.alice.2"


async def test_invalidate_only_the_stale_token(clock: FakeClock, minter: CountingMinter) -> None:
    cache = TokenCache(clock=clock)
    stale = await cache.get_or_mint("alice", 1, minter.for_user("alice", 1))
    assert cache.invalidate("alice", stale.token) is True
    fresh = await cache.get_or_mint("alice", 1, minter.for_user("alice", 1))
    # A second request that failed with the old token must not throw away the new one.
    assert cache.invalidate("alice", stale.token) is False
    assert cache.get("alice", 1) is fresh


def test_clear_forgets_everything(clock: FakeClock) -> None:
    cache = TokenCache(clock=clock)
    cache.put(
        MintedToken(
            token="a.b.c", ttl=900, session_id="s", expires_at=2_000_000, user_id="u", tier=None
        )
    )
    assert cache.get("u", None) is not None
    cache.clear()
    assert len(cache) == 0


@pytest.mark.parametrize(("size", "margin"), [(0, 60), (-1, 60), (10, -1)])
def test_bad_parameters(size: int, margin: float) -> None:
    with pytest.raises(ValueError):
        TokenCache(size, refresh_margin=margin)
