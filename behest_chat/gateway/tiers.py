"""Tiers and per-user limits (contract §6.1).

Limits apply per (project, uid) and only to chat completions (the calls that cost money);
threads, usage, models and JWKS are not counted. Checks, in this order, so that the most
useful answer wins:

1. requests today >= ``requests_per_day`` → 402 ``quota_exceeded``
2. tokens today >= ``tokens_per_day``     → 402 ``quota_exceeded``
3. requests in the last 60 s >= ``rpm``   → 429 ``rate_limited`` + ``Retry-After``

Rejected requests are not counted. Days are UTC calendar days. Tokens are added after a
completion ends (or is cut short), so one request may overshoot the daily token cap, as the
contract's 402 example (50,123 of 50,000) shows.

The counters sit behind :class:`LimitStore`: :class:`MemoryLimitStore` keeps them in the
process; :class:`RedisLimitStore` keeps them in Redis (``REDIS_URL``), so several gateway
processes enforce one limit per user.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from behest_chat.gateway.errors import GatewayError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "DEFAULT_LIMITS",
    "TIER_IDS",
    "TIER_NAMES",
    "LimitStore",
    "MemoryLimitStore",
    "QuotaExceededError",
    "RateLimitedError",
    "RedisLimitStore",
    "TierLimit",
    "merge_limits",
    "parse_tier",
]

TIER_NAMES: tuple[str, ...] = ("free", "pro", "max")
TIER_IDS: Mapping[str, int] = {"free": 1, "pro": 2, "max": 3}
_NAMES_BY_ID = {tier_id: name for name, tier_id in TIER_IDS.items()}
_WINDOW_SECONDS = 60.0
logger = logging.getLogger("behest_chat.gateway")


@dataclass(frozen=True)
class TierLimit:
    """The limits of one tier.

    Attributes:
        rpm: chat requests per rolling minute.
        requests_per_day: chat requests per UTC day.
        tokens_per_day: prompt + completion tokens per UTC day.
    """

    rpm: int
    requests_per_day: int
    tokens_per_day: int


DEFAULT_LIMITS: Mapping[str, TierLimit] = {
    "free": TierLimit(rpm=10, requests_per_day=100, tokens_per_day=50_000),
    "pro": TierLimit(rpm=60, requests_per_day=10_000, tokens_per_day=2_000_000),
    "max": TierLimit(rpm=300, requests_per_day=100_000, tokens_per_day=20_000_000),
}


def parse_tier(value: Any) -> str:
    """Normalise a tier given as a numeric id (1/2/3) or a name (free/pro/max).

    Args:
        value: the claim or body value; None means free.

    Returns:
        The tier name.

    Raises:
        ValueError: the value is neither a known id nor a known name.
    """
    if value is None:
        return "free"
    if isinstance(value, bool):
        raise ValueError("tier must be 1, 2, 3, free, pro or max")
    if isinstance(value, int) and value in _NAMES_BY_ID:
        return _NAMES_BY_ID[value]
    if isinstance(value, str):
        name = value.strip().lower()
        if name in TIER_IDS:
            return name
        if name.isdigit() and int(name) in _NAMES_BY_ID:
            return _NAMES_BY_ID[int(name)]
    raise ValueError("tier must be 1, 2, 3, free, pro or max")


def merge_limits(
    base: Mapping[str, TierLimit], overrides: Any, *, source: str
) -> dict[str, TierLimit]:
    """Apply partial per-tier overrides such as ``{"free": {"rpm": 2}}``.

    Args:
        base: the limits to start from.
        overrides: parsed JSON; a mapping of tier name to a mapping of limit fields.
        source: where the overrides came from, for error messages.

    Returns:
        A new mapping with every tier present.

    Raises:
        ValueError: one line naming ``source`` and the bad entry.
    """
    merged = dict(base)
    if overrides is None:
        return merged
    if not isinstance(overrides, Mapping):
        raise ValueError(f"{source}: must be a JSON object of tier name → limits")
    fields = ("rpm", "requests_per_day", "tokens_per_day")
    for tier, values in overrides.items():
        if tier not in TIER_IDS:
            raise ValueError(f"{source}: unknown tier {tier!r}; expected free, pro or max")
        if not isinstance(values, Mapping):
            raise ValueError(f"{source}: {tier} must be an object with {', '.join(fields)}")
        changes: dict[str, int] = {}
        for name, number in values.items():
            if name not in fields:
                raise ValueError(f"{source}: {tier}.{name} is not one of {', '.join(fields)}")
            if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                raise ValueError(f"{source}: {tier}.{name} must be a positive integer")
            changes[name] = number
        merged[tier] = replace(merged[tier], **changes)
    return merged


class QuotaExceededError(Exception):
    """A daily cap is used up (answered as 402 with ``details``)."""

    def __init__(self, tier: str, limit: Mapping[str, int], usage: Mapping[str, int]) -> None:
        super().__init__(f"daily limit of the {tier} tier reached")
        self.tier = tier
        self.limit = dict(limit)
        self.usage = dict(usage)

    @property
    def details(self) -> dict[str, Any]:
        """The ``error.details`` of the 402 envelope."""
        return {"tier": self.tier, "limit": self.limit, "usage": self.usage}


class RateLimitedError(Exception):
    """Too many requests in the rolling minute (answered as 429)."""

    def __init__(self, tier: str, rpm: int, retry_after: int) -> None:
        super().__init__(f"rate limit of {rpm} requests per minute reached")
        self.tier = tier
        self.rpm = rpm
        self.retry_after = retry_after


class LimitStore(Protocol):
    """Counters behind the tier checks; one instance per gateway."""

    async def admit(
        self, project_id: str, uid: str, tier: str, limit: TierLimit, now: float
    ) -> None:
        """Count one chat request, or raise QuotaExceededError/RateLimitedError (not counted)."""
        ...

    async def add_tokens(self, project_id: str, uid: str, tokens: int, now: float) -> None:
        """Add the tokens of a finished (or interrupted) completion to today's total."""
        ...

    async def reset(self) -> None:
        """Forget every counter."""
        ...


