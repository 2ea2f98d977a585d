"""Tables owned by the content package: FAQ entries, the dictionary, revisions."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Boolean, Date, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from huimin.clock import utcnow
from huimin.db import AwareDateTime, Base


class FaqEntryRow(Base):
    """The published version of one FAQ entry."""

    __tablename__ = "faq_entries"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    file: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(32))
    question: Mapped[str] = mapped_column(Text)
    alternatives: Mapped[list[str]] = mapped_column(JSON)
    keywords: Mapped[list[str]] = mapped_column(JSON)
    answer: Mapped[str] = mapped_column(Text)
    details: Mapped[str | None] = mapped_column(Text, nullable=True)
    source: Mapped[str] = mapped_column(String(64))
    reviewed: Mapped[date] = mapped_column(Date)
    # Set when bureau staff change the entry: `huimin init` then leaves it alone.
    edited_by_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)


class DictionaryRow(Base):
    """One colloquial/typo replacement (kind 'replacement') or filler word (kind 'filler')."""

    __tablename__ = "dictionary_entries"
    __table_args__ = (UniqueConstraint("kind", "term"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    term: Mapped[str] = mapped_column(String(64))
    replacement: Mapped[str | None] = mapped_column(String(64), nullable=True)
    edited_by_admin: Mapped[bool] = mapped_column(Boolean, default=False)


class ContentRevision(Base):
    """Bumped on every content change so running bot processes reload."""

    __tablename__ = "content_revisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)
    note: Mapped[str] = mapped_column(String(200))


class SituationRow(Base):
    """A life situation people describe instead of naming a programme (see
    content/situations.yaml): the words that tell it, the programme words it stands
    for and the FAQ entries to offer. Staff add and remove them in admin."""

    __tablename__ = "situations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    cues: Mapped[list[str]] = mapped_column(JSON)
    means: Mapped[list[str]] = mapped_column(JSON)
    offer: Mapped[list[str]] = mapped_column(JSON)
    # Removed by staff: kept (so `huimin init` does not bring a shipped one back).
    removed: Mapped[bool] = mapped_column(Boolean, default=False)
    edited_by_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)
