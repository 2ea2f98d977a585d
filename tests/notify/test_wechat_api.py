"""The WeChat server-API client against a local fake of api.weixin.qq.com.

The token store runs on this run's database (SQLite, or PostgreSQL with
HUIMIN_TEST_DATABASE_URL) and on Redis: HUIMIN_TEST_REDIS_URL when set, and
redis://127.0.0.1:6379/15 whenever it answers.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete

from huimin.db import Database
from huimin.settings import Settings
from huimin.wiring.resources import Backing
from notify.wechat import (
    TEMPLATE_LIMITS,
    DatabaseTokenStore,
    RedisTokenStore,
    TokenLockTimeout,
    WeChatApi,
    WeChatToken,
    WeChatTokenError,
    WeChatUnavailable,
    fit_template_data,
)
from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL
from tests.fakes.wechat_server import FakeWeChat

LOCAL_REDIS_URL = "redis://127.0.0.1:6379/15"
REDIS_URLS = list(dict.fromkeys(u for u in (TEST_REDIS_URL, LOCAL_REDIS_URL) if u))
OPENID = "oHuimin_test_user_0000000001"  # 28 characters, like a real openid
OTHER_OPENID = "oHuimin_test_user_0000000002"


@pytest.fixture
def appid() -> str:
    """Unique per test: PostgreSQL and Redis outlive a test (and are shared)."""
    return "wx" + secrets.token_hex(8)


@pytest.fixture
async def fake(aiohttp_server: Any, appid: str) -> AsyncIterator[FakeWeChat]:
    server = FakeWeChat(appid=appid)
    await server.start(aiohttp_server)
    yield server
    assert not server.problems, server.problems


@pytest.fixture
def token_db_url(tmp_path: Path) -> str:
    """This run's PostgreSQL database, or a SQLite file. Only ``wechat_tokens`` is
    needed (created by the tests; its migration is separate), so the shared schema
    and content setup of ``database_url`` is not."""
    return TEST_DATABASE_URL or f"sqlite+aiosqlite:///{tmp_path / 'tokens.db'}"


async def _create_token_table(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.run_sync(WeChatToken.__table__.create, checkfirst=True)


async def _redis_or_skip(url: str) -> Any:
    from redis.asyncio import Redis

    redis = Redis.from_url(url, socket_connect_timeout=1)
    try:
        await redis.ping()
    except Exception as exc:  # any failure means "no Redis here"
        await redis.aclose()
        if url == TEST_REDIS_URL:
            raise  # asked for by HUIMIN_TEST_REDIS_URL: it must work
        pytest.skip(f"no Redis at {url}: {type(exc).__name__}")
    return redis


@pytest.fixture
async def stores(request: pytest.FixtureRequest, appid: str,
                 token_db_url: str) -> AsyncIterator[Callable[..., Any]]:
    """``stores(**kw)`` makes one token store per "process" (its own engine or
    client) on the backend named by the test's ``stores`` parameter."""
    backend = getattr(request, "param", "database")
    made: list[Any] = []
    if backend == "database":
        admin = Database(token_db_url)
        await _create_token_table(admin)

        def make(**kw: Any) -> Any:
            db = Database(token_db_url)
            made.append(db)
            return DatabaseTokenStore(db, appid, **kw)

        yield make
        async with admin.session() as session:
            await session.execute(delete(WeChatToken).where(WeChatToken.appid == appid))
        for db in [admin, *made]:
            await db.dispose()
    else:
        from redis.asyncio import Redis

        url = backend.removeprefix("redis:")
        admin = await _redis_or_skip(url)

        def make(**kw: Any) -> Any:
            redis = Redis.from_url(url)
            made.append(redis)
            return RedisTokenStore(redis, appid, **kw)

        yield make
        await admin.delete(f"huimin:wechat:token:{appid}", f"huimin:wechat:lock:{appid}")
        for redis in [admin, *made]:
            await redis.aclose()


