"""Closing the loop: after an editor makes unanswered questions answerable (a phrasing
added from the inbox, or a new entry published from it), tell the people who asked
them in the last 48 hours, once (see ``notify.new_answers``).

A question counts as answered only when the published content now answers it with
that entry (the real matcher, as 试一试 runs it). How many were told goes into the
audit log (``askers_told``), which the caseworkers' inbox and the inbox message show.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from aiohttp import web
from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from admin.audit import Actor, record
from admin.models import AuditEntry
from admin.web import AdminState
from bot.models import AskedQuestion
from notify.case_replies import ReplyChannels
from notify.new_answers import askers_waiting, tell_askers

# Set by the FAQ views when a publish resolved inbox questions: their ids.
RESOLVED = web.RequestKey("inbox_resolved", list)


async def tell_askers_of(st: AdminState, who: Actor, asked_ids: Sequence[int],
                         faq_id: str) -> int:
    """Tell who asked these questions (when now answered by ``faq_id``); how many were
    told."""
    if not asked_ids:
        return 0
    now = st.clock()
    if not await askers_waiting(st.db, asked_ids, now):
        return 0
    async with st.db.session() as session:
        questions = (await session.execute(
            select(AskedQuestion.id, AskedQuestion.typed, AskedQuestion.text)
            .where(AskedQuestion.id.in_(list(asked_ids))))).all()
    snapshot = await st.tryout.published(st.db)
    answer = snapshot.answers.get(faq_id)
    answerable = [(row.id, row.typed or row.text) for row in questions
                  if st.tryout.run(snapshot, row.typed or row.text).answered_id == faq_id]
    if answer is None or not answerable:
        return 0
    channels = ReplyChannels.from_settings(st.settings, st.tokens, st.county)
    try:
        told = await tell_askers(st.db, channels.wechat, answerable, answer, now)
    finally:
        await channels.close()
    async with st.db.session() as session:
        record(session, who, "askers_told", "faq", faq_id,
               after={"told": told.told, "failed": told.failed,
                      "asked_question_ids": [qid for qid, _ in answerable]}, at=now)
    return told.told


def told_text(told: int) -> str:
    return f"已经告诉了{told}位问过这个问题的群众：现在有答案了。" if told else ""


async def told_recently(session: AsyncSession, now: datetime, days: int = 30) -> int:
    """People told in the last ``days`` that their question now has an answer (from the
    audit log: the askers themselves are kept only 48 hours)."""
    rows = (await session.scalars(select(AuditEntry.after).where(and_(
        AuditEntry.action == "askers_told", AuditEntry.at >= now - timedelta(days=days))))).all()
    return sum(int((row or {}).get("told", 0)) for row in rows)
