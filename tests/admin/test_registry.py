"""救助对象: importing an application list (preview, confirm, cancel), the list, one
application, stage changes, delegates, and that personal data is masked and every view
of it is recorded."""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from datetime import time as clock
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select

from admin.jobs import ImportJob
from admin.models import AuditEntry
from admin.registry import parse_confirmed as registry_confirmed
from admin.uploads import UploadStore, default_root
from huimin.clock import CHINA, utcnow
from huimin.db import Database
from huimin.personal import id_check_digit
from huimin.registry.models import AccessLogEntry, Application, Binding, StatusChange
from huimin.settings import Settings
from notify.models import OutboxMessage
from notify.plan import plan
from notify.rules import QuietHours
from tests.admin.conftest import (
    DEMO,
    DEMO_ID,
    assert_no_clear_numbers,
    follow,
    job_result,
    load_demo,
    mounted,
    post,
    rows_of,
    signed_in,
    upload,
    upload_token,
)

NEVER_QUIET = QuietHours(start=clock(0, 0), end=clock(0, 0))
BAD_ROWS = (
    # a wrong check digit, a number already on line 2, a stage nobody knows
    "XX-2026-0001,马小红,341323198001010012,13800130000,娄庄镇,低保,申请,2026-11-20,,,\n"
    "LZ-2026-0017,张桂兰,34132319620817004X,13800138000,娄庄镇,低保,审核,2026-11-20,,,\n"
    "XX-2026-0002,马小兰,341323198001010020,,娄庄镇,低保,快批了,2026-11-20,,,\n"
)


def demo_csv(extra: str = "") -> bytes:
    return ((DEMO / "applications.csv").read_text(encoding="utf-8") + extra).encode()


async def count(settings: Settings, model: Any) -> int:
    return (await rows_of(settings, select(func.count()).select_from(model)))[0]


async def audit(settings: Settings, action: str) -> list[AuditEntry]:
    return await rows_of(settings, select(AuditEntry).where(AuditEntry.action == action)
                         .order_by(AuditEntry.id))


# ----- import ---------------------------------------------------------------------------
async def test_preview_shows_row_errors_and_saves_nothing_until_confirmed(
        admin_client: Any, settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "caseworker")
    response = await upload(admin_client, "/admin/registry/import", token, "名单.csv",
                            demo_csv(BAD_ROWS))
    assert response.status == 200
    html = await response.text()
    assert "新申请 <strong>10</strong> 份" in html
    assert "有问题 <strong>3</strong> 行" in html
    assert "第12行" in html and "身份证号校验位不对" in html
    assert "第13行" in html and "申请编号重复（第2行已出现）" in html
    assert "第14行" in html and "环节“快批了”不认识" in html
    assert "张*兰" in html and "3413**********004X" in html and "138****8000" in html
    assert_no_clear_numbers(html)
    assert await count(settings, Application) == 0  # nothing saved yet
    assert await count(settings, StatusChange) == 0
    file_token = upload_token(html)
    assert (default_root() / file_token).is_dir()

    confirmed = await post(admin_client, "/admin/registry/import/confirm", token,
                           upload=file_token)
    result = await job_result(admin_client, confirmed)  # the import ran in the background
    assert "导入完成" in result and "已处理 <strong>13</strong> / 13 行" in result
    assert "新增 <strong>10</strong> 条" in result
    assert "有问题没导入 <strong>3</strong> 行" in result
    assert "第12行" in result
    assert_no_clear_numbers(result)
    assert await count(settings, Application) == 10
    assert not (default_root() / file_token).exists()  # deleted after the import
    (entry,) = await audit(settings, "registry_import")
    assert entry.username == "caseworker" and entry.after["added"] == 10
    assert len(entry.after["errors"]) == 3
    assert DEMO_ID not in json.dumps(entry.after, ensure_ascii=False)

    # the same file again: a second confirm of the spent token does nothing
    again = await post(admin_client, "/admin/registry/import/confirm", token,
                       upload=file_token)
    assert "找不到要导入的文件" in await follow(admin_client, again)


