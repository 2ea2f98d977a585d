"""留言给工作人员, end to end: signed WeChat requests to the bot, the staff UI, and the
local fake WeChat API (customer-service and template messages, 45015)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select

from admin.models import AuditEntry
from bot.app import WRITER
from bot.handoff import WorkingHours, when_text
from bot.models import AskedQuestion
from content.load import load_county
from content.models import FaqEntryRow
from content.schema import render
from huimin.casework.models import Case, CaseMessage, CaseRoute, QuestionAsker
from huimin.db import Database
from huimin.personal import Vault
from huimin.registry.models import Beneficiary
from huimin.registry.queries import ApplicationRecord, bind, save_application
from huimin.settings import DEFAULT_COUNTY_FILE, Settings
from huimin.wiring.apps import create_admin_app, create_app
from huimin.wiring.resources import Backing
from notify.models import OutboxMessage
from notify.service import build_worker
from tests.admin.conftest import add_user, csrf, follow, login, post
from tests.conftest import SECRET_KEY
from tests.fakes.wechat_server import SECRET, FakeWeChat
from tests.wechat import APPID, event_xml, reply_text, signed_query, text_xml, voice_xml

VAULT = Vault(SECRET_KEY)
COUNTY = load_county(DEFAULT_COUNTY_FILE)
# Wednesday 10:00 in Beijing: staff are at work.
WEDNESDAY = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
# Saturday 10:00 in Beijing: they are not, until Monday 8:30.
SATURDAY = datetime(2026, 12, 5, 2, 0, tzinfo=UTC)
GRANDMA = "oGrandmaGrandmaGrandma123456"  # 28 characters, as WeChat's openids
STRANGER = "oStrangerStrangerStranger123"
ID_NUMBER, PHONE = "34132319620817004X", "13800138000"


class Clock:
    """One clock the bot and the staff UI both read; tests move it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def fake(aiohttp_server: Any) -> AsyncIterator[FakeWeChat]:
    server = FakeWeChat(appid=APPID, templates={"TPL-CASE", "TPL-PAYOUT"})
    await server.start(aiohttp_server)
    yield server
    assert server.problems == []


@pytest.fixture
def wired(settings: Settings, fake: FakeWeChat) -> Settings:
    return settings.with_overrides(wechat_secret=SECRET, wechat_api_base=fake.base_url,
                                   wechat_templates="case_reply=TPL-CASE")


@pytest.fixture
def clock() -> Clock:
    return Clock(WEDNESDAY)


@pytest.fixture
async def bot(aiohttp_client: Any, wired: Settings, clock: Clock) -> Any:
    return await aiohttp_client(create_app(wired, clock=clock))


@pytest.fixture
async def staff(aiohttp_client: Any, wired: Settings, clock: Clock) -> Any:
    root = web.Application()
    root.add_subapp("/admin", create_admin_app(wired, clock=clock))
    return await aiohttp_client(root)


async def say(client: Any, text: str, openid: str = GRANDMA) -> str:
    response = await client.post("/wechat", params=signed_query(),
                                 data=text_xml(text, openid=openid))
    assert response.status == 200
    return reply_text(await response.text())


async def speak(client: Any, recognised: str, openid: str = GRANDMA) -> str:
    response = await client.post("/wechat", params=signed_query(),
                                 data=voice_xml(recognised, openid=openid))
    assert response.status == 200
    return reply_text(await response.text())


async def click(client: Any, key: str, openid: str = GRANDMA) -> str:
    response = await client.post("/wechat", params=signed_query(),
                                 data=event_xml("CLICK", openid=openid, key=key))
    assert response.status == 200
    return reply_text(await response.text())


async def rows(settings: Settings, statement: Any) -> list[Any]:
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            return list((await session.scalars(statement)).all())
    finally:
        await db.dispose()


async def register(settings: Settings, township: str = "娄庄镇", openid: str | None = GRANDMA,
                   phone: str | None = PHONE) -> int:
    """张桂兰 in the registry (a 低保 application in ``township``), bound to ``openid``."""
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            await save_application(session, VAULT, ApplicationRecord(
                number="LZ-2026-0017", name="张桂兰", id_number=ID_NUMBER, phone=phone,
                township=township, programme="低保", stage="调查",
                stage_date=date(2026, 11, 20), monthly_amount=Decimal("625")), source="test")
            person = await session.scalar(select(Beneficiary).where(
                Beneficiary.name == "张桂兰"))
            assert person is not None
            if openid:
                await bind(session, openid, person.id, "self", granted_by="test")
            return person.id
    finally:
        await db.dispose()


