"""notify: record each SMS attempt before it is made; shared send rates; claim index

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 21:00:00

``sms_ref`` is the reference sent with an SMS call (Alibaba ``OutId``, Tencent
``SessionContext``) and ``sms_started_at`` the wall-clock time just before the call;
both are written before the provider is called, so that a worker killed mid-call
leaves enough behind for the next one to ask the provider whether the SMS went out.
``expires_at`` lets a message (a verification code) lapse instead of arriving late.
``send_rates`` holds each provider's shared send schedule, so the rate limit holds
across every worker process. The claim index gains ``id`` so that a claim reads due
rows in order from the index instead of sorting the whole queue.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("sms_ref", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("sms_started_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.drop_index("ix_outbox_claim")
        batch.create_index("ix_outbox_claim", ["state", "urgent", "not_before", "id"],
                           unique=False)
    op.create_table(
        "send_rates",
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("next_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_send_rates")),
    )


def downgrade() -> None:
    op.drop_table("send_rates")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_claim")
        batch.create_index("ix_outbox_claim", ["state", "urgent", "not_before"], unique=False)
        batch.drop_column("expires_at")
        batch.drop_column("sms_started_at")
        batch.drop_column("sms_ref")