async def test_preview_of_a_known_list_shows_what_changes(admin_client: Any,
                                                          settings: Settings) -> None:
    await load_demo(settings)
    token = await signed_in(admin_client, settings, "caseworker")
    changed = demo_csv().decode().replace("LZ-2026-0017,张桂兰,34132319620817004X,13800138000,"
                                          "娄庄镇,低保,审核,2026-11-20",
                                          "LZ-2026-0017,张桂兰,34132319620817004X,13800138000,"
                                          "娄庄镇,低保,公示,2026-11-27")
    response = await upload(admin_client, "/admin/registry/import", token, "名单.csv",
                            changed.encode())
    html = await response.text()
    assert "新申请 <strong>0</strong> 份，有变化 <strong>1</strong> 份" in html
    assert "环节：审核 → 公示" in html and "环节日期：2026-11-20 → 2026-11-27" in html
    assert await count(settings, StatusChange) == 10  # one per application, from loading

    unchanged = await upload(admin_client, "/admin/registry/import", token, "名单.csv",
                             demo_csv())
    html = await unchanged.text()
    assert "名单和系统里的一样，不需要导入" in html and 'name="upload"' not in html


async def test_an_older_list_needs_confirming_before_it_undoes_a_stage_set_here(
        admin_client: Any, settings: Settings) -> None:
    """A caseworker moved LZ-2026-0017 to 公示; an older list (another row edited) comes
    in. The preview lists the step back apart, to be ticked; untouched, the import
    leaves it at 公示 and nothing announces 审核. Ticked, it is imported and announced."""
    ids = await load_demo(settings)
    app_id = ids["LZ-2026-0017"]
    token = await signed_in(admin_client, settings, "caseworker")
    today = utcnow().astimezone(CHINA).date()
    await post(admin_client, f"/admin/registry/applications/{app_id}/stage", token,
               stage="公示", stage_date=today.isoformat(), next_step="在村里公示7天")
    older = demo_csv().decode().replace("请在12月20日前到村委会补交收入证明", "请补交收入证明")

    async def preview() -> str:
        response = await upload(admin_client, "/admin/registry/import", token, "旧名单.csv",
                                older.encode())
        assert response.status == 200
        return await response.text()

    html = await preview()
    assert "有变化 <strong>1</strong> 份" in html and "要您确认 1 份" in html
    assert "环节会从“公示”退回“审核”（“公示”是经办人员 caseworker 在系统里改的）" in html
    assert 'name="confirm" value="公示:LZ-2026-0017" form="registry-confirm"' in html
    assert 'id="registry-confirm"' in html
    result = await job_result(admin_client, await post(
        admin_client, "/admin/registry/import/confirm", token, upload=upload_token(html)))
    assert "导入完成" in result and "更新 <strong>1</strong> 条" in result
    assert "环节会从“公示”退回“审核”" in result and "要确认后才导入" in result
    (app,) = await rows_of(settings, select(Application).where(Application.id == app_id))
    assert app.stage == "公示" and app.changed_by == "staff:caseworker"
    db = Database(settings.database_url)
    try:
        await plan(db, quiet=NEVER_QUIET)
    finally:
        await db.dispose()
    stages = [m.params["stage"] for m in await rows_of(settings, select(OutboxMessage).where(
        OutboxMessage.kind == "status_change", OutboxMessage.beneficiary_id ==
        app.beneficiary_id))]
    assert stages == ["公示"]
    (entry,) = await audit(settings, "registry_import")
    assert entry.after["held"] == 1 and "confirmed" not in entry.after

    # ticked: imported, recorded and announced
    html = await preview()
    assert "有变化 <strong>0</strong> 份" in html and "要您确认 1 份" in html
    result = await job_result(admin_client, await post(
        admin_client, "/admin/registry/import/confirm", token, upload=upload_token(html),
        confirm="公示:LZ-2026-0017"))
    assert "更新 <strong>1</strong> 条" in result and "要确认后才导入" not in result
    (app,) = await rows_of(settings, select(Application).where(Application.id == app_id))
    assert app.stage == "审核" and app.changed_by == "import:staff:caseworker"
    history = await rows_of(settings, select(StatusChange.from_stage, StatusChange.to_stage)
                            .where(StatusChange.application_id == app_id)
                            .order_by(StatusChange.id))
    assert [tuple(h) for h in history][-1] == ("公示", "审核")
    entry = (await audit(settings, "registry_import"))[-1]
    assert entry.after["confirmed"] == ["LZ-2026-0017"]
    # a forged or malformed confirmation confirms nothing
    assert registry_confirmed(["公示:", "快批了:LZ-1", "x" * 50, "审核:LZ-2026-0009"]) == {
        "LZ-2026-0009": "审核"}


