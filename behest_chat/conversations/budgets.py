"""Token budgets the app enforces before it sends anything.

Two limits, both read from the usage ledger (:class:`.models.TokenUsage`):

- a daily budget per user, by tier (``APP_DAILY_TOKEN_BUDGET_FREE/PRO/MAX``), counted over
  the UTC day like the gateway's own quota;
- an optional cap per conversation (``APP_CONVERSATION_TOKEN_CAP``).

An operator can override either for one user (:func:`set_user_budget`, also
``python -m behest_chat.usage set-budget``). A request is refused when the tokens already
used plus a conservative estimate of the prompt would pass a limit; the completion is not
known in advance, so a request that starts just under a limit may end a little over it
(the gateway's quota behaves the same way).

The estimate (:func:`estimate_prompt_tokens`) counts every word run (split every 12
characters) and every other visible character as a token, plus one for whitespace and three
per message, and adds a quarter on top: never less than the local gateway's count and above
what BPE tokenizers give for prose.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from behest_chat.accounts.models import TIER_NAMES, utcnow
from behest_chat.conversations.models import TokenBudget, TokenUsage
from behest_chat.db import joined, session_scope

__all__ = [
    "TIER_NAMES",
    "Allowance",
    "allowance_for",
    "estimate_prompt_tokens",
    "estimate_tokens",
    "format_wait",
    "get_user_budget",
    "next_utc_midnight",
    "prompt_token_bound",
    "set_user_budget",
]

_PIECE = re.compile(r"\w+|[^\w\s]")
_WORD_RUN = 12
_LONG_WORD = re.compile(rf"\w{{{_WORD_RUN + 1},}}")
_PER_MESSAGE = 3
_SAFETY = 1.25


def estimate_tokens(text: str) -> int:
    """An upper estimate of the tokens in ``text`` (see the module docstring)."""
    # Every piece counts one; a word longer than _WORD_RUN counts one per _WORD_RUN letters.
    # Counted by the regex engine: every send estimates the whole history.
    count = 1 if text and text[-1].isspace() else 0
    count += _PIECE.subn("", text)[1]
    for word in _LONG_WORD.findall(text):
        count += math.ceil(len(word) / _WORD_RUN) - 1
    return count


def estimate_prompt_tokens(messages: Iterable[Mapping[str, str]]) -> int:
    """A conservative estimate of the prompt tokens a request with ``messages`` costs."""
    raw = sum(estimate_tokens(str(m.get("content") or "")) + 1 + _PER_MESSAGE for m in messages)
    return math.ceil((raw + _PER_MESSAGE) * _SAFETY)


def prompt_token_bound(messages: Iterable[Mapping[str, str]]) -> int:
    """A quick upper bound of :func:`estimate_prompt_tokens`: no piece counts more tokens
    than it has characters, so a text's estimate is at most its length plus one."""
    raw = sum(len(str(m.get("content") or "")) + 2 + _PER_MESSAGE for m in messages)
    return math.ceil((raw + _PER_MESSAGE) * _SAFETY)


def next_utc_midnight(now: datetime | None = None) -> datetime:
    """When the current UTC day ends (daily budgets and the gateway's quotas reset)."""
    current = (now or utcnow()).astimezone(UTC)
    return datetime(current.year, current.month, current.day, tzinfo=UTC) + timedelta(days=1)


def format_wait(until: datetime, now: datetime | None = None) -> str:
    """``"5 h 12 min"`` / ``"3 min"`` until ``until``."""
    seconds = max(0, int((until - (now or utcnow())).total_seconds()))
    hours, minutes = seconds // 3600, (seconds % 3600 + 59) // 60
    if minutes == 60:
        hours, minutes = hours + 1, 0
    if hours and minutes:
        return f"{hours} h {minutes} min"
    return f"{hours} h" if hours else f"{minutes} min"