async def route(settings: Settings, scope: str, value: str, username: str) -> None:
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            session.add(CaseRoute(scope=scope, value=value, username=username))
    finally:
        await db.dispose()


async def sign_in(staff: Any, settings: Settings, username: str, role: str) -> str:
    await add_user(settings, username, role)
    response = await login(staff, username)
    assert response.status == 303, await response.text()
    return await csrf(staff)


async def leave(bot: Any, *texts: str) -> list[str]:
    replies = [await say(bot, "转人工")]
    for text in texts:
        replies.append(await say(bot, text))
    return replies


# ----- the bot's side ------------------------------------------------------------------
async def test_a_message_left_by_words_and_voice_is_one_case(bot: Any, wired: Settings) -> None:
    await say(bot, "你好")
    asked = await say(bot, "转人工")
    first = await say(bot, "我家的低保这个月没到账，一直没人管")
    added = await speak(bot, "我的电话是13800138000")
    assert "打字或者发语音都行" in asked
    assert "已经转给工作人员了" in first and "现在是上班时间" in first
    assert COUNTY["hotline"] in first
    assert "已经加到您的留言里" in added
    done = await say(bot, "好了")
    assert "工作人员回复后会发到这个公众号里" in done
    # after 好了 the bot answers questions again
    assert "留言" not in await say(bot, "低保标准是多少")
    cases = await rows(wired, select(Case))
    assert len(cases) == 1 and cases[0].openid == GRANDMA and cases[0].beneficiary_id is None
    messages = await rows(wired, select(CaseMessage).order_by(CaseMessage.id))
    assert [m.text for m in messages] == ["我家的低保这个月没到账，一直没人管",
                                          "我的电话是138****8000"]
    # the conversation before it, masked
    said = [turn["text"] for turn in cases[0].recent if turn["who"] == "person"]
    assert said[:2] == ["你好", "转人工"]


async def test_menu_button_and_out_of_hours_answer(bot: Any, wired: Settings,
                                                   clock: Clock) -> None:
    clock.now = SATURDAY
    assert "打字或者发语音都行" in await click(bot, "HANDOFF")
    first = await say(bot, "想问问临时救助的事")
    assert "现在是下班时间" in first and "12月7日（周一）上午8点半" in first
    assert len(await rows(wired, select(Case))) == 1


async def test_offered_after_two_unknowns_in_a_row_and_after_none_of_these(
        bot: Any) -> None:
    first = await say(bot, "明天会下雨吗")
    assert "我只能回答" in first and "回复“人工”" not in first
    second = await say(bot, "今天晚上吃什么好")
    assert "我只能回答" in second and "回复“人工”" in second
    assert "回复“人工”" not in await say(bot, "低保标准是多少")  # in a row only
    assert "您是想问" in await say(bot, "低保可以办几年", openid=STRANGER)
    declined = await say(bot, "0", openid=STRANGER)
    assert "回复“人工”" in declined


async def test_one_open_case_and_a_daily_cap(bot: Any, wired: Settings) -> None:
    await leave(bot, "第一件事", "好了")
    again = await say(bot, "人工")
    assert "您之前的留言工作人员还在处理" in again
    await say(bot, "第二件事")
    cases = await rows(wired, select(Case))
    assert len(cases) == 1  # joined the open one
    messages = await rows(wired, select(CaseMessage.text).order_by(CaseMessage.id))
    assert messages == ["第一件事", "第二件事"]


