"""救助对象 (经办人员 and 管理员): import an application list (upload, check, confirm;
the import then runs as a background job with its own page, shared with payout lists),
the list of applications, one application with its history, stage changes, WeChat
bindings and delegates, and the reminders sent to the person.

Every page that shows a person's data records it in the audit log
(``record_personal_view``); every change is audited with before and after and, where
it touches the registry, written to its access_log as "staff:<username>".
"""

from __future__ import annotations

from math import ceil
from typing import Any

from aiohttp import web

from admin import jobs, registry
from admin.audit import record, record_list_view, record_personal_view
from admin.registry import BindingError, ListFilter
from admin.uploads import GONE, Upload, UploadError
from admin.web import (
    actor,
    flash,
    form_text,
    page_number,
    redirect,
    render,
    signed_in,
    state,
)
from huimin.clock import local_today
from huimin.registry import ALL_STAGES, PROGRAMMES, STAGE_WORDS, grants
from huimin.registry.models import Application, Beneficiary
from huimin.registry.queries import log_access

KIND = jobs.APPLICATIONS
JOB_REFRESH_SECONDS = 2
LIST_FIELDS = ["姓名（打码）", "身份证号（打码）"]
PAGE_FIELDS = ["姓名", "身份证号（打码）", "手机号（打码）", "办理记录", "微信绑定",
               "提醒记录"]


def upload_owner(request: web.Request) -> str:
    return signed_in(request).session.token_hash


def _username(request: web.Request) -> str:
    return signed_in(request).user.username


# ----- list ------------------------------------------------------------------------------
async def registry_list(request: web.Request) -> web.Response:
    return await _list(request, ListFilter.from_query(request.query), page_number(request))


async def registry_search(request: web.Request) -> web.Response:
    """The search form is sent by POST, so a typed ID or phone number never lands in a
    URL (browser history, proxy logs); the results are the answer."""
    form = await request.post()
    return await _list(request, ListFilter.from_query(form), 1)


async def _list(request: web.Request, filters: ListFilter, page: int) -> web.Response:
    who = actor(request)
    st = state(request)
    vault = st.vault if filters.q and filters.kind != registry.BY_TEXT else None
    async with st.db.session() as session:
        rows, total = await registry.search_applications(session, filters, page, vault=vault)
        reason = f"救助对象列表第{page}页"
        if filters.q:
            reason += f"（按{registry.SEARCH_WORDS[filters.kind]}查找 {filters.masked_q}）"
            record(session, who, "registry_search", "beneficiary", None, after={
                "by": registry.SEARCH_WORDS[filters.kind], "searched": filters.masked_q,
                "programme": filters.programme, "stage": filters.stage, "found": total,
                "page": page})
        record_list_view(session, who, (row.person.id for row in rows), LIST_FIELDS,
                         reason=reason, shown=[row.application.number for row in rows])
    pages = max(1, ceil(total / registry.PER_PAGE))
    return await render(request, "registry_list.html", rows=rows, total=total, page=page,
                        pages=pages, filters=filters, query=filters.as_query(),
                        programmes=PROGRAMMES, stages=ALL_STAGES,
                        search_words=registry.SEARCH_WORDS)


# ----- import ------------------------------------------------------------------------------
async def import_page(request: web.Request) -> web.Response:
    return await render(request, "registry_import.html", preview=None, token="", error="")


async def receive_upload(request: web.Request, kind: str) -> tuple[Any, str]:
    """Keep the uploaded file; (the upload, "") or (None, what is wrong)."""
    form = await request.post()
    upload = form.get("file")
    if not isinstance(upload, web.FileField) or not upload.filename:
        return None, "请先选择一个文件。"
    try:
        data = upload.file.read()
        return state(request).uploads.save(kind, upload_owner(request), upload.filename, data), ""
    except UploadError as exc:
        return None, str(exc)


async def import_preview(request: web.Request) -> web.Response:
    st = state(request)
    vault = st.vault
    stored, error = await receive_upload(request, KIND)
    if stored is None:
        return await render(request, "registry_import.html", status=400, preview=None,
                            token="", error=error)
    async with st.db.session() as session:
        preview = await registry.preview_applications(session, vault, stored.path,
                                                      stored.filename)
    if not preview.ok:
        st.uploads.discard(stored.token)  # nothing to confirm
    return await render(request, "registry_import.html",
                        status=400 if preview.file_error else 200, preview=preview,
                        token=stored.token if preview.ok else "", error="")


