"""FAQ pages (内容编辑 and 管理员): list and search, edit as a draft, publish, new entries,
version history with differences and revert, and "试一试"."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from admin import faq, inbox
from admin.answered import RESOLVED, tell_askers_of, told_text
from admin.audit import record
from admin.models import FaqDraft
from admin.tryout import TryResult
from admin.web import actor, flash, form_text, redirect, render, state
from content.models import FaqEntryRow
from content.placeholders import PLACEHOLDERS
from content.schema import render as fill_in
from content.schema import text_key

MAX_QUESTION = 200


def _form_values(data: Mapping[str, Any]) -> dict[str, str]:
    """Draft or entry data as the text the form shows (lists one item a line)."""
    values = {key: "" if data.get(key) is None else str(data.get(key)) for key in faq.FIELDS}
    for key in faq.LIST_FIELDS:
        values[key] = "\n".join(str(v) for v in data.get(key) or [])
    return values


async def _choices(session: AsyncSession) -> dict[str, list[str]]:
    rows = (await session.scalars(select(FaqEntryRow))).all()
    return {
        "categories": sorted({r.category for r in rows}),
        "sources": sorted({r.source for r in rows}),
        "files": sorted({r.file.rsplit("/", 1)[-1] for r in rows}),
    }


# ----- list -------------------------------------------------------------------------
async def faq_list(request: web.Request) -> web.Response:
    search = request.query.get("q", "").strip()[:100]
    category = request.query.get("category", "").strip()[:32]
    async with state(request).db.session() as session:
        rows = (await session.scalars(select(FaqEntryRow).order_by(FaqEntryRow.file,
                                                                   FaqEntryRow.id))).all()
        drafts = {d.entry_id: d for d in (await session.scalars(select(FaqDraft))).all()}
    categories = sorted({r.category for r in rows})
    key = text_key(search)
    shown = []
    for row in rows:
        if category and row.category != category:
            continue
        if key and not any(key in text_key(p) for p in (row.question, *row.alternatives,
                                                        row.id)):
            continue
        shown.append(row)
    new_drafts = [d for d in drafts.values() if d.is_new]
    return await render(request, "faq_list.html", rows=shown, total=len(rows),
                        drafts=drafts, new_drafts=new_drafts, categories=categories,
                        search=search, category=category)


# ----- edit -------------------------------------------------------------------------
async def _edit_page(request: web.Request, entry_id: str, status: int = 200,
                     outcome: faq.Outcome | None = None,
                     values: dict[str, str] | None = None,
                     kept: bool = True) -> web.Response:
    st = state(request)
    async with st.db.session() as session:
        row = await session.get(FaqEntryRow, entry_id)
        draft = await faq.get_draft(session, entry_id)
        latest = await faq.latest_version(session, entry_id)
        choices = await _choices(session)
    if row is None and draft is None:
        raise web.HTTPNotFound()
    published = faq.row_data(row) if row is not None else None
    data = draft.data if draft is not None else published
    assert data is not None
    question = request.query.get("q", "").strip()[:MAX_QUESTION]
    tried: TryResult | None = None
    tried_on_draft = False
    if question:
        entry, _ = faq.entry_from(data) if draft is not None else (None, [])
        if entry is not None:
            snapshot = await st.tryout.with_draft(st.db, entry, str(data.get("file") or ""))
            tried_on_draft = True
        else:
            snapshot = await st.tryout.published(st.db)
        tried = st.tryout.run(snapshot, question)
    answer = str(data.get("answer") or "")
    return await render(
        request, "faq_edit.html", status=status, entry_id=entry_id, row=row, draft=draft,
        values=values or _form_values(data), is_new=row is None,
        errors=(outcome.by_field() if outcome else {}),
        changes=faq.diff(published, data) if draft is not None and published else [],
        latest=latest, stale=draft is not None and draft.base_version < latest,
        question=question, tried=tried, tried_on_draft=tried_on_draft,
        preview=fill_in(answer, st.county) if answer else "",
        limits=faq.LIMITS, choices=choices, kept=kept,
        placeholders=PLACEHOLDERS)


async def faq_edit(request: web.Request) -> web.Response:
    return await _edit_page(request, request.match_info["entry_id"])


async def _publish_draft(session: AsyncSession, request: web.Request,
                         draft: FaqDraft) -> faq.Outcome:
    who = actor(request)
    outcome = await faq.publish(session, draft.data, state(request).county, who,
                                is_new=draft.is_new, note="编辑后发布")
    if outcome.ok:
        ids = list(draft.inbox_ids or [])
        await faq.drop_draft(session, draft.entry_id)
        request[RESOLVED] = ids  # their askers are told once this is committed
        if ids and await inbox.resolve(session, ids, "new_entry", draft.entry_id, who):
            record(session, who, "inbox_new_entry", "inbox", draft.entry_id,
                   after={"asked_question_ids": ids})
    return outcome


async def _tell_askers(request: web.Request, entry_id: str) -> str:
    """After a publish that resolved inbox questions: tell who asked them."""
    ids = request.get(RESOLVED) or []
    return told_text(await tell_askers_of(state(request), actor(request), ids, entry_id))


def _published_message(entry_id: str, version: int | None) -> str:
    return (f"已发布 {entry_id}（第{version}版）。几秒钟内公众号就会用新内容回答。")


async def faq_save(request: web.Request) -> web.Response:
    entry_id = request.match_info["entry_id"]
    form = await request.post()
    publish = form_text(form, "action", 20) == "publish"
    st = state(request)
    async with st.db.session() as session:
        row = await session.get(FaqEntryRow, entry_id)
        draft = await faq.get_draft(session, entry_id)
        if row is None and draft is None:
            raise web.HTTPNotFound()
        file = row.file if row is not None else str(draft.data.get("file") if draft else "")
        data = faq.data_from_form(form, entry_id, file)
        refused = faq.placeholder_errors(data, st.county)
        outcome = None
        if not refused:
            draft = await faq.save_draft(session, data, actor(request), is_new=row is None)
            outcome = await _publish_draft(session, request, draft) if publish else None
    if refused:  # nothing is stored; the form shows what was typed
        return await _edit_page(request, entry_id, 400, faq.Outcome(refused),
                                values=_form_values(data), kept=False)
    if outcome is None:
        await flash(request, "ok", "草稿已保存。公众号还在用已发布的内容，点“发布”后才会变。")
        raise redirect(request, "faq_edit", entry_id=entry_id)
    if not outcome.ok:
        return await _edit_page(request, entry_id, 400, outcome)
    await flash(request, "ok", _published_message(entry_id, outcome.version)
                + await _tell_askers(request, entry_id))
    raise redirect(request, "faq_edit", entry_id=entry_id)


async def faq_discard(request: web.Request) -> web.Response:
    entry_id = request.match_info["entry_id"]
    async with state(request).db.session() as session:
        row = await session.get(FaqEntryRow, entry_id)
        dropped = await faq.discard_draft(session, entry_id, actor(request))
    if dropped:
        await flash(request, "ok", "草稿已放弃。")
    if row is None:
        raise redirect(request, "faq_list")
    raise redirect(request, "faq_edit", entry_id=entry_id)


# ----- new entries ------------------------------------------------------------------
def _new_values(request: web.Request) -> dict[str, str]:
    return {"id": "", "file": "", "category": "",
            "question": request.query.get("question", "").strip()[:MAX_QUESTION],
            "alternatives": "", "keywords": "", "answer": "", "details": "",
            "source": "本局", "reviewed": faq.today()}


async def _new_page(request: web.Request, values: dict[str, str], inbox_ids: str,
                    status: int = 200, errors: dict[str | None, list[str]] | None = None
                    ) -> web.Response:
    async with state(request).db.session() as session:
        choices = await _choices(session)
    return await render(request, "faq_new.html", status=status, values=values,
                        inbox_ids=inbox_ids, errors=errors or {}, choices=choices,
                        limits=faq.LIMITS, placeholders=PLACEHOLDERS)


async def faq_new(request: web.Request) -> web.Response:
    ids = ",".join(str(i) for i in inbox.parse_ids(request.query.get("inbox", "")))
    return await _new_page(request, _new_values(request), ids)


async def faq_create(request: web.Request) -> web.Response:
    form = await request.post()
    entry_id = form_text(form, "id", 100).strip()
    inbox_ids = inbox.parse_ids(form_text(form, "inbox", 100000))
    publish = form_text(form, "action", 20) == "publish"
    errors: dict[str | None, list[str]] = {}
    problem = faq.valid_new_id(entry_id)
    try:
        file = faq.file_for_new(form_text(form, "file", 100))
    except ValueError:
        file = ""
        errors["file"] = ["请选择放在哪个文件里"]
    st = state(request)
    outcome = None
    async with st.db.session() as session:
        if problem is None and (await session.get(FaqEntryRow, entry_id) is not None
                                or await faq.get_draft(session, entry_id) is not None):
            problem = "这个编号已经有条目在用了，请换一个"
        if problem:
            errors["id"] = [problem]
        data = faq.data_from_form(form, entry_id, file)
        for refused in faq.placeholder_errors(data, st.county):
            errors.setdefault(refused.field, []).append(refused.message)
        if not errors:
            draft = await faq.save_draft(session, data, actor(request), is_new=True,
                                         inbox_ids=inbox_ids)
            if publish:
                outcome = await _publish_draft(session, request, draft)
    if errors:
        values = {key: form_text(form, key) for key in faq.FIELDS}
        return await _new_page(request, values, ",".join(map(str, inbox_ids)), 400, errors)
    if outcome is not None and not outcome.ok:
        return await _edit_page(request, entry_id, 400, outcome)
    if outcome is not None:
        await flash(request, "ok", _published_message(entry_id, outcome.version)
                    + await _tell_askers(request, entry_id))
    else:
        await flash(request, "ok", "新条目已存为草稿。写好后点“发布”，公众号才会用它回答。")
    raise redirect(request, "faq_edit", entry_id=entry_id)


# ----- history ----------------------------------------------------------------------
async def faq_history(request: web.Request) -> web.Response:
    entry_id = request.match_info["entry_id"]
    async with state(request).db.session() as session:
        row = await session.get(FaqEntryRow, entry_id)
        versions = await faq.versions(session, entry_id)
    if row is None and not versions:
        raise web.HTTPNotFound()
    by_number = {v.version: v for v in versions}
    raw = request.query.get("v", "")
    shown = by_number.get(int(raw)) if raw.isdigit() else (versions[0] if versions else None)
    previous = by_number.get(shown.version - 1) if shown is not None else None
    changes = faq.diff(previous.data if previous else None, shown.data) if shown else []
    return await render(request, "faq_history.html", entry_id=entry_id, row=row,
                        versions=versions, shown=shown, previous=previous, changes=changes,
                        current_version=versions[0].version if versions else 0)


async def faq_revert(request: web.Request) -> web.Response:
    entry_id = request.match_info["entry_id"]
    form = await request.post()
    raw = form_text(form, "version", 10)
    if not raw.isdigit():
        raise web.HTTPBadRequest()
    st = state(request)
    async with st.db.session() as session:
        outcome = await faq.revert(session, entry_id, int(raw), st.county, actor(request))
    if outcome.ok:
        await flash(request, "ok", f"已恢复为第{raw}版的内容，并发布为第{outcome.version}版。")
    else:
        await flash(request, "error", "不能恢复第" + raw + "版：" + "；".join(
            e.message for e in outcome.errors))
    raise redirect(request, "faq_history", entry_id=entry_id)


# ----- try --------------------------------------------------------------------------
async def try_page(request: web.Request) -> web.Response:
    st = state(request)
    question = request.query.get("q", "").strip()[:MAX_QUESTION]
    tried = None
    if question:
        tried = st.tryout.run(await st.tryout.published(st.db), question)
    return await render(request, "try.html", question=question, tried=tried)
