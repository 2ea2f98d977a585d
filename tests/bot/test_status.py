"""The verified binding and the status lookup, end to end through signed webhook requests."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.models import AskedQuestion
from bot.status import lock_time_text
from huimin.clock import utcnow
from huimin.db import Database
from huimin.personal import Vault, id_check_digit
from huimin.registry import STAGE_WORDS
from huimin.registry.models import AccessLogEntry, Binding, VerificationCode
from huimin.registry.queries import ApplicationRecord, save_application
from huimin.settings import Settings
from tests.conftest import SECRET_KEY
from tests.wechat import reply_text, signed_query, text_xml

ID = "34132319620817004X"
PHONE = "13800138000"
OTHER_VALID_ID = "110101199003074477"  # valid check digit, not in the registry
STAGE_DATE = utcnow().date() - timedelta(days=12)


class Clock:
    """The bot's clock in these tests: starts at the real now, moves when told."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock(utcnow())


@pytest.fixture
async def client(aiohttp_client, settings: Settings, clock: Clock):  # type: ignore[no-untyped-def]
    from huimin.wiring.apps import create_app

    return await aiohttp_client(create_app(settings, clock=clock))


@pytest.fixture
async def registry(settings: Settings) -> Settings:
    """张桂兰's 低保 application at stage 审核, plus a second applicant."""
    db = Database(settings.database_url)
    vault = Vault(SECRET_KEY)
    async with db.session() as session:
        await save_application(session, vault, ApplicationRecord(
            number="LZ-2026-0017", name="张桂兰", id_number=ID, phone=PHONE, township="娄庄镇",
            programme="低保", stage="审核", stage_date=STAGE_DATE,
            next_step="乡镇审核后会在村里公示7天"), source="test")
    await db.dispose()
    return settings


async def say(client, text: str, openid: str = "user-1") -> str:  # type: ignore[no-untyped-def]
    response = await client.post("/wechat", params=signed_query(),
                                  data=text_xml(text, openid=openid))
    assert response.status == 200
    return reply_text(await response.text())


async def sms_lines(settings: Settings, expected: int, wait: float = 3.0) -> list[dict]:
    path = settings.sms_console_file
    assert path is not None
    for _ in range(max(int(wait / 0.05), 1)):
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        if len(lines) >= expected:
            break
        await asyncio.sleep(0.05)
    return [json.loads(line) for line in lines]


def code_in(sms: dict) -> str:
    found = re.search(r"\d{6}", sms["text"])
    assert found
    return found.group(0)


async def count(settings: Settings, model, *where) -> int:  # type: ignore[no-untyped-def]
    db = Database(settings.database_url)
    async with db.session() as session:
        value = await session.scalar(select(func.count()).select_from(model).where(*where))
    await db.dispose()
    return int(value or 0)


async def bind_self(client, settings: Settings, openid: str = "user-1") -> str:  # type: ignore[no-untyped-def]
    await say(client, "查进度", openid)
    before = len(await sms_lines(settings, 0, wait=0))
    await say(client, f"{ID} 张桂兰", openid)
    code = code_in((await sms_lines(settings, before + 1))[-1])
    return await say(client, code, openid)


async def test_binding_end_to_end_shows_the_application(client, registry: Settings) -> None:
    assert "身份证号和姓名" in await say(client, "查进度")
    sent = await say(client, f"{ID} 张桂兰")
    assert sent == "如信息正确，验证码已发送到您登记的手机，请在5分钟内回复6位验证码。"
    [sms] = await sms_lines(registry, 1)
    assert sms["to"] == "138****8000"
    assert sms["text"].startswith("【示例县民政局】") and len(sms["text"]) <= 70
    reply = await say(client, code_in(sms))
    assert "验证成功" in reply
    assert "【低保】" in reply and f"现在：{STAGE_WORDS['审核']}（" in reply
    assert f"{STAGE_DATE.year}年{STAGE_DATE.month}月{STAGE_DATE.day}日" in reply
    assert "公示7天" in reply
    assert "张*兰" in reply and "张桂兰" not in reply
    # Once bound, 查进度 answers at once.
    again = await say(client, "查进度")
    assert "【低保】" in again
    assert await count(registry, AccessLogEntry, AccessLogEntry.action == "status_view") == 2


