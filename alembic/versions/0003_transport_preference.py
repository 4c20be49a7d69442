"""Per-user transport preference: server relay or browser direct.

Revision ID: 0003_transport_preference
Revises: 0002_conversations
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0003_transport_preference"
down_revision: str | None = "0002_conversations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # One row per user who chose; no row means the default ("relay").
    op.create_table(
        "transport_preference",
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("user.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("transport", sa.String(length=16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "transport IN ('relay', 'direct')", name="ck_transport_preference_transport"
        ),
    )


def downgrade() -> None:
    op.drop_table("transport_preference")
