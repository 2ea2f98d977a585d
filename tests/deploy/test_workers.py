"""``huimin serve --workers N``: real processes on one port, PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from sqlalchemy import func, select

from bot.models import QuestionTally
from huimin.db import Database
from tests.deploy.helpers import (
    NEEDS_SHARED_STATE,
    ROOT,
    TEST_DATABASE_URL,
    TEST_REDIS_URL,
    base_environment,
    free_port,
    start,
    stop,
    wait_ready,
)
from tests.wechat import TOKEN, reply_text, signed_query, text_xml, urlq

shared_state = pytest.mark.skipif(not (TEST_DATABASE_URL and TEST_REDIS_URL),
                                  reason=NEEDS_SHARED_STATE)
ANSWERED_QUESTION = "低保怎么申请"


def test_several_workers_on_sqlite_are_refused_naming_postgresql(tmp_path: Path) -> None:
    env = base_environment(HUIMIN_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
                           HUIMIN_WECHAT_TOKEN=TOKEN)
    done = subprocess.run([sys.executable, "-m", "huimin.cli", "serve", "--workers", "2",
                           "--port", str(free_port())], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "PostgreSQL" in done.stderr and "--workers 2" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
async def two_workers(database_url: str, settings: Any, tmp_path: Path):  # type: ignore[no-untyped-def]
    port = free_port()
    env = base_environment(HUIMIN_DATABASE_URL=database_url, HUIMIN_REDIS_URL=TEST_REDIS_URL,
                           HUIMIN_WECHAT_TOKEN=TOKEN, HUIMIN_LOG_LEVEL="WARNING")
    log = tmp_path / "serve.log"
    process = await start(["serve", "--workers", "2", "--port", str(port)], env, log)
    await wait_ready(f"http://127.0.0.1:{port}/readyz", process, log, workers=2)
    yield port, process, log
    await stop(process)


def _post(message: str, openid: str, msg_id: int) -> tuple[str, bytes]:
    return (f"/wechat?{urlq(signed_query(openid=openid))}",
            text_xml(message, openid=openid, msg_id=msg_id).encode())


def _metric(text: str, name: str) -> float:
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples if sample.name == name)


@shared_state
async def test_a_retry_on_the_other_worker_gets_the_same_reply(two_workers) -> None:  # type: ignore[no-untyped-def]
    port, _process, _log = two_workers
    base = f"http://127.0.0.1:{port}"
    replies: dict[str, set[str]] = {}
    # A new connection for every request: the kernel spreads them over the workers.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        for _attempt in range(60):
            path, body = _post(ANSWERED_QUESTION, "retry-user", 77_000_001)
            async with http.post(base + path, data=body) as response:
                assert response.status == 200
                replies.setdefault(response.headers["X-Huimin-Worker"], set()).add(
                    reply_text(await response.text()))
            if len(replies) == 2 and sum(map(len, replies.values())) >= 2:
                break
        assert set(replies) == {"1", "2"}, "the retries never reached the other worker"
        texts = set().union(*replies.values())
        assert len(texts) == 1 and next(iter(texts)), texts
        async with http.get(base + "/metrics") as response:
            scraped = await response.text()
    # Counted across both workers (prometheus multiprocess mode): one message, the rest
    # retries answered from the ledger.
    assert _metric(scraped, "huimin_messages_total") == 1
    assert _metric(scraped, "huimin_dedup_hits_total") >= 1


@shared_state
async def test_sigterm_drains_every_worker(two_workers, database_url: str) -> None:  # type: ignore[no-untyped-def]
    port, process, log = two_workers
    base = f"http://127.0.0.1:{port}"
    count = 120
    outcomes: list[str] = []
    workers: set[str] = set()

    async def send(http: aiohttp.ClientSession, i: int) -> None:
        path, body = _post(ANSWERED_QUESTION, f"drain-user-{i:03d}", 88_000_000 + i)
        try:
            async with http.post(base + path, data=body) as response:
                text = await response.text()
                workers.add(response.headers.get("X-Huimin-Worker", "-"))
                outcomes.append("answered" if response.status == 200 and reply_text(text)
                                else f"{response.status}:{text[:40]}")
        except aiohttp.ClientConnectorError:
            outcomes.append("refused")  # never accepted: WeChat retries it
        except aiohttp.ClientError as exc:
            outcomes.append(type(exc).__name__)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True,
                                                                    limit=40)) as http:
        sending = [asyncio.create_task(send(http, i)) for i in range(count)]
        while len(outcomes) < count // 4:
            await asyncio.sleep(0.005)
        code = await stop(process)  # SIGTERM while requests are in flight
        await asyncio.gather(*sending)
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text()
    answered = outcomes.count("answered")
    assert answered >= count // 4
    assert workers >= {"1", "2"}
    unexpected = [o for o in outcomes if o not in {"answered", "refused"}]
    # Connections the kernel had queued but no worker accepted yet are reset when the
    # listening sockets close; none may be a 5xx or a request cut off mid-way.
    assert all(o in {"ClientOSError", "ServerDisconnectedError"} for o in unexpected), outcomes
    # Every message a worker took was finished: its reply is in the ledger, and the
    # answered-question counts each worker held in memory were written on the way out.
    redis = Redis.from_url(TEST_REDIS_URL or "")
    try:
        keys = [k async for k in redis.scan_iter("huimin:msg:*")]
        values = await redis.mget(keys) if keys else []
    finally:
        await redis.aclose()
    assert values and all(v not in (None, b"\x00") for v in values)
    assert answered <= len(keys)
    db = Database(database_url)
    try:
        async with db.session() as session:
            tallied = await session.scalar(select(func.coalesce(func.sum(QuestionTally.count),
                                                                0))
                                           .where(QuestionTally.band == "answer"))
    finally:
        await db.dispose()
    assert tallied == len(keys)
