"""Limits against guessing: so many failed tries per key in a window, then a lock.

Keys are an openid or the keyed hash of an ID number, so both a person trying
many ID numbers and many people trying one ID number are stopped. Redis when
configured (shared by every process), else the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select

from huimin.db import Database, utcnow
from huimin.registry.models import GuessCounter


@dataclass(frozen=True)
class GuessPolicy:
    tries: int = 5
    window: timedelta = timedelta(hours=1)
    lock: timedelta = timedelta(days=1)


class GuessLimiter(Protocol):
    policy: GuessPolicy

    async def locked_until(self, key: str) -> datetime | None:
        """When the lock on ``key`` ends, or None if it is not locked."""

    async def record_try(self, key: str) -> datetime | None:
        """Count one try; returns the lock's end if this try used up the allowance."""

    async def clear(self, key: str) -> None:
        """Forget the tries (after a success)."""


def _aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=utcnow().tzinfo)


class DatabaseGuessLimiter:
    def __init__(self, db: Database, policy: GuessPolicy | None = None) -> None:
        self.db = db
        self.policy = policy or GuessPolicy()

    async def locked_until(self, key: str) -> datetime | None:
        async with self.db.session() as session:
            row = await session.get(GuessCounter, key)
            until = _aware(row.locked_until) if row else None
        return until if until and until > utcnow() else None

    async def record_try(self, key: str) -> datetime | None:
        now = utcnow()
        async with self.db.session() as session:
            row = await session.scalar(
                select(GuessCounter).where(GuessCounter.key == key).with_for_update())
            if row is None:
                row = GuessCounter(key=key, window_start=now, count=0)
                session.add(row)
            elif _aware(row.window_start) + self.policy.window < now:
                row.window_start, row.count = now, 0
            row.count += 1
            if row.count >= self.policy.tries:
                row.locked_until = now + self.policy.lock
                row.window_start, row.count = now, 0
                return row.locked_until
        return None

    async def clear(self, key: str) -> None:
        async with self.db.session() as session:
            row = await session.get(GuessCounter, key)
            if row is not None:
                row.count = 0


class RedisGuessLimiter:
    def __init__(self, redis: Any, policy: GuessPolicy | None = None,
                 prefix: str = "huimin:guess:") -> None:
        self.redis = redis
        self.policy = policy or GuessPolicy()
        self.prefix = prefix

    async def locked_until(self, key: str) -> datetime | None:
        ttl = await self.redis.pttl(self.prefix + "lock:" + key)
        return utcnow() + timedelta(milliseconds=ttl) if ttl and ttl > 0 else None

    async def record_try(self, key: str) -> datetime | None:
        count_key = self.prefix + "tries:" + key
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(count_key)
            pipe.expire(count_key, int(self.policy.window.total_seconds()), nx=True)
            count, _ = await pipe.execute()
        if count >= self.policy.tries:
            await self.redis.set(self.prefix + "lock:" + key, "1",
                                 ex=int(self.policy.lock.total_seconds()))
            await self.redis.delete(count_key)
            return utcnow() + self.policy.lock
        return None

    async def clear(self, key: str) -> None:
        await self.redis.delete(self.prefix + "tries:" + key)