async def test_a_file_that_cannot_be_read_is_refused_as_a_whole(admin_client: Any,
                                                               settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "caseworker")
    response = await upload(admin_client, "/admin/registry/import", token, "名单.csv",
                            "姓名,身份证号\n张三,1\n".encode())
    html = await response.text()
    assert "这个文件不能导入" in html and "缺少这些列" in html
    wrong = await upload(admin_client, "/admin/registry/import", token, "名单.pdf", b"%PDF")
    assert wrong.status == 400 and "只能上传 .csv 或 .xlsx" in await wrong.text()
    missing = await post(admin_client, "/admin/registry/import", token)
    assert missing.status == 400 and "请先选择一个文件" in await missing.text()


async def test_an_upload_belongs_to_the_session_that_made_it(aiohttp_client: Any,
                                                             settings: Settings) -> None:
    one = await aiohttp_client(mounted(settings))
    two = await aiohttp_client(mounted(settings))
    token_one = await signed_in(one, settings, "caseworker", "li")
    token_two = await signed_in(two, settings, "caseworker", "wang")
    html = await (await upload(one, "/admin/registry/import", token_one, "名单.csv",
                               demo_csv())).text()
    file_token = upload_token(html)
    stolen = await post(two, "/admin/registry/import/confirm", token_two, upload=file_token)
    assert "找不到要导入的文件" in await follow(two, stolen)
    assert await count(settings, Application) == 0
    # cancelling deletes the file; confirming afterwards finds nothing
    cancelled = await post(one, "/admin/registry/import/cancel", token_one, upload=file_token)
    assert "什么也没有导入" in await follow(one, cancelled)
    assert not (default_root() / file_token).exists()
    late = await post(one, "/admin/registry/import/confirm", token_one, upload=file_token)
    assert "找不到要导入的文件" in await follow(one, late)
    assert await count(settings, Application) == 0


async def test_an_upload_expires_after_an_hour(admin_client: Any, settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "caseworker")
    html = await (await upload(admin_client, "/admin/registry/import", token, "名单.csv",
                               demo_csv())).text()
    file_token = upload_token(html)
    meta = default_root() / file_token / "meta.json"
    data = json.loads(meta.read_text(encoding="utf-8"))
    meta.write_text(json.dumps({**data, "created": time.time() - 3601}), encoding="utf-8")
    response = await post(admin_client, "/admin/registry/import/confirm", token,
                          upload=file_token)
    assert "1小时" in await follow(admin_client, response)
    assert await count(settings, Application) == 0
    assert not (default_root() / file_token).exists()


async def test_without_the_secret_key_the_import_says_so(aiohttp_client: Any,
                                                         settings: Settings) -> None:
    client = await aiohttp_client(mounted(settings.with_overrides(secret_key=None)))
    token = await signed_in(client, settings, "caseworker")
    response = await upload(client, "/admin/registry/import", token, "名单.csv", demo_csv())
    assert response.status == 503
    assert "HUIMIN_SECRET_KEY" in await response.text()


