"""When and how often reminders may go out: quiet hours, per-phone caps, and each
provider's send rate (shared by every worker through Redis or the database)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as clock
from typing import Any

from sqlalchemy import bindparam, case, select, update

from huimin.clock import CHINA, local_today
from huimin.db import Database, dialect_insert
from huimin.registry.models import GuessCounter
from notify.models import SendRate


@dataclass(frozen=True)
class QuietHours:
    """Non-urgent messages wait while the local clock is in [start, end)."""

    start: clock = clock(21, 0)
    end: clock = clock(8, 0)

    def is_quiet(self, moment: datetime) -> bool:
        local = moment.astimezone(CHINA).time()
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def next_allowed(self, moment: datetime) -> datetime:
        """``moment`` itself outside quiet hours, else the end of this quiet spell."""
        if not self.is_quiet(moment):
            return moment
        local = moment.astimezone(CHINA)
        end = datetime.combine(local.date(), self.end, tzinfo=CHINA)
        if end <= local:
            end += timedelta(days=1)
        return end.astimezone(moment.tzinfo or CHINA)


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
            rows = {row.key: [row.window_start, row.count] for row in (
                await session.execute(
                    select(GuessCounter.key, GuessCounter.window_start, GuessCounter.count)
                    .where(GuessCounter.key.in_(all_keys))
                    .order_by(GuessCounter.key).with_for_update())).all()}
            changed: set[str] = set()
            for message_id, phone_hash in wanted:
                last_key, day_key = keys[phone_hash]
                last, day = rows[last_key], rows[day_key]
                if last[1] and last[0] + self.caps.spacing > now:
                    result[message_id] = last[0] + self.caps.spacing
                elif day[1] >= self.caps.per_day:
                    result[message_id] = _next_morning(now)
                else:
                    last[0], last[1] = now, last[1] + 1
                    day[0], day[1] = now, day[1] + 1
                    changed.update((last_key, day_key))
                    result[message_id] = None
            if changed:
                table = GuessCounter.__table__
                await session.execute(
                    update(table).where(table.c.key == bindparam("k"))
                    .values(window_start=bindparam("w"), count=bindparam("c")),
                    [{"k": key, "w": rows[key][0], "c": rows[key][1]}
                     for key in sorted(changed)])
        return result


def _next_morning(now: datetime) -> datetime:
    return datetime.combine(local_today(now) + timedelta(days=1), clock(8, 0), tzinfo=CHINA)


class RedisPhoneLimiter:
    """Per-phone caps in Redis: a spacing key that expires after 30 s and a day counter,
    checked and taken for a whole chunk of messages in one script (one round trip)."""

    _SCRIPT = """
    local out = {}
    for i = 1, #KEYS, 2 do
      local wait = redis.call('PTTL', KEYS[i])
      if wait > 0 then
        out[#out + 1] = wait
      elseif tonumber(redis.call('GET', KEYS[i + 1]) or '0') >= tonumber(ARGV[2]) then
        out[#out + 1] = -1
      else
        redis.call('SET', KEYS[i], '1', 'PX', ARGV[1])
        redis.call('INCR', KEYS[i + 1])
        redis.call('EXPIRE', KEYS[i + 1], ARGV[3])
        out[#out + 1] = 0
      end
    end
    return out
    """

    def __init__(self, redis: Any, caps: PhoneCaps | None = None) -> None:
        self.redis = redis
        self.caps = caps or PhoneCaps()
        self._script = redis.register_script(self._SCRIPT)

    async def reserve(self, phone_hash: str, now: datetime) -> datetime | None:
        return (await self.reserve_many([(0, phone_hash)], now))[0]

    async def reserve_many(self, wanted: Sequence[tuple[int, str]],
                           now: datetime) -> dict[int, datetime | None]:
        """Slots for many messages (id, phone hash), in order: None (send now), or when
        the phone's next slot opens (the spacing key's expiry, or the next morning)."""
        if not wanted:
            return {}
        today = local_today(now).isoformat()
        keys = [key for _, phone_hash in wanted
                for key in (f"huimin:sms-last:{phone_hash}",
                            f"huimin:sms-day:{phone_hash}:{today}")]
        spacing_ms = max(1, int(self.caps.spacing.total_seconds() * 1000))
        answers = await self._script(keys=keys, args=[spacing_ms, self.caps.per_day,
                                                      2 * 24 * 3600])
        result: dict[int, datetime | None] = {}
        for (message_id, _), answer in zip(wanted, answers, strict=True):
            wait = int(answer)
            result[message_id] = (None if wait == 0 else _next_morning(now) if wait < 0
                                  else now + timedelta(milliseconds=wait))
        return result


_EPOCH = datetime(2000, 1, 1, tzinfo=CHINA)


async def wait_until(moment: float) -> None:
    """Sleep until ``moment`` (Unix seconds), if it is still ahead."""
    delay = moment - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


class RateLimiter:
    """At most ``rate`` sends a second, in this process only (the providers' lookup
    calls, and workers built without a shared store, as in tests).

    Like :class:`SharedRateLimiter` it keeps a schedule (the "generic cell rate
    algorithm"): :meth:`reserve` books ``count`` sends and says when their share of the
    rate starts; up to ``burst`` seconds' worth may go ahead of the schedule.
    """

    def __init__(self, rate: float, burst: float = 0.5) -> None:
        self.rate, self.burst = rate, burst
        self._next = 0.0

    async def reserve(self, count: int) -> float:
        start = max(self._next, time.time())
        self._next = start + count / self.rate
        return start

    async def take(self, count: int = 1) -> None:
        """Book ``count`` sends and wait until they fit the rate."""
        start = await self.reserve(count)
        await wait_until(start + count / self.rate - self.burst)


class SharedRateLimiter(RateLimiter):
    """At most ``rate`` sends a second through one provider, counted across every worker
    process (``HUIMIN_NOTIFY_RATE`` is the provider's own limit).

    The provider's schedule is one shared number, the time the next send may start:
    :meth:`reserve` moves it on by ``count / rate`` seconds in one atomic step in Redis
    or the database. One round trip per reservation, whatever the count, so a worker
    books a whole chunk at once and spaces the chunk's calls itself.
    """

    def __init__(self, store: Any, key: str, rate: float, burst: float = 0.5) -> None:
        super().__init__(rate, burst)
        self.store, self.key = store, key

    async def reserve(self, count: int) -> float:
        return float(await self.store.reserve(self.key, count / self.rate))


class DatabaseRateStore:
    """Shared send schedules in the ``send_rates`` table (times in Unix seconds)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._known: set[str] = set()

    async def reserve(self, key: str, cost: float) -> float:
        """Move the schedule on by ``cost`` seconds; return when this take may start."""
        now = time.time()
        table = SendRate.__table__
        async with self.db.session() as session:
            if key not in self._known:
                await session.execute(dialect_insert(session, SendRate)
                                      .on_conflict_do_nothing(index_elements=["key"]),
                                      [{"key": key, "next_at": 0.0}])
            start = case((table.c.next_at > now, table.c.next_at), else_=now)
            ends = (await session.execute(
                update(table).where(table.c.key == key).values(next_at=start + cost)
                .returning(table.c.next_at))).scalar_one()
        self._known.add(key)
        return float(ends) - cost


class RedisRateStore:
    """Shared send schedules in Redis, on Redis's own clock."""

    _SCRIPT = """
    local now = redis.call('TIME')
    local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
    local start = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), t)
    redis.call('SET', KEYS[1], string.format('%.6f', start + tonumber(ARGV[1])), 'EX', 3600)
    return {string.format('%.6f', start), string.format('%.6f', t)}
    """

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._script = redis.register_script(self._SCRIPT)

    async def reserve(self, key: str, cost: float) -> float:
        """Move the schedule on by ``cost`` seconds; return when this take may start,
        in this machine's time (Redis's offset from it removed)."""
        start, redis_now = await self._script(keys=[f"huimin:rate:{key}"], args=[repr(cost)])
        return float(start) - float(redis_now) + time.time()
