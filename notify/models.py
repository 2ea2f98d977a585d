"""Tables owned by the notifier: the outbox, payout lists and opt-outs."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from huimin.clock import utcnow
from huimin.db import AwareDateTime, Base

# Outbox states: queued -> sending -> sent -> delivered, or failed; skipped when
# nobody may be reached (every channel opted out, or no phone and no WeChat).
QUEUED, SENDING, SENT, DELIVERED, FAILED, SKIPPED = (
    "queued", "sending", "sent", "delivered", "failed", "skipped")


class OutboxMessage(Base):
    """One reminder for one beneficiary; ``key`` makes planning it twice a no-op."""

    __tablename__ = "outbox"
    __table_args__ = (
        # Claims walk it in order: due rows of one urgency, earliest first, no sort.
        Index("ix_outbox_claim", "state", "urgent", "not_before", "id"),
        Index("ix_outbox_provider_message", "provider_message_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(160), unique=True)
    kind: Mapped[str] = mapped_column(String(24))
    beneficiary_id: Mapped[int] = mapped_column(ForeignKey("beneficiaries.id"), index=True)
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    params: Mapped[dict[str, str]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(12), default=QUEUED)
    not_before: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)
    held_for_quiet_hours: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    channel: Mapped[str | None] = mapped_column(String(12))
    provider: Mapped[str | None] = mapped_column(String(24))
    provider_message_id: Mapped[str | None] = mapped_column(String(80))
    # Written just before an SMS call (reference sent as OutId/SessionContext, and the
    # wall-clock time): what a later worker asks the provider about after a crash.
    sms_ref: Mapped[str | None] = mapped_column(String(32))
    sms_started_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    last_error: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(AwareDateTime())


class PayoutLine(Base):
    """One row of an imported payout list: who got how much for which month."""

    __tablename__ = "payouts"
    __table_args__ = (UniqueConstraint("beneficiary_id", "programme", "month"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    beneficiary_id: Mapped[int] = mapped_column(ForeignKey("beneficiaries.id"), index=True)
    programme: Mapped[str] = mapped_column(String(16))
    month: Mapped[str] = mapped_column(String(7))  # "2026-11"
    amount: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    paid_on: Mapped[date | None] = mapped_column(Date)
    imported_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)
    planned_at: Mapped[datetime | None] = mapped_column(AwareDateTime())


class OptOut(Base):
    """Someone said stop: an openid (WeChat) or a phone hash (SMS)."""

    __tablename__ = "opt_outs"
    __table_args__ = (UniqueConstraint("channel", "address"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(8))  # "wechat" or "sms"
    address: Mapped[str] = mapped_column(String(64))  # openid, or keyed hash of the phone
    source: Mapped[str] = mapped_column(String(24))  # sms_reply, wechat_menu, caseworker
    created_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)


class DeliveryEvent(Base):
    """A receipt or reply from a provider, kept as received (phones masked)."""

    __tablename__ = "delivery_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    received_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)
    provider: Mapped[str] = mapped_column(String(24))
    kind: Mapped[str] = mapped_column(String(16))  # receipt, reply
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id"))
    detail: Mapped[dict[str, object]] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(Text)


class LateReply(Base):
    """A bot reply that missed WeChat's 5-second deadline: the worker delivers it as a
    customer-service message (WeChat allows those within 48 h of the user's message)."""

    __tablename__ = "late_replies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    openid: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(AwareDateTime())


class SendRate(Base):
    """The shared send schedule of one provider (every worker's sends count): the
    theoretical time, in Unix seconds, at which the next send may start."""

    __tablename__ = "send_rates"

    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    next_at: Mapped[float] = mapped_column(Float, default=0.0)


class ProviderStatus(Base):
    """An SMS provider a worker has set aside: why and until when. Every worker reads it
    (so none calls a provider another found unusable) and so does the staff UI."""

    __tablename__ = "sms_provider_status"

    provider: Mapped[str] = mapped_column(String(24), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # notify.sms.FailureKind
    reason: Mapped[str] = mapped_column(String(200))  # the provider's code and message
    set_aside_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)
    aside_until: Mapped[datetime] = mapped_column(AwareDateTime())
