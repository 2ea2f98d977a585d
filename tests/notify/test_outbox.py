"""Planning and sending reminders: exactly once, never at night, never to who opted out."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from content.load import load_county
from huimin.db import Database
from huimin.personal import Vault
from huimin.registry.models import Beneficiary
from huimin.registry.queries import ApplicationRecord, bind, save_application
from huimin.settings import DEFAULT_COUNTY_FILE, Settings
from notify.models import LateReply, OptOut, OutboxMessage, PayoutLine
from notify.plan import plan
from notify.providers.console import ConsoleSms
from notify.receipts import opt_out
from notify.rules import DatabasePhoneLimiter, PhoneCaps
from notify.wechat import DatabaseTokenStore, WeChatApi
from notify.worker import Worker
from tests.conftest import SECRET_KEY
from tests.fakes.wechat_server import APPID, SECRET, FakeWeChat

VAULT = Vault(SECRET_KEY)
COUNTY = load_county(DEFAULT_COUNTY_FILE)
# 10:00 in Beijing (02:00 UTC) and 22:00 in Beijing (14:00 UTC).
DAYTIME = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
NIGHT = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
OPENID_GRANDMA = "oGrandma" + "x" * 20
OPENID_SON = "oSonSonSon" + "y" * 18
PEOPLE = [  # id number, name, phone
    ("34132319620817004X", "张桂兰", "13800138000"),
    ("341323195503120032", "王德福", "13800131001"),
]


async def add_person(db: Database, index: int, *, stage: str = "已批准",
                     recheck_due: date | None = None, number: str | None = None) -> int:
    id_number, name, phone = PEOPLE[index]
    async with db.session() as session:
        await save_application(session, VAULT, ApplicationRecord(
            number=number or f"T-{index}", name=name, id_number=id_number, phone=phone,
            township="娄庄镇", programme="低保", stage=stage, stage_date=date(2026, 11, 1),
            recheck_due=recheck_due, monthly_amount=Decimal("625")), source="test")
        person = await session.scalar(select(Beneficiary).where(Beneficiary.name == name))
        assert person is not None
        return person.id


async def add_payout(db: Database, beneficiary_id: int, month: str = "2026-11") -> None:
    async with db.session() as session:
        session.add(PayoutLine(beneficiary_id=beneficiary_id, programme="低保", month=month,
                               amount=Decimal("625.00")))


def console(tmp_path: Path) -> ConsoleSms:
    return ConsoleSms(tmp_path / "sms.jsonl")


def sent_sms(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "sms.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def worker(db: Database, tmp_path: Path, clock: datetime = DAYTIME, **options: Any) -> Worker:
    return Worker.assemble(db, VAULT, COUNTY, [options.pop("sms", None) or console(tmp_path)],
                           DatabasePhoneLimiter(db, PhoneCaps(spacing=timedelta(0))),
                           clock=lambda: clock, **options)


async def states(db: Database) -> dict[str, str]:
    async with db.session() as session:
        rows = (await session.execute(select(OutboxMessage.key, OutboxMessage.state))).all()
    return dict(rows)


async def test_planning_twice_queues_each_reminder_once(db: Database) -> None:
    person = await add_person(db, 0, recheck_due=date(2026, 12, 12))
    await add_payout(db, person)
    first = await plan(db, now=DAYTIME)
    again = await plan(db, now=DAYTIME)
    assert dict(first.queued) == {"payout": 1, "recheck_due": 1}
    assert sum(again.queued.values()) == 0
    assert set(await states(db)) == {f"payout:{person}:低保:2026-11",
                                     f"recheck:{person}:2026-12-12:14"}


async def test_planning_from_two_processes_at_once_makes_no_duplicates(db: Database,
                                                                       database_url: str) -> None:
    person = await add_person(db, 0, recheck_due=date(2026, 12, 3))
    other = Database(database_url)
    try:
        await asyncio.gather(plan(db, now=DAYTIME), plan(other, now=DAYTIME))
    finally:
        await other.dispose()
    assert list(await states(db)) == [f"recheck:{person}:2026-12-03:3"]


async def test_recheck_reminders_before_and_when_overdue(db: Database) -> None:
    person = await add_person(db, 0, recheck_due=date(2026, 12, 20))
    assert sum((await plan(db, now=DAYTIME)).queued.values()) == 0  # 19 days ahead
    await plan(db, now=DAYTIME + timedelta(days=6))  # 13 days ahead: the 14-day reminder
    await plan(db, now=DAYTIME + timedelta(days=17))  # 2 days ahead: the 3-day one
    await plan(db, now=DAYTIME + timedelta(days=25))  # overdue
    await plan(db, now=DAYTIME + timedelta(days=26))  # still overdue: nothing new
    assert sorted(await states(db)) == [
        f"recheck-overdue:{person}:2026-12-20", f"recheck:{person}:2026-12-20:14",
        f"recheck:{person}:2026-12-20:3"]


async def test_status_changes_are_announced_once_but_not_the_first_import(db: Database) -> None:
    await add_person(db, 0, stage="审核")
    await plan(db, now=DAYTIME)
    assert await states(db) == {}
    async with db.session() as session:
        await save_application(session, VAULT, ApplicationRecord(
            number="T-0", name="张桂兰", id_number=PEOPLE[0][0], phone=PEOPLE[0][2],
            township="娄庄镇", programme="低保", stage="公示", stage_date=date(2026, 11, 25)),
            source="test")
    report = await plan(db, now=DAYTIME)
    await plan(db, now=DAYTIME)
    assert dict(report.queued) == {"status_change": 1}
    assert len(await states(db)) == 1


async def test_worker_sends_sms_once_and_records_it(db: Database, tmp_path: Path) -> None:
    person = await add_person(db, 0)
    await add_payout(db, person)
    await plan(db, now=DAYTIME)
    summary = await worker(db, tmp_path).run(once=True)
    again = await worker(db, tmp_path).run(once=True)
    assert summary.sent == 1 and again.sent == 0
    [sms] = sent_sms(tmp_path)
    assert sms["to"] == "138****8000"
    assert sms["text"] == ("【示例县民政局】您的低保11月625.00元已到一卡通，请查收。"
                           "咨询0000-1234567，回TD退订")
    async with db.session() as session:
        row = await session.scalar(select(OutboxMessage))
    assert row is not None and row.state == "sent" and row.channel == "sms"
    assert row.provider == "console" and row.provider_message_id and row.attempts == 1


async def test_nothing_goes_out_at_night(db: Database, tmp_path: Path) -> None:
    person = await add_person(db, 0)
    await add_payout(db, person)
    report = await plan(db, now=NIGHT)
    assert report.held_for_quiet_hours == 1
    assert (await worker(db, tmp_path, clock=NIGHT).run(once=True)).sent == 0
    morning = datetime(2026, 12, 2, 0, 1, tzinfo=UTC)  # 08:01 in Beijing
    assert (await worker(db, tmp_path, clock=morning).run(once=True)).sent == 1


async def test_a_message_queued_by_day_and_sent_at_night_waits(db: Database,
                                                              tmp_path: Path) -> None:
    person = await add_person(db, 0)
    await add_payout(db, person)
    await plan(db, now=DAYTIME)
    summary = await worker(db, tmp_path, clock=NIGHT).run(once=True)
    assert summary.sent == 0 and summary.held_for_quiet_hours == 1
    async with db.session() as session:
        row = await session.scalar(select(OutboxMessage))
    assert row is not None and row.state == "queued" and row.attempts == 0


async def test_opt_out_is_honoured_at_send_time(db: Database, tmp_path: Path) -> None:
    person = await add_person(db, 0)
    await add_payout(db, person)
    await plan(db, now=DAYTIME)
    await opt_out(db, "sms", VAULT.lookup_hash(PEOPLE[0][2]), "caseworker")
    summary = await worker(db, tmp_path).run(once=True)
    assert summary.sent == 0 and summary.skipped == 1
    assert sent_sms(tmp_path) == []
    assert (await states(db)) == {f"payout:{person}:低保:2026-11": "skipped"}


async def test_per_phone_spacing_holds_the_second_message(db: Database, tmp_path: Path) -> None:
    person = await add_person(db, 0, recheck_due=date(2026, 12, 5))
    await add_payout(db, person)
    await plan(db, now=DAYTIME)
    spaced = Worker.assemble(db, VAULT, COUNTY, [console(tmp_path)],
                             DatabasePhoneLimiter(db, PhoneCaps(spacing=timedelta(seconds=30))),
                             clock=lambda: DAYTIME)
    summary = await spaced.run(once=True)
    assert summary.sent == 1 and summary.rescheduled == 1
    later = Worker.assemble(db, VAULT, COUNTY, [console(tmp_path)],
                            DatabasePhoneLimiter(db, PhoneCaps(spacing=timedelta(seconds=30))),
                            clock=lambda: DAYTIME + timedelta(seconds=31))
    assert (await later.run(once=True)).sent == 1
    assert len(sent_sms(tmp_path)) == 2


async def test_daily_cap_per_phone(db: Database, tmp_path: Path) -> None:
    person = await add_person(db, 0)
    for month in ("2026-08", "2026-09", "2026-10"):
        await add_payout(db, person, month)
    await plan(db, now=DAYTIME)
    capped = Worker.assemble(db, VAULT, COUNTY, [console(tmp_path)],
                             DatabasePhoneLimiter(db, PhoneCaps(spacing=timedelta(0), per_day=2)),
                             clock=lambda: DAYTIME)
    summary = await capped.run(once=True)
    assert summary.sent == 2 and summary.rescheduled == 1


async def test_stale_claims_of_a_killed_worker_are_sent_once(db: Database,
                                                            tmp_path: Path) -> None:
    for index in range(2):
        await add_payout(db, await add_person(db, index))
    await plan(db, now=DAYTIME)
    killed = worker(db, tmp_path, name="killed")
    assert len(await killed.claim(10)) == 2  # claimed, then the process died
    survivor = worker(db, tmp_path, clock=DAYTIME + timedelta(minutes=5))
    assert (await survivor.run(once=True)).sent == 2
    assert len(sent_sms(tmp_path)) == 2
    # The dead worker's late write (if it had one) does not undo the survivor's.
    assert set((await states(db)).values()) == {"sent"}


async def test_two_workers_share_the_queue_without_duplicates(db: Database, database_url: str,
                                                              tmp_path: Path) -> None:
    for index in range(2):
        person = await add_person(db, index)
        for month in ("2026-09", "2026-10", "2026-11"):
            await add_payout(db, person, month)
    await plan(db, now=DAYTIME)
    other_db = Database(database_url)
    try:
        a = worker(db, tmp_path, name="a", batch=2)
        b = worker(other_db, tmp_path, name="b", batch=2)
        await asyncio.gather(a.run(once=True), b.run(once=True))
    finally:
        await other_db.dispose()
    assert a.summary.sent + b.summary.sent == 6
    sent = [(line["to"], line["text"]) for line in sent_sms(tmp_path)]
    assert len(sent) == len(set(sent)) == 6


async def test_wechat_first_then_sms_when_unfollowed(db: Database, tmp_path: Path,
                                                     aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    fake = FakeWeChat()
    base = await fake.start(aiohttp_server)
    grandma = await add_person(db, 0)
    grandpa = await add_person(db, 1)
    async with db.session() as session:
        await bind(session, OPENID_GRANDMA, grandma, "self", granted_by="test")
        await bind(session, OPENID_SON, grandma, "delegate", granted_by="test")
        await bind(session, "oUnfollowed" + "z" * 17, grandpa, "self", granted_by="test")
    fake.errcodes["oUnfollowed" + "z" * 17] = 43004
    for person in (grandma, grandpa):
        await add_payout(db, person)
    await plan(db, now=DAYTIME)
    api = WeChatApi(base, APPID, SECRET, DatabaseTokenStore(db, APPID))
    try:
        summary = await worker(db, tmp_path, wechat=api,
                               wechat_templates={"payout": "TPL-PAYOUT"}).run(once=True)
    finally:
        await api.close()
    assert fake.problems == []
    assert summary.sent == 2
    # Grandma and her son each get the template message; grandpa (unfollowed) gets an SMS.
    assert sorted(m["touser"] for m in fake.messages) == sorted([OPENID_GRANDMA, OPENID_SON])
    message = fake.messages[0]
    assert message["template_id"] == "TPL-PAYOUT"
    assert message["data"]["amount3"]["value"] == "625.00元"
    assert message["client_msg_id"].startswith(f"payout:{grandma}:")
    assert [s["to"] for s in sent_sms(tmp_path)] == ["138****1001"]


async def test_late_bot_replies_go_out_as_customer_service_messages(
        db: Database, tmp_path: Path, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    fake = FakeWeChat()
    base = await fake.start(aiohttp_server)
    gone = "oLeftTheAccount" + "q" * 13
    fake.errcodes[gone] = 45015  # the 48-hour window closed
    async with db.session() as session:
        session.add(LateReply(openid=OPENID_GRANDMA, text="这个问题我还答不上来"))
        session.add(LateReply(openid=gone, text="迟到的回复"))
    api = WeChatApi(base, APPID, SECRET, DatabaseTokenStore(db, APPID))
    try:
        # Real time: the 48-hour window is measured against when the replies were made.
        await worker(db, tmp_path, clock=datetime.now(UTC), wechat=api).run(once=True)
    finally:
        await api.close()
    assert [(t["touser"], t["text"]["content"]) for t in fake.texts] == [
        (OPENID_GRANDMA, "这个问题我还答不上来")]
    async with db.session() as session:
        rows = (await session.scalars(select(LateReply))).all()
    assert [(r.openid, r.delivered_at is not None) for r in rows] == [(OPENID_GRANDMA, True)]


async def test_wechat_opt_out_of_the_person_stops_all_reminders(db: Database, tmp_path: Path,
                                                                aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    fake = FakeWeChat()
    base = await fake.start(aiohttp_server)
    grandma = await add_person(db, 0)
    async with db.session() as session:
        await bind(session, OPENID_GRANDMA, grandma, "self", granted_by="test")
    await opt_out(db, "wechat", OPENID_GRANDMA, "wechat_menu")
    await add_payout(db, grandma)
    await plan(db, now=DAYTIME)
    api = WeChatApi(base, APPID, SECRET, DatabaseTokenStore(db, APPID))
    try:
        summary = await worker(db, tmp_path, wechat=api,
                               wechat_templates={"payout": "TPL-PAYOUT"}).run(once=True)
    finally:
        await api.close()
    assert summary.skipped == 1 and fake.messages == [] and sent_sms(tmp_path) == []


async def test_callbacks_are_off_without_a_token(client, db: Database) -> None:  # type: ignore[no-untyped-def]
    response = await client.post("/notify/callbacks/tencent/reply",
                                 json={"mobile": PEOPLE[0][2], "text": "TD"})
    assert response.status == 404
    assert await db_count(db, OptOut) == 0


@pytest.fixture
async def callback_client(aiohttp_client, settings: Settings):  # type: ignore[no-untyped-def]
    from huimin.wiring.apps import create_app

    return await aiohttp_client(create_app(settings.with_overrides(callback_token="cbtoken")))


async def sent_message(db: Database, tmp_path: Path) -> OutboxMessage:
    person = await add_person(db, 0)
    await add_payout(db, person)
    await plan(db, now=DAYTIME)
    await worker(db, tmp_path).run(once=True)
    async with db.session() as session:
        row = await session.scalar(select(OutboxMessage))
    assert row is not None and row.state == "sent"
    return row


async def test_tencent_status_report_marks_delivered(callback_client, db: Database,  # type: ignore[no-untyped-def]
                                                     tmp_path: Path) -> None:
    row = await sent_message(db, tmp_path)
    async with db.session() as session:  # as if Tencent had answered with this SerialNo
        await session.execute(update(OutboxMessage).values(provider="tencent",
                                                           provider_message_id="sid-1"))
    wrong = await callback_client.post("/notify/callbacks/tencent/status?token=nope", json=[])
    assert wrong.status == 403
    response = await callback_client.post(
        "/notify/callbacks/tencent/status?token=cbtoken",
        json=[{"user_receive_time": "2026-12-01 10:00:05", "nationcode": "86",
               "mobile": PEOPLE[0][2], "report_status": "SUCCESS", "errmsg": "DELIVRD",
               "description": "用户短信送达成功", "sid": "sid-1"}])
    assert response.status == 200
    assert await response.json() == {"result": 0, "errmsg": "OK"}
    assert (await states(db)) == {row.key: "delivered"}


async def test_aliyun_failed_report_marks_failed(callback_client, db: Database,  # type: ignore[no-untyped-def]
                                                 tmp_path: Path) -> None:
    row = await sent_message(db, tmp_path)
    async with db.session() as session:
        await session.execute(update(OutboxMessage).values(provider="aliyun",
                                                           provider_message_id="biz-9"))
    response = await callback_client.post(
        "/notify/callbacks/aliyun/status?token=cbtoken",
        json=[{"phone_number": PEOPLE[0][2], "send_time": "2026-12-01 10:00:00",
               "report_time": "2026-12-01 10:00:09", "success": False,
               "err_code": "MK:0001", "err_msg": "用户关机", "sms_size": "1",
               "biz_id": "biz-9", "out_id": row.key}])
    assert response.status == 200 and (await response.json())["code"] == 0
    assert (await states(db)) == {row.key: "failed"}


async def test_aliyun_receipts_name_the_phone_of_a_shared_biz_id(callback_client,  # type: ignore[no-untyped-def]
                                                                db: Database,
                                                                tmp_path: Path) -> None:
    """One Aliyun call to two numbers has one BizId: each receipt settles only its own
    phone's message; a message recorded by crash recovery (no BizId) is found by OutId."""
    for index in range(2):
        await add_payout(db, await add_person(db, index))
    await plan(db, now=DAYTIME)
    await worker(db, tmp_path).run(once=True)
    async with db.session() as session:
        await session.execute(update(OutboxMessage).values(provider="aliyun",
                                                           provider_message_id="biz-7"))

    def receipt(index: int, success: bool, **ids: str) -> dict[str, Any]:
        return {"phone_number": PEOPLE[index][2], "send_time": "2026-12-01 10:00:00",
                "report_time": "2026-12-01 10:00:09", "success": success,
                "err_code": "DELIVERED" if success else "MK:0001", "sms_size": "1", **ids}

    url = "/notify/callbacks/aliyun/status?token=cbtoken"
    assert (await callback_client.post(url, json=[receipt(0, True, biz_id="biz-7")])).status == 200
    assert sorted((await states(db)).values()) == ["delivered", "sent"]
    assert (await callback_client.post(url, json=[receipt(1, False, biz_id="biz-7")])).status == 200
    assert sorted((await states(db)).values()) == ["delivered", "failed"]
    # A row that crash recovery marked sent without a BizId: matched by OutId and phone.
    async with db.session() as session:
        await session.execute(update(OutboxMessage).values(
            state="sent", provider_message_id=None, sms_ref="s0123456789abcdef"))
    await callback_client.post(url, json=[receipt(1, True, biz_id="biz-8",
                                                  out_id="s0123456789abcdef")])
    assert sorted((await states(db)).values()) == ["delivered", "sent"]


