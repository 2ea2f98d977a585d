"""发放记录: importing a payout list (preview, confirm), queueing the reminders, months."""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import func, select

from admin.models import AuditEntry
from notify.models import OutboxMessage, PayoutLine
from tests.admin.conftest import (
    DEMO,
    assert_no_clear_numbers,
    follow,
    job_result,
    load_demo,
    post,
    rows_of,
    signed_in,
    upload,
    upload_token,
)

BAD_ROWS = (
    "马大海,341323196001010014,低保,2026-11,500,\n"  # nobody of that name and ID
    "王德福,341323195503120032,低保,2026年11月,650,\n"  # the same as line 2
    "赵子轩,341323201204150053,孤儿基本生活费,2026.1,1460,\n"  # Excel ate the month
)


async def test_with_nothing_imported_there_is_no_plan_button(admin_client: Any,
                                                              settings: Any) -> None:
    """No payout list yet: an empty-state message, not "all reminders planned" beside a
    button that would plan nothing."""
    await load_demo(settings)
    await signed_in(admin_client, settings, "caseworker")
    html = await (await admin_client.get("/admin/payouts")).text()
    assert "还没有导入过发放名单，所以还没有到账提醒可以排" in html
    assert "都已经排过了" not in html and "都排过了" not in html
    assert 'action="/admin/payouts/plan"' not in html
    await load_demo_payouts(settings)
    html = await (await admin_client.get("/admin/payouts")).text()
    assert 'action="/admin/payouts/plan"' in html and "条发放记录还没有排提醒" in html


async def load_demo_payouts(settings: Any) -> None:
    from huimin.db import Database
    from huimin.personal import Vault
    from notify.payouts import import_payouts

    db = Database(settings.database_url)
    try:
        report = await import_payouts(db, Vault(settings.secret_key or ""),
                                      DEMO / "payouts.csv")
        assert not report.errors
    finally:
        await db.dispose()


def payouts_csv(extra: str = "") -> bytes:
    return ((DEMO / "payouts.csv").read_text(encoding="utf-8") + extra).encode()


async def lines(settings: Any) -> list[PayoutLine]:
    return await rows_of(settings, select(PayoutLine).order_by(PayoutLine.id))


async def test_payout_list_preview_confirm_and_plan(admin_client: Any, settings: Any) -> None:
    await load_demo(settings)
    token = await signed_in(admin_client, settings, "caseworker")
    response = await upload(admin_client, "/admin/payouts/import", token, "11月发放.csv",
                            payouts_csv(BAD_ROWS))
    assert response.status == 200
    html = await response.text()
    assert "新的发放记录 <strong>3</strong> 条（共 2,890.00 元）" in html
    assert "有问题 <strong>3</strong> 行" in html
    assert "第5行" in html and "没有找到这个人（身份证号和姓名对不上）" in html
    assert "第6行" in html and "重复（第2行已出现）" in html
    assert "第7行" in html and "发放月份" in html
    assert "王*福" in html
    assert_no_clear_numbers(html)
    assert await lines(settings) == []  # nothing saved before the confirm

    confirmed = await post(admin_client, "/admin/payouts/import/confirm", token,
                           upload=upload_token(html))
    result = await job_result(admin_client, confirmed)
    assert "导入完成" in result and "新增 <strong>3</strong> 条" in result
    assert "有问题没导入 <strong>3</strong> 行" in result and "第5行" in result
    assert "排队到账提醒" in result
    assert_no_clear_numbers(result)
    months = await (await admin_client.get("/admin/payouts")).text()
    assert "2026年11月" in months and "2,890.00" in months
    saved = await lines(settings)
    assert len(saved) == 3 and all(line.planned_at is None for line in saved)
    (entry,) = await rows_of(settings, select(AuditEntry).where(
        AuditEntry.action == "payout_import"))
    assert entry.after["added"] == 3 and len(entry.after["errors"]) == 3
    assert "341323195503120032" not in json.dumps(entry.after, ensure_ascii=False)

    planned = await post(admin_client, "/admin/payouts/plan", token)
    page = await follow(admin_client, planned)
    assert "到账提醒 3 条" in page
    outbox = await rows_of(settings, select(OutboxMessage).where(
        OutboxMessage.kind == "payout"))
    assert len(outbox) == 3 and {m.state for m in outbox} == {"queued"}
    assert all(line.planned_at is not None for line in await lines(settings))
    (entry,) = await rows_of(settings, select(AuditEntry).where(
        AuditEntry.action == "reminder_plan"))
    assert entry.after["queued"]["payout"] == 3

    again = await follow(admin_client, await post(admin_client, "/admin/payouts/plan", token))
    message = re.search(r'class="flash flash-ok" role="status">([^<]*)<', again)
    assert message and "到账提醒" not in message.group(1), message
    assert len(await rows_of(settings, select(OutboxMessage).where(
        OutboxMessage.kind == "payout"))) == 3  # planning twice queues nothing new


async def test_month_page_lists_masked_lines_and_records_the_views(
        admin_client: Any, settings: Any) -> None:
    await load_demo(settings, payouts=True)
    await signed_in(admin_client, settings, "caseworker")
    page = await admin_client.get("/admin/payouts")
    html = await page.text()
    assert "2026年11月" in html and "<strong>3</strong>" in html  # 3 not yet planned
    month = await admin_client.get("/admin/payouts/2026-11")
    assert month.status == 200
    html = await month.text()
    assert "王*福" in html and "3413**********0032" in html and "650.00" in html
    assert "还没排" in html
    assert_no_clear_numbers(html)
    views = await rows_of(settings, select(AuditEntry).where(
        AuditEntry.action == "personal_view"))
    # one entry for the page, naming the three people on it
    assert len(views) == 1 and "2026-11 发放名单" in views[0].after["reason"]
    assert len(views[0].after["beneficiaries"]) == 3
    for missing in ("2026-13", "2025-01", "latest"):
        assert (await admin_client.get(f"/admin/payouts/{missing}")).status == 404


async def test_cancelled_payout_list_is_not_imported(admin_client: Any,
                                                     settings: Any) -> None:
    await load_demo(settings)
    token = await signed_in(admin_client, settings, "caseworker")
    html = await (await upload(admin_client, "/admin/payouts/import", token, "发放.csv",
                               payouts_csv())).text()
    response = await post(admin_client, "/admin/payouts/import/cancel", token,
                          upload=upload_token(html))
    assert "什么也没有导入" in await follow(admin_client, response)
    assert await lines(settings) == []
    count = await rows_of(settings, select(func.count()).select_from(AuditEntry).where(
        AuditEntry.action == "payout_import"))
    assert count == [0]
