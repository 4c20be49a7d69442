"""The usage page: the signed-in user's tokens per day and per conversation, and their CSV.

Figures come from the usage ledger only (``behest_chat.usage``), filtered by the user taken
from the server-side session on every event; nothing identifies another user's data.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import reflex as rx

from behest_chat import routes
from behest_chat.accounts.sessions import SessionUser
from behest_chat.conversations import budgets
from behest_chat.settings import get_settings
from behest_chat.state.auth import AuthState
from behest_chat.usage import (
    ConversationUsage,
    DayUsage,
    per_conversation,
    per_day,
    user_csv,
)

__all__ = ["USAGE_DAYS", "UsageState"]

USAGE_DAYS = 30
_CHART_CONVERSATIONS = 10


class UsageState(AuthState):
    """What the usage page shows."""

    # Reflex copies var defaults into every tab's state, so a list default is safe here.
    by_day: list[dict[str, str | int]] = []  # noqa: RUF012
    by_conversation: list[dict[str, str | int]] = []  # noqa: RUF012
    window: str = ""
    total_tokens: int = 0
    total_requests: int = 0
    allowance: str = ""

    @rx.event
    async def load(self):
        """on_load: the last 30 UTC days of the user's usage."""
        today = datetime.now(UTC).date()
        since = today - timedelta(days=USAGE_DAYS - 1)
        user, read = await self._as_user(lambda user: _usage_of(user, since, today))
        if user is None or read is None:
            return rx.redirect(routes.LOGIN)
        days, conversations, allowance = read
        self.by_day = [
            {
                "day": d.day.isoformat(),
                "label": d.day.strftime("%b %d"),
                "tokens": d.total_tokens,
                "prompt": d.prompt_tokens,
                "completion": d.completion_tokens,
                "requests": d.requests,
            }
            for d in days
        ]
        self.by_conversation = [
            {
                "title": c.title,
                "session": c.session_id,
                "tokens": c.total_tokens,
                "prompt": c.prompt_tokens,
                "completion": c.completion_tokens,
                "requests": c.requests,
            }
            for c in conversations
        ]
        self.total_tokens = sum(d.total_tokens for d in days)
        self.total_requests = sum(d.requests for d in days)
        self.window = f"{since.isoformat()} to {today.isoformat()} (UTC)"
        self.allowance = allowance
        return None

    @rx.var
    def chart_conversations(self) -> list[dict[str, str | int]]:
        """The conversations with the most tokens, for the chart."""
        return self.by_conversation[:_CHART_CONVERSATIONS]

    @rx.event
    async def download_csv(self):
        """The same figures as a CSV file (per day and conversation)."""
        today = datetime.now(UTC).date()
        since = today - timedelta(days=USAGE_DAYS - 1)
        user, data = await self._as_user(lambda user: user_csv(user.user_id, since, today))
        if user is None or data is None:
            return rx.redirect(routes.LOGIN)
        return rx.download(
            data=data,
            filename=f"behest-usage-{since.isoformat()}-{today.isoformat()}.csv",
            mime_type="text/csv",
        )


def _usage_of(
    user: SessionUser, since: date, today: date
) -> tuple[list[DayUsage], list[ConversationUsage], str]:
    """The user's usage per day and per conversation since ``since``, and their allowance
    today (blocking)."""
    settings = get_settings()
    allowance = budgets.allowance_for(
        user.user_id,
        user.tier,
        None,
        daily_budget=settings.daily_token_budget(user.tier),
        conversation_cap=None,
    ).summary()
    return per_day(user.user_id, since, today), per_conversation(user.user_id, since), allowance
