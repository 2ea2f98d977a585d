"""The life situations page (内容编辑 and 管理员)."""

from __future__ import annotations

from aiohttp import web

from admin import situations
from admin.web import actor, flash, form_text, redirect, render, state


async def situations_page(request: web.Request) -> web.Response:
    async with state(request).db.session() as session:
        rows = await situations.situations(session)
        questions = await situations.entry_questions(session)
    return await render(request, "situations.html", rows=rows, questions=questions,
                        max_offer=situations.MAX_OFFER)


async def situation_add(request: web.Request) -> web.Response:
    form = await request.post()
    offer = [v[:64] for v in form.getall("offer", []) if isinstance(v, str)][:10]
    try:
        async with state(request).db.session() as session:
            row = await situations.add(session, form_text(form, "name", 100),
                                       form_text(form, "cues", 2000),
                                       form_text(form, "means", 500), offer, actor(request))
            text = f"已加入“{row.name}”。几秒钟内公众号就会用上。"
    except situations.SituationError as exc:
        await flash(request, "error", str(exc))
    else:
        await flash(request, "ok", text)
    raise redirect(request, "situations")


async def situation_remove(request: web.Request) -> web.Response:
    form = await request.post()
    raw = form_text(form, "situation_id", 12)
    if not raw.isdigit():
        raise web.HTTPBadRequest(text="请从列表里选要删除的情况")
    try:
        async with state(request).db.session() as session:
            row = await situations.remove(session, int(raw), actor(request))
            text = f"已删除“{row.name}”。"
    except situations.SituationError as exc:
        await flash(request, "error", str(exc))
    else:
        await flash(request, "ok", text)
    raise redirect(request, "situations")