# ----- the list -------------------------------------------------------------------------
async def test_list_shows_only_masked_numbers_and_records_the_views(
        admin_client: Any, settings: Settings) -> None:
    await load_demo(settings)
    await signed_in(admin_client, settings, "caseworker")
    response = await admin_client.get("/admin/registry")
    assert response.status == 200
    html = await response.text()
    assert "LZ-2026-0017" in html and "张*兰" in html and "3413**********004X" in html
    assert "共 10 份申请" in html
    assert "张桂兰" not in html  # the list shows masked names only
    assert_no_clear_numbers(html)
    # One entry for the page view, naming the ten people and applications shown (it was
    # one entry per person: ten in the same second).
    (view,) = await audit(settings, "personal_view")
    assert view.username == "caseworker" and view.target_type == "beneficiary"
    assert view.after["reason"] == "救助对象列表第1页"
    assert len(view.after["beneficiaries"]) == 10
    assert "LZ-2026-0017" in view.after["records"] and len(view.after["records"]) == 10
    await admin_client.get("/admin/registry?stage=已批准")
    views = await audit(settings, "personal_view")
    assert len(views) == 2 and len(views[1].after["beneficiaries"]) == 3
    await admin_client.get("/admin/registry?q=没有这个人")
    assert len(await audit(settings, "personal_view")) == 2  # nobody shown, nothing seen


async def test_list_search_and_filters(admin_client: Any, settings: Settings) -> None:
    await load_demo(settings)
    await signed_in(admin_client, settings, "caseworker")
    html = await (await admin_client.get("/admin/registry?q=娄庄")).text()
    assert "共 4 份申请" in html and "HW-2026" not in html
    html = await (await admin_client.get("/admin/registry?q=hw-2026-0035")).text()
    assert "共 1 份申请" in html and "HW-2026-0035" in html
    html = await (await admin_client.get("/admin/registry?programme=低保&stage=已批准")).text()
    assert "共 1 份申请" in html and "LZ-2026-0009" in html
    html = await (await admin_client.get("/admin/registry?q=100%25")).text()
    assert "没有符合条件的申请" in html


async def test_a_clerk_finds_the_person_who_phones_in(admin_client: Any,
                                                     settings: Settings) -> None:
    """By name, by the full ID number (any case of the X, with spaces) or by the phone
    number: the numbers through their keyed hashes. The search is sent by POST (no
    number in a URL) and audited with the searched value masked."""
    await load_demo(settings)
    token = await signed_in(admin_client, settings, "caseworker")

    async def search(q: str) -> str:
        response = await post(admin_client, "/admin/registry", token, q=q)
        assert response.status == 200
        html = await response.text()
        assert_no_clear_numbers(html)
        return html

    for typed in ("张桂兰", "桂兰", DEMO_ID, DEMO_ID.lower(), "341323 19620817 004x",
                  "13800138000", "138-0013-8000"):
        html = await search(typed)
        assert "共 1 份申请" in html and "LZ-2026-0017" in html, typed
    html = await search("王德福")
    assert "共 1 份申请" in html and "LZ-2026-0009" in html and "LZ-2026-0017" not in html
    html = await search("341323195503120033")  # a wrong check digit
    assert "共 0 份申请" in html and "校验位不对" in html
    html = await search("13900000000")  # nobody's phone
    assert "共 0 份申请" in html and "要输入完整的号码" in html
    html = await search("娄庄")  # townships and application numbers as before
    assert "共 4 份申请" in html
    # a search by ID number shows the number masked, never in the box or a link
    html = await search(DEMO_ID)
    assert "按身份证号查找“3413**********004X”" in html

    searches = await audit(settings, "registry_search")
    assert [s.after["by"] for s in searches[:3]] == ["姓名、申请编号或乡镇"] * 2 + ["身份证号"]
    assert searches[0].after["searched"] == "张*兰" and searches[0].after["found"] == 1
    assert searches[2].after["searched"] == "3413**********004X"
    assert searches[5].after["by"] == "手机号"
    assert searches[5].after["searched"] == "138****8000"
    stored = json.dumps([[s.before, s.after] for s in await rows_of(
        settings, select(AuditEntry))], ensure_ascii=False)
    for secret in ("张桂兰", "桂兰", DEMO_ID, DEMO_ID.lower(), "13800138000", "0013-8000",
                   "341323195503120033"):
        assert secret not in stored, secret
    views = await audit(settings, "personal_view")
    assert "按身份证号查找 3413**********004X" in views[2].after["reason"]


