"""Time for every package: one "now", one name for China time, one rule for naive times.

Everything is stored and compared in UTC (the ``AwareDateTime`` column type in
``huimin.db`` hands back aware UTC datetimes on SQLite and PostgreSQL alike). China time
(``CHINA``, Asia/Shanghai) is for what people see and for "which day is it": quiet
hours, daily caps, dates on pages, log lines.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

CHINA = ZoneInfo("Asia/Shanghai")


def utcnow() -> datetime:
    """Timezone-aware now, in UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive ``value`` is taken to be UTC already (the one place that
    decides so: SQLite and plain SQL hand back naive UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def local_today(now: datetime | None = None) -> date:
    """The date in China at ``now`` (default: this moment)."""
    return (now or utcnow()).astimezone(CHINA).date()


def china_midnight(day: date) -> datetime:
    """The start of ``day`` in China, in UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=CHINA).astimezone(UTC)