@pytest.mark.parametrize(("provider", "body"), [
    ("tencent", {"extend": "", "mobile": PEOPLE[0][2], "nationcode": "86",
                 "sign": "示例县民政局", "text": "TD", "time": 1764554400}),
    ("aliyun", [{"phone_number": PEOPLE[0][2], "send_time": "2026-12-01 10:00:00",
                 "content": "退订", "sign_name": "示例县民政局", "dest_code": "1234",
                 "sequence_id": 1}]),
])
async def test_sms_reply_td_opts_the_phone_out(callback_client, db: Database, provider: str,  # type: ignore[no-untyped-def]
                                               body: Any, tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    response = await callback_client.post(f"/notify/callbacks/{provider}/reply?token=cbtoken",
                                          json=body)
    assert response.status == 200
    async with db.session() as session:
        opted = (await session.scalars(select(OptOut))).all()
    assert [(o.channel, o.address, o.source) for o in opted] == [
        ("sms", VAULT.lookup_hash(PEOPLE[0][2]), "sms_reply")]
    assert PEOPLE[0][2] not in caplog.text


async def test_bad_callback_bodies_are_4xx(callback_client) -> None:  # type: ignore[no-untyped-def]
    for body in (b"not json", b"[1, 2]"):
        response = await callback_client.post("/notify/callbacks/tencent/status?token=cbtoken",
                                              data=body)
        assert response.status == 400
    response = await callback_client.post("/notify/callbacks/other/status?token=cbtoken",
                                          json=[])
    assert response.status == 404


async def test_wechat_job_finished_event_marks_delivered(client, db: Database,  # type: ignore[no-untyped-def]
                                                         tmp_path: Path) -> None:
    from tests.wechat import event_xml, signed_query

    row = await sent_message(db, tmp_path)
    async with db.session() as session:
        await session.execute(update(OutboxMessage).values(provider="wechat",
                                                           provider_message_id="200163836"))
    xml = event_xml("TEMPLATESENDJOBFINISH", openid=OPENID_GRANDMA).replace(
        "</xml>", "<MsgID>200163836</MsgID><Status><![CDATA[success]]></Status></xml>")
    response = await client.post("/wechat", params=signed_query(), data=xml)
    assert response.status == 200 and await response.text() == "success"
    assert (await states(db)) == {row.key: "delivered"}


async def test_wechat_reminders_off_and_on(client, db: Database) -> None:  # type: ignore[no-untyped-def]
    from tests.wechat import reply_text, signed_query, text_xml

    response = await client.post("/wechat", params=signed_query(),
                                 data=text_xml("关闭提醒", openid=OPENID_GRANDMA))
    assert "已关闭" in reply_text(await response.text())
    assert await db_count(db, OptOut) == 1
    response = await client.post("/wechat", params=signed_query(),
                                 data=text_xml("开启提醒", openid=OPENID_GRANDMA))
    assert "已开启" in reply_text(await response.text())
    assert await db_count(db, OptOut) == 0


async def db_count(db: Database, model: Any) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)