# ----- one application --------------------------------------------------------------------
async def test_application_page_records_the_view(admin_client: Any,
                                                 settings: Settings) -> None:
    ids = await load_demo(settings)
    await signed_in(admin_client, settings, "caseworker")
    response = await admin_client.get(f"/admin/registry/applications/{ids['LZ-2026-0017']}")
    assert response.status == 200
    html = await response.text()
    assert "张桂兰" in html and "3413**********004X" in html and "138****8000" in html
    assert "新申请：" in html and "导入名单" in html
    assert_no_clear_numbers(html)
    (view,) = await audit(settings, "personal_view")
    assert view.after["reason"] == "申请 LZ-2026-0017"
    logged = await rows_of(settings, select(AccessLogEntry).where(
        AccessLogEntry.action == "staff_view"))
    assert [e.actor for e in logged] == ["staff:caseworker"]
    missing = await admin_client.get("/admin/registry/applications/99999")
    assert missing.status == 404


async def test_stage_change_is_a_status_change_the_notifier_announces(
        admin_client: Any, settings: Settings) -> None:
    ids = await load_demo(settings)
    app_id = ids["LZ-2026-0017"]
    token = await signed_in(admin_client, settings, "caseworker")
    today = utcnow().astimezone(CHINA).date()
    response = await post(admin_client, f"/admin/registry/applications/{app_id}/stage", token,
                          stage="公示", stage_date=today.isoformat(),
                          next_step="在村里公示7天", recheck_due="")
    page = await follow(admin_client, response)
    assert "环节已改为“公示”" in page and "在村里公示7天" in page
    changes = await rows_of(settings, select(StatusChange).where(
        StatusChange.application_id == app_id).order_by(StatusChange.id))
    assert [(c.from_stage, c.to_stage, c.source) for c in changes] == [
        (None, "审核", "import"), ("审核", "公示", "staff:caseworker")]
    (entry,) = await audit(settings, "registry_stage")
    assert entry.before["stage"] == "审核" and entry.after["stage"] == "公示"
    assert entry.after["next_step"] == "在村里公示7天" and entry.target_id == "LZ-2026-0017"
    assert entry.after["status_change"] == changes[-1].id

    db = Database(settings.database_url)
    try:
        report = await plan(db, quiet=NEVER_QUIET)
        assert report.queued["status_change"] == 1
        async with db.session() as session:
            message = await session.scalar(select(OutboxMessage).where(
                OutboxMessage.kind == "status_change"))
        assert message is not None and message.params["stage"] == "公示"
    finally:
        await db.dispose()

    # the same stage with a new note: saved, not announced
    await post(admin_client, f"/admin/registry/applications/{app_id}/stage", token,
               stage="公示", stage_date=today.isoformat(), next_step="公示到月底")
    assert await count(settings, StatusChange) == 11
    assert len(await audit(settings, "registry_stage")) == 2


async def test_stage_form_is_checked(admin_client: Any, settings: Settings) -> None:
    ids = await load_demo(settings)
    app_id = ids["LZ-2026-0017"]
    token = await signed_in(admin_client, settings, "caseworker")
    tomorrow = utcnow().astimezone(CHINA).date() + timedelta(days=2)
    for data, message in (({"stage": "快批了", "stage_date": "2026-11-20"}, "请选择环节"),
                          ({"stage": "公示", "stage_date": "明天"}, "环节日期看不懂"),
                          ({"stage": "公示", "stage_date": tomorrow.isoformat()},
                           "不能晚于今天")):
        response = await post(admin_client, f"/admin/registry/applications/{app_id}/stage",
                              token, **data)
        assert response.status == 400
        assert message in await response.text()
    assert await count(settings, StatusChange) == 10
    assert await audit(settings, "registry_stage") == []
    forged = await admin_client.post(f"/admin/registry/applications/{app_id}/stage",
                                     data={"stage": "公示", "stage_date": "2026-11-20"},
                                     allow_redirects=False)
    assert forged.status == 403
    assert await count(settings, StatusChange) == 10


