"""Tables of the hand-off: cases, their messages, routing, and who asked what.

Retention (see ``huimin.casework.cases.forget_old``): a closed case, its messages, the
conversation and any phone number it carries are deleted ``CLOSED_CASE_DAYS`` after it
was closed; who asked an unanswered question is kept ``ASKER_HOURS`` and then deleted.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from huimin.clock import utcnow
from huimin.db import AwareDateTime, Base

# Case kinds: a message left from WeChat, or an SMS reply asking to be called back.
MESSAGE, CALLBACK = "message", "callback"
OPEN, CLOSED = "open", "closed"
# Who wrote a case message.
PERSON, STAFF, NOTE = "person", "staff", "note"
# How a staff reply reached (or is to reach) the person.
DELIVERY_SENT = "sent"  # customer-service message accepted by WeChat
DELIVERY_WAITING = "waiting"  # a template message said there is a reply; shown on next message
DELIVERY_READ = "read"  # shown to the person in the chat
DELIVERY_SMS = "sms"  # an SMS asking them to call or reply was queued (outbox)
DELIVERY_PHONE = "phone"  # answered by phone (已电话联系)
DELIVERY_FAILED = "failed"  # nothing could reach the person: call them


class Case(Base):
    """One person's request for a human answer."""

    __tablename__ = "cases"
    __table_args__ = (
        Index("ix_cases_state_opened", "state", "opened_at"),
        Index("ix_cases_openid_state", "openid", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(12), default=MESSAGE)
    state: Mapped[str] = mapped_column(String(8), default=OPEN)
    openid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The binding when there is one (no foreign key: the registry may be re-imported).
    beneficiary_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    masked_name: Mapped[str | None] = mapped_column(String(16), nullable=True)
    application_number: Mapped[str | None] = mapped_column(String(40), nullable=True)
    programme: Mapped[str | None] = mapped_column(String(16), nullable=True)
    township: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # The conversation just before the hand-off, masked: [{"who": "person"|"bot", "text"}].
    recent: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # A callback case: the number the SMS came from (encrypted; shown only to the
    # caseworkers the case is routed to, and each showing is audit-logged).
    phone_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    phone_masked: Mapped[str | None] = mapped_column(String(11), nullable=True)
    opened_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)
    # The person's last message: WeChat allows customer-service messages for 48 hours.
    last_person_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)
    answered_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    closed_by: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str | None] = mapped_column(String(16))
    # A reply waits to be shown the next time the person writes (after a template message).
    reply_waiting: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class CaseMessage(Base):
    """A message of a case: from the person, a staff reply, or a staff note."""

    __tablename__ = "case_messages"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"),
                                         index=True)
    at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)
    author: Mapped[str] = mapped_column(String(8))  # person, staff, note
    username: Mapped[str | None] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(String(600))
    delivery: Mapped[str | None] = mapped_column(String(12))
    delivery_note: Mapped[str | None] = mapped_column(String(200))
    # The outbox row of an SMS sent for this reply (its state is shown on the case).
    outbox_key: Mapped[str | None] = mapped_column(String(160))


class CaseRoute(Base):
    """Which caseworker gets which cases: by township, by programme, or ``any`` (cases
    nobody else is routed for). Staff edit these in admin (经办分工)."""

    __tablename__ = "case_routes"
    __table_args__ = (UniqueConstraint("scope", "value", "username"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    scope: Mapped[str] = mapped_column(String(12))  # township, programme, any
    value: Mapped[str] = mapped_column(String(32))  # 娄庄镇, 低保, * for any
    username: Mapped[str] = mapped_column(String(64), index=True)


class QuestionAsker(Base):
    """Who asked an unanswered question (``asked_questions``), kept 48 hours so they
    can be told once when the question gets an answer; then deleted."""

    __tablename__ = "question_askers"
    __table_args__ = (Index("ix_question_askers_asked_at", "asked_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    asked_question_id: Mapped[int] = mapped_column(Integer, index=True)
    openid: Mapped[str] = mapped_column(String(64))
    asked_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)
    told_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
