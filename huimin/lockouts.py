"""Growing locks against guessing, and turns for sending one-time codes.

:class:`Backoff`: a key (an openid, an openid with one ID number …) gets ``free``
tries; after that each further try locks it for ``first``, doubling, at most
``longest``. Tries are forgotten ``forget`` after the last one, or on success. The
locks are short on purpose: whoever the key names can only ever be slowed down,
never shut out for long by someone else.

:class:`Spacing`: at most one turn per ``every`` and ``per_day`` turns in a rolling
day per key (codes sent to one phone).

Every operation takes ``now`` from its caller's clock, and stored times are
compared with that ``now`` (Redis TTLs only clean up), so a test clock or a moved
process clock sees consistent locks. Redis when configured (shared by every
process), else the ``guess_counters`` table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import bindparam, delete, func, or_, select, update

from huimin.db import Database, dialect_insert
from huimin.registry.models import GuessCounter


@dataclass(frozen=True)
class Backoff:
    """How many tries a key gets before it is locked, and for how long."""

    free: int = 5
    first: timedelta = timedelta(minutes=1)
    longest: timedelta = timedelta(hours=1)
    forget: timedelta = timedelta(hours=24)

    def lock_after(self, tries: int) -> timedelta | None:
        """The lock that try number ``tries`` (1, 2 …) earns, if any."""
        if tries < self.free:
            return None
        return min(self.first * 2 ** min(tries - self.free, 32), self.longest)


@dataclass(frozen=True)
class Spacing:
    """At most one turn per ``every`` and ``per_day`` turns in any 24 hours."""

    every: timedelta = timedelta(minutes=1)
    per_day: int = 5
    day: timedelta = timedelta(hours=24)


class Lockouts(Protocol):
    async def locked_until(self, keys: Sequence[str], now: datetime) -> datetime | None:
        """The latest end of a lock on any of ``keys`` still running at ``now``."""

    async def record(self, keys: Mapping[str, Backoff], now: datetime) -> datetime | None:
        """Count one try on each key (under its policy); the lock it earns, if any."""

    async def clear(self, keys: Sequence[str]) -> None:
        """Forget the tries and locks of ``keys`` (after a success)."""

    async def take_turn(self, key: str, spacing: Spacing, now: datetime) -> bool:
        """Take a turn for ``key`` at ``now`` if ``spacing`` allows one."""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class DatabaseLockouts:
    """Rows in ``guess_counters``: ``window_start`` is the last try (for a backoff) or
    the start of the day (for a spacing), ``locked_until`` the lock or the next turn.

    Each operation runs the same statements whatever the rows hold (insert if missing,
    read under lock, write back), so its cost says nothing about the key."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def locked_until(self, keys: Sequence[str], now: datetime) -> datetime | None:
        async with self.db.engine.connect() as conn:
            until = await conn.scalar(
                select(func.max(GuessCounter.locked_until))
                .where(GuessCounter.key.in_(list(keys))))
        return until if until is not None and until > now else None

    async def _rows(self, session: Any, keys: Sequence[str],
                    now: datetime) -> dict[str, list[Any]]:
        await session.execute(
            dialect_insert(session, GuessCounter).on_conflict_do_nothing(
                index_elements=["key"]),
            [{"key": key, "window_start": now, "count": 0} for key in keys])
        rows = (await session.execute(
            select(GuessCounter.key, GuessCounter.window_start, GuessCounter.count,
                   GuessCounter.locked_until)
            .where(GuessCounter.key.in_(list(keys)))
            .order_by(GuessCounter.key).with_for_update())).all()
        return {row.key: [row.window_start, row.count, row.locked_until]
                for row in rows}

    async def _write(self, session: Any, rows: dict[str, list[Any]]) -> None:
        table = GuessCounter.__table__
        await session.execute(
            update(table).where(table.c.key == bindparam("k"))
            .values(window_start=bindparam("w"), count=bindparam("c"),
                    locked_until=bindparam("u")),
            [{"k": key, "w": w, "c": c, "u": u} for key, (w, c, u) in sorted(rows.items())])

    async def record(self, keys: Mapping[str, Backoff], now: datetime) -> datetime | None:
        earned = None
        async with self.db.session() as session:
            rows = await self._rows(session, sorted(keys), now)
            for key, policy in keys.items():
                last, tries, until = rows[key]
                if tries and last + policy.forget <= now:
                    tries, until = 0, None
                tries += 1
                lock = policy.lock_after(tries)
                if lock is not None:
                    until = now + lock
                    earned = max(earned or until, until)
                rows[key] = [now, tries, until]
            await self._write(session, rows)
        return earned

    async def clear(self, keys: Sequence[str]) -> None:
        async with self.db.engine.begin() as conn:
            await conn.execute(delete(GuessCounter).where(GuessCounter.key.in_(list(keys))))

    async def take_turn(self, key: str, spacing: Spacing, now: datetime) -> bool:
        async with self.db.session() as session:
            rows = await self._rows(session, [key], now)
            start, count, next_turn = rows[key]
            if start + spacing.day <= now or start > now:
                start, count = now, 0
            allowed = (next_turn is None or next_turn <= now) and count < spacing.per_day
            if allowed:
                count, next_turn = count + 1, now + spacing.every
            rows[key] = [start, count, next_turn]
            await self._write(session, rows)
        return allowed

    async def forget_old(self, prefixes: Sequence[str], older_than: timedelta,
                         now: datetime) -> int:
        """Drop rows under ``prefixes`` untouched for ``older_than`` and not locked."""
        async with self.db.engine.begin() as conn:
            result = await conn.execute(delete(GuessCounter).where(
                or_(*[GuessCounter.key.startswith(p, autoescape=True) for p in prefixes]),
                GuessCounter.window_start < now - older_than,
                or_(GuessCounter.locked_until.is_(None), GuessCounter.locked_until < now)))
        return result.rowcount or 0


