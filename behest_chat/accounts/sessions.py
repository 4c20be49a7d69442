"""Server-side sign-in sessions: the only code that maps a session secret to a user and tier.

The browser keeps a random secret in the HttpOnly cookie :data:`SESSION_COOKIE`; the
database keeps only its SHA-256, an expiry and a revocation mark. :func:`resolve` is called
on every request and every Reflex event, so sign-out, expiry and tier changes apply at once.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import update
from sqlmodel import Session, select

from behest_chat.accounts.models import AuthSession, User, utcnow
from behest_chat.db import joined, session_scope

__all__ = [
    "DEFAULT_SESSION_TTL",
    "SESSION_COOKIE",
    "SessionUser",
    "create_session",
    "hash_secret",
    "resolve",
    "revoke",
    "revoke_all",
]

SESSION_COOKIE = "behest_chat_session"
DEFAULT_SESSION_TTL = timedelta(hours=168)
# last_seen_at is refreshed at most this often, so a busy tab does not write on every event.
_TOUCH_INTERVAL = timedelta(minutes=5)
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{32,128}")


@dataclass(frozen=True)
class SessionUser:
    """The signed-in user as the rest of the app may see it (no password hash).

    Attributes:
        user_id: the database id.
        username: the lowercased login name.
        display_name: the name shown in the UI.
        tier: Behest tier id (1 free, 2 pro, 3 max).
    """

    user_id: int
    username: str
    display_name: str
    tier: int

    @property
    def behest_user_id(self) -> str:
        """The ``uid`` minted into Behest tokens; stable even if the username changes."""
        return f"user-{self.user_id}"

    @classmethod
    def from_row(cls, user: User) -> SessionUser:
        """The safe view of a ``User`` row."""
        assert user.id is not None, "the user row must be saved first"
        return cls(
            user_id=user.id,
            username=user.username,
            display_name=user.display_name,
            tier=user.tier,
        )


def hash_secret(secret: str) -> str:
    """The SHA-256 hex digest under which a session secret is stored."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_session(user: User | SessionUser, ttl: timedelta = DEFAULT_SESSION_TTL) -> str:
    """Start a session for ``user`` and return its secret (shown to no one but the browser).

    Args:
        user: the user signing in.
        ttl: how long the session lasts (``APP_SESSION_TTL_HOURS`` in the app).

    Returns:
        A fresh ``secrets.token_urlsafe(32)`` secret for the session cookie.
    """
    user_id = user.user_id if isinstance(user, SessionUser) else user.id
    if user_id is None:
        raise ValueError("user: the user row must be saved first")
    secret = secrets.token_urlsafe(32)
    now = utcnow()
    with session_scope() as db:
        db.add(
            AuthSession(
                user_id=user_id,
                secret_sha256=hash_secret(secret),
                created_at=now,
                expires_at=now + ttl,
                last_seen_at=now,
            )
        )
        _forget_finished(db, user_id, now)
    return secret


def resolve(secret: str | None, *, db: Session | None = None) -> SessionUser | None:
    """The user behind a session secret, or ``None``.

    Args:
        secret: the cookie value; anything malformed, unknown, revoked or expired gives
            ``None``.
        db: read (and touch the session) in the caller's transaction.
    """
    if not secret or not _SECRET_RE.fullmatch(secret):
        return None
    now = utcnow()
    with joined(db) as db:
        connection = db.connection()
        row = connection.execute(
            _live_session_query(), {"digest": hash_secret(secret), "now": now}
        ).first()
        if row is None:
            return None
        if now - row.last_seen_at >= _TOUCH_INTERVAL:
            sessions = AuthSession.__table__  # type: ignore[attr-defined]
            connection.execute(
                sessions.update().where(sessions.c.id == row.session_id).values(last_seen_at=now)
            )
        return SessionUser(row.user_id, row.username, row.display_name, row.tier)


@functools.cache
def _live_session_query() -> Any:
    """The unrevoked, unexpired session with a digest, and its user.

    Built once: on every event, building the statement cost more than running it.
    """
    sessions = AuthSession.__table__  # type: ignore[attr-defined]
    users = User.__table__  # type: ignore[attr-defined]
    return (
        sa.select(
            sessions.c.id.label("session_id"),
            sessions.c.last_seen_at,
            users.c.id.label("user_id"),
            users.c.username,
            users.c.display_name,
            users.c.tier,
        )
        .select_from(sessions.join(users, users.c.id == sessions.c.user_id))
        .where(
            sessions.c.secret_sha256 == sa.bindparam("digest"),
            sessions.c.revoked_at.is_(None),
            sessions.c.expires_at > sa.bindparam("now"),
        )
    )


def revoke(secret: str | None) -> bool:
    """End the session with this secret.

    Returns:
        ``True`` when a live session was revoked.
    """
    if not secret or not _SECRET_RE.fullmatch(secret):
        return False
    with session_scope() as db:
        result = db.exec(
            update(AuthSession)
            .where(
                AuthSession.secret_sha256 == hash_secret(secret),  # type: ignore[arg-type]
                AuthSession.revoked_at.is_(None),  # type: ignore[union-attr]
            )
            .values(revoked_at=utcnow())
        )
        return bool(result.rowcount)


def revoke_all(user_id: int) -> int:
    """End every live session of a user (e.g. after a password change).

    Returns:
        How many sessions were revoked.
    """
    with session_scope() as db:
        result = db.exec(
            update(AuthSession)
            .where(
                AuthSession.user_id == user_id,  # type: ignore[arg-type]
                AuthSession.revoked_at.is_(None),  # type: ignore[union-attr]
            )
            .values(revoked_at=utcnow())
        )
        return int(result.rowcount)


def _forget_finished(db: Session, user_id: int, now: datetime) -> None:
    """Delete this user's sessions that ended (expired or revoked) over a day ago."""
    cutoff = now - timedelta(days=1)
    for old in db.exec(
        select(AuthSession).where(
            AuthSession.user_id == user_id,
            (AuthSession.expires_at < cutoff) | (AuthSession.revoked_at < cutoff),  # type: ignore[operator]
        )
    ):
        db.delete(old)
