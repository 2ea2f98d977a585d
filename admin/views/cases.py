"""经办留言: the caseworkers' inbox of cases people left for a human (see ``casework``).

Administrators read every case; a caseworker only the cases routed to them
(``case_routes``, edited on 经办分工 by administrators). Every view, reply, phone
showing and closing is in the audit log.
"""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import and_, func, select

from admin.answered import told_recently
from admin.audit import Actor, record
from admin.models import AdminUser
from admin.web import actor, flash, form_text, redirect, render, signed_in, state
from content.models import FaqEntryRow
from content.schema import render as render_answer
from huimin.casework.cases import OUTCOMES, SCOPES, Routing, add_route, open_cases, waiting_text
from huimin.casework.models import (
    CALLBACK,
    CLOSED,
    DELIVERY_FAILED,
    DELIVERY_PHONE,
    NOTE,
    OPEN,
    STAFF,
    Case,
    CaseMessage,
    CaseRoute,
)
from huimin.registry.models import Beneficiary
from notify.case_replies import (
    DELIVERY_LABELS,
    OUTBOX_LABELS,
    Delivered,
    ReplyChannels,
    deliver,
    outbox_states,
)

MAX_REPLY = 500
KIND_LABELS = {"message": "微信留言", CALLBACK: "请回电（短信回复）"}


def _case_id(request: web.Request) -> int:
    raw = request.match_info["case_id"]
    if not raw.isdigit() or len(raw) > 12:
        raise web.HTTPNotFound()
    return int(raw)


async def _readable(request: web.Request, case_id: int) -> tuple[Case, Routing]:
    """The case, when this member of staff may read it (else 404 for a missing case,
    403 for someone else's)."""
    user = signed_in(request).user
    async with state(request).db.session() as session:
        case = await session.get(Case, case_id)
        routing = await Routing.load(session)
    if case is None:
        raise web.HTTPNotFound()
    if not routing.may_read(user.role, user.username, case):
        raise web.HTTPForbidden()
    return case, routing


async def cases_page(request: web.Request) -> web.Response:
    st, user = state(request), signed_in(request).user
    which = CLOSED if request.query.get("state") == CLOSED else OPEN
    now = st.clock()
    async with st.db.session() as session:
        routing = await Routing.load(session)
        rows = await open_cases(session, routing, user.role, user.username, now, state=which)
        told = await told_recently(session, now)
    return await render(request, "cases.html", rows=rows, which=which, waiting=waiting_text,
                        kinds=KIND_LABELS, outcomes=OUTCOMES, told=told,
                        unrouted=user.role == "caseworker" and not any(
                            u == user.username for _, _, u in routing.routes))


async def case_page(request: web.Request, phone: str | None = None,
                    status: int = 200) -> web.Response:
    case_id = _case_id(request)
    case, routing = await _readable(request, case_id)
    st, who = state(request), actor(request)
    snippet_id = request.query.get("snippet", "")[:64]
    async with st.db.session() as session:
        messages = (await session.scalars(select(CaseMessage).where(
            CaseMessage.case_id == case_id).order_by(CaseMessage.id))).all()
        entries = (await session.execute(select(FaqEntryRow.id, FaqEntryRow.question)
                                         .order_by(FaqEntryRow.id))).all()
        snippet = ""
        if snippet_id:
            row = await session.get(FaqEntryRow, snippet_id)
            if row is not None:
                snippet = render_answer(row.answer, st.county)[:MAX_REPLY]
        record(session, who, "case_view", "case", str(case_id),
               after={"beneficiary_id": case.beneficiary_id, "kind": case.kind},
               at=st.clock())
    sms = await outbox_states(st.db, [m.outbox_key for m in messages if m.outbox_key])
    user = signed_in(request).user
    return await render(
        request, "case.html", status=status, case=case, messages=messages, entries=entries,
        snippet=snippet, snippet_id=snippet_id, kinds=KIND_LABELS, outcomes=OUTCOMES,
        deliveries=DELIVERY_LABELS, sms=sms, sms_labels=OUTBOX_LABELS, phone=phone,
        waited=waiting_text(st.clock() - (case.opened_at or st.clock())),
        caseworkers=sorted(routing.caseworkers(case)),
        may_show_phone=user.role == "caseworker" and case.phone_encrypted is not None,
        max_reply=MAX_REPLY)