async def test_identity_in_two_messages(client, registry: Settings) -> None:
    await say(client, "我的申请")
    assert "姓名" in await say(client, ID)
    assert "验证码已发送" in await say(client, "张桂兰")
    assert len(await sms_lines(registry, 1)) == 1


async def test_same_reply_whether_or_not_the_id_exists(client, registry: Settings) -> None:
    replies = []
    for openid, identity in (("a", f"{ID} 张桂兰"), ("b", f"{OTHER_VALID_ID} 张桂兰"),
                             ("c", f"{ID} 李四")):
        await say(client, "查进度", openid)
        replies.append(await say(client, identity, openid))
    assert len(set(replies)) == 1
    # Only the real match gets an SMS; every attempt leaves the same database trace.
    assert len(await sms_lines(registry, 1)) == 1
    await asyncio.sleep(0.2)
    assert len(await sms_lines(registry, 1, wait=0)) == 1
    assert await count(registry, VerificationCode) == 3


async def test_invalid_id_check_digit_is_explained(client, registry: Settings) -> None:
    await say(client, "查进度")
    reply = await say(client, "341323196208170041 张桂兰")
    assert "校验位不对" in reply


async def test_wrong_and_expired_codes(client, registry: Settings, clock: Clock) -> None:
    await say(client, "查进度")
    await say(client, f"{ID} 张桂兰")
    code = code_in((await sms_lines(registry, 1))[0])
    wrong = "000000" if code != "000000" else "111111"
    assert "验证码不对" in await say(client, wrong)
    await say(client, "查进度")
    clock.advance(minutes=1)  # the phone's next turn
    await say(client, f"{ID} 张桂兰")
    code = code_in((await sms_lines(registry, 2))[-1])
    clock.advance(minutes=5, seconds=1)  # the code lapses
    assert "验证码不对" in await say(client, code)
    assert await count(registry, Binding) == 0


async def test_codes_after_a_wrong_or_expired_one_are_still_codes(
        client, registry: Settings, clock: Clock) -> None:
    """After a wrong code the next 6-digit message is a code again: the right one binds,
    a wrong or lapsed one says so and how to get a new one. None is an inbox question."""
    await say(client, "查进度")
    await say(client, f"{ID} 张桂兰")
    code = code_in((await sms_lines(registry, 1))[0])
    wrong = "000000" if code != "000000" else "111111"
    assert "验证码不对" in await say(client, wrong)
    again = await say(client, wrong)
    assert "验证码不对或已经过期" in again and "查进度" in again
    assert "验证成功" in await say(client, code)
    # A lapsed code, typed twice.
    clock.advance(minutes=1)
    await say(client, "查进度", "late")
    await say(client, f"{ID} 张桂兰", "late")
    late = code_in((await sms_lines(registry, 2))[-1])
    clock.advance(minutes=5, seconds=1)
    for _ in range(2):
        reply = await say(client, late, "late")
        assert "验证码不对或已经过期" in reply and "回复“查进度”" in reply
    # Six digits from someone who never asked for a code.
    assert "验证码不对或已经过期" in await say(client, "246810", "stranger")
    assert await count(registry, Binding) == 1
    assert await count(registry, AskedQuestion) == 0


async def test_tries_from_one_account_lock_it_briefly_and_longer_each_time(
        client, registry: Settings, clock: Clock) -> None:
    for _ in range(5):
        await say(client, "查进度")
        assert "验证码已发送" in await say(client, f"{ID} 李四")
    await say(client, "查进度")
    refused = await say(client, f"{ID} 李四")
    assert "尝试次数太多" in refused
    assert lock_time_text(clock() + timedelta(minutes=1)) in refused
    clock.advance(minutes=1, seconds=1)
    await say(client, "查进度")
    assert "验证码已发送" in await say(client, f"{ID} 李四")  # the sixth try: 2 minutes
    await say(client, "查进度")
    assert "尝试次数太多" in await say(client, f"{ID} 李四")
    clock.advance(minutes=1, seconds=1)
    await say(client, "查进度")
    assert "尝试次数太多" in await say(client, f"{ID} 李四")
    clock.advance(minutes=1)
    await say(client, "查进度")
    assert "验证码已发送" in await say(client, f"{ID} 张桂兰")
    # The right code ends it: the account starts afresh.
    assert "验证成功" in await say(client, code_in((await sms_lines(registry, 1))[-1]))
    assert await count(registry, Binding) == 1