@dataclass
class _UserCounters:
    day: str = ""
    requests_today: int = 0
    tokens_today: int = 0
    recent: deque[float] = field(default_factory=deque)

    def roll(self, now: float) -> None:
        day = datetime.fromtimestamp(now, UTC).date().isoformat()
        if day != self.day:
            self.day, self.requests_today, self.tokens_today = day, 0, 0
        while self.recent and self.recent[0] <= now - _WINDOW_SECONDS:
            self.recent.popleft()


class MemoryLimitStore:
    """In-process counters; a gateway restart forgets them."""

    def __init__(self) -> None:
        self._users: dict[tuple[str, str], _UserCounters] = {}

    def _counters(self, project_id: str, uid: str, now: float) -> _UserCounters:
        counters = self._users.setdefault((project_id, uid), _UserCounters())
        counters.roll(now)
        return counters

    async def admit(
        self, project_id: str, uid: str, tier: str, limit: TierLimit, now: float
    ) -> None:
        """Count one chat request or raise; see the module docstring for the order."""
        counters = self._counters(project_id, uid, now)
        if counters.requests_today >= limit.requests_per_day:
            raise QuotaExceededError(
                tier,
                {"requests_per_day": limit.requests_per_day},
                {"requests_today": counters.requests_today},
            )
        if counters.tokens_today >= limit.tokens_per_day:
            raise QuotaExceededError(
                tier,
                {"tokens_per_day": limit.tokens_per_day},
                {"tokens_today": counters.tokens_today},
            )
        if len(counters.recent) >= limit.rpm:
            wait = counters.recent[0] + _WINDOW_SECONDS - now
            raise RateLimitedError(tier, limit.rpm, max(1, math.ceil(wait)))
        counters.recent.append(now)
        counters.requests_today += 1

    async def add_tokens(self, project_id: str, uid: str, tokens: int, now: float) -> None:
        """Add tokens to today's total for (project, uid)."""
        self._counters(project_id, uid, now).tokens_today += max(0, tokens)

    async def reset(self) -> None:
        """Forget every counter."""
        self._users.clear()


