"""/metrics, /readyz and request ids on the bot, over real HTTP."""

from __future__ import annotations

import socket

from prometheus_client.parser import text_string_to_metric_families

from huimin.settings import Settings
from huimin.wiring.apps import create_app
from tests.wechat import reply_text, signed_query, text_xml, urlq


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def _scrape(client) -> dict:  # type: ignore[no-untyped-def]
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return _samples(await response.text())


async def test_metrics_count_a_message_its_band_latency_and_retry(client):
    before = await _scrape(client)
    answered = ("huimin_messages_total", (("band", "answer"), ("kind", "text")))
    hits = ("huimin_dedup_hits_total", ())
    timed = ("huimin_reply_seconds_count", ())
    body = text_xml("低保怎么申请", openid="metrics-user", msg_id=424242)
    query = urlq(signed_query(openid="metrics-user"))
    first = await client.post(f"/wechat?{query}", data=body.encode())
    assert reply_text(await first.text())
    retry = await client.post(f"/wechat?{urlq(signed_query(openid='metrics-user'))}",
                              data=body.encode())
    assert reply_text(await retry.text()) == reply_text(await first.text())
    after = await _scrape(client)
    assert after[answered] == before.get(answered, 0) + 1  # the retry is not a new message
    assert after[hits] == before.get(hits, 0) + 1
    assert after[timed] == before.get(timed, 0) + 2
    # Read per scrape from the database: present even when the outbox is empty.
    assert "# TYPE huimin_outbox_messages gauge" in (await (await client.get("/metrics")).text())


async def test_outbox_depth_is_read_at_scrape_time(client):
    from bot.app import DATABASE
    from notify.claims import outbox_depth

    rows = await outbox_depth(client.app[DATABASE])
    scraped = await _scrape(client)
    for state, kind, count in rows:
        assert scraped[("huimin_outbox_messages", (("kind", kind), ("state", state)))] == count


async def test_readyz_is_ready_with_database_redis_and_content(client):
    response = await client.get("/readyz")
    assert response.status == 200, await response.text()
    assert (await response.json())["status"] == "ready"
    assert response.headers["X-Request-Id"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_readyz_names_redis_when_it_is_unreachable(aiohttp_client, settings: Settings):
    broken = settings.with_overrides(redis_url=f"redis://127.0.0.1:{_closed_port()}/0",
                                     secret_key=None)
    client = await aiohttp_client(create_app(broken))
    response = await client.get("/readyz")
    assert response.status == 503
    body = await response.json()
    assert body["status"] == "unready"
    assert set(body["failing"]) == {"redis"}
    assert (await client.get("/healthz")).status == 200  # alive, only not ready


async def test_request_id_is_kept_when_plain_and_replaced_when_not(client):
    kept = await client.get("/healthz", headers={"X-Request-Id": "nginx-abc123"})
    assert kept.headers["X-Request-Id"] == "nginx-abc123"
    replaced = await client.get("/healthz", headers={"X-Request-Id": "bad id\u202e"})
    assert replaced.headers["X-Request-Id"] != "bad id\u202e"
    assert len(replaced.headers["X-Request-Id"]) == 16


async def test_json_log_lines_carry_the_request_id(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    import aiohttp

    from tests.deploy.helpers import base_environment, free_port, start, stop, wait_ready
    from tests.wechat import TOKEN

    port, log = free_port(), tmp_path / "serve.log"
    env = base_environment(HUIMIN_DATABASE_URL=database_url, HUIMIN_WECHAT_TOKEN=TOKEN,
                           HUIMIN_LOG_FORMAT="json", HUIMIN_LOG_LEVEL="INFO")
    process = await start(["serve", "--port", str(port)], env, log)
    try:
        await wait_ready(f"http://127.0.0.1:{port}/healthz", process, log)
        async with aiohttp.ClientSession() as http, http.get(
                f"http://127.0.0.1:{port}/wechat?signature=x&timestamp=1&nonce=2",
                headers={"X-Request-Id": "rid-from-nginx-42"}) as response:
            assert response.status == 403
    finally:
        assert await stop(process) == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()
             if line.startswith("{")]
    refused = [line for line in lines if line["request_id"] == "rid-from-nginx-42"]
    assert refused and "refused GET /wechat: 403" in refused[0]["message"]
    assert {"time", "level", "logger", "pid"} <= set(refused[0])
