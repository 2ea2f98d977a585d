"""Shared fixtures. The database is SQLite in a temp folder unless
HUIMIN_TEST_DATABASE_URL names a PostgreSQL database; Redis is used for shared
state when HUIMIN_TEST_REDIS_URL is set (``.ci/run`` runs the suite both ways)."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import text

import huimin.wiring  # noqa: F401  (what the apps register with the core, as in every process)
from huimin.settings import Settings
from tests.wechat import APPID, TOKEN

TEST_DATABASE_URL = os.environ.get("HUIMIN_TEST_DATABASE_URL")
TEST_REDIS_URL = os.environ.get("HUIMIN_TEST_REDIS_URL")
VOLATILE_TABLES = ("asked_questions", "followers", "handled_messages", "conversations",
                   "late_replies", "faq_entries", "dictionary_entries", "content_revisions",
                   "access_log", "verification_codes", "delegate_invitations", "bindings",
                   "status_changes", "applications", "beneficiaries", "guess_counters",
                   "outbox", "payouts", "opt_outs", "delivery_events", "wechat_tokens",
                   "admin_users", "admin_sessions", "admin_audit", "faq_drafts",
                   "faq_versions", "inbox_resolutions", "question_tally", "import_jobs",
                   "situations", "sms_provider_status", "grant_codes",
                   "case_messages", "cases", "case_routes", "question_askers")
SECRET_KEY = "test-secret-key-0123456789"


async def _reset_postgres(url: str) -> None:
    from huimin.db import Database

    db = Database(url)
    async with db.engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await db.dispose()


async def _empty_tables(url: str) -> None:
    from huimin.db import Database

    db = Database(url)
    async with db.engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {', '.join(VOLATILE_TABLES)} RESTART IDENTITY"))
    await db.dispose()


async def _flush_redis(url: str) -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(url)
    keys = [k async for k in redis.scan_iter("huimin:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


@pytest.fixture(scope="session")
def initialised_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database with the schema and shipped content, made once per test run."""
    from huimin.wiring.cli import initialise

    if TEST_DATABASE_URL:
        asyncio.run(_reset_postgres(TEST_DATABASE_URL))
        return TEST_DATABASE_URL
    path = tmp_path_factory.mktemp("db") / "template.db"
    asyncio.run(initialise(Settings(database_url=f"sqlite+aiosqlite:///{path}")))
    return str(path)


@pytest.fixture
def database_url(initialised_db: str, tmp_path: Path) -> str:
    """A fresh database for one test, with the shipped content loaded."""
    from huimin.wiring.cli import initialise

    if TEST_DATABASE_URL:
        asyncio.run(_empty_tables(TEST_DATABASE_URL) if _has_tables() else asyncio.sleep(0))
        asyncio.run(initialise(Settings(database_url=TEST_DATABASE_URL)))
        return TEST_DATABASE_URL
    path = tmp_path / "huimin.db"
    shutil.copy(initialised_db, path)
    return f"sqlite+aiosqlite:///{path}"


def _has_tables() -> bool:
    async def check() -> bool:
        from huimin.db import Database

        db = Database(TEST_DATABASE_URL or "")
        async with db.engine.connect() as conn:
            found = await conn.scalar(text("SELECT to_regclass('public.faq_entries')"))
        await db.dispose()
        return found is not None

    return asyncio.run(check())


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings for a bot in plain and safe mode, on this test's database; SMS go to
    ``tmp_path / "sms.jsonl"`` through the console provider."""
    if TEST_REDIS_URL:
        asyncio.run(_flush_redis(TEST_REDIS_URL))
    return Settings(database_url=database_url, wechat_token=TOKEN, wechat_appid=APPID,
                    wechat_aes_key="abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
                    redis_url=TEST_REDIS_URL, secret_key=SECRET_KEY,
                    sms_console_file=tmp_path / "sms.jsonl")


@pytest.fixture
async def client(aiohttp_client, settings: Settings):  # type: ignore[no-untyped-def]
    """An in-process client for the bot application."""
    from huimin.wiring.apps import create_app

    return await aiohttp_client(create_app(settings))
