"""bot: keep an unanswered question as the person typed it (masked)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 10:00:00

asked_questions.typed: the words as typed (or as voice recognition gave them), with ID
and phone numbers and other long digit runs masked, so the inbox shows what people
really write; the normalised text stays in asked_questions.text. Older rows have none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("asked_questions") as batch:
        batch.add_column(sa.Column("typed", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("asked_questions") as batch:
        batch.drop_column("typed")
