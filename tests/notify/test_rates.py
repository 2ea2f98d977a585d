"""Each provider's send rate is one schedule shared by every worker process."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from huimin.db import Database
from notify.rules import DatabaseRateStore, RedisRateStore


@pytest.fixture(params=["database", "redis"])
async def stores(request: pytest.FixtureRequest,
                 database_url: str) -> AsyncIterator[tuple[Any, Any]]:
    """Two stores over the same shared state, as two worker processes would hold."""
    if request.param == "database":
        first, second = Database(database_url), Database(database_url)
        yield DatabaseRateStore(first), DatabaseRateStore(second)
        await first.dispose()
        await second.dispose()
        return
    from redis.asyncio import Redis

    url = os.environ.get("HUIMIN_TEST_REDIS_URL") or "redis://127.0.0.1:6379/15"
    clients = [Redis.from_url(url, socket_connect_timeout=1) for _ in range(2)]
    try:
        await clients[0].ping()
    except Exception:
        for client in clients:
            await client.aclose()
        pytest.skip("no Redis on this machine")
    await clients[0].delete("huimin:rate:sms:test")
    yield RedisRateStore(clients[0]), RedisRateStore(clients[1])
    for client in clients:
        await client.aclose()


async def test_two_workers_take_turns_on_one_schedule(stores: tuple[Any, Any]) -> None:
    a, b = stores
    first = await a.reserve("sms:test", 2.0)  # 2 s worth of sends
    second = await b.reserve("sms:test", 1.0)
    third = await a.reserve("sms:test", 0.5)
    # Each take starts where the previous one's share of the rate ends, whoever took it.
    assert second - first == pytest.approx(2.0, abs=0.2)
    assert third - second == pytest.approx(1.0, abs=0.2)
    # Another provider has its own schedule.
    other = await b.reserve("sms:other", 1.0)
    assert other < second
