"""Counting the questions the bot answers, for the staff overview's charts.

The bot records the questions it could not answer one by one (bot.models.AskedQuestion);
answered ones are only counted: ``count_question`` adds to today's count in
``question_tally`` (China day) and keeps nothing about the asker or the question. The
bot counts in memory (:class:`AnswerCounter`) and writes every few seconds, so the
count costs nothing on the reply path.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, time

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot.models import QuestionTally
from huimin.clock import CHINA, utcnow
from huimin.db import Database, dialect_insert

ANSWERED = "answer"  # the band of a question answered directly


async def count_question(target: AsyncSession | AsyncConnection, band: str = ANSWERED,
                         when: datetime | None = None, count: int = 1) -> None:
    """``count`` more questions of ``band`` today (an upsert; safe from many processes)."""
    day = (when or utcnow()).astimezone(CHINA).date()
    stmt = dialect_insert(target, QuestionTally).values(day=day, band=band[:16], count=count)
    stmt = stmt.on_conflict_do_update(index_elements=["day", "band"],
                                      set_={"count": QuestionTally.count + count})
    await target.execute(stmt)


class AnswerCounter:
    """Answered questions counted in memory, per China day, until :meth:`flush`."""

    def __init__(self) -> None:
        self._pending: Counter[date] = Counter()

    def add(self, when: datetime | None = None) -> None:
        self._pending[(when or utcnow()).astimezone(CHINA).date()] += 1

    async def flush(self, db: Database) -> None:
        """Write what was counted (kept for the next flush if the database fails)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, Counter()
        try:
            async with db.engine.begin() as conn:
                for day, count in sorted(pending.items()):
                    await count_question(conn, when=datetime.combine(day, time(12), CHINA),
                                         count=count)
        except Exception:
            self._pending.update(pending)
            raise