class MemoryStore:
    """A one-process store: enough where the backend does not matter."""

    def __init__(self) -> None:
        self.value: tuple[str, datetime] | None = None
        self.lock = asyncio.Lock()

    async def get(self) -> tuple[str, datetime] | None:
        return self.value

    async def put(self, token: str, expires_at: datetime) -> None:
        self.value = (token, expires_at)

    def refresh_lock(self) -> asyncio.Lock:
        return self.lock


BACKENDS = ["database", *(pytest.param(f"redis:{u}", id="redis-env" if u == TEST_REDIS_URL
                                        else "redis-local") for u in REDIS_URLS)]


@pytest.fixture
async def apis(fake: FakeWeChat) -> AsyncIterator[Callable[..., WeChatApi]]:
    made: list[WeChatApi] = []

    def make(store: Any, **kw: Any) -> WeChatApi:
        api = WeChatApi(fake.base_url, fake.appid, fake.secret, store, **kw)
        made.append(api)
        return api

    yield make
    for api in made:
        await api.close()


# --- the token ---------------------------------------------------------------------


async def test_token_fetched_once_and_cached(fake: FakeWeChat, stores, apis) -> None:
    api = apis(stores())
    token = await api.access_token()
    assert token == fake.current.value
    assert await api.access_token() == token
    for n in range(3):
        assert (await api.send_text(OPENID, f"第{n}条")).ok
    # another process finds it in the shared store
    assert await apis(stores()).access_token() == token
    assert fake.token_calls == 1
    assert fake.token_requests[0] == {"grant_type": "client_credential", "appid": fake.appid,
                                      "force_refresh": False}


@pytest.mark.parametrize("stores", BACKENDS, indirect=True)
async def test_two_processes_refresh_with_one_call(fake: FakeWeChat, stores, apis) -> None:
    fake.token_delay = 0.3  # both processes miss the store before either has a token
    first, second = apis(stores()), apis(stores())
    tokens = await asyncio.gather(*(api.access_token() for api in (first, second) * 3))
    assert set(tokens) == {fake.current.value}
    assert fake.token_calls == 1


async def test_token_near_expiry_is_replaced_without_force(fake: FakeWeChat, stores,
                                                            apis) -> None:
    api = apis(stores(), clock=fake.now)
    old = await api.access_token()
    fake.advance(7200 - 250)  # 250 s left: less than the 5-minute margin
    new = await api.access_token()
    assert new != old and new == fake.current.value
    assert fake.token_calls == 2 and fake.force_refresh_calls == 0
    assert (await api.send_text(OPENID, "你好")).ok


async def test_invalidated_token_forces_one_refresh(fake: FakeWeChat, stores, apis) -> None:
    api = apis(stores())
    assert (await api.send_text(OPENID, "一")).ok
    revoked = fake.revoke()
    result = await api.send_text(OPENID, "二")
    assert result.ok
    assert fake.force_refresh_calls == 1
    assert fake.current.value != revoked
    assert [t["text"]["content"] for t in fake.texts] == ["一", "二"]


@pytest.mark.parametrize("stores", BACKENDS, indirect=True)
async def test_invalidated_token_in_two_processes_forces_once(fake: FakeWeChat, stores,
                                                              apis) -> None:
    first, second = apis(stores()), apis(stores())
    await first.access_token()
    await second.access_token()
    fake.revoke()
    results = await asyncio.gather(first.send_text(OPENID, "甲"),
                                   second.send_text(OTHER_OPENID, "乙"))
    assert all(r.ok for r in results)
    assert fake.force_refresh_calls == 1


async def test_token_replaced_elsewhere_needs_no_force(fake: FakeWeChat, stores,
                                                       apis) -> None:
    """Someone else force-refreshed: a normal-mode call already gives the new token."""
    api = apis(stores())
    await api.access_token()
    fake.rotate()
    assert (await api.send_text(OPENID, "你好")).ok
    assert fake.force_refresh_calls == 0 and fake.token_calls == 2


