"""When and how often reminders may go out: quiet hours, per-phone caps, provider rate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from huimin.db import Database, dialect_insert, utcnow
from huimin.registry.models import GuessCounter

LOCAL = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class QuietHours:
    """Non-urgent messages wait while the local clock is in [start, end)."""

    start: clock = clock(21, 0)
    end: clock = clock(8, 0)

    def is_quiet(self, moment: datetime) -> bool:
        local = moment.astimezone(LOCAL).time()
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def next_allowed(self, moment: datetime) -> datetime:
        """``moment`` itself outside quiet hours, else the end of this quiet spell."""
        if not self.is_quiet(moment):
            return moment
        local = moment.astimezone(LOCAL)
        end = datetime.combine(local.date(), self.end, tzinfo=LOCAL)
        if end <= local:
            end += timedelta(days=1)
        return end.astimezone(moment.tzinfo or LOCAL)


def local_today(moment: datetime | None = None) -> date:
    return (moment or utcnow()).astimezone(LOCAL).date()


@dataclass(frozen=True)
class PhoneCaps:
    """At most one SMS per ``spacing`` and ``per_day`` a day to one phone."""

    spacing: timedelta = timedelta(seconds=30)
    per_day: int = 10


class DatabasePhoneLimiter:
    """Per-phone caps kept in the guess_counters table (keys by phone hash)."""

    def __init__(self, db: Database, caps: PhoneCaps | None = None) -> None:
        self.db = db
        self.caps = caps or PhoneCaps()

    async def reserve(self, phone_hash: str, now: datetime) -> datetime | None:
        """Take a slot now, or return when the next slot opens."""
        return (await self.reserve_many([(0, phone_hash)], now))[0]

    async def reserve_many(self, wanted: Sequence[tuple[int, str]],
                           now: datetime) -> dict[int, datetime | None]:
        """Slots for many messages (id, phone hash) in one transaction, in order: a
        message gets None (send now) or when its phone's next slot opens."""
        today = local_today(now).isoformat()
        keys = {h: (f"sms-last:{h}", f"sms-day:{h}:{today}") for _, h in wanted}
        all_keys = sorted({k for pair in keys.values() for k in pair})
        result: dict[int, datetime | None] = {}
        async with self.db.session() as session:
            # Make sure the rows exist, so two workers lock the same rows (FOR UPDATE)
            # instead of racing to insert them.
            await session.execute(
                dialect_insert(session, GuessCounter)
                .on_conflict_do_nothing(index_elements=["key"]),
                [{"key": key, "window_start": _EPOCH, "count": 0} for key in all_keys])
            rows = {r.key: r for r in (await session.scalars(
                select(GuessCounter).where(GuessCounter.key.in_(all_keys))
                .order_by(GuessCounter.key).with_for_update())).all()}
            for message_id, phone_hash in wanted:
                last_key, day_key = keys[phone_hash]
                last, day = rows[last_key], rows[day_key]
                previous = _aware(last.window_start)
                if last.count and previous + self.caps.spacing > now:
                    result[message_id] = previous + self.caps.spacing
                elif day.count >= self.caps.per_day:
                    result[message_id] = _next_morning(now)
                else:
                    last.window_start, last.count = now, last.count + 1
                    day.window_start, day.count = now, day.count + 1
                    result[message_id] = None
        return result


def _next_morning(now: datetime) -> datetime:
    return datetime.combine(local_today(now) + timedelta(days=1), clock(8, 0), tzinfo=LOCAL)


class RedisPhoneLimiter:
    def __init__(self, redis: Any, caps: PhoneCaps | None = None) -> None:
        self.redis = redis
        self.caps = caps or PhoneCaps()

    async def reserve(self, phone_hash: str, now: datetime) -> datetime | None:
        spacing_key = f"huimin:sms-last:{phone_hash}"
        day_key = f"huimin:sms-day:{phone_hash}:{local_today(now).isoformat()}"
        spacing_ms = int(self.caps.spacing.total_seconds() * 1000)
        if not await self.redis.set(spacing_key, "1", nx=True, px=spacing_ms):
            ttl = await self.redis.pttl(spacing_key)
            return now + timedelta(milliseconds=max(ttl, 1))
        count = await self.redis.incr(day_key)
        if count == 1:
            await self.redis.expire(day_key, 2 * 24 * 3600)
        if count > self.caps.per_day:
            return _next_morning(now)
        return None

    async def reserve_many(self, wanted: Sequence[tuple[int, str]],
                           now: datetime) -> dict[int, datetime | None]:
        return {message_id: await self.reserve(phone_hash, now)
                for message_id, phone_hash in wanted}


_EPOCH = datetime(2000, 1, 1, tzinfo=LOCAL)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=utcnow().tzinfo)


class RateLimiter:
    """At most ``rate`` sends a second through one provider (token bucket, this process).

    With several workers, give each a share of the provider's rate
    (``HUIMIN_NOTIFY_RATE`` is per worker).
    """

    def __init__(self, rate: float, burst: int | None = None) -> None:
        self.rate = rate
        self.capacity = float(burst or max(1, int(rate)))
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self, count: int = 1) -> None:
        """Wait until ``count`` sends fit the rate (a count above the burst is paid for
        in instalments)."""
        async with self._lock:
            while count > 0:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                self.updated = now
                part = min(count, self.capacity)
                if self.tokens >= part:
                    self.tokens -= part
                    count -= part
                    continue
                await asyncio.sleep((part - self.tokens) / self.rate)
