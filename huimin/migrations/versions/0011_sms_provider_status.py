"""notify: SMS providers set aside, why and until when

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 12:00:00

``sms_provider_status`` holds one row per SMS provider a worker has set aside (a
spent daily limit until midnight China time, account trouble for longer, or a run
of failed calls for a minute): every worker reads it before sending, so none keeps
calling a provider another found unusable, and the staff UI's reminders page says
which provider is set aside, why and until when.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sms_provider_status",
        sa.Column("provider", sa.String(length=24), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("set_aside_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("aside_until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("provider", name=op.f("pk_sms_provider_status")),
    )


def downgrade() -> None:
    op.drop_table("sms_provider_status")
