"""The colloquial/typo dictionary page (内容编辑 and 管理员)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from admin import dictionary
from admin.web import actor, flash, form_text, redirect, render, state


async def dictionary_page(request: web.Request) -> web.Response:
    search = request.query.get("q", "").strip()[:64]
    async with state(request).db.session() as session:
        replacements = await dictionary.terms(session, "replacement", search)
        fillers = await dictionary.terms(session, "filler", search)
    return await render(request, "dictionary.html", replacements=replacements,
                        fillers=fillers, search=search, kinds=dictionary.KINDS)


def _term_id(form: Mapping[str, Any]) -> int:
    raw = form_text(form, "term_id", 12)
    if not raw.isdigit():
        raise web.HTTPBadRequest()
    return int(raw)


async def dictionary_add(request: web.Request) -> web.Response:
    form = await request.post()
    try:
        async with state(request).db.session() as session:
            row = await dictionary.add(session, form_text(form, "kind", 20),
                                       form_text(form, "term", 100),
                                       form_text(form, "replacement", 100), actor(request))
            text = (f"已加入：“{row.term}”会当作“{row.replacement}”。" if row.replacement
                    else f"已加入语气词“{row.term}”，匹配时会去掉它。")
    except dictionary.DictionaryError as exc:
        await flash(request, "error", str(exc))
    else:
        await flash(request, "ok", text + "几秒钟内公众号就会用上。")
    raise redirect(request, "dictionary")


async def dictionary_change(request: web.Request) -> web.Response:
    form = await request.post()
    try:
        async with state(request).db.session() as session:
            row = await dictionary.change(session, _term_id(form),
                                          form_text(form, "replacement", 100), actor(request))
            text = f"已修改：“{row.term}”现在当作“{row.replacement}”。"
    except dictionary.DictionaryError as exc:
        await flash(request, "error", str(exc))
    else:
        await flash(request, "ok", text)
    raise redirect(request, "dictionary", {"q": form_text(form, "q", 64)})


async def dictionary_remove(request: web.Request) -> web.Response:
    form = await request.post()
    try:
        async with state(request).db.session() as session:
            row = await dictionary.remove(session, _term_id(form), actor(request))
            text = f"已删除“{row.term}”。"
    except dictionary.DictionaryError as exc:
        await flash(request, "error", str(exc))
    else:
        await flash(request, "ok", text)
    raise redirect(request, "dictionary", {"q": form_text(form, "q", 64)})
