"""我的授权码: a family member asks the bot for a short code a clerk types in the staff UI
(the admin side is in tests/admin/test_registry.py)."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from bot.models import AskedQuestion
from huimin.db import Database
from huimin.personal import Vault
from huimin.registry import grants
from huimin.registry.models import AccessLogEntry, GrantCode
from huimin.settings import Settings
from tests.conftest import SECRET_KEY
from tests.wechat import reply_text, signed_query, text_xml

CODE = re.compile(r"您的授权码：([A-Z0-9]+)")


async def say(client, text: str, openid: str = "family-1") -> str:  # type: ignore[no-untyped-def]
    response = await client.post("/wechat", params=signed_query(),
                                 data=text_xml(text, openid=openid))
    assert response.status == 200
    return reply_text(await response.text())


async def codes_of(settings: Settings, openid: str) -> list[GrantCode]:
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            return list((await session.scalars(select(GrantCode).where(
                GrantCode.openid == openid).order_by(GrantCode.id))).all())
    finally:
        await db.dispose()


async def test_the_bot_gives_a_short_one_day_code_stored_hashed(client,  # type: ignore[no-untyped-def]
                                                                settings: Settings) -> None:
    reply = await say(client, "我的授权码")
    found = CODE.search(reply)
    assert found, reply
    code = found.group(1)
    assert len(code) == grants.LENGTH and set(code) <= set(grants.ALPHABET)
    assert "24小时内有效，只能用一次" in reply and "工作人员" in reply
    (row,) = await codes_of(settings, "family-1")
    assert code not in row.code_hash and row.code_hash == Vault(SECRET_KEY).code_hash(
        code, grants.PURPOSE)
    assert abs((row.expires_at - row.created_at) - timedelta(days=1)) < timedelta(seconds=1)
    # 授权码 (and with punctuation or full-width spaces) asks too; the new code replaces
    # the old one, which can no longer be used
    second = CODE.search(await say(client, "授权码？"))
    assert second and second.group(1) != code
    first, latest = await codes_of(settings, "family-1")
    assert first.expires_at <= latest.created_at < latest.expires_at
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            assert await grants.redeem(session, Vault(SECRET_KEY), code, "staff:x") is None
            logged = (await session.scalars(select(AccessLogEntry.action))).all()
        assert logged.count("grant_code_issued") == 2
        # never taken for a question (so never in the unanswered inbox)
        async with db.session() as session:
            assert not (await session.scalars(select(AskedQuestion))).all()
    finally:
        await db.dispose()


async def test_codes_are_rate_limited_per_wechat_account(client,  # type: ignore[no-untyped-def]
                                                        settings: Settings) -> None:
    for _ in range(grants.PER_DAY):
        assert CODE.search(await say(client, "我的授权码"))
    refused = await say(client, "我的授权码")
    assert CODE.search(refused) is None and f"今天已经要过{grants.PER_DAY}次授权码了" in refused
    assert len(await codes_of(settings, "family-1")) == grants.PER_DAY
    # another account is not held back
    assert CODE.search(await say(client, "我的授权码", openid="family-2"))


def test_typed_codes_are_read_leniently() -> None:
    assert grants.typed_code(" k7m-2qp ") == "K7M2QP"
    assert grants.typed_code("Ｋ７Ｍ２ＱＰ") == "K7M2QP"  # full width
    assert grants.typed_code("K7M2Q0") is None  # 0 is not in the alphabet
    assert grants.typed_code("oSelfBoundOpenid0123456789wxyz") is None