async def test_token_still_refused_after_one_force_is_a_result(fake: FakeWeChat, stores,
                                                               apis) -> None:
    api = apis(stores())
    await api.access_token()
    fake.revoke()
    fake.next_failures = [40001]  # refused again, even with the fresh token
    result = await api.send_text(OPENID, "你好")
    assert not result.ok and result.errcode == 40001 and not result.permanent
    assert fake.force_refresh_calls == 1


async def test_wrong_secret_is_a_token_error(fake: FakeWeChat, stores) -> None:
    secret = "f" * 32
    async with WeChatApi(fake.base_url, fake.appid, secret, stores()) as api:
        with pytest.raises(WeChatTokenError) as raised:
            await api.access_token()
    assert raised.value.errcode == 40125
    assert secret not in str(raised.value) and secret not in repr(api)


async def test_from_settings(fake: FakeWeChat, token_db_url: str) -> None:
    settings = Settings(database_url=token_db_url, wechat_appid=fake.appid,
                        wechat_secret=fake.secret,
                        wechat_api_base=fake.base_url)
    db = Database(settings.database_url)
    await _create_token_table(db)
    try:
        store = Backing(settings, db).token_store()
        assert isinstance(store, DatabaseTokenStore)
        async with WeChatApi.from_settings(settings, store) as api:
            assert (await api.send_text(OPENID, "你好")).ok
            assert fake.appid in repr(api) and fake.secret not in repr(api)
    finally:
        async with db.session() as session:
            await session.execute(delete(WeChatToken).where(WeChatToken.appid == fake.appid))
        await db.dispose()


# --- the stores' locks -------------------------------------------------------------


@pytest.mark.parametrize("stores", BACKENDS, indirect=True)
async def test_refresh_lock_excludes_and_lapses(stores) -> None:
    holder, waiter = stores(lock_ttl=0.5), stores(wait=0.2)
    async with holder.refresh_lock():
        with pytest.raises(TokenLockTimeout):
            async with waiter.refresh_lock():
                pass
    async with waiter.refresh_lock():  # released: free again
        pass
    # A holder that outlives its lock (crashed, stuck) loses it, and its late
    # release does not free the lock the next process took meanwhile.
    late, other, third = stores(lock_ttl=0.1), stores(lock_ttl=5), stores(wait=0.2)
    late_lock, other_lock = late.refresh_lock(), other.refresh_lock()
    await late_lock.__aenter__()
    await asyncio.sleep(0.25)
    await other_lock.__aenter__()
    await late_lock.__aexit__(None, None, None)
    with pytest.raises(TokenLockTimeout):
        async with third.refresh_lock():
            pass
    await other_lock.__aexit__(None, None, None)
    async with third.refresh_lock():
        pass


@pytest.mark.parametrize("stores", BACKENDS, indirect=True)
async def test_store_round_trip(stores) -> None:
    store = stores()
    assert await store.get() is None
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    await store.put("TOKEN-A", expires)
    token, expires_at = await store.get()
    assert token == "TOKEN-A" and abs((expires_at - expires).total_seconds()) < 1
    await store.put("TOKEN-B", expires + timedelta(minutes=1))
    assert (await stores().get())[0] == "TOKEN-B"


# --- messages ----------------------------------------------------------------------


async def test_template_payload_is_what_wechat_expects(fake: FakeWeChat, stores,
                                                       apis) -> None:
    api = apis(stores())
    result = await api.send_template(
        OPENID, "TPL-STATUS",
        {"thing1": "低保", "character_string2": "LZ-2026-0017", "phrase3": "审核",
         "thing4": "乡镇审核后公示7天"},
        url="https://huimin.example.cn/status", client_msg_id="status-17-3")
    assert result.ok and result.msgid and not result.permanent
    assert fake.messages == [{
        "touser": OPENID, "template_id": "TPL-STATUS",
        "url": "https://huimin.example.cn/status",
        "data": {"thing1": {"value": "低保"}, "character_string2": {"value": "LZ-2026-0017"},
                 "phrase3": {"value": "审核"}, "thing4": {"value": "乡镇审核后公示7天"}},
        "client_msg_id": "status-17-3", "msgid": result.msgid,
    }]
    await api.send_template(OPENID, "TPL-PAYOUT", {"thing1": "低保"}, client_msg_id=None)
    assert set(fake.messages[1]) == {"touser", "template_id", "data", "msgid"}


