"""Group commit and write-behind (bot.writes): what is written after the reply is
still there for retries, and is written before the process exits."""

from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, insert, select

from bot.app import WRITER
from bot.models import AskedQuestion, HandledMessage, QuestionTally
from bot.writes import Writer
from huimin.db import Database
from huimin.settings import Settings
from huimin.wiring.apps import create_app
from tests.deploy.helpers import base_environment, free_port, start, stop, wait_ready
from tests.wechat import TOKEN, reply_text, signed_query, text_xml, urlq

TEST_REDIS_URL = os.environ.get("HUIMIN_TEST_REDIS_URL")
OFF_TOPIC = "明天会下雨吗"  # declined: an asked-questions row
ANSWERED = "低保怎么申请"  # answered: counted in question_tally
database_ledger = pytest.mark.skipif(bool(TEST_REDIS_URL),
                                     reason="the dedup ledger is in Redis, not written behind")


async def scalar(settings: Settings, statement: Any) -> Any:
    db = Database(settings.database_url)
    try:
        async with db.engine.connect() as conn:
            return await conn.scalar(statement)
    finally:
        await db.dispose()


async def post(client: Any, xml: str) -> str:
    response = await client.post("/wechat", params=signed_query(), data=xml.encode())
    assert response.status == 200
    return await response.text()


def recorded_reply(key: str) -> Any:
    return select(HandledMessage.reply).where(HandledMessage.key == key)


@database_ledger
async def test_a_retry_in_the_write_behind_window_gets_the_same_reply(aiohttp_client,
                                                                      settings):
    """The reply is recorded after it is sent: a retry reaching the same process
    meanwhile is answered from memory, one reaching another process waits for the
    record; the message is handled once either way."""
    first = await aiohttp_client(create_app(settings, write_delay=1.0))
    other = await aiohttp_client(create_app(settings))
    msg_id = random.randrange(10**15, 10**16)
    xml = text_xml(OFF_TOPIC, openid="window-retrier", msg_id=msg_id)
    key = f"m:window-retrier:{msg_id}"
    reply = reply_text(await post(first, xml))
    assert reply
    assert await scalar(settings, recorded_reply(key)) is None  # not written yet
    assert reply_text(await post(first, xml)) == reply  # same process, from memory
    assert reply_text(await post(other, xml)) == reply  # waited for the record
    assert await scalar(settings, recorded_reply(key)) == reply
    assert await scalar(settings, select(func.count()).select_from(AskedQuestion)) == 1


@database_ledger
async def test_records_still_queued_are_written_when_the_bot_stops(aiohttp_client, settings):
    """Stopping the application (what SIGTERM does) writes the write-behind records
    before the database is closed."""
    client = await aiohttp_client(create_app(settings, write_delay=600.0))
    keys = {}
    for i in range(3):
        msg_id = random.randrange(10**15, 10**16)
        keys[f"m:leaver-{i}:{msg_id}"] = reply_text(
            await post(client, text_xml(OFF_TOPIC, openid=f"leaver-{i}", msg_id=msg_id)))
    writer = client.app[WRITER]
    assert writer.queued >= 1  # the last reply's record at least is still queued
    await client.close()
    for key, reply in keys.items():
        assert reply and await scalar(settings, recorded_reply(key)) == reply


async def test_one_refused_record_does_not_take_the_batch_down(database_url):
    db = Database(database_url)
    writer = Writer(db, delay=600.0)
    writer.start()
    try:
        row = {"key": "dup-key", "reply": "first"}
        await writer.now(lambda conn: conn.execute(insert(HandledMessage).values(**row)))
        writer.later(lambda conn: conn.execute(  # a second row with the same key: refused
            insert(HandledMessage).values(key="dup-key", reply="again")))
        writer.later(lambda conn: conn.execute(
            insert(HandledMessage).values(key="good-key", reply="kept")))
        with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
            await writer.now(lambda conn: conn.execute(
                insert(HandledMessage).values(key="dup-key", reply="waited")))
        await writer.flush()
        async with db.engine.connect() as conn:
            rows = dict((await conn.execute(
                select(HandledMessage.key, HandledMessage.reply)
                .where(HandledMessage.key.in_(["dup-key", "good-key"])))).all())
        assert rows == {"dup-key": "first", "good-key": "kept"}
    finally:
        await writer.close()
        await db.dispose()


async def test_sigterm_during_load_loses_no_record(database_url, tmp_path: Path):
    """`huimin serve`, one process, stopped with SIGTERM while messages are in flight:
    every message it answered has its reply recorded for retries, its unanswered
    question stored and its answered question counted."""
    port = free_port()
    env = base_environment(HUIMIN_DATABASE_URL=database_url, HUIMIN_WECHAT_TOKEN=TOKEN,
                           HUIMIN_LOG_LEVEL="WARNING")
    if TEST_REDIS_URL:
        env["HUIMIN_REDIS_URL"] = TEST_REDIS_URL
    log = tmp_path / "serve.log"
    process = await start(["serve", "--port", str(port)], env, log)
    await wait_ready(f"http://127.0.0.1:{port}/readyz", process, log)
    base = f"http://127.0.0.1:{port}"
    count = 120
    answered: dict[str, tuple[str, str]] = {}  # ledger key -> (question, reply)

    async def send(http: aiohttp.ClientSession, i: int) -> None:
        question = OFF_TOPIC if i % 2 else ANSWERED
        openid, msg_id = f"stopper-{i:03d}", 99_000_000 + i
        try:
            async with http.post(f"{base}/wechat?{urlq(signed_query(openid=openid))}",
                                 data=text_xml(question, openid=openid,
                                               msg_id=msg_id).encode()) as response:
                body = await response.text()
                if response.status == 200 and reply_text(body):
                    answered[f"m:{openid}:{msg_id}"] = (question, reply_text(body))
        except aiohttp.ClientError:
            pass  # never accepted, or cut by the stop: WeChat retries it

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=20)) as http:
        sending = [asyncio.create_task(send(http, i)) for i in range(count)]
        while len(answered) < count // 3:
            await asyncio.sleep(0.005)
        code = await stop(process)
        await asyncio.gather(*sending)
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text()
    declined = [key for key, (question, _) in answered.items() if question == OFF_TOPIC]
    db = Database(database_url)
    try:
        async with db.engine.connect() as conn:
            asked = await conn.scalar(select(func.count()).select_from(AskedQuestion))
            tallied = await conn.scalar(select(func.coalesce(func.sum(QuestionTally.count), 0)))
            recorded = dict((await conn.execute(
                select(HandledMessage.key, HandledMessage.reply))).all())
    finally:
        await db.dispose()
    assert asked >= len(declined)  # a message cut off mid-way may have been stored too
    assert tallied >= len(answered) - len(declined)
    if not TEST_REDIS_URL:
        assert all(recorded.get(key) == reply for key, (_, reply) in answered.items())
