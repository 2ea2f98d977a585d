"""提醒: counts, failures and 重试, what waits for the morning, opt-outs."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from admin.models import AuditEntry
from huimin.clock import utcnow
from huimin.db import Database
from huimin.personal import Vault
from huimin.registry.models import AccessLogEntry, Application, Binding
from notify.models import OptOut, OutboxMessage
from tests.admin.conftest import (
    DEMO_PHONE,
    assert_no_clear_numbers,
    follow,
    load_demo,
    post,
    rows_of,
    signed_in,
)

OPENID = "oSelfBoundOpenid0123456789wxyz"


async def person_of(settings: Any, number: str) -> int:
    (app,) = await rows_of(settings, select(Application).where(Application.number == number))
    return app.beneficiary_id


async def add_messages(settings: Any, person: int) -> dict[str, int]:
    """A few outbox rows in every state; key -> id."""
    now = utcnow()
    rows = [
        ("a", "payout", "failed", "sms", "gave up: tencent: timeout", 6),
        ("b", "payout", "failed", "sms", "gave up: tencent: timeout", 6),
        ("c", "status_change", "failed", "wechat", "unfollowed", 1),
        ("d", "recheck_due", "queued", None, None, 0),
        ("e", "payout", "delivered", "wechat", None, 1),
        ("f", "payout", "skipped", None, "opted out", 0),
    ]
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            for key, kind, state, channel, error, attempts in rows:
                session.add(OutboxMessage(
                    key=key, kind=kind, beneficiary_id=person, params={}, state=state,
                    channel=channel, last_error=error, attempts=attempts,
                    held_for_quiet_hours=key == "d",
                    not_before=now + timedelta(hours=3) if key == "d" else now,
                    sent_at=now if state == "delivered" else None,
                    delivered_at=now if state == "delivered" else None))
        return {m.key: m.id for m in await rows_of(settings, select(OutboxMessage))}
    finally:
        await db.dispose()


async def outbox(settings: Any) -> dict[str, OutboxMessage]:
    return {m.key: m for m in await rows_of(settings, select(OutboxMessage))}


async def audit(settings: Any, action: str) -> list[AuditEntry]:
    return await rows_of(settings, select(AuditEntry).where(AuditEntry.action == action)
                         .order_by(AuditEntry.id))


async def test_reminders_page_counts_failures_and_quiet_hours(admin_client: Any,
                                                              settings: Any) -> None:
    await load_demo(settings)
    await add_messages(settings, await person_of(settings, "LZ-2026-0017"))
    await signed_in(admin_client, settings, "caseworker")
    response = await admin_client.get("/admin/reminders")
    assert response.status == 200
    html = await response.text()
    assert "<svg" in html and "提醒每天的数量（最近30天）" in html
    assert "试了多次都没发出去" in html and "gave up: tencent: timeout" in html
    assert "已取消关注公众号，又没有手机号" in html
    assert "夜间暂缓的提醒" in html and "复核提醒" in html
    assert "到账提醒" in html and "不发送" in html
    # the skipped payout reminder (never given a channel) says what happened, not 还没发
    rows = re.findall(r"<tr>\s*<td>([^<]*)</td>\s*<td>([^<]*)</td>", html)
    assert ("到账提醒", "没有发（本人已退订提醒）") in rows
    assert ("复核提醒", "还没发") in rows  # the queued one has no channel yet
    assert ("到账提醒", "还没发") not in rows


async def test_the_page_says_which_sms_provider_is_set_aside_why_and_until_when(
        admin_client: Any, settings: Any, aiohttp_server: Any) -> None:
    """A real worker meets Tencent's spent daily limit (through the protocol-checking
    fake): the reminders page names Tencent, the reason in plain words and the time it
    comes back, China time; a set-aside that has ended is not shown."""
    from content.load import load_county
    from huimin.settings import DEFAULT_COUNTY_FILE
    from notify.models import ProviderStatus
    from notify.rules import DatabasePhoneLimiter, PhoneCaps
    from notify.worker import Worker
    from tests.fakes.sms_servers import TencentFake
    from tests.notify.test_sms_providers import make_tencent

    await load_demo(settings)
    person = await person_of(settings, "LZ-2026-0017")
    fake = TencentFake(daily_limit=0)
    await fake.start(aiohttp_server)
    tencent = make_tencent(fake.base_url, templates={"payout": "1000001"})
    # 10:00 China time today: the limit resets at the coming midnight.
    now = utcnow().replace(hour=2, minute=0, second=0, microsecond=0)
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            session.add(OutboxMessage(key="p", kind="payout", beneficiary_id=person,
                                      params={"programme": "低保", "month": "11月",
                                              "amount": "625.00"}, not_before=now))
            session.add(ProviderStatus(provider="aliyun", kind="account", reason="old",
                                       aside_until=now - timedelta(hours=1)))
        worker = Worker.assemble(db, Vault(settings.secret_key or ""),
                                 load_county(DEFAULT_COUNTY_FILE), [tencent],
                                 DatabasePhoneLimiter(db, PhoneCaps()), clock=lambda: now)
        assert (await worker.run(once=True)).sent == 0
    finally:
        await tencent.close()
        await db.dispose()
    assert len(fake.send_calls) == 1
    await signed_in(admin_client, settings, "caseworker")
    html = await (await admin_client.get("/admin/reminders")).text()
    assert "短信通道暂停使用" in html
    assert "<strong>腾讯云短信</strong>暂停使用" in html
    assert "今天的短信发送量已经到了在短信平台设定的每天上限" in html
    tomorrow = now + timedelta(days=1)
    assert f"{tomorrow.month}月{tomorrow.day}日 00:00起自动恢复使用" in html
    assert "LimitExceeded.AppDailyLimit" in html
    assert "阿里云短信" not in html  # its set-aside has ended
    assert_no_clear_numbers(html)


async def test_no_provider_notice_when_none_is_set_aside(admin_client: Any,
                                                        settings: Any) -> None:
    await signed_in(admin_client, settings, "caseworker")
    html = await (await admin_client.get("/admin/reminders")).text()
    assert "短信通道暂停使用" not in html


async def test_retry_one_failed_message(admin_client: Any, settings: Any) -> None:
    await load_demo(settings)
    ids = await add_messages(settings, await person_of(settings, "LZ-2026-0017"))
    token = await signed_in(admin_client, settings, "caseworker")
    listing = await admin_client.get("/admin/reminders/failed")
    html = await listing.text()
    assert "共 3 条" in html and "LZ-2026-0017" in html
    page = await follow(admin_client, await post(admin_client, "/admin/reminders/retry", token,
                                                 message_id=str(ids["c"])))
    assert "已重新排队" in page
    messages = await outbox(settings)
    assert (messages["c"].state, messages["c"].attempts) == ("queued", 0)
    assert messages["a"].state == "failed"
    (entry,) = await audit(settings, "reminder_retry")
    assert entry.before["state"] == "failed" and entry.before["attempts"] == 1
    assert entry.after["state"] == "queued" and entry.after["attempts"] == 0
    # a message that is not failed is left alone
    page = await follow(admin_client, await post(admin_client, "/admin/reminders/retry", token,
                                                 message_id=str(ids["e"])))
    assert "没有改动" in page
    assert (await outbox(settings))["e"].state == "delivered"
    assert len(await audit(settings, "reminder_retry")) == 1


async def test_retry_all_failures_of_one_reason(admin_client: Any, settings: Any) -> None:
    await load_demo(settings)
    await add_messages(settings, await person_of(settings, "LZ-2026-0017"))
    token = await signed_in(admin_client, settings, "caseworker")
    listing = await admin_client.get("/admin/reminders/failed?reason=gave up: tencent: timeout")
    assert "共 2 条" in await listing.text()
    page = await follow(admin_client, await post(
        admin_client, "/admin/reminders/retry-reason", token,
        reason="gave up: tencent: timeout"))
    assert "已把 2 条" in page
    messages = await outbox(settings)
    assert messages["a"].state == messages["b"].state == "queued"
    assert messages["a"].attempts == 0 and messages["c"].state == "failed"
    (entry,) = await audit(settings, "reminder_retry")
    assert entry.after["count"] == 2 and sorted(entry.before["ids"]) == sorted(
        [messages["a"].id, messages["b"].id])
    nothing = await follow(admin_client, await post(
        admin_client, "/admin/reminders/retry-reason", token, reason="no such reason"))
    assert "没有这个原因的失败提醒了" in nothing


async def test_caseworker_opts_a_phone_out_and_in_again(admin_client: Any,
                                                        settings: Any) -> None:
    await load_demo(settings)
    person = await person_of(settings, "LZ-2026-0017")
    token = await signed_in(admin_client, settings, "caseworker")
    page = await follow(admin_client, await post(admin_client, "/admin/reminders/optouts/add",
                                                 token, number="LZ-2026-0017"))
    assert "已为 LZ-2026-0017 的申请人（手机 138****8000）退订短信提醒" in page
    assert_no_clear_numbers(page)
    (row,) = await rows_of(settings, select(OptOut))
    vault = Vault(settings.secret_key)
    assert (row.channel, row.address, row.source) == (
        "sms", vault.lookup_hash(DEMO_PHONE), "caseworker")
    (entry,) = await audit(settings, "optout_add")
    assert entry.after["address"] == "138****8000" and entry.after["application"] == \
        "LZ-2026-0017"
    listing = await (await admin_client.get("/admin/reminders/optouts")).text()
    assert "138****8000" in listing and "经办人员办理" in listing
    assert_no_clear_numbers(listing)
    views = await audit(settings, "personal_view")  # the page after the add, and this one
    assert [v.after["beneficiaries"] for v in views] == [[person]] * 2

    again = await follow(admin_client, await post(admin_client, "/admin/reminders/optouts/add",
                                                  token, number="LZ-2026-0017"))
    assert "以前已经退订了" in again
    unknown = await post(admin_client, "/admin/reminders/optouts/add", token, number="XX-1")
    assert unknown.status == 400 and "没有找到申请编号" in await unknown.text()
    no_phone = await post(admin_client, "/admin/reminders/optouts/add", token,
                          number="LZ-2026-0003")
    assert no_phone.status == 400 and "没有登记手机号" in await no_phone.text()

    page = await follow(admin_client, await post(
        admin_client, "/admin/reminders/optouts/remove", token, optout_id=str(row.id)))
    assert "已恢复 138****8000 的短信提醒" in page
    assert await rows_of(settings, select(OptOut)) == []
    (entry,) = await audit(settings, "optout_remove")
    assert entry.before["address"] == "138****8000" and entry.after is None
    logged = await rows_of(settings, select(AccessLogEntry.action).where(
        AccessLogEntry.actor == "staff:caseworker"))
    assert "sms_opted_out" in logged and "opted_in" in logged
    gone = await follow(admin_client, await post(
        admin_client, "/admin/reminders/optouts/remove", token, optout_id=str(row.id)))
    assert "已经不在了" in gone


async def test_wechat_opt_outs_show_a_masked_openid(admin_client: Any, settings: Any) -> None:
    await load_demo(settings)
    person = await person_of(settings, "LZ-2026-0009")
    db = Database(settings.database_url)
    async with db.session() as session:
        session.add(Binding(openid=OPENID, beneficiary_id=person, role="self",
                            granted_by=f"wechat:{OPENID}"))
        session.add(OptOut(channel="wechat", address=OPENID, source="wechat_menu"))
    await db.dispose()
    await signed_in(admin_client, settings, "caseworker")
    html = await (await admin_client.get("/admin/reminders/optouts")).text()
    assert "o****wxyz" in html and OPENID not in html
    assert "公众号里关闭" in html and "LZ-2026-0009" in html
    (app_id,) = await rows_of(settings, select(Application.id).where(
        Application.number == "LZ-2026-0009"))
    application = await (await admin_client.get(
        f"/admin/registry/applications/{app_id}")).text()
    assert "o****wxyz" in application and OPENID not in application
    assert "微信用户在公众号里自助办理" in application