@pytest.mark.parametrize("backend", ["database", "redis"])
async def test_phone_caps_in_one_batch(db: Database, backend: str) -> None:
    """Two messages to one phone in one batch: the first goes, the second waits 30 s;
    the day's cap holds the rest until the next morning."""
    from notify.rules import RedisPhoneLimiter

    caps = PhoneCaps(spacing=timedelta(seconds=30), per_day=2)
    redis = None
    if backend == "redis":
        from redis.asyncio import Redis

        redis = Redis.from_url(os.environ.get("HUIMIN_TEST_REDIS_URL")
                               or "redis://127.0.0.1:6379/15", socket_connect_timeout=1)
        try:
            await redis.ping()
        except Exception:
            await redis.aclose()
            pytest.skip("no Redis on this machine")
        await redis.delete(*[k async for k in redis.scan_iter("huimin:sms-*")] or ["-"])
        limiter: Any = RedisPhoneLimiter(redis, caps)
    else:
        limiter = DatabasePhoneLimiter(db, caps)
    try:
        first = await limiter.reserve_many([(1, "phone-a"), (2, "phone-a"), (3, "phone-b")],
                                           DAYTIME)
        assert first[1] is None and first[3] is None
        assert first[2] is not None
        assert abs((first[2] - DAYTIME).total_seconds() - 30) < 1
        if redis is not None:
            return  # Redis measures the spacing by its own clock (key expiry): no time travel
        later = DAYTIME + timedelta(seconds=31)
        assert await limiter.reserve_many([(4, "phone-a")], later) == {4: None}
        third = await limiter.reserve_many([(5, "phone-a")], later + timedelta(seconds=31))
        assert third[5] == datetime(2026, 12, 2, 0, 0, tzinfo=UTC)  # 08:00 next day, Beijing
    finally:
        if redis is not None:
            await redis.aclose()