@dataclass(frozen=True)
class Allowance:
    """What a user may still spend, today and in one conversation.

    Attributes:
        tier: the user's tier id.
        daily_budget: tokens per UTC day (0 = no daily budget).
        used_today: tokens in the ledger for today.
        conversation_cap: tokens the conversation may use in total, or ``None``.
        used_in_conversation: tokens in the ledger for the conversation.
        resets_at: the end of the UTC day.
    """

    tier: int
    daily_budget: int
    used_today: int
    conversation_cap: int | None
    used_in_conversation: int
    resets_at: datetime

    @property
    def tier_name(self) -> str:
        """``"free"``, ``"pro"`` or ``"max"``."""
        return TIER_NAMES.get(self.tier, "free")

    @property
    def remaining_today(self) -> int | None:
        """Tokens left today, or ``None`` without a daily budget."""
        return None if not self.daily_budget else max(0, self.daily_budget - self.used_today)

    @property
    def remaining_in_conversation(self) -> int | None:
        """Tokens left in the conversation, or ``None`` without a cap."""
        if self.conversation_cap is None:
            return None
        return max(0, self.conversation_cap - self.used_in_conversation)

    def refusal(self, estimate: int, now: datetime | None = None) -> tuple[str, str] | None:
        """Why a request of about ``estimate`` prompt tokens must not be sent, if it must not.

        Returns:
            ``(kind, message)`` with kind ``"daily_budget"`` or ``"conversation_cap"``,
            or ``None`` when the request fits.
        """
        left = self.remaining_today
        if left is not None and estimate > left:
            return "daily_budget", self._daily_refusal(estimate, left, now)
        cap_left = self.remaining_in_conversation
        if cap_left is not None and estimate > cap_left:
            return (
                "conversation_cap",
                f"Not sent: this conversation has used {self.used_in_conversation:,} of its "
                f"{self.conversation_cap:,} tokens (this question needs about {estimate:,}). "
                "Start a new chat to continue.",
            )
        return None

    def _daily_refusal(self, estimate: int, left: int, now: datetime | None) -> str:
        """Whether waiting for the reset helps, and how much is left, in one sentence."""
        tier, budget, used = self.tier_name, self.daily_budget, self.used_today
        if estimate > budget:  # no day holds it: waiting does not help
            return (
                f"Not sent: this needs about {estimate:,} tokens (the question and the "
                f"messages before it), more than the {tier} tier's whole daily budget "
                f"({used:,} of {budget:,} tokens used today). Shorten the question, or ask "
                "it in a new chat."
            )
        resets = f"It resets at 00:00 UTC, in {format_wait(self.resets_at, now)}."
        if left == 0:
            return (
                f"Not sent: the daily budget of the {tier} tier is used up "
                f"({used:,} of {budget:,} tokens). {resets}"
            )
        return (
            f"Not sent: this needs about {estimate:,} tokens (the question and the messages "
            f"before it) and only {left:,} of the {tier} tier's daily budget are left "
            f"({used:,} of {budget:,} tokens used). {resets}"
        )

    def refusal_for(
        self, messages: Sequence[Mapping[str, str]], now: datetime | None = None
    ) -> tuple[str, str] | None:
        """:meth:`refusal` for a request with ``messages``.

        Their tokens are counted only if the request could come near a limit: far from
        one, a bound from their length says enough (every send of a long chat checks).
        """
        if self.refusal(prompt_token_bound(messages), now) is None:
            return None
        return self.refusal(estimate_prompt_tokens(messages), now)

    def summary(self) -> str:
        """One line for the composer, e.g. ``"48,750 of 50,000 tokens left today (free)"``."""
        parts = []
        left = self.remaining_today
        if left is None:
            parts.append(f"{self.used_today:,} tokens used today ({self.tier_name}, no budget)")
        else:
            parts.append(f"{left:,} of {self.daily_budget:,} tokens left today ({self.tier_name})")
        cap_left = self.remaining_in_conversation
        if cap_left is not None:
            parts.append(f"{cap_left:,} of {self.conversation_cap:,} left in this chat")
        return " · ".join(parts)


def allowance_for(
    user_id: int,
    tier: int,
    conversation_id: str | None,
    *,
    daily_budget: int,
    conversation_cap: int | None,
    now: datetime | None = None,
    db: Session | None = None,
) -> Allowance:
    """The user's allowance, with the settings' limits unless an operator overrode them.

    Args:
        user_id: the user.
        tier: their tier id.
        conversation_id: the conversation about to be used, or ``None`` for a new one.
        daily_budget: the settings' budget for the tier (0 = none).
        conversation_cap: the settings' cap per conversation, or ``None``.
        now: the current time (tests).
        db: read in the caller's transaction.
    """
    current = now or utcnow()
    params = {
        "user_id": user_id,
        "day": current.astimezone(UTC).date(),
        "conversation_id": conversation_id,
    }
    with joined(db) as session:
        # One statement: every send checks the allowance before its request goes out.
        used_today, used_in_conversation, daily_override, cap_override = (
            session.connection().execute(_allowance_query(), params).one()
        )
    if daily_override is not None:
        daily_budget = daily_override
    if cap_override is not None:
        conversation_cap = cap_override or None
    return Allowance(
        tier=tier,
        daily_budget=daily_budget,
        used_today=int(used_today),
        conversation_cap=conversation_cap,
        used_in_conversation=int(used_in_conversation),
        resets_at=next_utc_midnight(current),
    )


@functools.cache
def _allowance_query() -> Any:
    """Tokens today, tokens in the conversation, and the operator's overrides (or NULLs)."""
    usage = TokenUsage.__table__  # type: ignore[attr-defined]
    budget = TokenBudget.__table__  # type: ignore[attr-defined]
    spent = sa.func.coalesce(sa.func.sum(usage.c.prompt_tokens + usage.c.completion_tokens), 0)
    user_id = sa.bindparam("user_id")
    return sa.select(
        sa.select(spent)
        .where(usage.c.user_id == user_id, usage.c.day == sa.bindparam("day"))
        .scalar_subquery(),
        sa.select(spent)
        .where(usage.c.conversation_id == sa.bindparam("conversation_id"))
        .scalar_subquery(),
        sa.select(budget.c.daily_tokens).where(budget.c.user_id == user_id).scalar_subquery(),
        sa.select(budget.c.conversation_cap).where(budget.c.user_id == user_id).scalar_subquery(),
    )


def get_user_budget(user_id: int) -> TokenBudget | None:
    """The operator's override for a user, if any."""
    with session_scope() as db:
        return db.get(TokenBudget, user_id)


def set_user_budget(
    user_id: int, *, daily_tokens: int | None, conversation_cap: int | None
) -> TokenBudget | None:
    """Override a user's limits (``None`` = the settings' value; 0 = no limit).

    Returns:
        The stored override, or ``None`` when both values are ``None`` (override removed).

    Raises:
        ValueError: a negative value.
    """
    for name, value in (("daily_tokens", daily_tokens), ("conversation_cap", conversation_cap)):
        if value is not None and value < 0:
            raise ValueError(f"{name}: must not be negative")
    with session_scope() as db:
        row = db.get(TokenBudget, user_id)
        if daily_tokens is None and conversation_cap is None:
            if row is not None:
                db.delete(row)
            return None
        row = row or TokenBudget(user_id=user_id)
        row.daily_tokens, row.conversation_cap = daily_tokens, conversation_cap
        db.add(row)
        return row