async def import_confirm(request: web.Request) -> web.Response:
    st = state(request)
    form = await request.post()
    stored = st.uploads.claim(form_text(form, "upload", 100), KIND, upload_owner(request))
    if stored is None:
        await flash(request, "error", GONE)
        raise redirect(request, "registry_import")
    # The ticked rows that move a stage backwards or overwrite a change made in the UI;
    # the others of that kind stay held back.
    confirmed = registry.parse_confirmed([v for v in form.getall("confirm", [])
                                          if isinstance(v, str)])
    raise await start_job(request, jobs.APPLICATIONS, stored, confirmed)


async def start_job(request: web.Request, kind: str, stored: Upload,
                    confirmed: dict[str, str] | None = None) -> web.HTTPSeeOther:
    """Record the confirmed import as a job, start it in this process, and send the
    browser to the job's page (the import runs on after this request has ended)."""
    st = state(request)
    st.vault  # noqa: B018 -- no secret key: say so now, not from inside the job
    job_id = await jobs.create_job(st.db, kind, stored, actor(request), confirmed)
    request.app[jobs.RUNNER].start(job_id)
    return redirect(request, "import_job", job_id=job_id)


def _job_id(request: web.Request) -> int:
    raw = request.match_info["job_id"]
    if not raw.isdigit() or len(raw) > 12:
        raise web.HTTPNotFound()
    return int(raw)


async def job_page(request: web.Request) -> web.Response:
    """A confirmed import: progress while it runs (the page reloads itself every few
    seconds), then its result."""
    job = await jobs.load_job(state(request).db, _job_id(request))
    if job is None:
        raise web.HTTPNotFound()
    can_restart = (job.state == jobs.INTERRUPTED
                   and state(request).uploads.claimed_path(job.upload) is not None)
    response = await render(request, "import_job.html", job=job, can_restart=can_restart,
                            file_gone=jobs.FILE_GONE)
    if job.running:
        response.headers["Refresh"] = str(JOB_REFRESH_SECONDS)
    return response


async def job_restart(request: web.Request) -> web.Response:
    job_id = _job_id(request)
    st = state(request)
    job = await jobs.load_job(st.db, job_id)
    if job is None:
        raise web.HTTPNotFound()
    if job.state != jobs.INTERRUPTED:
        await flash(request, "error", "这个导入没有中断，不需要重新开始。")
    elif st.uploads.claimed_path(job.upload) is None:
        await flash(request, "error", jobs.FILE_GONE)
    elif await request.app[jobs.RUNNER].restart(job_id):
        await flash(request, "ok", "已经重新开始导入。已经导入的行不会重复。")
    raise redirect(request, "import_job", job_id=job_id)


async def import_cancel(request: web.Request) -> web.Response:
    form = await request.post()
    uploads = state(request).uploads
    stored = uploads.get(form_text(form, "upload", 100), KIND, upload_owner(request))
    if stored is not None:  # only one's own upload
        uploads.discard(stored.token)
    await flash(request, "ok", "已取消，上传的文件已删除，什么也没有导入。")
    raise redirect(request, "registry_import")


# ----- one application -------------------------------------------------------------------
def _app_id(request: web.Request) -> int:
    raw = request.match_info["app_id"]
    if not raw.isdigit() or len(raw) > 12:
        raise web.HTTPNotFound()
    return int(raw)


async def _application(request: web.Request, status: int = 200, error: str = "",
                      delegate_error: str = "", values: dict[str, str] | None = None
                      ) -> web.Response:
    who = actor(request)
    async with state(request).db.session() as session:
        page = await registry.application_page(session, _app_id(request))
        if page is None:
            raise web.HTTPNotFound()
        record_personal_view(session, who, page.person.id, PAGE_FIELDS,
                             reason=f"申请 {page.application.number}")
        await log_access(session, registry.staff(who.username or ""), page.person.id,
                         "staff_view", application=page.application.number)
    app = page.application
    form_values = values or {
        "stage": app.stage, "stage_date": app.stage_date.isoformat(),
        "next_step": app.next_step or "",
        "recheck_due": app.recheck_due.isoformat() if app.recheck_due else ""}
    today = local_today()
    return await render(request, "application.html", status=status, page=page, app=app,
                        person=page.person, stages=ALL_STAGES, stage_words=STAGE_WORDS,
                        values=form_values, error=error, delegate_error=delegate_error,
                        mask_openid=registry.mask_openid, today=today.isoformat())