# ----- routing and roles ---------------------------------------------------------------
async def test_routing_and_who_may_read_a_case(bot: Any, staff: Any, wired: Settings) -> None:
    await register(wired, township="娄庄镇")
    await route(wired, "township", "娄庄镇", "louzhuang")
    await route(wired, "township", "王集镇", "wangji")
    await leave(bot, "低保调查什么时候来我家")
    case = (await rows(wired, select(Case)))[0]
    assert (case.township, case.programme, case.masked_name) == ("娄庄镇", "低保", "张*兰")
    assert case.application_number == "LZ-2026-0017"

    await sign_in(staff, wired, "wangji", "caseworker")
    listing = await (await staff.get("/admin/cases")).text()
    assert "低保调查什么时候来我家" not in listing
    assert (await staff.get(f"/admin/cases/{case.id}")).status == 403
    await staff.post("/admin/logout", data={"csrf": await csrf(staff)})

    await sign_in(staff, wired, "editor", "editor")
    assert (await staff.get("/admin/cases")).status == 403
    assert (await staff.get(f"/admin/cases/{case.id}")).status == 403
    await staff.post("/admin/logout", data={"csrf": await csrf(staff)})

    await sign_in(staff, wired, "louzhuang", "caseworker")
    listing = await (await staff.get("/admin/cases")).text()
    assert "低保调查什么时候来我家" in listing
    page = await (await staff.get(f"/admin/cases/{case.id}")).text()
    assert "张*兰" in page and "LZ-2026-0017" in page and ID_NUMBER not in page
    views = await rows(wired, select(AuditEntry).where(AuditEntry.action == "case_view"))
    assert [(v.username, v.target_id) for v in views] == [("louzhuang", str(case.id))]


async def test_unrouted_cases_go_to_the_general_desk(bot: Any, staff: Any,
                                                     wired: Settings) -> None:
    await route(wired, "any", "*", "desk")
    await say(bot, "人工", openid=STRANGER)
    await say(bot, "我不会用这个", openid=STRANGER)
    await sign_in(staff, wired, "desk", "caseworker")
    assert "我不会用这个" in await (await staff.get("/admin/cases")).text()


# ----- replies -------------------------------------------------------------------------
async def _reply(staff: Any, token: str, case_id: int, text: str) -> str:
    return await follow(staff, await post(staff, f"/admin/cases/{case_id}/reply", token,
                                          text=text))


async def test_reply_within_48_hours_is_a_customer_service_message(
        bot: Any, staff: Any, wired: Settings, fake: FakeWeChat, clock: Clock) -> None:
    await route(wired, "any", "*", "desk")
    await leave(bot, "一卡通丢了怎么办")
    case = (await rows(wired, select(Case)))[0]
    clock.now = WEDNESDAY + timedelta(hours=47)  # (sessions go by this clock too)
    token = await sign_in(staff, wired, "desk", "caseworker")
    page = await _reply(staff, token, case.id, "请带身份证到乡镇民政所补办。")
    assert "已通过微信发给对方" in page
    assert [(t["touser"], t["text"]["content"]) for t in fake.texts] == [
        (GRANDMA, "工作人员回复您：\n请带身份证到乡镇民政所补办。")]
    assert fake.messages == []
    replies = await rows(wired, select(AuditEntry).where(AuditEntry.action == "case_reply"))
    assert replies[0].after["delivery"] == "sent"


async def test_reply_after_48_hours_is_a_template_then_shown_on_the_next_message(
        bot: Any, staff: Any, wired: Settings, fake: FakeWeChat, clock: Clock) -> None:
    await route(wired, "any", "*", "desk")
    await leave(bot, "一卡通丢了怎么办", "好了")
    case = (await rows(wired, select(Case)))[0]
    clock.now = WEDNESDAY + timedelta(hours=49)  # (sessions go by this clock too)
    token = await sign_in(staff, wired, "desk", "caseworker")
    page = await _reply(staff, token, case.id, "请带身份证到乡镇民政所补办。")
    assert "已发模板消息通知对方" in page
    assert fake.texts == []  # past the window: no customer-service message tried
    assert [(m["touser"], m["template_id"]) for m in fake.messages] == [(GRANDMA, "TPL-CASE")]
    assert "请带身份证" not in json.dumps(fake.messages, ensure_ascii=False)
    shown = await say(bot, "看回复")
    assert shown.startswith("工作人员回复您：\n请带身份证到乡镇民政所补办。")
    assert "请带身份证" not in await say(bot, "看回复")  # shown once
    messages = await rows(wired, select(CaseMessage).where(CaseMessage.author == "staff"))
    assert messages[0].delivery == "read"


async def test_window_closed_45015_falls_back_to_the_template(
        bot: Any, staff: Any, wired: Settings, fake: FakeWeChat, clock: Clock) -> None:
    await route(wired, "any", "*", "desk")
    await leave(bot, "一卡通丢了怎么办")
    case = (await rows(wired, select(Case)))[0]
    token = await sign_in(staff, wired, "desk", "caseworker")
    fake.next_failures.append(45015)  # WeChat: the window is closed after all
    page = await _reply(staff, token, case.id, "请带身份证到乡镇民政所补办。")
    assert "已发模板消息通知对方" in page
    assert fake.texts == [] and [m["template_id"] for m in fake.messages] == ["TPL-CASE"]