_MS = timedelta(milliseconds=1)


def _ms(value: datetime | timedelta) -> int:
    if isinstance(value, timedelta):
        return value // _MS
    return (value - _EPOCH) // _MS


def _from_ms(value: int) -> datetime:
    return _EPOCH + value * _MS


class RedisLockouts:
    """One hash per key; times are milliseconds of the callers' clock."""

    _RECORD = """
    local now, free = tonumber(ARGV[1]), tonumber(ARGV[2])
    local first, longest, forget = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
    local tries = tonumber(redis.call('HGET', KEYS[1], 'tries') or '0')
    local last = tonumber(redis.call('HGET', KEYS[1], 'last') or '0')
    local lock = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
    if tries > 0 and last + forget <= now then tries, lock = 0, 0 end
    tries = tries + 1
    local earned = 0
    if tries >= free then
      local span = first * 2 ^ math.min(tries - free, 32)
      if span > longest then span = longest end
      lock, earned = now + span, now + span
    end
    redis.call('HSET', KEYS[1], 'tries', tries, 'last', now, 'until', lock)
    redis.call('PEXPIRE', KEYS[1], forget + longest)
    return earned
    """
    _TURN = """
    local now, every = tonumber(ARGV[1]), tonumber(ARGV[2])
    local per_day, day = tonumber(ARGV[3]), tonumber(ARGV[4])
    local start = tonumber(redis.call('HGET', KEYS[1], 'start') or '0')
    local count = tonumber(redis.call('HGET', KEYS[1], 'count') or '0')
    local next_turn = tonumber(redis.call('HGET', KEYS[1], 'next') or '0')
    if start + day <= now or start > now then start, count = now, 0 end
    local allowed = 0
    if next_turn <= now and count < per_day then
      count, next_turn, allowed = count + 1, now + every, 1
    end
    redis.call('HSET', KEYS[1], 'start', start, 'count', count, 'next', next_turn)
    redis.call('PEXPIRE', KEYS[1], day + every)
    return allowed
    """

    def __init__(self, redis: Any, prefix: str = "huimin:lockout:") -> None:
        self.redis = redis
        self.prefix = prefix
        self._record = redis.register_script(self._RECORD)
        self._turn = redis.register_script(self._TURN)

    async def locked_until(self, keys: Sequence[str], now: datetime) -> datetime | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hget(self.prefix + key, "until")
            values = await pipe.execute()
        until = max((int(float(v)) for v in values if v), default=0)
        return _from_ms(until) if until > _ms(now) else None

    async def record(self, keys: Mapping[str, Backoff], now: datetime) -> datetime | None:
        earned = 0
        for key, policy in sorted(keys.items()):
            got = await self._record(keys=[self.prefix + key], args=[
                _ms(now), policy.free, _ms(policy.first), _ms(policy.longest),
                _ms(policy.forget)])
            earned = max(earned, int(got or 0))
        return _from_ms(earned) if earned else None

    async def clear(self, keys: Sequence[str]) -> None:
        await self.redis.delete(*[self.prefix + key for key in keys])

    async def take_turn(self, key: str, spacing: Spacing, now: datetime) -> bool:
        return bool(await self._turn(keys=[self.prefix + key], args=[
            _ms(now), _ms(spacing.every), spacing.per_day, _ms(spacing.day)]))
