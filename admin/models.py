"""Tables owned by the admin UI: staff accounts, sessions, the audit log, FAQ drafts and
versions, and what staff did with the unanswered-questions inbox.

None of them has a foreign key into another package's tables, so the bot's and the
content package's tables can be emptied or rebuilt without touching these.
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
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from huimin.clock import utcnow
from huimin.db import AwareDateTime, Base


class AdminUser(Base):
    """One member of the bureau's staff who may sign in to the admin UI."""

    __tablename__ = "admin_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))  # argon2id
    role: Mapped[str] = mapped_column(String(16))  # admin, editor, caseworker
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    # Set for a new account and after an administrator sets the password: until the
    # owner picks their own, every page leads to the change-password page.
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False,
                                                       server_default=false())


class AdminSession(Base):
    """A signed-in browser. Only the SHA-256 of the cookie's token is stored."""

    __tablename__ = "admin_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("admin_users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(AwareDateTime())
    ip: Mapped[str | None] = mapped_column(String(64))
    # A one-time message for the next page ({"kind": "ok"|"error", "text": ...}).
    flash: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class LoginThrottle(Base):
    """Failed sign-ins counted under one key: an (account name, address) pair, an account
    name, or an address (see ``admin.accounts.LoginGuard``). Names are stored hashed, as
    a password typed into the name field would otherwise be kept here."""

    __tablename__ = "admin_login_throttle"

    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column(AwareDateTime())
    last_failure_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    locked_until: Mapped[datetime | None] = mapped_column(AwareDateTime())
    # For a pair: the last sign-in that worked (the address is known for the account).
    last_success_at: Mapped[datetime | None] = mapped_column(AwareDateTime())
    # The row says nothing any more after this and may be deleted.
    forget_at: Mapped[datetime] = mapped_column(AwareDateTime(), index=True)


class AuditEntry(Base):
    """Who did what, when, from where; with the target's state before and after."""

    __tablename__ = "admin_audit"
    __table_args__ = (
        Index("ix_admin_audit_at", "at"),
        Index("ix_admin_audit_username", "username"),
        Index("ix_admin_audit_action", "action"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)
    user_id: Mapped[int | None] = mapped_column(Integer)
    # The account name at the time (for a failed login: the name that was typed).
    username: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(40))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(100))
    before: Mapped[Any] = mapped_column(JSON, nullable=True)
    after: Mapped[Any] = mapped_column(JSON, nullable=True)
    ip: Mapped[str | None] = mapped_column(String(64))


class FaqDraft(Base):
    """An unpublished change to one FAQ entry (or a new entry); the bot never reads it."""

    __tablename__ = "faq_drafts"

    entry_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    is_new: Mapped[bool] = mapped_column(Boolean, default=False)
    # The form as typed: id, file, category, question, alternatives (list), keywords
    # (list), answer, details, source, reviewed (text).
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The published version the draft started from (0: content from before the admin UI).
    base_version: Mapped[int] = mapped_column(Integer, default=0)
    # Inbox questions this draft answers; marked done when it is published.
    inbox_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    updated_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)


class FaqVersion(Base):
    """Every published state of an entry, numbered from 1 per entry."""

    __tablename__ = "faq_versions"
    __table_args__ = (UniqueConstraint("entry_id", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    entry_id: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[int] = mapped_column(Integer)
    # FaqEntry.to_data() with 'reviewed' as text, plus 'file'.
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    note: Mapped[str] = mapped_column(String(200), default="")
    published_by: Mapped[str] = mapped_column(String(64))
    published_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)


class InboxResolution(Base):
    """What staff did with one unanswered question (bot.models.AskedQuestion).

    action: 'dismissed', 'alternative' (added to an entry's phrasings) or 'new_entry'.
    """

    __tablename__ = "inbox_resolutions"

    asked_question_id: Mapped[int] = mapped_column(Integer, primary_key=True,
                                                   autoincrement=False)
    action: Mapped[str] = mapped_column(String(16))
    faq_id: Mapped[str | None] = mapped_column(String(64))
    resolved_by: Mapped[str] = mapped_column(String(64))
    resolved_at: Mapped[datetime] = mapped_column(AwareDateTime(), default=utcnow)


TABLES = ("admin_sessions", "admin_users", "admin_audit", "faq_drafts", "faq_versions",
          "inbox_resolutions", "admin_login_throttle")