async def test_no_wechat_reachable_means_an_sms_asking_to_call_never_the_text(
        bot: Any, staff: Any, wired: Settings, fake: FakeWeChat, clock: Clock,
        tmp_path: Path) -> None:
    await register(wired)
    await route(wired, "township", "娄庄镇", "louzhuang")
    await leave(bot, "调查的人什么时候来")
    case = (await rows(wired, select(Case)))[0]
    fake.errcodes[GRANDMA] = 43004  # she no longer follows the account
    clock.now = WEDNESDAY + timedelta(hours=49)
    token = await sign_in(staff, wired, "louzhuang", "caseworker")
    page = await _reply(staff, token, case.id, "下周二上午来您家。")
    assert "已发短信请对方回电话或回短信" in page
    outbox = await rows(wired, select(OutboxMessage))
    assert [(o.kind, o.params) for o in outbox] == [("case_reply", {})]
    db = Database(wired.database_url)
    try:
        await build_worker(wired, COUNTY, Backing(wired, db).notifier(),
                           clock=clock).run(once=True)
    finally:
        await db.dispose()
    sent = [json.loads(line) for line in (tmp_path / "sms.jsonl").read_text().splitlines()]
    assert [s["to"] for s in sent] == ["138****8000"]
    assert "留言有回复了" in sent[0]["text"] and "下周二" not in sent[0]["text"]
    page = await (await staff.get(f"/admin/cases/{case.id}")).text()
    assert "短信已发出" in page


async def test_phoned_and_closed_with_an_outcome(bot: Any, staff: Any, wired: Settings) -> None:
    await route(wired, "any", "*", "desk")
    await leave(bot, "麻烦打电话给我")
    case = (await rows(wired, select(Case)))[0]
    token = await sign_in(staff, wired, "desk", "caseworker")
    await follow(staff, await post(staff, f"/admin/cases/{case.id}/phoned", token,
                                   note="电话里说清楚了"))
    await follow(staff, await post(staff, f"/admin/cases/{case.id}/close", token,
                                   outcome="phoned"))
    closed = (await rows(wired, select(Case)))[0]
    assert (closed.state, closed.outcome, closed.closed_by) == ("closed", "phoned", "desk")
    actions = [a.action for a in await rows(wired, select(AuditEntry).order_by(AuditEntry.id))
               if a.action.startswith("case_") and a.action != "case_view"]
    assert actions == ["case_phoned", "case_close"]
    assert "麻烦打电话给我" in await (await staff.get("/admin/cases?state=closed")).text()
    # a new hand-off after closing opens a new case
    await leave(bot, "还有一件事")
    assert len(await rows(wired, select(Case))) == 2


# ----- SMS replies -----------------------------------------------------------------------
@pytest.fixture
async def callbacks(aiohttp_client: Any, wired: Settings, clock: Clock) -> Any:
    return await aiohttp_client(create_app(wired.with_overrides(callback_token="cbtoken"),
                                           clock=clock))


