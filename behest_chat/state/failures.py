"""What the user reads about a failed turn: a kind and a sentence, never the raw error."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from behest_chat.behest import errors
from behest_chat.conversations import budgets

__all__ = ["describe_error", "explain_failure", "quota_message"]


def describe_error(exc: BaseException) -> tuple[str, str]:
    """A short kind label and a human sentence for a failed turn; never the raw exception."""
    if isinstance(exc, errors.QuotaExceededError):
        return "quota", "The daily quota of your plan is used up. It resets at midnight UTC."
    if isinstance(exc, errors.RateLimitError):
        wait = f" Try again in {exc.retry_after} s." if exc.retry_after else ""
        return "rate_limited", "Too many requests right now." + wait
    if isinstance(exc, errors.AuthenticationError):
        return "auth", "The gateway did not accept the credentials. Check the settings page."
    if isinstance(exc, errors.PermissionDeniedError):
        return "forbidden", "The gateway refused this project or user."
    if isinstance(exc, errors.BadRequestError):
        return "bad_request", "The gateway rejected the request."
    if isinstance(exc, errors.ServerError):
        return "server", "The model service failed. The answer so far is kept; retry."
    if isinstance(exc, errors.BehestConnectionError):
        return "unreachable", "The gateway could not be reached. Retry in a moment."
    if isinstance(exc, errors.StreamError):
        return "cut", "The answer was cut off. The part that arrived is kept; retry."
    return "error", "Something went wrong with this answer. Retry."


def explain_failure(exc: BaseException, now: float | None = None) -> tuple[str, str]:
    """Like :func:`describe_error`, with the quota's figures and the read timeout spelled out."""
    if isinstance(exc, errors.QuotaExceededError):
        return "quota", quota_message(exc, now)
    if isinstance(exc, errors.TimeoutError):
        return (
            "timeout",
            "The answer stopped arriving in time. The part that arrived is kept; retry.",
        )
    return describe_error(exc)


def quota_message(exc: errors.QuotaExceededError, now: float | None = None) -> str:
    """``"The daily quota of the free tier is reached: 50,123 of 50,000 tokens used today …"``.

    Args:
        exc: the gateway's 402 (its ``details`` give tier, limit and usage when present).
        now: Unix time (tests); the reset is the next 00:00 UTC.
    """
    tier = exc.tier if isinstance(exc.tier, str) else budgets.TIER_NAMES.get(exc.tier or 1, "free")
    figures = ""
    for key, used_key, unit in (
        ("tokens_per_day", "tokens_today", "tokens"),
        ("requests_per_day", "requests_today", "requests"),
    ):
        limit, used = exc.limit.get(key), exc.usage.get(used_key)
        if isinstance(limit, int):
            figures = (
                f": {used:,} of {limit:,} {unit} used today"
                if isinstance(used, int)
                else f" ({limit:,} {unit} a day)"
            )
            break
    moment = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
    reset = budgets.next_utc_midnight(moment)
    return (
        f"The daily quota of the {tier} tier is reached{figures}. It resets at 00:00 UTC "
        f"(in {budgets.format_wait(reset, moment)}); nothing more is sent until then."
    )