async def test_client_msg_id_dedup(fake: FakeWeChat, stores, apis) -> None:
    api = apis(stores())
    data = {"thing1": "低保", "time2": "2026年11月", "amount3": "¥680.00元"}
    first = await api.send_template(OPENID, "TPL-PAYOUT", data, client_msg_id="payout-42")
    again = await api.send_template(OPENID, "TPL-PAYOUT", data, client_msg_id="payout-42")
    assert first.ok and again.ok and again.msgid == first.msgid
    assert len(fake.messages) == 1
    other = await api.send_template(OPENID, "TPL-PAYOUT", data, client_msg_id="payout-43")
    assert other.msgid != first.msgid and len(fake.messages) == 2


async def test_unfollowed_user_is_permanent(fake: FakeWeChat, stores, apis) -> None:
    fake.errcodes[OPENID] = 43004
    result = await apis(stores()).send_template(OPENID, "TPL-PAYOUT", {"thing1": "低保"},
                                                client_msg_id="x-1")
    assert (result.ok, result.errcode, result.unfollowed, result.permanent) == (
        False, 43004, True, True)
    assert fake.messages == []


@pytest.mark.parametrize(("openid", "template", "failure", "errcode", "permanent"), [
    ("user-1", "TPL-PAYOUT", None, 40003, True),  # not an openid
    (OPENID, "TPL-GONE", None, 40037, True),
    (OPENID, "TPL-PAYOUT", -1, -1, False),  # system busy
    (OPENID, "TPL-PAYOUT", 45009, 45009, False),
    (OPENID, "TPL-PAYOUT", 45047, 45047, False),
])
async def test_refusals_are_classified(fake: FakeWeChat, stores, apis, openid: str,
                                       template: str, failure: int | None, errcode: int,
                                       permanent: bool) -> None:
    if failure is not None:
        fake.next_failures = [failure]
    result = await apis(stores()).send_template(openid, template, {"thing1": "低保"},
                                                client_msg_id="c-1")
    assert (result.ok, result.errcode, result.permanent, result.transient) == (
        False, errcode, permanent, not permanent)
    assert not result.unfollowed


async def test_custom_text_message(fake: FakeWeChat, stores, apis) -> None:
    api = apis(stores())
    result = await api.send_text(OPENID, "您的申请已进入审核。\n回复“查进度”看详情。")
    assert result.ok
    assert fake.texts == [{"touser": OPENID, "msgtype": "text",
                           "text": {"content": "您的申请已进入审核。\n回复“查进度”看详情。"}}]
    fake.errcodes[OTHER_OPENID] = 45015  # has not written in 48 hours
    late = await api.send_text(OTHER_OPENID, "你好")
    assert not late.ok and late.permanent and not late.unfollowed