async def test_an_sms_reply_becomes_a_callback_case_for_the_caseworker(
        callbacks: Any, staff: Any, wired: Settings) -> None:
    await register(wired, openid=None)
    await route(wired, "township", "娄庄镇", "louzhuang")
    await route(wired, "township", "王集镇", "wangji")
    stop = await callbacks.post("/notify/callbacks/tencent/reply", params={"token": "cbtoken"},
                                json={"mobile": "+86" + PHONE, "text": "TD"})
    assert stop.status == 200
    assert await rows(wired, select(Case)) == []  # 退订 is an opt-out, not a case
    for text in ("钱怎么还没到，请回电话", "我白天不在家"):
        response = await callbacks.post("/notify/callbacks/tencent/reply",
                                        params={"token": "cbtoken"},
                                        json={"mobile": "+86" + PHONE, "text": text})
        assert response.status == 200
    stranger = await callbacks.post("/notify/callbacks/tencent/reply",
                                    params={"token": "cbtoken"},
                                    json={"mobile": "+8613900000000", "text": "你是谁"})
    assert stranger.status == 200
    cases = await rows(wired, select(Case))
    assert [(c.kind, c.township, c.phone_masked) for c in cases] == [
        ("callback", "娄庄镇", "138****8000")]
    assert PHONE not in (cases[0].phone_encrypted or "")

    await sign_in(staff, wired, "wangji", "caseworker")
    assert (await staff.get(f"/admin/cases/{cases[0].id}")).status == 403
    await staff.post("/admin/logout", data={"csrf": await csrf(staff)})

    await sign_in(staff, wired, "admin", "admin")
    page = await (await staff.get(f"/admin/cases/{cases[0].id}")).text()
    assert "钱怎么还没到" in page and "我白天不在家" in page and "138****8000" in page
    assert PHONE not in page and "显示完整号码" not in page  # caseworkers only
    shown = await staff.post(f"/admin/cases/{cases[0].id}/phone", data={"csrf": await csrf(staff)})
    assert shown.status == 403
    await staff.post("/admin/logout", data={"csrf": await csrf(staff)})

    token = await sign_in(staff, wired, "louzhuang", "caseworker")
    page = await (await staff.get(f"/admin/cases/{cases[0].id}")).text()
    assert PHONE not in page and "显示完整号码" in page
    shown = await post(staff, f"/admin/cases/{cases[0].id}/phone", token)
    assert shown.status == 200 and PHONE in await shown.text()
    logged = await rows(wired, select(AuditEntry).where(AuditEntry.action == "case_phone_view"))
    assert [(e.username, e.after["phone"]) for e in logged] == [("louzhuang", "138****8000")]
    assert PHONE not in json.dumps([e.after for e in await rows(wired, select(AuditEntry))])


# ----- closing the loop ------------------------------------------------------------------
VAGUE = "低保可以办几年"


async def _add_phrasing(staff: Any, token: str, text: str, faq_id: str) -> str:
    page = await (await staff.get("/admin/inbox")).text()
    ids = page.split('name="ids" value="')[1].split('"')[0]
    return await follow(staff, await post(staff, "/admin/inbox/alternative", token, ids=ids,
                                          text=text, faq_id=faq_id))


async def test_askers_are_told_once_when_their_question_gets_an_answer(
        bot: Any, staff: Any, wired: Settings, fake: FakeWeChat, clock: Clock) -> None:
    early = "oEarlyAskerEarlyAskerEarly12"
    assert "您是想问" in await say(bot, VAGUE, openid=early)
    clock.now = WEDNESDAY + timedelta(hours=30)
    for openid in (GRANDMA, STRANGER, GRANDMA):
        assert "您是想问" in await say(bot, VAGUE, openid=openid)
    clock.now = WEDNESDAY + timedelta(hours=50)  # the early asker asked 50 hours ago
    token = await sign_in(staff, wired, "editor", "editor")
    page = await _add_phrasing(staff, token, VAGUE, "dibao-recheck")
    assert "已经告诉了2位问过这个问题的群众" in page
    told = sorted((t["touser"], t["text"]["content"].split("：")[0]) for t in fake.texts)
    assert told == sorted([(GRANDMA, f"您之前问的“{VAGUE}”，现在有答案了"),
                           (STRANGER, f"您之前问的“{VAGUE}”，现在有答案了")])
    answer = fake.texts[0]["text"]["content"].split("现在有答案了：\n")[1]
    entry = (await rows(wired, select(FaqEntryRow).where(FaqEntryRow.id == "dibao-recheck")))[0]
    assert answer == render(entry.answer, COUNTY)
    # the same questions resolved once more (a second editor on a stale page): nobody
    # is told twice
    asked = ",".join(str(i) for i in await rows(wired, select(AskedQuestion.id)))
    await follow(staff, await post(staff, "/admin/inbox/alternative", token, ids=asked,
                                   text=VAGUE, faq_id="dibao-recheck"))
    assert len(fake.texts) == 2
    inbox = await (await staff.get("/admin/inbox")).text()
    assert "有 <strong>2</strong> 位问过的群众收到了" in inbox
    askers = await rows(wired, select(QuestionAsker).order_by(QuestionAsker.id))
    assert [a.told_at is not None for a in askers] == [False, True, True, True]



# ----- limits and retention --------------------------------------------------------------
async def _close_all(settings: Settings, closed_at: datetime) -> None:
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            for case in (await session.scalars(select(Case).where(Case.state == "open"))).all():
                case.state, case.closed_at, case.outcome = "closed", closed_at, "answered"
    finally:
        await db.dispose()