async def test_locks_say_nothing_about_whether_the_id_exists(client, registry: Settings,
                                                             clock: Clock) -> None:
    replies: dict[str, list[str]] = {}
    for openid, identity in (("real", f"{ID} 张桂兰"), ("unknown", f"{OTHER_VALID_ID} 张桂兰"),
                             ("wrong-name", f"{ID} 李四")):
        replies[openid] = []
        for _ in range(7):
            await say(client, "查进度", openid)
            replies[openid].append(await say(client, identity, openid))
    assert replies["real"] == replies["unknown"] == replies["wrong-name"]
    assert "尝试次数太多" in replies["real"][-1]


async def test_strangers_cannot_lock_the_owner_out(client, registry: Settings,
                                                   clock: Clock) -> None:
    """The attack that locked 张桂兰 out for a day: her real ID number with any name,
    five times and more, from other accounts. Each stranger only slows down himself."""
    for i in range(4):
        for _ in range(12):
            await say(client, "查进度", f"stranger-{i}")
            await say(client, f"{ID} 李四", f"stranger-{i}")
        await say(client, "查进度", f"stranger-{i}")
        assert "尝试次数太多" in await say(client, f"{ID} 李四", f"stranger-{i}")
    assert "验证成功" in await bind_self(client, registry, "owner")
    # The right name from a stranger's locked account is refused too (no oracle).
    await say(client, "查进度", "stranger-0")
    assert "尝试次数太多" in await say(client, f"{ID} 张桂兰", "stranger-0")


async def test_one_code_a_minute_and_five_a_day_per_phone(client, registry: Settings,
                                                          clock: Clock) -> None:
    """Four people sharing one phone, five requests each, at once: one SMS."""
    family = [("李秀英", family_id(1)), ("王建国", family_id(2)), ("赵小红", family_id(3))]
    db = Database(registry.database_url)
    async with db.session() as session:
        for n, (name, id_number) in enumerate(family, start=1):
            await save_application(session, Vault(SECRET_KEY), ApplicationRecord(
                number=f"LZ-2026-09{n}", name=name, id_number=id_number, phone=PHONE,
                township="娄庄镇", programme="低保", stage="申请",
                stage_date=clock().date() - timedelta(days=3)), source="test")
    await db.dispose()
    people = [("张桂兰", ID), *family]
    replies = set()
    for _round in range(5):
        for n, (name, id_number) in enumerate(people):
            await say(client, "查进度", f"family-{n}")
            replies.add(await say(client, f"{id_number} {name}", f"family-{n}"))
    assert replies == {"如信息正确，验证码已发送到您登记的手机，请在5分钟内回复6位验证码。"}
    await asyncio.sleep(0.3)
    assert len(await sms_lines(registry, 1)) == 1
    # A minute apart, the phone gets four more today, then none until a day has passed.
    for minute in range(1, 8):
        clock.advance(minutes=1)
        await say(client, "查进度", f"later-{minute}")
        await say(client, f"{ID} 张桂兰", f"later-{minute}")
    assert len(await sms_lines(registry, 5)) == 5
    await asyncio.sleep(0.3)
    assert len(await sms_lines(registry, 5, wait=0)) == 5
    clock.advance(hours=24)
    assert "验证成功" in await bind_self(client, registry, "next-day")
    assert len(await sms_lines(registry, 6, wait=0)) == 6


def family_id(n: int) -> str:
    first17 = f"34132319700101{n:02d}1"
    return first17 + id_check_digit(first17)


async def test_the_same_work_with_and_without_a_match(client, registry: Settings) -> None:
    """A match, an unknown ID number and a wrong name run the same SQL statements in the
    same order, the queueing after the reply included (the courier, which then sends the
    one real SMS, and the content follower run in their own tasks and are left out)."""
    from sqlalchemy import event

    from bot.app import BOT, CONTENT_TASK, COURIER_TASK, DATABASE, ENDPOINT, WRITER

    engine = client.app[DATABASE].engine.sync_engine
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        task = asyncio.current_task()
        if task is None or task.get_name() not in {COURIER_TASK, CONTENT_TASK}:
            statements.append(statement)

    async def work_for(openid: str, identity: str) -> list[str]:
        await say(client, "查进度", openid)
        # The records the bot writes behind its replies (bot/writes.py) land a moment
        # later: the earlier message's before recording, this one's within it.
        await client.app[WRITER].flush()
        statements.clear()
        event.listen(engine, "before_cursor_execute", seen)
        try:
            assert "验证码已发送" in await say(client, identity, openid)
            await client.app[BOT].status.drain()
            await client.app[ENDPOINT].drain()
            await client.app[WRITER].flush()
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        return list(statements)

    match = await work_for("a", f"{ID} 张桂兰")
    unknown = await work_for("b", f"{OTHER_VALID_ID} 张桂兰")
    wrong_name = await work_for("c", f"{ID} 李四")
    assert len(await sms_lines(registry, 1)) == 1
    assert any("INSERT INTO outbox" in s for s in match)
    assert match == unknown == wrong_name


