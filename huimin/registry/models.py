"""Registry tables: beneficiaries, applications, status changes, WeChat bindings,
verification codes, delegate invitations, the access log and guess counters.

ID and phone numbers are never stored in clear: an encrypted copy, a keyed hash
for lookup and the masked form for display (see ``huimin.personal``).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from huimin.clock import utcnow
from huimin.db import AwareDateTime, Base


class Beneficiary(Base):
    __tablename__ = "beneficiaries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(32))
    id_hash: Mapped[str] = mapped_column(String(64), unique=True)
    id_encrypted: Mapped[str] = mapped_column(Text)
    id_masked: Mapped[str] = mapped_column(String(18))
    phone_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    phone_encrypted: Mapped[str | None] = mapped_column(Text)
    phone_masked: Mapped[str | None] = mapped_column(String(11))
    township: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)


class Application(Base):
    __tablename__ = "applications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    beneficiary_id: Mapped[int] = mapped_column(ForeignKey("beneficiaries.id"), index=True)
    programme: Mapped[str] = mapped_column(String(16))
    stage: Mapped[str] = mapped_column(String(8))
    stage_date: Mapped[date] = mapped_column(Date)
    township: Mapped[str] = mapped_column(String(32))
    next_step: Mapped[str] = mapped_column(String(200), default="")
    recheck_due: Mapped[date | None] = mapped_column(Date)
    monthly_amount: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    updated_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)
    # Who set the current values: an import's source ("import", "import:staff:<user>")
    # or "staff:<user>" for the staff UI's stage form. An import holds back a row that
    # would overwrite a change made in the UI until staff confirm it.
    changed_by: Mapped[str | None] = mapped_column(String(40))


class StatusChange(Base):
    """A stage change, recorded for the notifier to announce (``announced_at``)."""

    __tablename__ = "status_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id"), index=True)
    from_stage: Mapped[str | None] = mapped_column(String(8))
    to_stage: Mapped[str] = mapped_column(String(8))
    stage_date: Mapped[date] = mapped_column(Date)
    recorded_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)
    source: Mapped[str] = mapped_column(String(40))
    announced_at: Mapped[datetime | None] = mapped_column(AwareDateTime())


class Binding(Base):
    """A WeChat openid allowed to see one beneficiary: the person (self) or a delegate."""

    __tablename__ = "bindings"
    __table_args__ = (Index("ix_bindings_openid_active", "openid", "revoked_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    openid: Mapped[str] = mapped_column(String(64))
    beneficiary_id: Mapped[int] = mapped_column(ForeignKey("beneficiaries.id"), index=True)
    role: Mapped[str] = mapped_column(String(8))  # "self" or "delegate"
    granted_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    revoked_by: Mapped[str | None] = mapped_column(String(80))


class VerificationCode(Base):
    """A 6-digit SMS code, stored hashed; single use, short-lived.

    A row is written for every identity submission, matched or not (then
    ``beneficiary_id`` is null and no SMS goes out), so both cost the same.
    """

    __tablename__ = "verification_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    openid: Mapped[str] = mapped_column(String(64), index=True)
    beneficiary_id: Mapped[int | None] = mapped_column(ForeignKey("beneficiaries.id"))
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(AwareDateTime())
    used_at: Mapped[datetime | None] = mapped_column(AwareDateTime())


class DelegateInvitation(Base):
    """A one-time code a beneficiary gives a family member or village assistant."""

    __tablename__ = "delegate_invitations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    beneficiary_id: Mapped[int] = mapped_column(ForeignKey("beneficiaries.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(AwareDateTime())
    used_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    used_by: Mapped[str | None] = mapped_column(String(80))


class GrantCode(Base):
    """A short code a family member asks the bot for (我的授权码) and reads to a clerk,
    who types it in the staff UI to let that WeChat account see a beneficiary's status
    (instead of an openid nobody can see). Stored hashed; single use; valid a day."""

    __tablename__ = "grant_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    openid: Mapped[str] = mapped_column(String(64), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(AwareDateTime())
    used_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    used_by: Mapped[str | None] = mapped_column(String(80))  # "staff:<user>"
    beneficiary_id: Mapped[int | None] = mapped_column(ForeignKey("beneficiaries.id"))


class AccessLogEntry(Base):
    """Every lookup of, or change to, a beneficiary's access, by anyone."""

    __tablename__ = "access_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(80))  # "wechat:<openid>" or "staff:<user>"
    beneficiary_id: Mapped[int | None] = mapped_column(ForeignKey("beneficiaries.id"),
                                                       index=True)
    action: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)


class GuessCounter(Base):
    """Failed tries per key (an openid or an ID hash) in the current window, and a lock."""

    __tablename__ = "guess_counters"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(AwareDateTime())
    count: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(AwareDateTime())
