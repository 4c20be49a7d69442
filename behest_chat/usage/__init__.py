"""Token usage reports: per day, per conversation, per user and Behest session.

Admin command: ``python -m behest_chat.usage report --since 2026-11-01`` (see ``__main__``).
"""

from behest_chat.usage.report import (
    AttributionRow,
    ConversationUsage,
    DayUsage,
    attribution,
    attribution_csv,
    per_conversation,
    per_day,
    user_csv,
)

__all__ = [
    "AttributionRow",
    "ConversationUsage",
    "DayUsage",
    "attribution",
    "attribution_csv",
    "per_conversation",
    "per_day",
    "user_csv",
]