def test_fit_template_data() -> None:
    fitted = fit_template_data({
        "thing1": "城乡居民最低生活保障金发放到账提醒通知书（第一批）",
        "character_string2": "A" * 40,
        "phrase3": "正在审核材料中", "time4": "2026年11月20日 15:01~2026年11月27日 15:01",
        "amount5": "¥1234567.89元", "number6": "1" * 40, "name7": "欧阳娜娜娜娜娜娜娜娜娜",
        "thing8": "第一行\n第二行", "first": "旧模板的开头可以很长很长很长很长很长很长很长很长",
        "date9": "2026-11-20", "thing10": 680,
    })
    assert fitted["thing1"] == "城乡居民最低生活保障金发放到账提醒通知…"
    assert len(fitted["thing1"]) == TEMPLATE_LIMITS["thing"] == 20
    assert fitted["character_string2"] == "A" * 32
    assert fitted["phrase3"] == "正在审核材"
    assert fitted["time4"] == "2026年11月20日 15:01~2026年11月27日 15:01"
    assert fitted["amount5"] == "¥1234567.89元"
    assert fitted["number6"] == "1" * 32
    assert fitted["name7"] == "欧阳娜娜娜娜娜娜娜娜"
    assert fitted["thing8"] == "第一行 第二行"
    assert fitted["first"] == "旧模板的开头可以很长很长很长很长很长很长很长很长"
    assert fitted["date9"] == "2026-11-20" and fitted["thing10"] == "680"
    assert fit_template_data({"thing1": "短"}) == {"thing1": "短"}


async def test_long_values_are_fitted_before_sending(fake: FakeWeChat, stores, apis) -> None:
    result = await apis(stores()).send_template(
        OPENID, "TPL-STATUS",
        {"thing1": "城乡居民最低生活保障（农村特困人员救助供养）",
         "phrase3": "乡镇审核中请耐心等待", "character_string2": "LZ-2026-0017-" + "9" * 30},
        client_msg_id="long-1")
    assert result.ok, result
    sent = fake.messages[0]["data"]
    assert len(sent["thing1"]["value"]) == 20 and len(sent["phrase3"]["value"]) == 5


# --- failures and secrecy ----------------------------------------------------------


async def test_unreachable_wechat_raises(fake: FakeWeChat, stores, apis) -> None:
    api = apis(stores())
    await api.access_token()
    fake.next_failures = [("http", 502)]
    with pytest.raises(WeChatUnavailable, match="HTTP 502"):
        await api.send_text(OPENID, "你好")
    await fake.stop()
    with pytest.raises(WeChatUnavailable) as raised:
        await api.send_template(OPENID, "TPL-PAYOUT", {"thing1": "低保"}, client_msg_id="u")
    assert fake.current.value not in str(raised.value)
    async with WeChatApi(fake.base_url, fake.appid, fake.secret,
                         MemoryStore()) as fresh:
        with pytest.raises(WeChatUnavailable):  # no token yet, and no server
            await fresh.access_token()


async def test_no_token_or_secret_in_logs(fake: FakeWeChat, stores, apis,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    # aiosqlite's DEBUG log prints every statement's parameters, this token's
    # included: a deployment must not run the aiosqlite logger at DEBUG.
    caplog.set_level(logging.INFO, logger="aiosqlite")
    api = apis(stores(), timeout=0.5)
    await api.send_text(OPENID, "一")
    fake.revoke()
    await api.send_text(OPENID, "二")
    fake.errcodes[OTHER_OPENID] = 43004
    await api.send_template(OTHER_OPENID, "TPL-PAYOUT", {"thing1": "低保"}, client_msg_id="l")
    fake.next_failures = [("http", 503)]
    try:
        await api.send_text(OPENID, "三")
    except WeChatUnavailable:
        logging.getLogger("notify").exception("send failed")
    await fake.stop()
    try:
        await api.send_text(OPENID, "四")
    except WeChatUnavailable:
        logging.getLogger("notify").exception("send failed")
    assert len(fake.issued) == 2 and fake.force_refresh_calls == 1
    assert "WeChat" in caplog.text  # something was logged
    for secret in [fake.secret, *fake.issued]:
        assert secret not in caplog.text
        assert secret not in repr(api)


async def test_stored_token_is_used_as_is(fake: FakeWeChat, stores, apis) -> None:
    """A stored token far from expiry serves a brand-new process without a call."""
    store = stores()
    await store.put("STORED-TOKEN", datetime.fromtimestamp(time.time() + 3600, UTC))
    assert await apis(store).access_token() == "STORED-TOKEN"
    assert fake.token_calls == 0
