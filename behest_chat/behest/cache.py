"""Per-user token cache: reuse, refresh margin, single flight, LRU bound.

A cached token is served while more than ``refresh_margin`` seconds (60 by default, the
React provider's ``refetchSkewSeconds``) are left and its tier matches the request;
otherwise it is minted again. Concurrent callers asking for the same (user, tier) share one
mint. The mint runs in its own task, so a caller that is cancelled neither cancels the
mint for the others nor leaves it half done.

:class:`SharedTokenCache` adds a second level in Redis for apps that run as several processes:
a user's token is minted once for all of them, not once per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from behest_chat.behest.tokens import MintedToken

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["DEFAULT_REFRESH_MARGIN", "SharedTokenCache", "TokenCache"]

logger = logging.getLogger("behest_chat.behest.cache")

DEFAULT_REFRESH_MARGIN = 60.0

Minter = Callable[[], Awaitable[MintedToken]]


class TokenCache:
    """An LRU map from user id to their current token, with single-flight minting."""

    def __init__(
        self,
        max_size: int = 1024,
        *,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Create an empty cache.

        Args:
            max_size: most users kept; the least recently used is dropped first.
            refresh_margin: a token with this many seconds left or fewer is re-minted.
            clock: Unix-seconds clock used to judge freshness (injectable for tests).

        Raises:
            ValueError: ``max_size`` below 1 or a negative margin.
        """
        if max_size < 1:
            raise ValueError(f"cache_size: must be at least 1, got {max_size}")
        if refresh_margin < 0:
            raise ValueError(f"refresh_margin: must not be negative, got {refresh_margin}")
        self.max_size = max_size
        self.refresh_margin = refresh_margin
        self._clock = clock
        self._tokens: OrderedDict[str, MintedToken] = OrderedDict()
        self._in_flight: dict[tuple[str, int | None], asyncio.Task[MintedToken]] = {}

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._tokens

    def get(self, user_id: str, tier: int | None) -> MintedToken | None:
        """The cached token for ``user_id`` if it is fresh and has ``tier``; else None."""
        token = self._tokens.get(user_id)
        if token is None or token.tier != tier:
            return None
        if token.expires_at - self._clock() <= self.refresh_margin:
            return None
        self._tokens.move_to_end(user_id)
        return token

    async def get_or_mint(self, user_id: str, tier: int | None, mint: Minter) -> MintedToken:
        """Return a fresh cached token, or mint one (shared with concurrent callers).

        Args:
            user_id: the end user.
            tier: the numeric tier the token must carry.
            mint: coroutine factory that mints a new token for this user and tier.

        Raises:
            Whatever ``mint`` raises; nothing is cached then.
        """
        token = self.get(user_id, tier)
        if token is not None:
            return token
        key = (user_id, tier)
        task = self._in_flight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._mint_and_store(key, mint))
            task.add_done_callback(_consume_exception)
            self._in_flight[key] = task
        return await asyncio.shield(task)

    def put(self, token: MintedToken) -> None:
        """Store ``token`` as its user's current token, evicting the least recently used."""
        self._tokens[token.user_id] = token
        self._tokens.move_to_end(token.user_id)
        while len(self._tokens) > self.max_size:
            self._tokens.popitem(last=False)

    def invalidate(self, user_id: str, token: str | None = None) -> bool:
        """Forget ``user_id``'s token so the next request mints a new one.

        Args:
            user_id: the end user.
            token: when given, forget only if this is still the cached JWT; many requests
                that fail with the same stale token then cause one re-mint, not many.

        Returns:
            True when a token was dropped.
        """
        cached = self._tokens.get(user_id)
        if cached is None or (token is not None and cached.token != token):
            return False
        del self._tokens[user_id]
        return True

    def clear(self) -> None:
        """Forget every token (mints already running still complete)."""
        self._tokens.clear()

    async def _mint_and_store(self, key: tuple[str, int | None], mint: Minter) -> MintedToken:
        try:
            token = await self._obtain(key[0], key[1], mint)
            self.put(token)
            return token
        finally:
            self._in_flight.pop(key, None)

    async def _obtain(self, user_id: str, tier: int | None, mint: Minter) -> MintedToken:
        """Where a token comes from on a miss; subclasses may look elsewhere first."""
        return await mint()