DELEGATE = "oDelegateFamily0123456789abcd"
OTHER = "oSecondFamilyMember987654wxyz"


async def test_grant_and_revoke_a_delegate(admin_client: Any, settings: Settings) -> None:
    ids = await load_demo(settings)
    app_id = ids["LZ-2026-0017"]
    base = f"/admin/registry/applications/{app_id}"
    token = await signed_in(admin_client, settings, "caseworker")
    page = await follow(admin_client, await post(admin_client, base + "/delegate", token,
                                                 openid=DELEGATE))
    assert "已授权微信号 o****abcd" in page
    assert DELEGATE not in page
    (binding,) = await rows_of(settings, select(Binding))
    assert (binding.openid, binding.role, binding.granted_by) == (
        DELEGATE, "delegate", "staff:caseworker")

    # a second delegate replaces the first
    page = await follow(admin_client, await post(admin_client, base + "/delegate", token,
                                                 openid=OTHER))
    assert "原来授权的家人已经取消" in page
    bindings = await rows_of(settings, select(Binding).order_by(Binding.id))
    assert [(b.openid, b.revoked_by) for b in bindings] == [
        (DELEGATE, "staff:caseworker"), (OTHER, None)]

    refused = await post(admin_client, base + "/delegate", token, openid="not an openid!")
    assert refused.status == 400 and "微信号（openid）不对" in await refused.text()
    elsewhere = await post(admin_client,
                           f"/admin/registry/applications/{ids['LZ-2026-0009']}/delegate",
                           token, openid=OTHER)
    assert elsewhere.status == 400 and "已经绑定了另一位救助对象" in await elsewhere.text()

    page = await follow(admin_client, await post(admin_client, base + "/revoke", token,
                                                 binding_id=str(bindings[1].id)))
    assert "已撤销授权家人的微信绑定" in page
    bindings = await rows_of(settings, select(Binding).order_by(Binding.id))
    assert all(b.revoked_at is not None for b in bindings)
    assert bindings[1].revoked_by == "staff:caseworker"
    again = await post(admin_client, base + "/revoke", token, binding_id=str(bindings[1].id))
    assert "已经撤销过了" in await follow(admin_client, again)

    logged = await rows_of(settings, select(AccessLogEntry.actor, AccessLogEntry.action)
                           .where(AccessLogEntry.actor == "staff:caseworker")
                           .order_by(AccessLogEntry.id))
    actions = [a for _, a in logged]
    assert actions.count("delegate_granted") == 2 and actions.count("binding_revoked") == 1
    grants = await audit(settings, "delegate_grant")
    assert len(grants) == 2
    assert grants[1].before["delegates"][0]["openid"] == "o****abcd"
    (revoke,) = await audit(settings, "binding_revoke")
    assert revoke.before["revoked_at"] is None and revoke.after["revoked_by"] == \
        "staff:caseworker"
    everything = json.dumps([g.after for g in grants] + [revoke.before], ensure_ascii=False)
    assert DELEGATE not in everything and OTHER not in everything


