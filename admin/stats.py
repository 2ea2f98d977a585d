"""Figures for the overview (首页) and the reminders page: counts per China day, the
topics of unanswered questions, and how rechecks are kept up.

Days are China days (UTC+8); the database groups by them itself, so a month of
reminders is counted without reading every row.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Date, and_, case, cast, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from admin.inbox import NONE_CHOSEN, REFERRED, SUGGEST_AT
from bot.models import AskedQuestion, QuestionTally
from bot.tally import ANSWERED
from content.models import FaqEntryRow
from huimin.clock import china_midnight, local_today
from huimin.registry.models import Application
from notify.models import OutboxMessage

MAX_TOPIC_ROWS = 20000
NO_TOPIC = "说不清是哪方面（没有接近的问答）"


def day_range(days: int, now: datetime | None = None) -> tuple[datetime, list[date]]:
    """The start (UTC) of the first of the last ``days`` China days, and those days."""
    today = local_today(now)
    all_days = [today - timedelta(days=days - 1 - i) for i in range(days)]
    return china_midnight(all_days[0]), all_days


def local_day(column: Any, dialect: str) -> Any:
    """SQL for the China day of a stored UTC time (no bound parameters, so the same
    expression can be used in GROUP BY on PostgreSQL)."""
    if dialect == "postgresql":
        return cast(func.timezone(literal_column("'Asia/Shanghai'"), column), Date)
    return func.date(column, literal_column("'+8 hours'"))


def to_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


# ----- questions ------------------------------------------------------------------------
@dataclass
class QuestionDays:
    days: list[date]
    picked: list[int]  # asked back, the user then picked an entry
    not_picked: list[int]  # asked back, the user picked none (or did not reply)
    unknown: list[int]  # not answered
    answered: list[int] | None  # answered directly; None: not counted (yet)
    referred: list[int] = field(default_factory=list)  # another office's: told where to go

    @property
    def unanswered_total(self) -> int:
        """Asked back or not answered (referrals are counted apart)."""
        return sum(self.picked) + sum(self.not_picked) + sum(self.unknown)

    @property
    def referred_total(self) -> int:
        return sum(self.referred)

    @property
    def answered_total(self) -> int:
        return sum(self.answered or [])


async def question_days(session: AsyncSession, days: int = 30,
                        now: datetime | None = None) -> QuestionDays:
    first, all_days = day_range(days, now)
    day = local_day(AskedQuestion.asked_at, session.bind.dialect.name)
    picked = case((or_(AskedQuestion.chosen_faq_id.is_(None),
                       AskedQuestion.chosen_faq_id == NONE_CHOSEN), "no"), else_="yes")
    rows = (await session.execute(
        select(day, AskedQuestion.band, picked, func.count())
        .where(AskedQuestion.asked_at >= first)
        .group_by(day, AskedQuestion.band, picked))).all()
    found: Counter[tuple[date, str]] = Counter()
    for d, band, was_picked, n in rows:
        if band == "choices":
            key = "picked" if was_picked == "yes" else "not_picked"
        elif band == REFERRED:
            key = "referred"
        else:
            key = "unknown"
        found[(to_date(d), key)] += int(n)
    tally = (await session.execute(
        select(QuestionTally.day, QuestionTally.count)
        .where(and_(QuestionTally.band == ANSWERED, QuestionTally.day >= all_days[0])))).all()
    ever_counted = await session.scalar(select(func.count()).select_from(QuestionTally))
    answered_by_day = {to_date(d): int(n) for d, n in tally}
    return QuestionDays(
        days=all_days,
        picked=[found[(d, "picked")] for d in all_days],
        not_picked=[found[(d, "not_picked")] for d in all_days],
        unknown=[found[(d, "unknown")] for d in all_days],
        referred=[found[(d, "referred")] for d in all_days],
        answered=[answered_by_day.get(d, 0) for d in all_days] if ever_counted else None)


async def question_topics(session: AsyncSession, days: int = 30,
                          now: datetime | None = None) -> list[tuple[str, int]]:
    """Unanswered questions of the last ``days`` days by the FAQ category they were
    nearest to (the entry the user picked, else the matcher's first candidate when it
    was close at all): where people understand the policy least. Most first.
    Questions referred to another office are left out: they are not the FAQ's."""
    first, _ = day_range(days, now)
    categories = dict((await session.execute(
        select(FaqEntryRow.id, FaqEntryRow.category))).all())
    rows = (await session.execute(
        select(AskedQuestion.candidates, AskedQuestion.chosen_faq_id)
        .where(AskedQuestion.asked_at >= first, AskedQuestion.band != REFERRED)
        .order_by(AskedQuestion.id.desc()).limit(MAX_TOPIC_ROWS))).all()
    topics: Counter[str] = Counter()
    for candidates, chosen in rows:
        faq_id = chosen if chosen and chosen != NONE_CHOSEN else None
        if faq_id is None and candidates:
            best = candidates[0]
            if float(best.get("score", 0)) >= SUGGEST_AT:
                faq_id = str(best.get("faq_id"))
        topics[categories.get(faq_id, NO_TOPIC) if faq_id else NO_TOPIC] += 1
    return sorted(topics.items(), key=lambda kv: (-kv[1], kv[0] == NO_TOPIC, kv[0]))


# ----- reminders --------------------------------------------------------------------------
async def reminder_days(session: AsyncSession, days: int = 30, now: datetime | None = None
                        ) -> tuple[list[date], list[int], list[int]]:
    """Reminders sent and delivered per China day."""
    first, all_days = day_range(days, now)
    dialect = session.bind.dialect.name
    result = []
    for column in (OutboxMessage.sent_at, OutboxMessage.delivered_at):
        day = local_day(column, dialect)
        rows = (await session.execute(
            select(day, func.count()).where(column >= first).group_by(day))).all()
        found = {to_date(d): int(n) for d, n in rows}
        result.append([found.get(d, 0) for d in all_days])
    return all_days, result[0], result[1]


# ----- rechecks ---------------------------------------------------------------------------
@dataclass
class Rechecks:
    months: list[str]  # "2026-11", oldest first
    done: list[int]
    not_done: list[int]
    total_done: int
    total_not_done: int
    due_soon: int  # recheck dates in the next 30 days

    @property
    def total(self) -> int:
        return self.total_done + self.total_not_done


def _month(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


async def rechecks(session: AsyncSession, months: int = 12, now: datetime | None = None
                   ) -> Rechecks:
    """Applications whose recheck date has passed: rechecked (a stage date on or after
    the recheck date) or not, by the month the recheck was due."""
    today = local_today(now)
    rows = (await session.execute(
        select(Application.recheck_due, Application.stage_date)
        .where(and_(Application.recheck_due.is_not(None),
                    Application.recheck_due < today)))).all()
    month_keys = []
    year, month = today.year, today.month
    for _ in range(months):
        month_keys.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    month_keys.reverse()
    done: Counter[str] = Counter()
    not_done: Counter[str] = Counter()
    for due, stage_date in rows:
        due, stage_date = to_date(due), to_date(stage_date)
        (done if stage_date >= due else not_done)[_month(due)] += 1
    due_soon = await session.scalar(
        select(func.count()).select_from(Application)
        .where(and_(Application.recheck_due >= today,
                    Application.recheck_due <= today + timedelta(days=30)))) or 0
    return Rechecks(months=month_keys, done=[done[m] for m in month_keys],
                    not_done=[not_done[m] for m in month_keys],
                    total_done=sum(done.values()), total_not_done=sum(not_done.values()),
                    due_soon=int(due_soon))