async def test_a_daily_cap_on_cases_and_long_messages_cut(bot: Any, wired: Settings,
                                                           clock: Clock) -> None:
    for n in range(3):
        await leave(bot, f"第{n + 1}件事" + "很长" * 400, "好了")
        await _close_all(wired, clock.now)
    await say(bot, "人工")
    capped = await say(bot, "第四件事")
    assert "您今天已经留过3次言了" in capped and COUNTY["hotline"] in capped
    assert len(await rows(wired, select(Case))) == 3
    texts = await rows(wired, select(CaseMessage.text))
    assert all(len(t) == 500 for t in texts)
    clock.now = WEDNESDAY + timedelta(days=1)  # a new China day
    await leave(bot, "第四件事")
    assert len(await rows(wired, select(Case))) == 4


async def test_closed_cases_and_askers_are_forgotten(bot: Any, wired: Settings,
                                                     clock: Clock) -> None:
    await leave(bot, "很久以前的事", "好了")
    await _close_all(wired, WEDNESDAY)
    clock.now = WEDNESDAY + timedelta(days=10)
    assert "您是想问" in await say(bot, VAGUE, openid=STRANGER)
    await leave(bot, "十天前的事", "好了")
    await _close_all(wired, clock.now)
    await bot.app[WRITER].flush()  # who asked is written behind the reply
    assert len(await rows(wired, select(QuestionAsker))) == 1
    clock.now = WEDNESDAY + timedelta(days=181)
    await say(bot, "人工", openid=STRANGER)
    await say(bot, "新的事", openid=STRANGER)  # opening a case clears what is past keeping
    kept = await rows(wired, select(CaseMessage.text).order_by(CaseMessage.id))
    assert kept == ["十天前的事", "新的事"]
    assert await rows(wired, select(QuestionAsker)) == []


@pytest.mark.parametrize(("hours", "now", "expected"), [
    ("周一至周五 上午8:30-12:00，下午14:30-17:30", WEDNESDAY, "现在是上班时间"),
    ("周一至周五 上午8:30-12:00，下午14:30-17:30", WEDNESDAY + timedelta(hours=2, minutes=30),
     "一般今天下午2点半上班后"),
    ("周一到周六 8:00-11:30 下午2:30-5:30", WEDNESDAY + timedelta(hours=10),
     "一般明天上午8点上班后"),
    ("周一至周五 上午8:30-12:00，下午14:30-17:30", SATURDAY, "一般12月7日（周一）上午8点半上班后"),
    ("有事请打电话", SATURDAY, "工作人员上班时间会看您的留言"),
])
def test_when_staff_will_read_it_comes_from_the_county_office_hours(
        hours: str, now: datetime, expected: str) -> None:
    assert expected in when_text(WorkingHours.from_county({"office_hours": hours}), now)


async def test_a_reply_nothing_could_announce_is_shown_when_the_person_writes_again(
        aiohttp_client: Any, wired: Settings, fake: FakeWeChat, clock: Clock) -> None:
    untemplated = wired.with_overrides(wechat_templates=None)
    bot = await aiohttp_client(create_app(untemplated, clock=clock))
    root = web.Application()
    root.add_subapp("/admin", create_admin_app(untemplated, clock=clock))
    staff = await aiohttp_client(root)
    await route(wired, "any", "*", "desk")
    await leave(bot, "麻烦帮我看看", "好了")
    case = (await rows(wired, select(Case)))[0]
    clock.now = WEDNESDAY + timedelta(hours=49)
    token = await sign_in(staff, wired, "desk", "caseworker")
    page = await _reply(staff, token, case.id, "已经帮您问过了，下周到账。")
    assert "微信和短信都通知不到对方：他下次给公众号发消息时会看到回复" in page
    assert fake.texts == [] and fake.messages == []
    assert (await say(bot, "你好")).startswith("工作人员回复您：\n已经帮您问过了，下周到账。")


async def test_the_home_page_counts_waiting_cases(bot: Any, staff: Any, wired: Settings,
                                                  clock: Clock) -> None:
    await route(wired, "any", "*", "desk")
    await leave(bot, "帮帮忙")
    clock.now = WEDNESDAY + timedelta(hours=3)
    await sign_in(staff, wired, "desk", "caseworker")
    home = await (await staff.get("/admin/")).text()
    assert "条群众留言等着处理，最早的已经等了3小时" in home
