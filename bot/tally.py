"""Counting the questions the bot answers, for the staff overview's charts.

The bot records the questions it could not answer one by one (bot.models.AskedQuestion);
answered ones are only counted: ``count_question`` adds one to today's count in
``question_tally`` (China day) and keeps nothing about the asker or the question.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot.models import QuestionTally
from huimin.db import dialect_insert, utcnow

ANSWERED = "answer"  # the band of a question answered directly
_CHINA = timezone(timedelta(hours=8))


async def count_question(target: AsyncSession | AsyncConnection, band: str = ANSWERED,
                         when: datetime | None = None) -> None:
    """One more question of ``band`` today (an upsert; safe from many processes)."""
    day = (when or utcnow()).astimezone(_CHINA).date()
    stmt = dialect_insert(target, QuestionTally).values(day=day, band=band[:16], count=1)
    stmt = stmt.on_conflict_do_update(index_elements=["day", "band"],
                                      set_={"count": QuestionTally.count + 1})
    await target.execute(stmt)
