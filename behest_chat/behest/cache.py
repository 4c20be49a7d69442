"""Per-user token cache: reuse, refresh margin, single flight, LRU bound.

A cached token is served while more than ``refresh_margin`` seconds (60 by default, the
React provider's ``refetchSkewSeconds``) are left and its tier matches the request;
otherwise it is minted again. Concurrent callers asking for the same (user, tier) share one
mint. The mint runs in its own task, so a caller that is cancelled neither cancels the
mint for the others nor leaves it half done.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from behest_chat.behest.tokens import MintedToken

__all__ = ["DEFAULT_REFRESH_MARGIN", "TokenCache"]

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
            token = await mint()
            self.put(token)
            return token
        finally:
            self._in_flight.pop(key, None)


def _consume_exception(task: asyncio.Task[MintedToken]) -> None:
    # Every waiter may have been cancelled; mark the error as seen so asyncio does not log
    # "exception was never retrieved" for a failure the callers already handled.
    if not task.cancelled():
        task.exception()
