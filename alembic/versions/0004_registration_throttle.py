"""Accounts created per client address, for the sign-up limit.

Revision ID: 0004_registration_throttle
Revises: 0003_transport_preference
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0004_registration_throttle"
down_revision: str | None = "0003_transport_preference"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "registration",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("client", sa.String(length=160), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_registration_client_created_at", "registration", ["client", "created_at"])


def downgrade() -> None:
    op.drop_table("registration")
