"""The unanswered-questions inbox (内容编辑 and 管理员)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

from aiohttp import web
from sqlalchemy import select

from admin import faq, inbox
from admin.answered import tell_askers_of, told_recently, told_text
from admin.audit import Actor, record
from admin.web import AdminState, actor, flash, form_text, redirect, render, state
from content.models import FaqEntryRow
from content.schema import text_key
from huimin.clock import utcnow

PERIODS = {"7": "最近7天", "30": "最近30天", "90": "最近90天", "all": "全部"}
MAX_GROUPS = 100
NO_ENTRY_CHOSEN = ("还没有选要加到哪一条问答，什么也没有改。请在“加到”里选一条意思相同的问答，"
                   "再点“加为这一条的问法”。")


async def inbox_page(request: web.Request) -> web.Response:
    period = request.query.get("days", "30")
    if period not in PERIODS:
        period = "30"
    since = None if period == "all" else utcnow() - timedelta(days=int(period))
    async with state(request).db.session() as session:
        rows = await inbox.unresolved(session, since)
        entries = (await session.scalars(select(FaqEntryRow).order_by(FaqEntryRow.id))).all()
        told = await told_recently(session, state(request).clock())
    groups = await asyncio.to_thread(inbox.group_questions, rows)
    questions = {e.id: e.question for e in entries}
    band_counts = Counter(row.band for row in rows)
    return await render(request, "inbox.html", groups=groups[:MAX_GROUPS],
                        group_count=len(groups), row_count=len(rows), entries=entries,
                        questions=questions, period=period, periods=PERIODS,
                        bands=inbox.BAND_LABELS, band_counts=band_counts,
                        referred=inbox.REFERRED, likeness=inbox.likeness,
                        none_chosen=inbox.NONE_CHOSEN, told=told)


async def add_alternative(request: web.Request) -> web.Response:
    form = await request.post()
    ids = inbox.parse_ids(form_text(form, "ids", 100000))
    faq_id = form_text(form, "faq_id", 64)
    phrasing = form_text(form, "text", 200).strip()
    st, who = state(request), actor(request)
    if not ids or not phrasing or not text_key(phrasing):
        await flash(request, "error", "请写上要加的问法。")
        raise redirect(request, "inbox")
    problem = await _add(st, who, ids, faq_id, phrasing)
    if problem:
        await flash(request, "error", problem)
        raise redirect(request, "inbox")
    tried = st.tryout.run(await st.tryout.published(st.db), phrasing)
    told = told_text(await tell_askers_of(st, who, ids, faq_id))
    if tried.answered_id == faq_id:
        await flash(request, "ok", f"已把“{phrasing}”加为 {faq_id} 的问法并发布。"
                                   "现在这样问，公众号会直接回答这一条。" + told)
    else:
        await flash(request, "error", f"已把“{phrasing}”加为 {faq_id} 的问法并发布，"
                                      f"但这样问还不能直接回答（{tried.band_label}）。"
                                      "可能和别的条目太像，请到“试一试”里看看。" + told)
    raise redirect(request, "inbox")


async def _add(st: AdminState, who: Actor, ids: list[int], faq_id: str,
               phrasing: str) -> str | None:
    """Publish ``phrasing`` as a phrasing of ``faq_id`` and mark the questions done;
    returns what went wrong, or None."""
    async with st.db.session() as session:
        row = await session.get(FaqEntryRow, faq_id) if faq_id else None
        if row is None:
            return NO_ENTRY_CHOSEN
        data = faq.row_data(row)
        version = None
        if text_key(phrasing) not in {text_key(p) for p in (row.question, *row.alternatives)}:
            data["alternatives"] = [*data["alternatives"], phrasing]
            outcome = await faq.publish(session, data, st.county, who,
                                        note=f"未答问题加为问法：{phrasing}"[:200])
            if not outcome.ok:
                return "没有加上：" + "；".join(e.message for e in outcome.errors)
            version = outcome.version
            draft = await faq.get_draft(session, faq_id)
            if draft is not None and not draft.is_new:
                # Keep the new phrasing when the pending draft is published later.
                alternatives = list(draft.data.get("alternatives") or [])
                if text_key(phrasing) not in {text_key(a) for a in alternatives}:
                    draft.data = {**draft.data, "alternatives": [*alternatives, phrasing]}
        count = await inbox.resolve(session, ids, "alternative", faq_id, who)
        record(session, who, "inbox_alternative", "faq", faq_id,
               after={"phrasing": phrasing, "asked_question_ids": ids, "version": version,
                      "resolved": count})
    return None


async def dismiss(request: web.Request) -> web.Response:
    form = await request.post()
    ids = inbox.parse_ids(form_text(form, "ids", 100000))
    who = actor(request)
    async with state(request).db.session() as session:
        count = await inbox.resolve(session, ids, "dismissed", None, who)
        record(session, who, "inbox_dismiss", "inbox", form_text(form, "text", 100)[:100],
               after={"asked_question_ids": ids, "resolved": count})
    await flash(request, "ok", f"已忽略{count}个问题。")
    raise redirect(request, "inbox")
