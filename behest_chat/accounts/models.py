"""Account tables: users, server-side sign-in sessions, and failed sign-in attempts.

Timestamps are timezone-aware UTC (:func:`utcnow`); SQLModel stores them as UTC and returns
them as aware UTC on SQLite and PostgreSQL alike. The schema is
created by the hand-written Alembic revisions in ``alembic/versions``; a change here needs a
new revision (``tests/unit/test_accounts_db.py`` checks that the two agree).

Rows never leave the server as they are: :class:`behest_chat.accounts.sessions.SessionUser`
is the narrow, safe view (no password hash).
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

__all__ = ["TIERS", "TIER_NAMES", "AuthSession", "LoginAttempt", "Registration", "User", "utcnow"]

# Behest tier ids (contract §6.1).
TIERS = {"free": 1, "pro": 2, "max": 3}
TIER_NAMES = {number: name for name, number in TIERS.items()}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC, as every timestamp column takes it."""
    return datetime.now(UTC)


class User(SQLModel, table=True):
    """A person who can sign in. ``username`` is stored lowercased."""

    __tablename__ = "user"
    __table_args__ = (sa.CheckConstraint("tier IN (1, 2, 3)", name="ck_user_tier"),)

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=32, unique=True, index=True)
    display_name: str = Field(max_length=64)
    password_hash: str = Field(max_length=255)
    tier: int = Field(default=1)
    created_at: datetime = Field(default_factory=utcnow)


class AuthSession(SQLModel, table=True):
    """One sign-in. The browser holds the secret; only its SHA-256 is stored."""

    __tablename__ = "auth_session"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE", index=True)
    secret_sha256: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    revoked_at: datetime | None = Field(default=None)
    last_seen_at: datetime = Field(default_factory=utcnow)


class Registration(SQLModel, table=True):
    """An account created from a client address, kept for an hour to limit sign-ups."""

    __tablename__ = "registration"
    __table_args__ = (sa.Index("ix_registration_client_created_at", "client", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    client: str = Field(max_length=160)
    created_at: datetime = Field(default_factory=utcnow)


class LoginAttempt(SQLModel, table=True):
    """A failed sign-in, counted per subject (``user:<name>`` or ``ip:<address>``)."""

    __tablename__ = "login_attempt"
    __table_args__ = (sa.Index("ix_login_attempt_subject_failed_at", "subject", "failed_at"),)

    id: int | None = Field(default=None, primary_key=True)
    subject: str = Field(max_length=160)
    failed_at: datetime = Field(default_factory=utcnow)
