"""Token usage figures from the ledger: per day, per conversation, per user and session.

Every figure is a sum over :class:`behest_chat.conversations.models.TokenUsage` rows, so the
usage page, its CSV and the admin report always agree. Days are UTC days.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, timedelta

import sqlalchemy as sa
from sqlmodel import col, select

from behest_chat.accounts.models import User
from behest_chat.accounts.sessions import SessionUser
from behest_chat.conversations.models import Conversation, TokenUsage
from behest_chat.db import session_scope

__all__ = [
    "DELETED_TITLE",
    "AttributionRow",
    "ConversationUsage",
    "DayUsage",
    "attribution",
    "attribution_csv",
    "per_conversation",
    "per_day",
    "user_csv",
]

DELETED_TITLE = "(deleted conversation)"
_CSV_HEADER = [
    "day",
    "session_id",
    "conversation_id",
    "title",
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
]


@dataclass(frozen=True)
class DayUsage:
    """One UTC day of one user's usage."""

    day: date
    requests: int
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class ConversationUsage:
    """One conversation's (Behest session's) usage."""

    conversation_id: str | None
    session_id: str
    title: str
    requests: int
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class AttributionRow:
    """Usage of one user in one Behest session, for the admin report."""

    username: str
    behest_user_id: str
    session_id: str
    conversation_id: str | None
    title: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    estimated_requests: int

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens


def _sums() -> list[sa.ColumnElement[int]]:
    return [
        sa.func.count(col(TokenUsage.id)),
        sa.func.coalesce(sa.func.sum(TokenUsage.prompt_tokens), 0),
        sa.func.coalesce(sa.func.sum(TokenUsage.completion_tokens), 0),
    ]


def per_day(user_id: int, since: date, until: date) -> list[DayUsage]:
    """Every day from ``since`` to ``until`` (inclusive), zeros included, oldest first."""
    with session_scope() as db:
        rows = db.exec(
            select(TokenUsage.day, *_sums())  # type: ignore[call-overload]
            .where(
                TokenUsage.user_id == user_id,
                col(TokenUsage.day) >= since,
                col(TokenUsage.day) <= until,
            )
            .group_by(TokenUsage.day)
        ).all()
    found = {day: DayUsage(day, int(n), int(p), int(c)) for day, n, p, c in rows}
    days = []
    current = since
    while current <= until:
        days.append(found.get(current, DayUsage(current, 0, 0, 0)))
        current += timedelta(days=1)
    return days


def per_conversation(user_id: int, since: date | None = None) -> list[ConversationUsage]:
    """The user's usage per conversation, largest first; deleted ones keep their tokens."""
    statement = (
        select(
            TokenUsage.conversation_id,
            TokenUsage.session_id,
            Conversation.title,
            *_sums(),
        )  # type: ignore[call-overload]
        .outerjoin(Conversation, col(Conversation.id) == TokenUsage.conversation_id)
        .where(TokenUsage.user_id == user_id)
        .group_by(TokenUsage.conversation_id, TokenUsage.session_id, Conversation.title)
    )
    if since is not None:
        statement = statement.where(col(TokenUsage.day) >= since)
    with session_scope() as db:
        rows = db.exec(statement).all()
    result = [
        ConversationUsage(cid, sid, title or DELETED_TITLE, int(n), int(p), int(c))
        for cid, sid, title, n, p, c in rows
    ]
    return sorted(result, key=lambda row: (-row.total_tokens, row.title))


def user_csv(user_id: int, since: date, until: date) -> str:
    """The user's usage per day and conversation as CSV (the usage page's download)."""
    statement = (
        select(
            TokenUsage.day,
            TokenUsage.session_id,
            TokenUsage.conversation_id,
            Conversation.title,
            *_sums(),
        )  # type: ignore[call-overload]
        .outerjoin(Conversation, col(Conversation.id) == TokenUsage.conversation_id)
        .where(
            TokenUsage.user_id == user_id,
            col(TokenUsage.day) >= since,
            col(TokenUsage.day) <= until,
        )
        .group_by(
            TokenUsage.day, TokenUsage.session_id, TokenUsage.conversation_id, Conversation.title
        )
        .order_by(TokenUsage.day, TokenUsage.session_id)
    )
    with session_scope() as db:
        rows = db.exec(statement).all()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_CSV_HEADER)
    for day, sid, cid, title, n, p, c in rows:
        writer.writerow(
            [day.isoformat(), sid, cid or "", title or DELETED_TITLE, n, p, c, int(p) + int(c)]
        )
    return out.getvalue()


def attribution(
    since: date, until: date | None = None, username: str | None = None
) -> list[AttributionRow]:
    """Per-user, per-session usage of everyone (or of ``username``) in a date range."""
    statement = (
        select(
            User.username,
            User.id,
            TokenUsage.session_id,
            TokenUsage.conversation_id,
            Conversation.title,
            *_sums(),
            sa.func.sum(sa.case((col(TokenUsage.estimated), 1), else_=0)),
        )  # type: ignore[call-overload]
        .join(User, col(User.id) == TokenUsage.user_id)
        .outerjoin(Conversation, col(Conversation.id) == TokenUsage.conversation_id)
        .where(col(TokenUsage.day) >= since)
        .group_by(
            User.username,
            User.id,
            TokenUsage.session_id,
            TokenUsage.conversation_id,
            Conversation.title,
        )
        .order_by(User.username, TokenUsage.session_id)
    )
    if until is not None:
        statement = statement.where(col(TokenUsage.day) <= until)
    if username is not None:
        statement = statement.where(User.username == username.strip().lower())
    with session_scope() as db:
        rows = db.exec(statement).all()
    return [
        AttributionRow(
            username=name,
            behest_user_id=SessionUser(uid, name, "", 1).behest_user_id,
            session_id=sid,
            conversation_id=cid,
            title=title or DELETED_TITLE,
            requests=int(n),
            prompt_tokens=int(p),
            completion_tokens=int(c),
            estimated_requests=int(e or 0),
        )
        for name, uid, sid, cid, title, n, p, c, e in rows
    ]


def attribution_csv(rows: list[AttributionRow]) -> str:
    """The admin report as CSV."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "username",
            "behest_user_id",
            "session_id",
            "conversation_id",
            "title",
            "requests",
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "estimated_requests",
        ]
    )
    for r in rows:
        writer.writerow(
            [
                r.username,
                r.behest_user_id,
                r.session_id,
                r.conversation_id or "",
                r.title,
                r.requests,
                r.prompt_tokens,
                r.completion_tokens,
                r.total_tokens,
                r.estimated_requests,
            ]
        )
    return out.getvalue()
