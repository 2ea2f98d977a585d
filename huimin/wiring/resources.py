"""The composition root's resources: the database and Redis, opened once per process,
and every store that lives in Redis when ``HUIMIN_REDIS_URL`` is set, else in the
database. This is the one place that makes that choice; the bot, the staff UI, the
notifier and the CLI are handed what is built here.

===================  ===============================  ================================
store                with Redis                       without
===================  ===============================  ================================
dedup ledger         ``bot.store.RedisLedger``        ``bot.store.DatabaseLedger``
conversation state   ``bot.store.RedisConversations`` ``bot.store.DatabaseConversations``
lockouts             ``huimin.lockouts.RedisLockouts`` ``huimin.lockouts.DatabaseLockouts``
per-phone limits     ``notify.rules.RedisPhoneLimiter`` ``notify.rules.DatabasePhoneLimiter``
provider rate        ``notify.rules.RedisRateStore``  ``notify.rules.DatabaseRateStore``
WeChat access token  ``notify.wechat.RedisTokenStore`` ``notify.wechat.DatabaseTokenStore``
===================  ===============================  ================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from bot.store import DatabaseConversations, DatabaseLedger, RedisConversations, RedisLedger
from bot.writes import Writer
from huimin.db import Database
from huimin.lockouts import DatabaseLockouts, RedisLockouts
from huimin.settings import Settings
from notify.rules import DatabasePhoneLimiter, DatabaseRateStore, RedisPhoneLimiter, RedisRateStore
from notify.service import NotifierStores
from notify.wechat import AccessTokenStore, DatabaseTokenStore, RedisTokenStore

# Lockouts older than this are forgotten when a bot starts on the database.
LOCKOUT_MEMORY = timedelta(days=2)


class Backing:
    """The database and (when configured) Redis of one process, with the stores on them.

    Build it with :meth:`open`; :meth:`close` closes what it opened (not a database or
    client handed in). The engine and the client connect lazily, inside the event loop
    that first uses them."""

    def __init__(self, settings: Settings, db: Database, redis: Any = None,
                 owned: bool = False) -> None:
        self.settings = settings
        self.db = db
        self.redis = redis
        self._owned = owned

    @classmethod
    def open(cls, settings: Settings) -> Backing:
        redis = None
        if settings.redis_url:
            from redis.asyncio import Redis

            redis = Redis.from_url(settings.redis_url)
        return cls(settings, Database(settings.database_url), redis, owned=True)

    # ----- the bot's --------------------------------------------------------------
    def ledger(self, writer: Writer, clock: Callable[[], datetime]) -> Any:
        """The dedup ledger of WeChat message ids."""
        if self.redis is not None:
            return RedisLedger(self.redis)
        return DatabaseLedger(self.db, writer, clock=clock)

    def conversations(self, writer: Writer, clock: Callable[[], datetime]) -> Any:
        """Who is in the middle of what (menus, the status lookup, hand-offs)."""
        if self.redis is not None:
            return RedisConversations(self.redis, clock=clock)
        return DatabaseConversations(self.db, writer, clock=clock)

    def lockouts(self) -> Any:
        """Growing per-key locks (wrong codes, too many lookups)."""
        return RedisLockouts(self.redis) if self.redis is not None else DatabaseLockouts(self.db)

    async def forget_old(self, ledger: Any, lockouts: Any, lockout_prefixes: Sequence[str],
                         now: datetime) -> None:
        """On the database, drop old ledger rows and lockouts at start (Redis keys
        expire by themselves)."""
        if self.redis is None:
            await ledger.forget_old()
            await lockouts.forget_old(lockout_prefixes, LOCKOUT_MEMORY, now)

    # ----- the notifier's ---------------------------------------------------------
    def token_store(self) -> AccessTokenStore | None:
        """WeChat's access token, shared by every process (None without an AppID)."""
        appid = self.settings.wechat_appid
        if not appid:
            return None
        if self.redis is not None:
            return RedisTokenStore(self.redis, appid)
        return DatabaseTokenStore(self.db, appid)

    def notifier(self) -> NotifierStores:
        """The stores a notifier worker (or a bot's courier) sends with."""
        if self.redis is not None:
            limiter: Any = RedisPhoneLimiter(self.redis)
            rates: Any = RedisRateStore(self.redis)
        else:
            limiter, rates = DatabasePhoneLimiter(self.db), DatabaseRateStore(self.db)
        return NotifierStores(self.db, limiter, rates, self.token_store())

    async def close(self) -> None:
        if not self._owned:
            return
        if self.redis is not None:
            await self.redis.aclose()
        await self.db.dispose()
