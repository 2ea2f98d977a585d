"""发放记录 (经办人员 and 管理员): upload a payout list, check it, confirm it; queue the
reminders (排队到账提醒); months with counts and totals; the lines of one month."""

from __future__ import annotations

from collections import Counter
from math import ceil

from aiohttp import web

from admin import jobs, payouts
from admin.audit import record, record_list_view
from admin.reminders import kind_label
from admin.uploads import GONE
from admin.views.registry import receive_upload, start_job, upload_owner
from admin.web import actor, flash, form_text, page_number, redirect, render, state
from notify.plan import PlanReport, plan
from notify.service import quiet_hours, recheck_offsets

KIND = jobs.PAYOUTS
LINE_FIELDS = ["姓名（打码）", "身份证号（打码）", "发放金额"]


async def _page(request: web.Request, status: int = 200, **context: object) -> web.Response:
    async with state(request).db.session() as session:
        summary = await payouts.months(session)
        last_plan = await payouts.latest_planned(session)
    values: dict[str, object] = {"preview": None, "token": "", "error": ""}
    values.update(context)
    return await render(request, "payouts.html", status=status, months=summary,
                        last_plan=last_plan,
                        waiting=sum(m.not_planned for m in summary), **values)


async def payouts_page(request: web.Request) -> web.Response:
    return await _page(request)


async def import_preview(request: web.Request) -> web.Response:
    st = state(request)
    vault = st.vault
    stored, error = await receive_upload(request, KIND)
    if stored is None:
        return await _page(request, 400, error=error)
    async with st.db.session() as session:
        preview = await payouts.preview_payouts(session, vault, stored.path, stored.filename)
    if not preview.ok:
        st.uploads.discard(stored.token)
    return await _page(request, 400 if preview.file_error else 200, preview=preview,
                       token=stored.token if preview.ok else "")


async def import_confirm(request: web.Request) -> web.Response:
    st = state(request)
    form = await request.post()
    stored = st.uploads.claim(form_text(form, "upload", 100), KIND, upload_owner(request))
    if stored is None:
        await flash(request, "error", GONE)
        raise redirect(request, "payouts")
    raise await start_job(request, jobs.PAYOUTS, stored)


async def import_cancel(request: web.Request) -> web.Response:
    form = await request.post()
    uploads = state(request).uploads
    stored = uploads.get(form_text(form, "upload", 100), KIND, upload_owner(request))
    if stored is not None:  # only one's own upload
        uploads.discard(stored.token)
    await flash(request, "ok", "已取消，上传的文件已删除，什么也没有导入。")
    raise redirect(request, "payouts")


def plan_words(report: PlanReport) -> str:
    queued = sum(report.queued.values())
    if not queued:
        text = "没有新的提醒要排。"
    else:
        kinds = "、".join(f"{kind_label(k)} {n} 条" for k, n in sorted(
            report.queued.items(), key=lambda kv: -kv[1]))
        text = f"已排好 {queued} 条提醒（{kinds}），发送程序会陆续发出。"
    if report.already_planned:
        text += f"另有 {report.already_planned} 条以前已经排过，没有重复排。"
    if report.held_for_quiet_hours:
        text += f"现在是夜间，其中 {report.held_for_quiet_hours} 条要等到早上再发。"
    return text


async def plan_reminders(request: web.Request) -> web.Response:
    st = state(request)
    report = await plan(st.db, quiet=quiet_hours(st.settings),
                        recheck_offsets=recheck_offsets(st.settings))
    async with st.db.session() as session:
        record(session, actor(request), "reminder_plan", "reminder", None,
               after={"queued": dict(Counter(report.queued)),
                      "already_planned": report.already_planned,
                      "held_for_quiet_hours": report.held_for_quiet_hours})
    await flash(request, "ok", plan_words(report))
    raise redirect(request, "payouts")


async def month_page(request: web.Request) -> web.Response:
    month = request.match_info["month"]
    if not payouts.valid_month(month):
        raise web.HTTPNotFound()
    page = page_number(request)
    who = actor(request)
    async with state(request).db.session() as session:
        rows, total = await payouts.month_lines(session, month, page)
        totals = await payouts.programme_totals(session, month)
        record_list_view(session, who, (row.person.id for row in rows), LINE_FIELDS,
                         reason=f"{month} 发放名单第{page}页")
    if not total:
        raise web.HTTPNotFound()
    pages = max(1, ceil(total / payouts.LINES_PER_PAGE))
    year, number = month.split("-")
    return await render(request, "payouts_month.html", rows=rows, total=total, page=page,
                        pages=pages, month=month, label=f"{year}年{int(number)}月",
                        totals=totals)
