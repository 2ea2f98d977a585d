"""State shared by every bot process: the dedup ledger and conversation state.

Two implementations of each: Redis (when ``HUIMIN_REDIS_URL`` is set) and the
database. Both make a WeChat retry of a message see the first reply, even when
the retry reaches another process.

Each store reads its ``clock`` once per operation for everything it stamps or
compares (a ledger row's time, a conversation's expiry); Redis TTLs only clean up.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Protocol

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from bot.models import ConversationRow, HandledMessage
from bot.writes import Writer
from huimin.clock import utcnow
from huimin.db import Database

LEDGER_TTL = timedelta(hours=1)
CONVERSATION_TTL = timedelta(minutes=30)
_POLL = 0.05
RECENT_REPLIES = 4096  # replies kept in memory for retries reaching this process


class MessageLedger(Protocol):
    """Remembers which messages were handled and what was replied."""

    async def claim(self, key: str) -> bool:
        """True when this process is the first to see ``key`` and must handle it."""

    async def record(self, key: str, reply: str) -> None:
        """Store the reply (``""`` for none) for later retries of ``key``."""

    async def reply_of(self, key: str, wait: float) -> str | None:
        """The recorded reply, waiting up to ``wait`` seconds for the first handler."""


class ConversationStore(Protocol):
    """Per-openid conversation state (pending choices, last answer …)."""

    async def get(self, openid: str) -> dict[str, Any]: ...

    async def put(self, openid: str, state: dict[str, Any]) -> None: ...


async def _poll(fetch: Any, wait: float) -> str | None:
    deadline = time.monotonic() + wait
    while True:
        reply = await fetch()
        if reply is not None or time.monotonic() >= deadline:
            return reply
        await asyncio.sleep(_POLL)


class RedisLedger:
    def __init__(self, redis: Any, prefix: str = "huimin:msg:") -> None:
        self.redis = redis
        self.prefix = prefix

    async def claim(self, key: str) -> bool:
        ttl = int(LEDGER_TTL.total_seconds())
        return bool(await self.redis.set(self.prefix + key, "\x00", nx=True, ex=ttl))

    async def record(self, key: str, reply: str) -> None:
        await self.redis.set(self.prefix + key, reply, ex=int(LEDGER_TTL.total_seconds()))

    async def reply_of(self, key: str, wait: float) -> str | None:
        async def fetch() -> str | None:
            value = await self.redis.get(self.prefix + key)
            if value is None:
                return ""  # expired: nothing left to repeat
            value = value.decode() if isinstance(value, bytes) else value
            return None if value == "\x00" else value

        return await _poll(fetch, wait)


class RedisConversations:
    """The state with its expiry (on ``clock``), as JSON ``{"state", "expires"}``."""

    def __init__(self, redis: Any, prefix: str = "huimin:conv:",
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.redis = redis
        self.prefix = prefix
        self.clock = clock

    async def get(self, openid: str) -> dict[str, Any]:
        raw = await self.redis.get(self.prefix + openid)
        stored = json.loads(raw) if raw else {}
        if set(stored) != {"state", "expires"}:
            return stored  # written before expiries were stored (Redis's TTL still holds)
        if datetime.fromtimestamp(stored["expires"], UTC) < self.clock():
            return {}
        return dict(stored["state"])

    async def put(self, openid: str, state: dict[str, Any]) -> None:
        if state:
            expires = (self.clock() + CONVERSATION_TTL).timestamp()
            value = json.dumps({"state": state, "expires": expires}, ensure_ascii=False)
            await self.redis.set(self.prefix + openid, value,
                                 ex=int(CONVERSATION_TTL.total_seconds()))
        else:
            await self.redis.delete(self.prefix + openid)


class _Statements:
    """The ledger's and conversations' statements, built once per dialect with bound
    parameters: building a statement costs more than running it in a batch."""

    _built: ClassVar[dict[str, _Statements]] = {}

    def __init__(self, dialect: str) -> None:
        insert = (postgresql if dialect == "postgresql" else sqlite).insert
        self.claim = (insert(HandledMessage)
                      .values(key=bindparam("p_key"), created_at=bindparam("p_created"))
                      .on_conflict_do_nothing(index_elements=["key"]))
        self.record = (update(HandledMessage).where(HandledMessage.key == bindparam("p_key"))
                       .values(reply=bindparam("p_reply")))
        self.state = (select(ConversationRow.state, ConversationRow.expires_at)
                      .where(ConversationRow.openid == bindparam("p_openid")))
        upsert = insert(ConversationRow).values(openid=bindparam("p_openid"),
                                                state=bindparam("p_state"),
                                                expires_at=bindparam("p_expires"))
        self.put_state = upsert.on_conflict_do_update(
            index_elements=["openid"],
            set_={"state": upsert.excluded.state, "expires_at": upsert.excluded.expires_at})
        self.drop_state = (delete(ConversationRow)
                           .where(ConversationRow.openid == bindparam("p_openid")))

    @classmethod
    def of(cls, db: Database) -> _Statements:
        dialect = db.engine.dialect.name
        if dialect not in cls._built:
            cls._built[dialect] = cls(dialect)
        return cls._built[dialect]


class DatabaseLedger:
    """The ledger in the database, written through the process's :class:`Writer`: a
    claim is committed (with the other messages' claims of the moment) before the
    message is handled; the reply is recorded write-behind, and kept in memory for
    retries reaching this process meanwhile (a retry reaching another process waits
    for the record, up to the reply deadline)."""

    def __init__(self, db: Database, writer: Writer,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.writer = writer
        self.clock = clock
        self._sql = _Statements.of(db)
        self._recent: OrderedDict[str, str] = OrderedDict()

    async def claim(self, key: str) -> bool:
        params = {"p_key": key, "p_created": self.clock()}
        claim = self._sql.claim
        return bool(await self.writer.now(
            lambda conn: conn.execute(claim, params).rowcount == 1))

    async def record(self, key: str, reply: str) -> None:
        self._recent[key] = reply
        while len(self._recent) > RECENT_REPLIES:
            self._recent.popitem(last=False)
        params, record = {"p_key": key, "p_reply": reply}, self._sql.record
        self.writer.later(lambda conn: conn.execute(record, params).rowcount)

    async def reply_of(self, key: str, wait: float) -> str | None:
        async def fetch() -> str | None:
            if key in self._recent:
                return self._recent[key]
            async with self.db.engine.connect() as conn:
                return await conn.scalar(
                    select(HandledMessage.reply).where(HandledMessage.key == key))

        return await _poll(fetch, wait)

    async def forget_old(self) -> int:
        """Drop ledger rows older than WeChat's retry horizon."""
        async with self.db.engine.begin() as conn:
            result = await conn.execute(
                delete(HandledMessage).where(
                    HandledMessage.created_at < self.clock() - LEDGER_TTL))
            return result.rowcount or 0


class DatabaseConversations:
    """Conversation state in the database, read and written through the process's
    :class:`Writer` (each committed before the reply: the person's next message may
    reach another process)."""

    def __init__(self, db: Database, writer: Writer,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.writer = writer
        self.clock = clock
        self._sql = _Statements.of(db)

    async def get(self, openid: str) -> dict[str, Any]:
        params, read = {"p_openid": openid}, self._sql.state
        row = await self.writer.now(lambda conn: conn.execute(read, params).first())
        if row is None:
            return {}
        return dict(row.state) if row.expires_at >= self.clock() else {}

    async def put(self, openid: str, state: dict[str, Any]) -> None:
        if state:
            statement = self._sql.put_state
            params: dict[str, Any] = {"p_openid": openid, "p_state": state,
                                      "p_expires": self.clock() + CONVERSATION_TTL}
        else:
            statement, params = self._sql.drop_state, {"p_openid": openid}
        await self.writer.now(lambda conn: conn.execute(statement, params).rowcount)
