"""Import (upload one file, check, preview, publish) and export (.zip) of content."""

from __future__ import annotations

from aiohttp import web

from admin import transfer
from admin.audit import record
from admin.web import actor, flash, form_text, redirect, render, state
from huimin.clock import CHINA, utcnow


async def import_page(request: web.Request) -> web.Response:
    return await render(request, "import.html", plan=None, text="", error="")


async def import_preview(request: web.Request) -> web.Response:
    form = await request.post()
    upload = form.get("file")
    if not isinstance(upload, web.FileField) or not upload.filename:
        return await render(request, "import.html", status=400, plan=None, text="",
                            error="请先选择一个文件。")
    raw = upload.file.read(transfer.MAX_UPLOAD + 1)
    if len(raw) > transfer.MAX_UPLOAD:
        return await render(request, "import.html", status=400, plan=None, text="",
                            error="文件太大了（最大1MB）。")
    text = transfer.decode(raw)
    if text is None:
        return await render(request, "import.html", status=400, plan=None, text="",
                            error="文件不是 UTF-8 编码的文本，请用导出的文件修改后再上传。")
    st = state(request)
    async with st.db.session() as session:
        plan = await transfer.plan_import(session, upload.filename, text, st.county)
    return await render(request, "import.html", status=200 if plan.ok else 400, plan=plan,
                        text=text, error="")


async def import_publish(request: web.Request) -> web.Response:
    form = await request.post()
    name = form_text(form, "file_name", 200)
    text = form_text(form, "text", transfer.MAX_UPLOAD + 1)  # longer: refused as too large
    st = state(request)
    changed = 0
    async with st.db.session() as session:
        plan = await transfer.plan_import(session, name, text, st.county)
        if plan.ok:
            changed = await transfer.apply_import(session, plan, actor(request))
    if not plan.ok:
        return await render(request, "import.html", status=400, plan=plan, text=text,
                            error="检查没有通过（内容可能在这期间有了变化），什么也没有改。")
    if changed:
        await flash(request, "ok", f"已导入 {plan.file}：{changed}处改动已发布。")
    else:
        await flash(request, "ok", f"{plan.file} 和现在的内容一样，没有需要改的。")
    raise redirect(request, "faq_list" if plan.kind == "faq" else "dictionary")


async def export(request: web.Request) -> web.Response:
    async with state(request).db.session() as session:
        data = await transfer.export_zip(session)
        record(session, actor(request), "content_export", "content", None)
    stamp = utcnow().astimezone(CHINA).strftime("%Y%m%d-%H%M")
    return web.Response(body=data, content_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="huimin-content-{stamp}.zip"'})

