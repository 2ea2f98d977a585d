"""提醒 (经办人员 and 管理员): what the outbox holds by kind, channel and state, per day;
failures by reason with 重试; what waits for the morning; opt-outs (list, add, remove)."""

from __future__ import annotations

import unicodedata
from math import ceil

from aiohttp import web
from sqlalchemy import and_, select

from admin import labels, reminders
from admin.audit import record, record_list_view
from admin.charts import GOOD, NEUTRAL, WARN, Series, day_label, day_words, line_chart, number
from admin.registry import staff
from admin.web import actor, flash, form_text, page_number, redirect, render, signed_in, state
from huimin.registry.queries import log_access
from notify.models import OptOut
from notify.receipts import opt_in, opt_out

COLOURS = {"新排队": WARN, "发出": NEUTRAL, "送达": GOOD}
OPTOUT_FIELDS = ["手机号（打码）或微信号（打码）", "退订记录"]


async def reminders_page(request: web.Request) -> web.Response:
    async with state(request).db.session() as session:
        counts = await reminders.counts(session)
        daily = await reminders.daily(session)
        failures = await reminders.failure_groups(session)
        held = await reminders.held_for_quiet_hours(session)
        set_aside = await reminders.providers_set_aside(session)
    totals = {label: sum(values) for label, values in daily.series.items()}
    summary = (f"最近30天：新排队 {number(totals['新排队'])} 条，发出 {number(totals['发出'])} 条，"
               f"确认送达 {number(totals['送达'])} 条。")
    if totals["发出"]:
        summary += f"发出的里面约 {totals['送达'] * 100 // totals['发出']}% 已确认送达" \
                   "（短信平台和微信不一定都回报送达）。"
    chart = line_chart(
        "reminders-daily", "提醒每天的数量（最近30天）", summary,
        [day_label(d) for d in daily.days],
        [Series(label, values, COLOURS.get(label)) for label, values in daily.series.items()],
        y_label="条数", x_label="日期", table_labels=[day_words(d) for d in daily.days])
    return await render(request, "reminders.html", counts=counts, chart=chart,
                        failures=failures, held=held, states=reminders.STATE_ORDER,
                        set_aside=set_aside, channel_label=reminders.channel_label)


def _reason_arg(raw: str | None) -> str | None:
    return None if raw is None else raw[:200]


async def failed_page(request: web.Request) -> web.Response:
    reason = _reason_arg(request.query.get("reason"))
    page = page_number(request)
    async with state(request).db.session() as session:
        rows, total = await reminders.failed_messages(session, reason, page)
    pages = max(1, ceil(total / reminders.PER_PAGE))
    query = {"reason": reason} if reason is not None else {}
    return await render(request, "reminders_failed.html", rows=rows, total=total, page=page,
                        pages=pages, reason=reason, query=query)


async def retry_one(request: web.Request) -> web.Response:
    form = await request.post()
    raw = form_text(form, "message_id", 12)
    back = form_text(form, "reason", 200)
    if not raw.isdigit():
        raise web.HTTPBadRequest()
    async with state(request).db.session() as session:
        changed = await reminders.retry_message(session, int(raw))
        if changed is not None:
            before, after = changed
            record(session, actor(request), "reminder_retry", "reminder", raw,
                   before=before, after=after)
    if changed is None:
        await flash(request, "error", "这条提醒现在不是“失败”状态（可能已经重试过了），没有改动。")
    else:
        await flash(request, "ok", "已重新排队，发送程序会尽快再发一次。")
    raise redirect(request, "reminders_failed", {"reason": back} if "reason" in form else None)


async def retry_reason(request: web.Request) -> web.Response:
    form = await request.post()
    if "reason" not in form:
        raise web.HTTPBadRequest()
    reason = form_text(form, "reason", 200)
    async with state(request).db.session() as session:
        ids = await reminders.retry_reason(session, reason)
        if ids:
            record(session, actor(request), "reminder_retry", "reminder", reason or "（无原因）",
                   before={"state": "failed", "last_error": reason, "ids": ids[:1000]},
                   after={"state": "queued", "attempts": 0, "count": len(ids)})
    if ids:
        await flash(request, "ok", f"已把 {len(ids)} 条“{labels.reason_text(reason)}”的提醒"
                                   "重新排队。")
    else:
        await flash(request, "error", "没有这个原因的失败提醒了，没有改动。")
    raise redirect(request, "reminders")