# Delete the lock only if it is still ours (it may have expired and been taken by another).
_RELEASE_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
# Delete the stored token only if it is the one that was refused (a newer one may be there).
_DROP_TOKEN = """
local raw = redis.call('get', KEYS[1])
if not raw then return 0 end
if ARGV[1] == '' or cjson.decode(raw)['token'] == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class SharedTokenCache(TokenCache):
    """A :class:`TokenCache` whose tokens are shared by every process through Redis.

    Each process keeps its own LRU copy in front (the client's synchronous ``get`` reads only
    that). On a miss, ``get_or_mint`` reads Redis; when Redis holds no fresh token of the
    tier, the process that wins a short Redis lock mints and stores it, and the others wait
    for that token (checking every ``poll_seconds``, at most ``wait_seconds``, then they mint
    themselves). So within a token's life a user is minted once across all processes.

    Keys, under ``prefix``: ``token:<user_id>`` holds the token as JSON and expires when it
    would no longer be served (``refresh_margin`` before ``expires_at``);
    ``token-lock:<user_id>`` is the mint lock. The JWT is stored in the clear: Redis must be
    as private as the app's database.

    If Redis does not answer, tokens are minted per process (as :class:`TokenCache` does)
    and one warning is logged; Redis is used again as soon as it answers.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str = "behest:",
        max_size: int = 1024,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        clock: Callable[[], float] = time.time,
        lock_seconds: float = 10.0,
        wait_seconds: float = 10.0,
        poll_seconds: float = 0.02,
    ) -> None:
        """Create the cache; no Redis command is sent until the first miss.

        Args:
            redis: an asyncio Redis client (``redis.asyncio.Redis``).
            prefix: prepended to every key this cache writes.
            max_size: most users kept in this process.
            refresh_margin: a token with this many seconds left or fewer is re-minted.
            clock: Unix-seconds clock used to judge freshness.
            lock_seconds: how long a mint lock holds if its owner never releases it.
            wait_seconds: longest wait for another process's mint.
            poll_seconds: pause between looks while another process mints.

        Raises:
            ValueError: ``max_size`` below 1, a negative margin, or non-positive timings.
        """
        super().__init__(max_size, refresh_margin=refresh_margin, clock=clock)
        if min(lock_seconds, wait_seconds, poll_seconds) <= 0:
            raise ValueError("lock_seconds, wait_seconds and poll_seconds must be positive")
        from redis.exceptions import RedisError

        self._redis = redis
        self._redis_error = RedisError
        self.prefix = prefix
        self._lock_ms = int(lock_seconds * 1000)
        self._wait_seconds = wait_seconds
        self._poll_seconds = poll_seconds
        # JWTs the gateway refused, per user: never taken from Redis again by this process.
        self._rejected: OrderedDict[str, str] = OrderedDict()
        self._drops: set[asyncio.Task[None]] = set()
        self._redis_down = False

    def invalidate(self, user_id: str, token: str | None = None) -> bool:
        """Forget ``user_id``'s token here and in Redis (only if it is ``token``, when given).

        Returns:
            True when this process dropped a token.
        """
        dropped = super().invalidate(user_id, token)
        if token is not None:
            self._rejected[user_id] = token
            self._rejected.move_to_end(user_id)
            while len(self._rejected) > self.max_size:
                self._rejected.popitem(last=False)
        try:
            task = asyncio.get_running_loop().create_task(self._drop(user_id, token))
        except RuntimeError:  # no event loop: the Redis copy simply expires
            return dropped
        self._drops.add(task)
        task.add_done_callback(self._drops.discard)
        return dropped

    def token_key(self, user_id: str) -> str:
        """The Redis key holding ``user_id``'s token."""
        return f"{self.prefix}token:{user_id}"

    async def _obtain(self, user_id: str, tier: int | None, mint: Minter) -> MintedToken:
        minted: MintedToken | None = None
        deadline = time.monotonic() + self._wait_seconds
        lock_key = f"{self.prefix}token-lock:{user_id}"
        try:
            while True:
                found = await self._read(user_id, tier)
                if found is not None:
                    return found
                lock_id = secrets.token_hex(8)
                if await self._redis.set(lock_key, lock_id, nx=True, px=self._lock_ms):
                    try:
                        # Another process may have stored one between the read and the lock.
                        found = await self._read(user_id, tier)
                        if found is not None:
                            return found
                        minted = await mint()
                        await self._write(minted)
                        return minted
                    finally:
                        await self._release(lock_key, lock_id)
                if time.monotonic() >= deadline:
                    logger.warning("waited %.0f s for another process's mint", self._wait_seconds)
                    break
                await asyncio.sleep(self._poll_seconds)
        except self._redis_error as exc:
            self._note_down(exc)
        return minted if minted is not None else await mint()

    async def _read(self, user_id: str, tier: int | None) -> MintedToken | None:
        raw = await self._redis.get(self.token_key(user_id))
        if self._redis_down:
            self._redis_down = False
            logger.warning("Redis answers again; tokens are shared between processes")
        token = _token_from_json(raw) if raw is not None else None
        if token is None or token.user_id != user_id or token.tier != tier:
            return None
        if token.expires_at - self._clock() <= self.refresh_margin:
            return None
        if self._rejected.get(user_id) == token.token:
            return None
        return token

    async def _write(self, token: MintedToken) -> None:
        ttl_ms = int((token.expires_at - self.refresh_margin - self._clock()) * 1000)
        if ttl_ms > 0:
            await self._redis.set(self.token_key(token.user_id), _token_to_json(token), px=ttl_ms)

    async def _release(self, lock_key: str, lock_id: str) -> None:
        # On failure the lock expires by itself after lock_seconds.
        with contextlib.suppress(self._redis_error):
            await self._redis.eval(_RELEASE_LOCK, 1, lock_key, lock_id)

    async def _drop(self, user_id: str, token: str | None) -> None:
        try:
            await self._redis.eval(_DROP_TOKEN, 1, self.token_key(user_id), token or "")
        except self._redis_error as exc:
            self._note_down(exc)

    def _note_down(self, exc: BaseException) -> None:
        if not self._redis_down:
            self._redis_down = True
            logger.warning(
                "Redis is not answering (%s); minting tokens per process until it is back",
                type(exc).__name__,
            )


def _token_to_json(token: MintedToken) -> str:
    return json.dumps(
        {
            "token": token.token,
            "ttl": token.ttl,
            "session_id": token.session_id,
            "expires_at": token.expires_at,
            "user_id": token.user_id,
            "tier": token.tier,
        }
    )


def _token_from_json(raw: bytes | str) -> MintedToken | None:
    try:
        data: Any = json.loads(raw)
        token = MintedToken(
            token=str(data["token"]),
            ttl=int(data["ttl"]),
            session_id=str(data["session_id"]),
            expires_at=int(data["expires_at"]),
            user_id=str(data["user_id"]),
            tier=None if data["tier"] is None else int(data["tier"]),
        )
    except (ValueError, KeyError, TypeError):
        return None  # not ours, or an older layout: treat as a miss
    return token


def _consume_exception(task: asyncio.Task[MintedToken]) -> None:
    # Every waiter may have been cancelled; mark the error as seen so asyncio does not log
    # "exception was never retrieved" for a failure the callers already handled.
    if not task.cancelled():
        task.exception()