async def test_a_family_member_is_granted_by_the_code_the_bot_gave_them(
        admin_client: Any, aiohttp_client: Any, settings: Settings) -> None:
    """The family member sends 我的授权码 to the bot and reads the code to the clerk, who
    types it (any case, with a space) instead of an openid; then 查进度 from their WeChat
    shows the application. The code is single use; wrong codes are refused, counted and
    limited; the grant is audited with the openid masked."""
    from huimin.registry import grants as grant_codes
    from huimin.wiring.apps import create_app
    from tests.wechat import reply_text, signed_query, text_xml

    ids = await load_demo(settings)
    base = f"/admin/registry/applications/{ids['LZ-2026-0017']}"
    bot = await aiohttp_client(create_app(settings))

    async def say(text: str) -> str:
        response = await bot.post("/wechat", params=signed_query(),
                                  data=text_xml(text, openid=DELEGATE))
        return reply_text(await response.text())

    code = re.search(r"您的授权码：(\w+)", await say("我的授权码")).group(1)  # type: ignore[union-attr]
    token = await signed_in(admin_client, settings, "caseworker")
    form = await (await admin_client.get(base)).text()
    assert 'name="code"' in form and "我的授权码" in form
    typed = f"{code[:3].lower()} {code[3:]}"
    page = await follow(admin_client, await post(admin_client, base + "/delegate", token,
                                                 code=typed))
    assert "授权码对上了" in page and "已授权微信号 o****abcd" in page
    assert DELEGATE not in page
    (binding,) = await rows_of(settings, select(Binding))
    assert (binding.openid, binding.role, binding.granted_by) == (
        DELEGATE, "delegate", "staff:caseworker")
    assert "【低保】" in await say("查进度")
    (grant,) = await audit(settings, "delegate_grant")
    assert grant.after["by"] == "授权码" and grant.after["grant_code"] is not None
    assert DELEGATE not in json.dumps(grant.after) and code not in json.dumps(grant.after)

    # used once: typing it again (for another person) is refused
    other = f"/admin/registry/applications/{ids['LZ-2026-0009']}/delegate"
    refused = await post(admin_client, other, token, code=code)
    assert refused.status == 400 and "授权码不对，或者已经过期、用过了" in await refused.text()
    assert len(await rows_of(settings, select(Binding))) == 1
    # wrong codes are counted; after WRONG_PER_HOUR of them even a right one waits
    fresh = re.search(r"您的授权码：(\w+)", await say("授权码")).group(1)  # type: ignore[union-attr]
    for _ in range(grant_codes.WRONG_PER_HOUR - 1):
        await post(admin_client, other, token, code="2345AB")
    held = await post(admin_client, other, token, code=fresh)
    assert held.status == 400 and "输错的授权码太多了" in await held.text()
    wrong = await rows_of(settings, select(AccessLogEntry).where(
        AccessLogEntry.action == "grant_code_wrong"))
    assert len(wrong) == grant_codes.WRONG_PER_HOUR


async def test_a_binding_of_another_person_cannot_be_revoked_here(
        admin_client: Any, settings: Settings) -> None:
    ids = await load_demo(settings)
    token = await signed_in(admin_client, settings, "caseworker")
    await post(admin_client, f"/admin/registry/applications/{ids['LZ-2026-0017']}/delegate",
               token, openid=DELEGATE)
    (binding,) = await rows_of(settings, select(Binding))
    response = await post(admin_client,
                          f"/admin/registry/applications/{ids['LZ-2026-0009']}/revoke",
                          token, binding_id=str(binding.id))
    assert "没有找到这个绑定" in await follow(admin_client, response)
    (binding,) = await rows_of(settings, select(Binding))
    assert binding.revoked_at is None


async def test_application_page_shows_the_messages_sent(admin_client: Any,
                                                        settings: Settings) -> None:
    ids = await load_demo(settings)
    (app,) = await rows_of(settings, select(Application).where(
        Application.number == "LZ-2026-0017"))
    db = Database(settings.database_url)
    async with db.session() as session:
        session.add(OutboxMessage(key="t:1", kind="status_change",
                                  beneficiary_id=app.beneficiary_id, params={},
                                  state="failed", channel="sms", attempts=6,
                                  last_error="gave up: console: down"))
        session.add(OutboxMessage(key="t:2", kind="payout", beneficiary_id=app.beneficiary_id,
                                  params={}, state="delivered", channel="wechat",
                                  sent_at=utcnow(), delivered_at=utcnow()))
    await db.dispose()
    await signed_in(admin_client, settings, "caseworker")
    html = await (await admin_client.get(
        f"/admin/registry/applications/{ids['LZ-2026-0017']}")).text()
    assert "办理进度通知" in html and "失败" in html and "试了多次都没发出去" in html
    assert "到账提醒" in html and "已送达" in html and "微信" in html


