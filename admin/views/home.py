"""The overview page: a few counts for whoever signs in (the director's dashboard
with charts comes later)."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import func, select

from admin import inbox
from admin.faq import SYSTEM
from admin.models import AdminUser, AuditEntry, FaqDraft, FaqVersion
from admin.roles import AUDIT, CONTENT, INBOX, USERS, can
from admin.web import render, signed_in, state
from content.models import ContentRevision, FaqEntryRow


async def home(request: web.Request) -> web.Response:
    role = signed_in(request).user.role
    facts: dict[str, object] = {}
    async with state(request).db.session() as session:
        if can(role, INBOX):
            facts["inbox"] = await inbox.pending_count(session)
        if can(role, CONTENT):
            facts["entries"] = await session.scalar(
                select(func.count()).select_from(FaqEntryRow)) or 0
            facts["drafts"] = await session.scalar(
                select(func.count()).select_from(FaqDraft)) or 0
            facts["last_publish"] = await session.scalar(
                select(FaqVersion).where(FaqVersion.published_by != SYSTEM)
                .order_by(FaqVersion.published_at.desc(), FaqVersion.id.desc()).limit(1))
            facts["last_change"] = await session.scalar(
                select(ContentRevision).order_by(ContentRevision.id.desc()).limit(1))
        if can(role, USERS):
            facts["users"] = await session.scalar(
                select(func.count()).select_from(AdminUser)
                .where(AdminUser.disabled.is_(False))) or 0
        if can(role, AUDIT):
            facts["recent"] = (await session.scalars(
                select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
                .limit(8))).all()
    return await render(request, "home.html", facts=facts)