async def test_code_is_single_use(client, registry: Settings) -> None:
    await say(client, "查进度")
    await say(client, f"{ID} 张桂兰")
    code = code_in((await sms_lines(registry, 1))[0])
    assert "验证成功" in await say(client, code)
    assert "已解除绑定" in await say(client, "解除绑定")
    await say(client, "查进度")
    await say(client, f"{ID} 张桂兰")
    assert "验证码不对" in await say(client, code)


async def test_unbind(client, registry: Settings) -> None:
    assert "您还没有绑定" in await say(client, "解除绑定")
    await bind_self(client, registry)
    assert "已解除绑定" in await say(client, "解除绑定")
    assert "身份证号和姓名" in await say(client, "查进度")


async def test_delegated_access(client, registry: Settings) -> None:
    await bind_self(client, registry, "grandma")
    invitation = await say(client, "授权家人", "grandma")
    code = re.search(r"邀请码：([A-Z0-9]{8})", invitation)
    assert code
    assert "绑定成功" in await say(client, f"绑定 {code.group(1)}", "son")
    assert "【低保】" in await say(client, "查进度", "son")
    # The invitation works once only.
    assert "邀请码不对" in await say(client, f"绑定 {code.group(1)}", "stranger")
    # A delegate cannot invite others.
    assert "只有申请人本人" in await say(client, "授权家人", "son")
    assert "已收回授权" in await say(client, "取消授权", "grandma")
    assert "身份证号和姓名" in await say(client, "查进度", "son")
    db = Database(registry.database_url)
    async with db.session() as session:
        actions = (await session.scalars(select(AccessLogEntry.action)
                                         .order_by(AccessLogEntry.id))).all()
        actors = set((await session.scalars(select(AccessLogEntry.actor))).all())
    await db.dispose()
    assert {"bound", "delegate_invited", "status_view", "delegates_revoked"} <= set(actions)
    assert {"wechat:grandma", "wechat:son"} <= actors


async def test_wrong_invitations_slow_down_the_account_that_types_them(
        client, registry: Settings, clock: Clock) -> None:
    await bind_self(client, registry, "grandma")
    code = re.search(r"邀请码：([A-Z0-9]{8})", await say(client, "授权家人", "grandma"))
    assert code
    for _ in range(5):
        assert "邀请码不对" in await say(client, "绑定 ABCDEFGH", "guesser")
    assert "尝试次数太多" in await say(client, f"绑定 {code.group(1)}", "guesser")
    assert "绑定成功" in await say(client, f"绑定 {code.group(1)}", "son")  # others: unaffected
    clock.advance(minutes=1, seconds=1)
    assert "邀请码不对" in await say(client, f"绑定 {code.group(1)}", "guesser")  # used


async def test_an_invitation_lapses_after_a_day(client, registry: Settings,
                                                 clock: Clock) -> None:
    await bind_self(client, registry, "grandma")
    code = re.search(r"邀请码：([A-Z0-9]{8})", await say(client, "授权家人", "grandma"))
    assert code
    clock.advance(days=1, seconds=1)
    assert "邀请码不对" in await say(client, f"绑定 {code.group(1)}", "son")


async def test_menu_click_starts_the_lookup(client, registry: Settings) -> None:
    from tests.wechat import event_xml

    response = await client.post("/wechat", params=signed_query(),
                                 data=event_xml("CLICK", key="MY_APPLICATION"))
    assert "身份证号和姓名" in reply_text(await response.text())


