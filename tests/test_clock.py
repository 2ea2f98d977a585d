"""One time module (huimin.clock) and the AwareDateTime column type: what is written in
any zone comes back as the same moment, aware and in UTC, on SQLite as on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from sqlalchemy import Column, Integer, MetaData, Table, insert, select

from huimin.clock import CHINA, as_utc, china_midnight, local_today
from huimin.db import AwareDateTime, Database

probe = Table("clock_probe", MetaData(), Column("id", Integer, primary_key=True),
              Column("at", AwareDateTime()))

NOON_IN_CHINA = datetime(2026, 12, 2, 12, 0, tzinfo=CHINA)


async def test_a_time_written_in_china_time_comes_back_as_the_same_moment_in_utc(
        database_url: str) -> None:
    db = Database(database_url)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(probe.create)
            await conn.execute(insert(probe), [
                {"id": 1, "at": NOON_IN_CHINA},
                {"id": 2, "at": datetime(2026, 12, 2, 4, 0)},  # naive: taken as UTC
                {"id": 3, "at": None}])
        async with db.engine.connect() as conn:
            rows = dict((await conn.execute(select(probe.c.id, probe.c.at))).all())
            # Compared with a bound value in another zone: the same moment matches.
            same = await conn.scalar(select(probe.c.id).where(
                probe.c.at == datetime(2026, 12, 2, 4, 0, tzinfo=UTC), probe.c.id == 1))
            later = (await conn.execute(select(probe.c.id).where(
                probe.c.at > NOON_IN_CHINA - timedelta(minutes=1)))).scalars().all()
        assert rows[1] == datetime(2026, 12, 2, 4, 0, tzinfo=UTC)
        assert rows[1].utcoffset() == timedelta(0)
        assert rows[2] == datetime(2026, 12, 2, 4, 0, tzinfo=UTC)
        assert rows[2].tzinfo is not None
        assert rows[3] is None
        assert same == 1
        assert sorted(later) == [1, 2]
    finally:
        async with db.engine.begin() as conn:
            await conn.run_sync(probe.drop)
        await db.dispose()


def test_a_naive_time_is_taken_as_utc_and_an_aware_one_is_moved_to_utc() -> None:
    assert as_utc(datetime(2026, 1, 1, 8, 0)) == datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    moved = as_utc(datetime(2026, 1, 1, 8, 0, tzinfo=timezone(timedelta(hours=8))))
    assert moved.tzinfo is UTC and moved.hour == 0


def test_the_day_in_china_turns_at_midnight_china_time() -> None:
    assert local_today(datetime(2026, 12, 1, 15, 59, tzinfo=UTC)) == date(2026, 12, 1)
    assert local_today(datetime(2026, 12, 1, 16, 0, tzinfo=UTC)) == date(2026, 12, 2)
    assert china_midnight(date(2026, 12, 2)) == datetime(2026, 12, 1, 16, 0, tzinfo=UTC)
