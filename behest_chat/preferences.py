"""Per-user preferences: how a user's chat turns reach Behest.

- ``"relay"`` (the default): the app's server streams the completion and pushes it to the
  page (``state/chat.py``).
- ``"direct"``: the page calls Behest itself with the user's per-user token
  (``assets/direct.js``) and hands the finished turn back to the app.

Stored in the ``transport_preference`` table (one row per user who chose; no row means the
default), created by the Alembic revision ``0003_transport_preference``.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, Literal, cast

import sqlalchemy as sa
from sqlmodel import Field, Session, SQLModel

from behest_chat.accounts.models import utcnow
from behest_chat.db import joined, session_scope

__all__ = [
    "DEFAULT_TRANSPORT",
    "TRANSPORTS",
    "Transport",
    "TransportPreference",
    "get_transport",
    "set_transport",
]

Transport = Literal["relay", "direct"]
TRANSPORTS: tuple[Transport, ...] = ("relay", "direct")
DEFAULT_TRANSPORT: Transport = "relay"


class TransportPreference(SQLModel, table=True):
    """A user's chosen transport; users without a row use :data:`DEFAULT_TRANSPORT`."""

    __tablename__ = "transport_preference"
    __table_args__ = (
        sa.CheckConstraint(
            "transport IN ('relay', 'direct')", name="ck_transport_preference_transport"
        ),
    )

    user_id: int = Field(foreign_key="user.id", ondelete="CASCADE", primary_key=True)
    transport: str = Field(max_length=16)
    updated_at: datetime = Field(default_factory=utcnow)


def get_transport(user_id: int, *, db: Session | None = None) -> Transport:
    """The transport this user's chat turns should use.

    Args:
        user_id: the database id (``SessionUser.user_id``).
        db: read in the caller's transaction.

    Returns:
        ``"relay"`` or ``"direct"``; ``"relay"`` when the user never chose.
    """
    with joined(db) as db:
        chosen = db.connection().execute(_chosen_query(), {"user_id": user_id}).scalar()
        if chosen not in TRANSPORTS:
            return DEFAULT_TRANSPORT
        return cast(Transport, chosen)


@functools.cache
def _chosen_query() -> Any:
    """A user's stored transport. Built once: every send reads it."""
    preferences = TransportPreference.__table__  # type: ignore[attr-defined]
    return sa.select(preferences.c.transport).where(
        preferences.c.user_id == sa.bindparam("user_id")
    )


def set_transport(user_id: int, transport: str) -> Transport:
    """Store the user's choice.

    Args:
        user_id: the database id (``SessionUser.user_id``).
        transport: ``"relay"`` or ``"direct"``.

    Returns:
        The stored transport.

    Raises:
        ValueError: ``transport`` is not one of :data:`TRANSPORTS` (one line).
    """
    if transport not in TRANSPORTS:
        raise ValueError(f"transport: expected 'relay' or 'direct', got {transport!r}")
    with session_scope() as db:
        row = db.get(TransportPreference, user_id)
        if row is None:
            row = TransportPreference(user_id=user_id, transport=transport)
        else:
            row.transport = transport
            row.updated_at = utcnow()
        db.add(row)
    return cast(Transport, transport)