# One atomic step per request, so that concurrent gateways never both take the last slot.
# KEYS: the day's hash (requests, tokens), the rolling minute's sorted set of request times.
# ARGV: now, window, rpm, requests_per_day, tokens_per_day, unique member, day key TTL.
# Returns {0, 0} admitted; {1, requests} or {2, tokens} over a daily cap; {3, "oldest"} rpm.
_ADMIT = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[2]))
local requests = tonumber(redis.call('HGET', KEYS[1], 'requests') or '0')
if requests >= tonumber(ARGV[4]) then return {1, requests} end
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or '0')
if tokens >= tonumber(ARGV[5]) then return {2, tokens} end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {3, oldest[2]}
end
redis.call('ZADD', KEYS[2], now, ARGV[6])
redis.call('EXPIRE', KEYS[2], math.ceil(tonumber(ARGV[2])) + 1)
redis.call('HINCRBY', KEYS[1], 'requests', 1)
redis.call('EXPIRE', KEYS[1], ARGV[7])
return {0, 0}
"""
_DAY_KEY_TTL_S = 2 * 24 * 3600


class RedisLimitStore:
    """Counters in Redis, shared by every gateway process that uses the same Redis and prefix.

    Keys, under ``prefix``: ``limits:<project>:<uid>:day:<YYYY-MM-DD>`` (a hash of requests
    and tokens, kept two days) and ``limits:<project>:<uid>:minute`` (a sorted set of the
    last minute's request times). The check and the count run as one Lua script. When Redis
    does not answer, a chat request is refused with 503 (the client retries it) rather than
    passing unmetered; tokens of a finished reply that cannot be added are logged and lost.
    """

    def __init__(self, redis: Redis, prefix: str = "behest_gateway:") -> None:
        """Use ``redis`` (an asyncio client); no command is sent until the first request."""
        self._redis = redis
        self.prefix = prefix

    def _keys(self, project_id: str, uid: str, now: float) -> tuple[str, str]:
        day = datetime.fromtimestamp(now, UTC).date().isoformat()
        base = f"{self.prefix}limits:{project_id}:{uid}"
        return f"{base}:day:{day}", f"{base}:minute"

    async def admit(
        self, project_id: str, uid: str, tier: str, limit: TierLimit, now: float
    ) -> None:
        """Count one chat request or raise; see the module docstring for the order."""
        from redis.exceptions import RedisError

        day_key, minute_key = self._keys(project_id, uid, now)
        try:
            verdict, value = await self._redis.eval(
                _ADMIT,
                2,
                day_key,
                minute_key,
                repr(now),
                repr(_WINDOW_SECONDS),
                limit.rpm,
                limit.requests_per_day,
                limit.tokens_per_day,
                f"{now!r}:{secrets.token_hex(6)}",
                _DAY_KEY_TTL_S,
            )
        except RedisError as exc:
            logger.warning("tier counters unavailable: Redis error %s", type(exc).__name__)
            raise GatewayError(
                503, "the usage limits cannot be checked right now; try again shortly"
            ) from None
        if verdict == 1:
            raise QuotaExceededError(
                tier, {"requests_per_day": limit.requests_per_day}, {"requests_today": int(value)}
            )
        if verdict == 2:
            raise QuotaExceededError(
                tier, {"tokens_per_day": limit.tokens_per_day}, {"tokens_today": int(value)}
            )
        if verdict == 3:
            wait = float(value) + _WINDOW_SECONDS - now
            raise RateLimitedError(tier, limit.rpm, max(1, math.ceil(wait)))

    async def add_tokens(self, project_id: str, uid: str, tokens: int, now: float) -> None:
        """Add tokens to today's total for (project, uid)."""
        from redis.exceptions import RedisError

        day_key, _ = self._keys(project_id, uid, now)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hincrby(day_key, "tokens", max(0, tokens))
                pipe.expire(day_key, _DAY_KEY_TTL_S)
                await pipe.execute()
        except RedisError as exc:
            logger.warning(
                "%d tokens of %s not counted: Redis error %s", tokens, uid, type(exc).__name__
            )

    async def reset(self) -> None:
        """Forget every counter under this prefix (and nothing else)."""
        batch: list[Any] = []
        async for key in self._redis.scan_iter(match=f"{self.prefix}limits:*", count=500):
            batch.append(key)
            if len(batch) >= 500:
                await self._redis.delete(*batch)
                batch.clear()
        if batch:
            await self._redis.delete(*batch)
