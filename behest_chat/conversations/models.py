"""Conversation tables: conversations, their messages (a tree of versions), token usage.

A conversation's messages form a tree through ``parent_id``: a regenerated answer is a new
assistant message under the same question, an edited question is a new user message under
the same parent, so earlier versions stay reachable. ``Conversation.leaf_id`` names the last
message of the branch on screen; walking ``parent_id`` from it gives the visible history.

An assistant message being written has ``status == "streaming"``; the process writing it
stamps ``run_id`` and refreshes ``heartbeat_at`` (with the text so far) at least every second,
so any process can tell a live turn from one whose server went away.

:class:`TokenUsage` is the ledger of what each request cost. It has no foreign key to the
conversation on purpose: deleting a conversation must not give its tokens back to a budget.

Created by the hand-written Alembic revision ``0002_conversations``; a change here needs a
new revision.
"""

from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from behest_chat.accounts.models import utcnow

__all__ = [
    "MESSAGE_STATUSES",
    "Conversation",
    "Message",
    "TokenBudget",
    "TokenUsage",
]

# done: complete; streaming: being written; stopped: the user pressed Stop; error: the
# gateway refused or failed (``error_kind`` says how); interrupted: the server went away.
MESSAGE_STATUSES = ("done", "streaming", "stopped", "error", "interrupted")


class Conversation(SQLModel, table=True):
    """One conversation of one user; ``session_id`` is its Behest ``X-Session-Id``.

    Every request of the conversation carries that session id in ``X-Session-Id``, which the
    gateway uses for its usage per session, so its figures line up with the conversation.
    The per-user token is shared by all of a user's conversations (one mint per user, cached);
    its own ``sid`` claim is only the gateway's fallback when the header is missing. There is
    no Behest thread id: the app keeps the history itself and sends the visible branch with
    each request; a thread would keep a second copy at the gateway.
    """

    __tablename__ = "conversation"
    __table_args__ = (sa.Index("ix_conversation_user_updated", "user_id", "updated_at"),)

    id: str = Field(primary_key=True, max_length=32)
    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE")
    title: str = Field(default="New chat", max_length=120)
    # A title the user typed is never replaced by the automatic one.
    title_is_custom: bool = Field(default=False)
    session_id: str = Field(max_length=36)
    leaf_id: int | None = Field(default=None)
    # What the user had typed but not sent when they left the conversation.
    draft: str = Field(default="", sa_type=sa.Text)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Message(SQLModel, table=True):
    """A user question or an assistant answer (or one version of it)."""

    __tablename__ = "message"
    __table_args__ = (
        sa.Index("ix_message_conversation_parent", "conversation_id", "parent_id"),
        sa.CheckConstraint("role IN ('user', 'assistant')", name="ck_message_role"),
    )

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: str = Field(foreign_key="conversation.id", ondelete="CASCADE", max_length=32)
    parent_id: int | None = Field(default=None)
    depth: int = Field(default=0)
    role: str = Field(max_length=16)
    content: str = Field(default="", sa_type=sa.Text)
    status: str = Field(default="done", max_length=16)
    error_kind: str = Field(default="", max_length=32)
    error: str = Field(default="", max_length=500)
    trace_id: str = Field(default="", max_length=128)
    prompt_tokens: int = Field(default=0)
    completion_tokens: int = Field(default=0)
    usage_estimated: bool = Field(default=False)
    run_id: str = Field(default="", max_length=64)
    heartbeat_at: datetime | None = Field(default=None)
    stop_requested: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class TokenUsage(SQLModel, table=True):
    """What one chat request cost, attributed to a user, a day and a Behest session."""

    __tablename__ = "token_usage"
    __table_args__ = (
        sa.Index("ix_token_usage_user_day", "user_id", "day"),
        sa.Index("ix_token_usage_session", "session_id"),
        sa.Index("ix_token_usage_conversation", "conversation_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE")
    conversation_id: str | None = Field(default=None, max_length=32)
    session_id: str = Field(max_length=36)
    message_id: int | None = Field(default=None)
    day: date
    prompt_tokens: int = Field(default=0)
    completion_tokens: int = Field(default=0)
    # True when the stream ended before its usage chunk and the figures are the app's count.
    estimated: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow)


class TokenBudget(SQLModel, table=True):
    """An operator's per-user override of the token budgets from the settings."""

    __tablename__ = "token_budget"

    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE", primary_key=True)
    # None keeps the settings' value; 0 means no limit.
    daily_tokens: int | None = Field(default=None, sa_type=sa.BigInteger)
    conversation_cap: int | None = Field(default=None, sa_type=sa.BigInteger)
