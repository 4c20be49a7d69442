"""Conversations, their messages and versions, token usage and budgets, in the database.

- :mod:`.models`: the tables (created by Alembic revision ``0002_conversations``).
- :mod:`.store`: owner-scoped reads and writes, paging of long conversations, live turns.
- :mod:`.recorder`: keeps a streaming answer saved while it is written.
- :mod:`.budgets`: the token budgets checked before anything is sent.
"""

from behest_chat.conversations.budgets import (
    Allowance,
    allowance_for,
    estimate_prompt_tokens,
    set_user_budget,
)
from behest_chat.conversations.models import Conversation, Message, TokenBudget, TokenUsage
from behest_chat.conversations.recorder import TurnRecorder
from behest_chat.conversations.store import ConversationSummary, MessageView

__all__ = [
    "Allowance",
    "Conversation",
    "ConversationSummary",
    "Message",
    "MessageView",
    "TokenBudget",
    "TokenUsage",
    "TurnRecorder",
    "allowance_for",
    "estimate_prompt_tokens",
    "set_user_budget",
]