async def test_same_text_goes_in_one_call_and_failover_to_the_second_provider(
        db: Database, tmp_path: Path, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    """Through the real providers and protocol-checking fakes: reminders with the same
    template and values share one SendSms call; when Tencent keeps failing whole calls,
    Alibaba Cloud takes over in the same run."""
    from tests.fakes.sms_servers import AliyunFake, TencentFake
    from tests.notify.test_sms_providers import make_aliyun, make_tencent

    tencent_fake, aliyun_fake = TencentFake(), AliyunFake()
    await tencent_fake.start(aiohttp_server)
    await aliyun_fake.start(aiohttp_server)
    for index in range(2):
        await add_payout(db, await add_person(db, index))
    await plan(db, now=DAYTIME)
    templates = {"payout": "1000001"}
    tencent = make_tencent(tencent_fake.base_url, templates=templates, sign_name="示例县民政局")
    aliyun = make_aliyun(aliyun_fake.base_url, templates={"payout": "SMS_1"},
                         sign_name="示例县民政局")
    try:
        summary = await worker(db, tmp_path, sms=tencent).run(once=True)
        assert summary.sent == 2
        [call] = tencent_fake.calls
        assert sorted(call.body["PhoneNumberSet"]) == ["+8613800131001", "+8613800138000"]
        assert call.body["TemplateParamSet"] == ["低保", "11月", "625.00"]
        # Next month Tencent fails every call: Alibaba Cloud sends instead.
        async with db.session() as session:
            for person in (await session.scalars(select(Beneficiary))).all():
                session.add(PayoutLine(beneficiary_id=person.id, programme="低保",
                                       month="2026-12", amount=Decimal("625.00")))
        await plan(db, now=DAYTIME)
        tencent_fake.fail(times=10, status=502)
        both = Worker.assemble(db, VAULT, COUNTY, [tencent, aliyun],
                               DatabasePhoneLimiter(db, PhoneCaps(spacing=timedelta(0))),
                               clock=lambda: DAYTIME)
        assert (await both.run(once=True)).sent == 2
        assert len(aliyun_fake.calls) == 1
        assert aliyun_fake.calls[0].params["PhoneNumbers"].count(",") == 1
    finally:
        await tencent.close()
        await aliyun.close()
    async with db.session() as session:
        providers = sorted((await session.scalars(select(OutboxMessage.provider))).all())
    assert providers == ["aliyun", "aliyun", "tencent", "tencent"]


async def test_too_fast_is_asked_again_and_does_not_set_the_provider_aside(
        db: Database, tmp_path: Path, aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    """Tencent answers RequestLimitExceeded twice: the worker slows down and asks again
    (the provider is not counted as failing); a third refusal in a row puts the message
    off for a few seconds without spending one of its attempts."""
    from tests.fakes.sms_servers import TencentFake
    from tests.notify.test_sms_providers import make_tencent

    fake = TencentFake()
    await fake.start(aiohttp_server)
    provider = make_tencent(fake.base_url, templates={"payout": "1000001"},
                            sign_name="示例县民政局")
    try:
        await add_payout(db, await add_person(db, 0))
        await plan(db, now=DAYTIME)
        fake.fail(times=2, code="RequestLimitExceeded", message="too fast")
        sender = worker(db, tmp_path, sms=provider)
        assert (await sender.run(once=True)).sent == 1
        assert len(fake.calls) == 3 and sender.health.usable("tencent")
        assert sender.health.failures.get("tencent", 0) == 0
        await add_payout(db, await add_person(db, 1))
        await plan(db, now=DAYTIME)
        fake.fail(times=3, code="RequestLimitExceeded", message="too fast")
        summary = await sender.run(once=True)
        assert summary.rescheduled == 1 and sender.health.usable("tencent")
        async with db.session() as session:
            row = await session.scalar(select(OutboxMessage).where(
                OutboxMessage.state == "queued"))
        assert row is not None and row.attempts == 0
        not_before = row.not_before.replace(tzinfo=row.not_before.tzinfo or UTC)
        assert not_before == DAYTIME + timedelta(seconds=5)
    finally:
        await provider.close()