# ----- import jobs and hostile files ----------------------------------------------------
def many_rows(n: int) -> bytes:
    """The demo list and ``n`` more good applications."""
    extra = "".join(
        f"BJ-2026-{i:05d},测试{'甲乙丙丁戊己庚辛壬癸'[i % 10]},{an_id(i)},,娄庄镇,低保,审核,"
        f"2026-11-20,,,\n"
        for i in range(n))
    return demo_csv(extra)


def an_id(i: int) -> str:
    first17 = f"34132319{50 + i // 500:02d}0101{(i % 500) * 2:03d}"[:17]
    return first17 + id_check_digit(first17)


async def test_an_xlsx_bomb_upload_gets_a_clear_400(admin_client: Any,
                                                    settings: Settings) -> None:
    token = await signed_in(admin_client, settings, "caseworker")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("xl/sharedStrings.xml", "w", force_zip64=True) as member:
            for _ in range(20):
                member.write(b"A" * 2**20)  # 20 MB that deflate 1,000 times
    for path in ("/admin/registry/import", "/admin/payouts/import"):
        response = await upload(admin_client, path, token, "名单.xlsx", out.getvalue())
        assert response.status == 400
        assert "解压后太大" in await response.text()
    assert not list(default_root().iterdir())  # nothing kept


async def test_a_job_whose_process_stopped_is_interrupted_and_can_be_continued(
        aiohttp_client: Any, settings: Settings) -> None:
    # A job row as a killed process leaves it: "saving", its heartbeat long stopped.
    store = UploadStore()
    saved = store.save("applications", "gone-session", "名单.csv", demo_csv())
    claimed = store.claim(saved.token, "applications", "gone-session")
    assert claimed is not None
    now = utcnow()
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            job = ImportJob(kind="applications", filename="名单.csv", upload=claimed.token,
                            state="saving", runs=1, total=10, added=4, username="caseworker",
                            runner="gone:1", created_at=now - timedelta(minutes=10),
                            started_at=now - timedelta(minutes=10),
                            heartbeat_at=now - timedelta(minutes=5))
            session.add(job)
            await session.flush()
            job_id = job.id
    finally:
        await db.dispose()
    client = await aiohttp_client(mounted(settings))
    token = await signed_in(client, settings, "caseworker")
    page = await client.get(f"/admin/imports/{job_id}")
    html = await page.text()
    assert "导入被中断了" in html and "继续导入" in html and "Refresh" not in page.headers
    assert "已处理 <strong>4</strong> / 10 行" in html

    restarted = await post(client, f"/admin/imports/{job_id}/restart", token)
    result = await job_result(client, restarted)
    assert "导入完成" in result and "新增 <strong>10</strong> 条" in result
    assert "这是第2次导入这个文件" in result
    assert await count(settings, Application) == 10
    assert store.claimed_path(claimed.token) is None  # deleted once the job ended
    again = await post(client, f"/admin/imports/{job_id}/restart", token)
    assert "没有中断" in await follow(client, again)
    assert await count(settings, Application) == 10


async def test_a_job_stopped_with_its_process_is_shown_interrupted_everywhere(
        aiohttp_client: Any, settings: Settings) -> None:
    first = await aiohttp_client(mounted(settings))
    token = await signed_in(first, settings, "caseworker")
    html = await (await upload(first, "/admin/registry/import", token, "名单.csv",
                               many_rows(2000))).text()
    confirmed = await post(first, "/admin/registry/import/confirm", token,
                           upload=upload_token(html))
    assert confirmed.status == 303  # at once, with the job still to run
    location = confirmed.headers["Location"]
    await first.close()  # the admin process stops while the job runs

    second = await aiohttp_client(mounted(settings))  # another (or a restarted) process
    token = await signed_in(second, settings, "caseworker", username="another")
    page = await second.get(location)
    assert "导入被中断了" in await page.text()
    restarted = await post(second, location + "/restart", token)
    result = await job_result(second, restarted)
    assert "导入完成" in result and "已处理 <strong>2010</strong> / 2010 行" in result
    assert await count(settings, Application) == 2010
    entries = await audit(settings, "registry_import")
    assert entries[-1].username == "caseworker" and entries[-1].after["state"] == "finished"