async def application_page(request: web.Request) -> web.Response:
    return await _application(request)


async def change_stage(request: web.Request) -> web.Response:
    form = await request.post()
    app_id = _app_id(request)
    today = local_today()
    values, problems = registry.parse_stage_form(form, today)
    if values is None:
        return await _application(request, 400, error="".join(problems), values={
            key: form_text(form, key, 400) for key in ("stage", "stage_date", "next_step",
                                                       "recheck_due")})
    async with state(request).db.session() as session:
        app = await session.get(Application, app_id)
        if app is None:
            raise web.HTTPNotFound()
        before = registry.application_state(app)
        change = await registry.change_stage(session, app, values, _username(request))
        after = registry.application_state(app)
        record(session, actor(request), "registry_stage", "application", app.number,
               before=before, after={**after, "status_change": change.id if change else None})
        number = app.number
    if before == after:
        await flash(request, "ok", "没有改动。")
    elif change is not None:
        await flash(request, "ok", f"{number} 的环节已改为“{values.stage}”。公众号会把这个变化"
                                   "通知本人和授权的家人（下一次排提醒时；夜间的等到早上）。")
    else:
        await flash(request, "ok", f"已保存 {number} 的日期和说明。环节没有变，不会通知群众。")
    raise redirect(request, "application", app_id=app_id)


async def _person(session: Any, app_id: int) -> tuple[Application, Beneficiary]:
    app = await session.get(Application, app_id)
    if app is None:
        raise web.HTTPNotFound()
    person = await session.get(Beneficiary, app.beneficiary_id)
    assert person is not None
    return app, person


async def grant_delegate(request: web.Request) -> web.Response:
    """Grant a family member access: by the code they got from the bot (我的授权码), or
    by their openid when an administrator looked it up."""
    form = await request.post()
    app_id = _app_id(request)
    typed = form_text(form, "code", 100) or form_text(form, "openid", 100)
    code = grants.typed_code(typed)
    username = _username(request)
    try:
        openid = None if code is not None else registry.check_openid(typed)
        async with state(request).db.session() as session:
            app, person = await _person(session, app_id)
            grant_id = None
            if code is not None:
                binding, replaced, grant = await registry.grant_by_code(
                    session, state(request).vault, person, code, username)
                grant_id = grant.id
            else:
                assert openid is not None
                binding, replaced = await registry.grant_delegate(session, person, openid,
                                                                  username)
            record(session, actor(request), "delegate_grant", "beneficiary", str(person.id),
                   before={"delegates": [registry.binding_view(b) for b in replaced]},
                   after={"delegates": [registry.binding_view(binding)],
                          "application": app.number,
                          "by": "授权码" if grant_id else "微信号", "grant_code": grant_id})
            shown = registry.mask_openid(binding.openid)
    except registry.WrongGrantCode as exc:
        async with state(request).db.session() as session:
            _, person = await _person(session, app_id)
            await registry.record_wrong_code(session, person, username)
        return await _application(request, 400, delegate_error=str(exc))
    except BindingError as exc:
        return await _application(request, 400, delegate_error=str(exc))
    text = f"已授权微信号 {shown} 查看进度并接收提醒。"
    if grant_id:
        text = f"授权码对上了。{text}请告诉家人：在公众号里回复“查进度”就能看到。"
    if replaced:
        text += "原来授权的家人已经取消（每人只能授权一位家人）。"
    await flash(request, "ok", text)
    raise redirect(request, "application", app_id=app_id)


async def revoke_binding(request: web.Request) -> web.Response:
    form = await request.post()
    app_id = _app_id(request)
    raw = form_text(form, "binding_id", 12)
    try:
        if not raw.isdigit():
            raise BindingError("没有找到这个绑定。")
        async with state(request).db.session() as session:
            _, person = await _person(session, app_id)
            before, binding = await registry.revoke_binding(session, person, int(raw),
                                                            _username(request))
            record(session, actor(request), "binding_revoke", "beneficiary", str(person.id),
                   before=before, after=registry.binding_view(binding))
            role = binding.role
    except BindingError as exc:
        await flash(request, "error", str(exc))
        raise redirect(request, "application", app_id=app_id) from None
    who = "本人的微信绑定" if role == "self" else "授权家人的微信绑定"
    await flash(request, "ok", f"已撤销{who}，这个微信号不能再查进度，也不会再收到提醒。")
    raise redirect(request, "application", app_id=app_id)