async def reply(request: web.Request) -> web.Response:
    case_id = _case_id(request)
    case, _ = await _readable(request, case_id)
    form = await request.post()
    text = form_text(form, "text", 5000).replace("\r\n", "\n").strip()
    if not text:
        await flash(request, "error", "请先写好回复的内容。")
        raise redirect(request, "case", case_id=case_id)
    if len(text) > MAX_REPLY:
        await flash(request, "error", f"回复太长了（{len(text)}个字），最多{MAX_REPLY}个字，"
                                      "请改短一点，什么也没有发。")
        raise redirect(request, "case", case_id=case_id)
    if case.state != OPEN:
        await flash(request, "error", "这条留言已经关闭了，不能再回复。")
        raise redirect(request, "case", case_id=case_id)
    st, who = state(request), actor(request)
    now = st.clock()
    async with st.db.session() as session:
        message = CaseMessage(case_id=case_id, at=now, author=STAFF, username=who.username,
                              text=text)
        session.add(message)
        await session.flush()
        message_id = message.id
    outcome = await _send(request, case_id, message_id)
    async with st.db.session() as session:
        row = await session.get(Case, case_id)
        if row is not None and row.answered_at is None:
            row.answered_at = now
        record(session, who, "case_reply", "case", str(case_id),
               after={"message_id": message_id, "chars": len(text),
                      "delivery": outcome.delivery}, at=now)
    await flash(request, "error" if outcome.delivery == DELIVERY_FAILED else "ok",
                "回复已保存。" + DELIVERY_LABELS[outcome.delivery]
                + (f"（{outcome.note}）" if outcome.note else "") + "。")
    raise redirect(request, "case", case_id=case_id)


async def _send(request: web.Request, case_id: int, message_id: int) -> Delivered:
    st = state(request)
    channels = ReplyChannels.from_settings(st.settings, st.tokens, st.county)
    try:
        return await deliver(st.db, channels, case_id, message_id, st.clock())
    finally:
        await channels.close()


async def resend(request: web.Request) -> web.Response:
    case_id = _case_id(request)
    case, _ = await _readable(request, case_id)
    form = await request.post()
    raw = form_text(form, "message_id", 12)
    st, who = state(request), actor(request)
    async with st.db.session() as session:
        message = await session.get(CaseMessage, int(raw)) if raw.isdigit() else None
        ok = (message is not None and message.case_id == case_id and message.author == STAFF
              and message.delivery == DELIVERY_FAILED)
    if not ok or case.state != OPEN:
        await flash(request, "error", "这条回复不用重发。")
        raise redirect(request, "case", case_id=case_id)
    outcome = await _send(request, case_id, int(raw))
    async with st.db.session() as session:
        record(session, who, "case_resend", "case", str(case_id),
               after={"message_id": int(raw), "delivery": outcome.delivery}, at=st.clock())
    await flash(request, "error" if outcome.delivery == DELIVERY_FAILED else "ok",
                DELIVERY_LABELS[outcome.delivery] + "。")
    raise redirect(request, "case", case_id=case_id)


async def phoned(request: web.Request) -> web.Response:
    """已电话联系: the case was answered by phone (with an optional note)."""
    case_id = _case_id(request)
    await _readable(request, case_id)
    form = await request.post()
    note = form_text(form, "note", 5000).replace("\r\n", "\n").strip()[:MAX_REPLY] \
        or "已电话联系"
    st, who = state(request), actor(request)
    now = st.clock()
    async with st.db.session() as session:
        case = await session.get(Case, case_id)
        assert case is not None
        session.add(CaseMessage(case_id=case_id, at=now, author=NOTE, username=who.username,
                                text=note, delivery=DELIVERY_PHONE))
        if case.answered_at is None:
            case.answered_at = now
        record(session, who, "case_phoned", "case", str(case_id), after={"chars": len(note)},
               at=now)
    await flash(request, "ok", "已记下：电话联系过了。")
    raise redirect(request, "case", case_id=case_id)


