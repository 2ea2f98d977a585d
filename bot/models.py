"""Tables owned by the bot: asked questions, followers, dedup ledger, conversations."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Boolean, Date, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from huimin.clock import utcnow
from huimin.db import AwareDateTime, Base


class AskedQuestion(Base):
    """A question the bot could not answer with confidence (asked back, referred to
    another office, or declined).

    The normalised text is kept with digit runs masked, and the words as typed with ID
    and phone numbers (and other long digit runs) masked, so an ID or phone number
    typed into the chat never lands here; the asker is not recorded.
    """

    __tablename__ = "asked_questions"
    __table_args__ = (Index("ix_asked_questions_asked_at", "asked_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    asked_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)
    text: Mapped[str] = mapped_column(String(200))
    # What the person typed (or voice gave), masked; None in rows older than the column.
    typed: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # answer bands (choices, unknown), or "referred": another office's business.
    band: Mapped[str] = mapped_column(String(16))
    candidates: Mapped[list[dict[str, object]]] = mapped_column(JSON)
    # The entry the user then picked from the "did you mean" list (0 = none of them).
    chosen_faq_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Follower(Base):
    """Who follows the official account (subscribe / unsubscribe events)."""

    __tablename__ = "followers"

    openid: Mapped[str] = mapped_column(String(64), primary_key=True)
    following: Mapped[bool] = mapped_column(Boolean, default=True)
    subscribed_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    unsubscribed_at: Mapped[datetime | None] = mapped_column(AwareDateTime())


class HandledMessage(Base):
    """Dedup ledger (when Redis is not configured): one row per WeChat message."""

    __tablename__ = "handled_messages"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    reply: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow,
                                                 index=True)


class ConversationRow(Base):
    """Conversation state per openid (when Redis is not configured)."""

    __tablename__ = "conversations"

    openid: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[dict[str, object]] = mapped_column(JSON)
    expires_at: Mapped[datetime] = mapped_column(AwareDateTime())


class QuestionTally(Base):
    """Questions the bot answered, counted per China day and band (unanswered ones are
    in ``asked_questions``): nothing about the asker or the question is kept."""

    __tablename__ = "question_tally"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    band: Mapped[str] = mapped_column(String(16), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