# ----- opt-outs ---------------------------------------------------------------------------
async def optouts_page(request: web.Request, status: int = 200, error: str = "",
                       number_typed: str = "") -> web.Response:
    page = page_number(request)
    who = actor(request)
    async with state(request).db.session() as session:
        rows, total = await reminders.opt_outs(session, page)
        record_list_view(session, who, (i for row in rows for i in row.beneficiary_ids),
                         OPTOUT_FIELDS, reason=f"退订名单第{page}页")
    pages = max(1, ceil(total / reminders.PER_PAGE))
    return await render(request, "optouts.html", status=status, rows=rows, total=total,
                        page=page, pages=pages, error=error, number_typed=number_typed,
                        sources=labels.SOURCE_LABELS)


async def optouts(request: web.Request) -> web.Response:
    return await optouts_page(request)


async def optout_add(request: web.Request) -> web.Response:
    form = await request.post()
    number_typed = unicodedata.normalize("NFKC", form_text(form, "number", 60)).strip()
    st = state(request)
    if not number_typed:
        return await optouts_page(request, 400, "请填写申请编号。", number_typed)
    async with st.db.session() as session:
        found = await reminders.find_by_number(session, number_typed)
    if found is None:
        return await optouts_page(request, 400, f"没有找到申请编号“{number_typed}”。",
                                  number_typed)
    app, person = found
    if not person.phone_hash:
        return await optouts_page(request, 400, f"{app.number} 的申请人没有登记手机号，"
                                                "本来就不会收到短信。", number_typed)
    added = await opt_out(st.db, "sms", person.phone_hash, "caseworker")
    username = signed_in(request).user.username
    async with st.db.session() as session:
        await log_access(session, staff(username), person.id, "sms_opted_out",
                         application=app.number, added=added)
        if added:
            row = await session.scalar(select(OptOut).where(and_(
                OptOut.channel == "sms", OptOut.address == person.phone_hash)))
            record(session, actor(request), "optout_add", "opt_out",
                   f"sms:{person.phone_masked}", before=None,
                   after={"id": row.id if row else None, "channel": "sms",
                          "address": person.phone_masked, "source": "caseworker",
                          "application": app.number})
    if added:
        await flash(request, "ok", f"已为 {app.number} 的申请人（手机 {person.phone_masked}）"
                                   "退订短信提醒。")
    else:
        await flash(request, "ok", f"{app.number} 的申请人（手机 {person.phone_masked}）"
                                   "以前已经退订了短信提醒。")
    raise redirect(request, "optouts")


async def optout_remove(request: web.Request) -> web.Response:
    form = await request.post()
    raw = form_text(form, "optout_id", 12)
    if not raw.isdigit():
        raise web.HTTPBadRequest()
    st = state(request)
    async with st.db.session() as session:
        row = await session.get(OptOut, int(raw))
        masked = ""
        if row is not None:
            found = await reminders.opt_outs_for(session, [row])
            masked = found[0].address
            before = reminders.optout_view(row, masked)
            people = found[0].beneficiary_ids
    if row is None:
        await flash(request, "error", "这条退订记录已经不在了（可能别人已经恢复了）。")
        raise redirect(request, "optouts")
    removed = await opt_in(st.db, row.channel, row.address)
    username = signed_in(request).user.username
    async with st.db.session() as session:
        if removed:
            record(session, actor(request), "optout_remove", "opt_out",
                   f"{row.channel}:{masked}", before=before, after=None)
            for person_id in people:
                await log_access(session, staff(username), person_id, "opted_in",
                                 channel=row.channel)
    channel = "短信" if row.channel == "sms" else "微信"
    await flash(request, "ok", f"已恢复 {masked} 的{channel}提醒。" if removed
                else "这条退订记录已经不在了。")
    raise redirect(request, "optouts")