async def close(request: web.Request) -> web.Response:
    case_id = _case_id(request)
    await _readable(request, case_id)
    form = await request.post()
    outcome = form_text(form, "outcome", 20)
    if outcome not in OUTCOMES:
        await flash(request, "error", "请选择处理结果再关闭。")
        raise redirect(request, "case", case_id=case_id)
    st, who = state(request), actor(request)
    now = st.clock()
    async with st.db.session() as session:
        case = await session.get(Case, case_id)
        assert case is not None
        if case.state == CLOSED:
            await flash(request, "error", "这条留言已经关闭了。")
            raise redirect(request, "case", case_id=case_id)
        case.state, case.outcome, case.closed_at, case.closed_by = CLOSED, outcome, now, \
            who.username
        record(session, who, "case_close", "case", str(case_id), after={"outcome": outcome},
               at=now)
    await flash(request, "ok", f"已关闭，处理结果：{OUTCOMES[outcome]}。")
    raise redirect(request, "cases")


async def show_phone(request: web.Request) -> web.Response:
    """The full number of a callback case: caseworkers the case is routed to only,
    each showing audit-logged."""
    case_id = _case_id(request)
    case, _ = await _readable(request, case_id)
    user, st, who = signed_in(request).user, state(request), actor(request)
    if user.role != "caseworker" or case.phone_encrypted is None:
        raise web.HTTPForbidden()
    phone = st.vault.decrypt(case.phone_encrypted)
    async with st.db.session() as session:
        record(session, who, "case_phone_view", "case", str(case_id),
               after={"beneficiary_id": case.beneficiary_id, "phone": case.phone_masked},
               at=st.clock())
    return await case_page(request, phone=phone)


# ----- routing (经办分工, administrators) ------------------------------------------------
async def routes_page(request: web.Request) -> web.Response:
    async with state(request).db.session() as session:
        routes = (await session.scalars(select(CaseRoute).order_by(
            CaseRoute.scope, CaseRoute.value, CaseRoute.username))).all()
        caseworkers = (await session.scalars(select(AdminUser.username).where(and_(
            AdminUser.role == "caseworker", AdminUser.disabled.is_(False)))
            .order_by(AdminUser.username))).all()
        townships = [t for t in (await session.scalars(select(func.distinct(
            Beneficiary.township)).order_by(Beneficiary.township))).all() if t]
    return await render(request, "case_routes.html", routes=routes, scopes=SCOPES,
                        caseworkers=caseworkers, townships=townships)


async def route_add(request: web.Request) -> web.Response:
    form = await request.post()
    scope = form_text(form, "scope", 20)
    value = form_text(form, "value", 100).strip()
    username = form_text(form, "username", 64)
    if scope not in SCOPES or (scope != "any" and not value) or len(value) > 32:
        await flash(request, "error", "请选好分工方式，并写上乡镇或救助项目的名称（最多32个字）。")
        raise redirect(request, "case_routes")
    who = actor(request)
    async with state(request).db.session() as session:
        user = await session.scalar(select(AdminUser).where(AdminUser.username == username))
        if user is None or user.role != "caseworker":
            await flash(request, "error", "请选一位经办人员。")
            raise redirect(request, "case_routes")
        added = await add_route(session, scope, value, username)
        if added:
            record(session, who, "case_route_add", "case_route", username,
                   after={"scope": scope, "value": value or "*"})
    await flash(request, "ok", "已添加。" if added else "已经有这一条分工了。")
    raise redirect(request, "case_routes")


async def route_remove(request: web.Request) -> web.Response:
    form = await request.post()
    raw = form_text(form, "route_id", 12)
    who: Actor = actor(request)
    async with state(request).db.session() as session:
        route = await session.get(CaseRoute, int(raw)) if raw.isdigit() else None
        if route is None:
            raise web.HTTPNotFound()
        before = {"scope": route.scope, "value": route.value, "username": route.username}
        await session.delete(route)
        record(session, who, "case_route_remove", "case_route", before["username"],
               before=before)
    await flash(request, "ok", "已删除这条分工。")
    raise redirect(request, "case_routes")

