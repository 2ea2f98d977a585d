"""Answered questions are counted (not recorded) for the staff overview."""

from __future__ import annotations

from sqlalchemy import select

from bot.app import BOT, DATABASE
from bot.models import QuestionTally
from tests.wechat import reply_text, signed_query, text_xml


async def test_answered_questions_are_counted_per_day(client) -> None:  # type: ignore[no-untyped-def]
    for question in ("低保标准是多少", "五保户是啥", "明天会下雨吗"):
        response = await client.post("/wechat", params=signed_query(), data=text_xml(question))
        assert reply_text(await response.text())
    bot, db = client.app[BOT], client.app[DATABASE]
    await bot.answered.flush(db)
    await bot.answered.flush(db)  # nothing new: nothing written twice
    async with db.session() as session:
        rows = (await session.execute(select(QuestionTally.band, QuestionTally.count))).all()
    assert [tuple(r) for r in rows] == [("answer", 2)]  # the weather question was declined