async def test_an_id_number_without_the_command_starts_the_lookup(
        client, registry: Settings, clock: Clock) -> None:
    """"张桂兰 34132319620817004x" sent straight away is the lookup, with the same
    identical reply whether or not the ID and name match a record."""
    replies = [await say(client, identity, openid) for openid, identity in (
        ("straight", f"张桂兰 {ID.lower()}"), ("unknown", f"张桂兰 {OTHER_VALID_ID}"),
        ("wrong-name", f"李四 {ID}"))]
    clock.advance(minutes=1)  # the phone's next turn
    replies.append(await say(client, f"帮我查一下我的申请，身份证{ID}，张桂兰", "wordy"))
    assert set(replies) == {"如信息正确，验证码已发送到您登记的手机，请在5分钟内回复6位验证码。"}
    sms = await sms_lines(registry, 2)
    await asyncio.sleep(0.2)
    assert len(await sms_lines(registry, 2, wait=0)) == 2  # only the two real matches
    assert "验证成功" in await say(client, code_in(sms[1]), "wordy")
    # The ID alone asks for the name, as after 查进度.
    assert "姓名" in await say(client, f"我的身份证是{ID}", "id-only")
    assert "验证码已发送" in await say(client, "张桂兰", "id-only")


async def test_messages_with_personal_numbers_never_reach_the_inbox(
        client, registry: Settings) -> None:
    """Whatever the bot makes of them, messages carrying an ID or phone number (and so
    a name next to one) are not stored among the unanswered questions."""
    for text in (f"张桂兰 {ID.lower()}", f"我叫张桂兰，电话{PHONE}，明天会下雨吗",
                 "张桂兰 138 0013 8000 明天会下雨吗", f"张桂兰{PHONE}", "明天会下雨吗"):
        await say(client, text, "talker")
    db = Database(registry.database_url)
    async with db.session() as session:
        rows = (await session.scalars(select(AskedQuestion))).all()
    await db.dispose()
    assert [row.typed for row in rows] == ["明天会下雨吗"]  # the control question only


async def test_asking_where_my_application_is_starts_the_lookup(
        client, registry: Settings, clock: Clock) -> None:
    """"我的申请到哪一步了" asks for this person's own status: the lookup starts (unbound)
    or the status is shown (bound); asking how to look it up still gets the how-to."""
    for openid, question in (("a", "我的申请到哪一步了"), ("b", "审批到哪了"),
                             ("c", "我的低保批下来没有"), ("d", "俺的低保批下来了吗？")):
        assert "要先核对身份" in await say(client, question, openid), question
    assert "验证码已发送" in await say(client, f"{ID} 张桂兰", "a")
    assert len(await sms_lines(registry, 1)) == 1  # sent before bind_self counts them
    assert "查申请进度这样做" in await say(client, "怎么查我的申请进度", "e")
    assert "查申请进度这样做" in await say(client, "在手机上能查低保审批到哪了吗", "e")
    clock.advance(minutes=1)  # the phone's next turn
    await bind_self(client, registry, "bound")
    reply = await say(client, "审批到哪了", "bound")
    assert "【低保】" in reply and STAGE_WORDS["审核"] in reply


async def test_a_question_during_the_flow_is_still_answered(client, registry: Settings) -> None:
    await say(client, "查进度")
    await say(client, f"{ID} 张桂兰")
    assert "7500" in await say(client, "低保标准是多少")


async def test_no_log_line_or_reply_contains_an_unmasked_number(
        client, registry: Settings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    replies = [await say(client, "查进度"), await say(client, f"我的身份证{ID}，电话{PHONE}")]
    replies.append(await say(client, f"{ID} 张桂兰"))
    replies.append(await bind_self(client, registry))
    replies.append(await say(client, f"帮我查查{ID}这个人"))
    text = "\n".join(replies) + "\n".join(r.getMessage() for r in caplog.records)
    assert ID not in text and ID.lower() not in text
    assert PHONE not in text
    assert "138****8000" in "\n".join(r.getMessage() for r in caplog.records)
    codes = [code_in(sms) for sms in await sms_lines(registry, 1)]
    assert codes and not any(code in text for code in codes)  # nor any code sent


async def test_without_secret_key_the_lookup_is_switched_off(aiohttp_client,
                                                             settings: Settings) -> None:
    from huimin.wiring.apps import create_app

    client = await aiohttp_client(create_app(settings.with_overrides(secret_key=None)))
    assert "暂时用不了" in await say(client, "查进度")


def test_sms_file_path_is_per_test(settings: Settings, tmp_path: Path) -> None:
    assert settings.sms_console_file == tmp_path / "sms.jsonl"
