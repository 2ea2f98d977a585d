"""Signing in and out, throttling, sessions, CSRF and roles."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC
from typing import Any

import pytest
from sqlalchemy import select

from admin.accounts import LOGIN_POLICY, create_user
from admin.app import ROUTES
from admin.audit import UNKNOWN_ACCOUNT
from admin.models import AdminSession, AdminUser, AuditEntry, LoginThrottle
from admin.roles import ROLES, can
from admin.web import SESSION_COOKIE
from content.models import DictionaryRow
from huimin.db import Database
from huimin.settings import Settings
from tests.admin.clock import StepClock, behind_proxy, mounted_on
from tests.admin.conftest import (
    PASSWORD,
    add_user,
    csrf,
    csrf_of,
    load_demo,
    login,
    mounted,
    post,
    rows_of,
    signed_in,
)


async def _audit(settings: Settings) -> list[AuditEntry]:
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            return list((await session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
                        .all())
    finally:
        await db.dispose()


async def _sessions(settings: Settings) -> list[AdminSession]:
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            return list((await session.scalars(select(AdminSession))).all())
    finally:
        await db.dispose()




# ----- sign in and out ---------------------------------------------------------------
async def test_pages_need_signing_in(admin_client: Any) -> None:
    response = await admin_client.get("/admin/faq?q=低保", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"].startswith("/admin/login?")
    page = await admin_client.get(response.headers["Location"])
    assert "请先登录" in await page.text()


async def test_login_lands_on_the_page_asked_for_and_logout_ends_the_session(
        admin_client: Any, settings: Settings) -> None:
    await add_user(settings, "wang", "editor")
    first = await admin_client.get("/admin/faq", allow_redirects=False)
    login_page = await admin_client.get(first.headers["Location"])
    html = await login_page.text()
    assert 'name="next" value="/admin/faq"' in html
    token = html.split('name="csrf" value="')[1].split('"')[0]
    response = await admin_client.post("/admin/login", allow_redirects=False, data={
        "csrf": token, "username": "Wang", "password": PASSWORD, "next": "/admin/faq"})
    assert response.status == 303
    assert response.headers["Location"] == "/admin/faq"
    cookie = response.headers.getall("Set-Cookie")
    session_cookie = next(c for c in cookie if c.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in session_cookie and "SameSite=Strict" in session_cookie
    assert "Path=/admin" in session_cookie and "Secure" not in session_cookie
    home = await admin_client.get("/admin/")
    assert "wang本人（内容编辑）" in await home.text()
    assert len(await _sessions(settings)) == 1
    stored = (await _sessions(settings))[0]
    assert stored.token_hash != response.cookies[SESSION_COOKIE].value  # only the hash

    token = await csrf(admin_client)
    out = await post(admin_client, "/admin/logout", token)
    assert out.status == 303 and "logged_out" in out.headers["Location"]
    assert await _sessions(settings) == []
    again = await admin_client.get("/admin/", allow_redirects=False)
    assert again.status == 303 and "/admin/login" in again.headers["Location"]
    actions = [(a.action, a.username) for a in await _audit(settings)]
    assert ("login", "wang") in actions and ("logout", "wang") in actions


async def test_login_does_not_redirect_to_another_site(admin_client: Any,
                                                       settings: Settings) -> None:
    await add_user(settings, "wang", "editor")
    for target in ("https://evil.example/", "//evil.example/admin/", "/elsewhere"):
        admin_client.session.cookie_jar.clear()
        response = await login(admin_client, "wang", next_path=target)
        assert response.headers["Location"] == "/admin/"


async def test_secure_cookie_setting(aiohttp_client: Any, settings: Settings) -> None:
    secure = settings.with_overrides(admin_secure_cookies=True)
    client = await aiohttp_client(mounted(secure))
    page = await client.get("/admin/login")
    assert "Secure" in page.headers["Set-Cookie"]


async def test_wrong_password_is_refused_and_recorded(admin_client: Any,
                                                      settings: Settings) -> None:
    await add_user(settings, "wang", "editor")
    response = await login(admin_client, "wang", "not-the-password")
    assert response.status == 401
    assert "用户名或密码不对" in await response.text()
    assert SESSION_COOKIE not in response.cookies
    unknown = await login(admin_client, "nobody", "not-the-password")
    assert unknown.status == 401
    assert "用户名或密码不对" in await unknown.text()  # same words: no account probing
    failed = [a for a in await _audit(settings) if a.action == "login_failed"]
    assert [a.username for a in failed] == ["wang", UNKNOWN_ACCOUNT]
    assert [a.target_id for a in failed] == ["wang", None]
    assert all(a.ip == "127.0.0.1" and a.user_id is None for a in failed)


async def test_a_password_typed_as_the_name_is_not_kept(admin_client: Any,
                                                        settings: Settings) -> None:
    await add_user(settings, "wang", "editor")
    typed = "Qingshui-Hetang-27"  # the password, typed into the name field
    for _ in range(6):  # enough to start a lock, which is recorded too
        response = await login(admin_client, typed, "wang")
    assert response.status in (401, 429)
    entries = await _audit(settings)
    assert {a.action for a in entries} == {"login_failed", "login_locked"}
    for entry in entries:
        stored = f"{entry.username} {entry.target_id} {entry.before} {entry.after}".lower()
        assert typed.lower() not in stored
        assert entry.username == UNKNOWN_ACCOUNT
    keys = [row.key for row in await rows_of(settings, select(LoginThrottle))]
    assert keys and not any(typed.lower() in key for key in keys)


async def test_disabled_account_cannot_sign_in(admin_client: Any, settings: Settings) -> None:
    await add_user(settings, "old", "editor", disabled=True)
    response = await login(admin_client, "old")
    assert response.status == 403
    assert "停用" in await response.text()
    assert await _sessions(settings) == []


# ----- sign-in throttling ---------------------------------------------------------------
async def _login_from(client: Any, address: str, username: str, password: str = PASSWORD
                      ) -> Any:
    """Sign in through our proxy, which says the client is ``address``."""
    page = await client.get("/admin/login")
    token = csrf_of(await page.text())
    return await client.post("/admin/login", allow_redirects=False,
                             headers={"X-Forwarded-For": address},
                             data={"csrf": token, "username": username, "password": password})


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


# The real policy's pair rules; ceilings lowered so the tests need fewer slow hashes.
POLICY = replace(LOGIN_POLICY, account_ceiling=8, address_ceiling=10)


@pytest.fixture
async def proxied(aiohttp_client: Any, settings: Settings, clock: StepClock) -> Any:
    """The admin UI behind one proxy of ours, on a clock the test moves."""
    return await aiohttp_client(mounted_on(behind_proxy(settings), clock, POLICY))


async def test_failures_from_one_address_lock_only_that_address_for_the_account(
        proxied: Any, settings: Settings) -> None:
    await add_user(settings, "wang", "editor")
    for attempt in range(4):
        response = await _login_from(proxied, "203.0.113.9", "wang", f"wrong-{attempt}")
        assert response.status == 401
    fifth = await _login_from(proxied, "203.0.113.9", "wang", "wrong-4")
    assert fifth.status == 401 and "以后再试" in await fifth.text()
    locked = await _login_from(proxied, "203.0.113.9", "wang")  # even the right password
    assert locked.status == 429
    assert "连续输错密码的次数太多" in await locked.text()
    # The clerk at their own desk is not locked out by a stranger's guesses.
    own = await _login_from(proxied, "198.51.100.20", "wang")
    assert own.status == 303
    (lock_entry,) = [a for a in await _audit(settings) if a.action == "login_locked"]
    assert lock_entry.target_id == "wang" and lock_entry.ip == "203.0.113.9"
    assert lock_entry.after["scope"] == "pair" and lock_entry.after["failures"] == 5


async def test_failures_for_other_names_do_not_lock_a_colleague_behind_the_same_address(
        proxied: Any, settings: Settings) -> None:
    await add_user(settings, "li", "editor")
    for attempt in range(6):  # one bureau, one NAT address
        await _login_from(proxied, "203.0.113.9", f"guess{attempt % 2}", "wrong-password")
    assert (await _login_from(proxied, "203.0.113.9", "li")).status == 303


async def test_the_wait_doubles_after_each_further_failure_up_to_an_hour(
        proxied: Any, settings: Settings, clock: StepClock) -> None:
    await add_user(settings, "wang", "editor")
    for attempt in range(5):
        await _login_from(proxied, "203.0.113.9", "wang", f"wrong-{attempt}")
    for minutes in (1, 2, 4, 8, 16, 32, 60, 60):  # each failure after a wait doubles it
        clock.advance(minutes=minutes, seconds=-1)
        assert (await _login_from(proxied, "203.0.113.9", "wang")).status == 429
        clock.advance(seconds=1)
        assert (await _login_from(proxied, "203.0.113.9", "wang", "wrong")).status == 401
    clock.advance(minutes=59)
    assert (await _login_from(proxied, "203.0.113.9", "wang")).status == 429
    clock.advance(hours=25)  # a day without failures: forgotten, five free tries again
    for _ in range(4):
        assert (await _login_from(proxied, "203.0.113.9", "wang", "wrong")).status == 401
    assert (await _login_from(proxied, "203.0.113.9", "wang")).status == 303


async def test_success_clears_the_failures_of_the_address(proxied: Any,
                                                         settings: Settings) -> None:
    await add_user(settings, "wang", "editor")
    for attempt in range(4):
        await _login_from(proxied, "203.0.113.9", "wang", f"wrong-{attempt}")
    assert (await _login_from(proxied, "203.0.113.9", "wang")).status == 303
    proxied.session.cookie_jar.clear()
    for attempt in range(4):  # four more do not lock: the count started again
        assert (await _login_from(proxied, "203.0.113.9", "wang", f"again-{attempt}")
                ).status == 401
    assert (await _login_from(proxied, "203.0.113.9", "wang")).status == 303


async def test_a_guess_spread_over_many_addresses_is_slowed_for_a_short_while(
        proxied: Any, settings: Settings, clock: StepClock) -> None:
    await add_user(settings, "wang", "editor")
    assert (await _login_from(proxied, "198.51.100.20", "wang")).status == 303  # office
    proxied.session.cookie_jar.clear()
    for n in range(POLICY.account_ceiling):
        await _login_from(proxied, f"203.0.113.{n + 1}", "wang", "wrong-password")
    stranger = await _login_from(proxied, "192.0.2.77", "wang")
    assert stranger.status == 429 and "很多地方" in await stranger.text()
    # where wang has signed in before, the right password still works
    assert (await _login_from(proxied, "198.51.100.20", "wang")).status == 303
    proxied.session.cookie_jar.clear()
    clock.advance(minutes=5)
    assert (await _login_from(proxied, "192.0.2.77", "wang")).status == 303
    scopes = [a.after["scope"] for a in await _audit(settings) if a.action == "login_locked"]
    assert scopes == ["account"]


async def test_one_address_trying_many_names_is_slowed(proxied: Any, settings: Settings,
                                                       clock: StepClock) -> None:
    await add_user(settings, "li", "editor")
    await add_user(settings, "zhao", "editor")
    assert (await _login_from(proxied, "203.0.113.9", "li")).status == 303
    proxied.session.cookie_jar.clear()
    for n in range(POLICY.address_ceiling):
        await _login_from(proxied, "203.0.113.9", f"name{n}", "wrong-password")
    refused = await _login_from(proxied, "203.0.113.9", "zhao")
    assert refused.status == 429 and "您所在的网络" in await refused.text()
    assert (await _login_from(proxied, "203.0.113.9", "li")).status == 303  # signed in here
    proxied.session.cookie_jar.clear()
    clock.advance(minutes=5)
    assert (await _login_from(proxied, "203.0.113.9", "zhao")).status == 303
    (entry,) = [a for a in await _audit(settings)
                if a.action == "login_locked" and a.target_type == "address"]
    assert entry.target_id == "203.0.113.9"


async def test_administrators_are_told_about_accounts_under_attack(
        aiohttp_client: Any, settings: Settings, clock: StepClock) -> None:
    attacker = await aiohttp_client(mounted_on(behind_proxy(settings), clock))
    boss = await aiohttp_client(mounted_on(behind_proxy(settings), clock))
    await add_user(settings, "wang", "editor")
    await add_user(settings, "boss", "admin")
    for attempt in range(7):  # five from one address (a lock), two from another
        clock.advance(minutes=5)
        await _login_from(attacker, "203.0.113.1" if attempt < 5 else "203.0.113.2", "wang",
                          f"x-{attempt}")
    response = await _login_from(boss, "198.51.100.20", "boss")
    home = await boss.get(response.headers["Location"])
    assert "被人反复输错密码：wang" in await home.text()
    users = await (await boss.get("/admin/users")).text()
    notice = users.split("有账号正在被人反复试密码")[1].split("</section>")[0]
    assert "wang" in notice and "7次" in notice and "2个" in notice
    assert "boss" not in notice
    locked = [a for a in await _audit(settings) if a.action == "login_locked"]
    assert [a.target_id for a in locked] == ["wang"]
    clock.advance(hours=25)  # a day later the notice is gone
    boss.session.cookie_jar.clear()
    assert (await _login_from(boss, "198.51.100.20", "boss")).status == 303
    users = await (await boss.get("/admin/users")).text()
    assert "账号管理" in users and "有账号正在被人反复试密码" not in users


# ----- sessions ------------------------------------------------------------------------
@pytest.fixture
async def on_clock(aiohttp_client: Any, settings: Settings, clock: StepClock) -> Any:
    return await aiohttp_client(mounted_on(settings, clock))


async def test_idle_session_expires_after_30_minutes(on_clock: Any, settings: Settings,
                                                     clock: StepClock) -> None:
    await signed_in(on_clock, settings, "editor")
    clock.advance(minutes=29)
    assert (await on_clock.get("/admin/", allow_redirects=False)).status == 200
    clock.advance(minutes=29, seconds=59)
    assert (await on_clock.get("/admin/", allow_redirects=False)).status == 200
    clock.advance(minutes=30)
    response = await on_clock.get("/admin/faq", allow_redirects=False)
    assert response.status == 303
    assert "m=expired" in response.headers["Location"]
    assert await _sessions(settings) == []
    page = await on_clock.get(response.headers["Location"])
    assert "登录已过期" in await page.text()


async def test_session_ends_after_12_hours_however_busy(on_clock: Any, settings: Settings,
                                                        clock: StepClock) -> None:
    await signed_in(on_clock, settings, "editor")
    for _ in range(35):  # 11 h 40 min of work, a page every 20 minutes
        clock.advance(minutes=20)
        assert (await on_clock.get("/admin/", allow_redirects=False)).status == 200
    clock.advance(minutes=20)
    response = await on_clock.get("/admin/", allow_redirects=False)
    assert response.status == 303 and "m=expired" in response.headers["Location"]


async def test_activity_keeps_the_session_alive(on_clock: Any, settings: Settings,
                                                clock: StepClock) -> None:
    await signed_in(on_clock, settings, "editor")
    clock.advance(minutes=20)
    assert (await on_clock.get("/admin/", allow_redirects=False)).status == 200
    (row,) = await _sessions(settings)
    assert row.last_seen_at.replace(tzinfo=UTC) == clock.now


async def test_disabling_an_account_ends_its_sessions(aiohttp_client: Any,
                                                      settings: Settings) -> None:
    boss = await aiohttp_client(mounted(settings))
    editor = await aiohttp_client(mounted(settings))
    token = await signed_in(boss, settings, "admin")
    await signed_in(editor, settings, "editor")
    db = Database(settings.database_url)
    async with db.session() as session:
        editor_id = await session.scalar(select(AdminUser.id).where(
            AdminUser.username == "editor"))
    await db.dispose()
    response = await post(boss, f"/admin/users/{editor_id}/status", token, disabled="1")
    assert response.status == 303
    kicked = await editor.get("/admin/", allow_redirects=False)
    assert kicked.status == 303 and "/admin/login" in kicked.headers["Location"]


# ----- CSRF ---------------------------------------------------------------------------
async def _terms(settings: Settings) -> int:
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            return len((await session.scalars(select(DictionaryRow))).all())
    finally:
        await db.dispose()


@pytest.mark.parametrize("token", [None, "", "forged-token"])
async def test_post_without_the_right_csrf_token_is_refused(
        admin_client: Any, settings: Settings, token: str | None) -> None:
    await signed_in(admin_client, settings, "editor")
    before = await _terms(settings)
    data = {"kind": "replacement", "term": "俺们村", "replacement": "我们村"}
    if token is not None:
        data["csrf"] = token
    response = await admin_client.post("/admin/dictionary/add", data=data,
                                       allow_redirects=False)
    assert response.status == 403
    assert "页面已过期" in await response.text()
    assert await _terms(settings) == before


async def test_csrf_token_of_another_session_is_refused(aiohttp_client: Any,
                                                        settings: Settings) -> None:
    one = await aiohttp_client(mounted(settings))
    two = await aiohttp_client(mounted(settings))
    token_one = await signed_in(one, settings, "editor", "one")
    await signed_in(two, settings, "editor", "two")
    response = await post(two, "/admin/dictionary/add", token_one, kind="filler", term="嗯哼")
    assert response.status == 403


async def test_login_form_needs_its_token(admin_client: Any, settings: Settings) -> None:
    await add_user(settings, "wang", "editor")
    response = await admin_client.post("/admin/login", allow_redirects=False,
                                       data={"username": "wang", "password": PASSWORD})
    assert response.status == 403
    assert await _sessions(settings) == []


# ----- roles ----------------------------------------------------------------------------
GUARDED = [r for r in ROUTES if r.capability is not None]


def _path(route: Any, app_id: int = 1) -> str:
    return "/admin" + route.path.replace("{entry_id}", "dibao-apply").replace(
        "{job_id}", "1").replace(
        "{user_id}", "1").replace("{app_id}", str(app_id)).replace("{month}", "2026-11").replace(
        "{case_id}", "1")


# Pages about one application or one payout month need them in the registry.
NEEDS_REGISTRY = ("{app_id}", "{month}")
# A page about one import job or case: with none made here, the allowed answer is a 404.
ONE_JOB = ("{job_id}", "{case_id}")


@pytest.mark.parametrize("role", list(ROLES))
@pytest.mark.parametrize("route", GUARDED, ids=[f"{r.method}-{r.name}" for r in GUARDED])
async def test_every_page_checks_the_role(admin_client: Any, settings: Settings, route: Any,
                                          role: str) -> None:
    app_id = 1
    if any(part in route.path for part in NEEDS_REGISTRY):
        app_id = (await load_demo(settings, payouts=True))["LZ-2026-0017"]
    token = await signed_in(admin_client, settings, role)
    if route.method == "GET":
        response = await admin_client.get(_path(route, app_id), allow_redirects=False)
    else:
        response = await post(admin_client, _path(route, app_id), token)
    assert response.status < 500, await response.text()
    if can(role, route.capability):
        assert response.status != 403, f"{role} should be allowed {route.name}"
        if route.method == "GET":
            expected = 404 if any(part in route.path for part in ONE_JOB) else 200
            assert response.status == expected, await response.text()
    else:
        assert response.status == 403, f"{role} must not reach {route.name}"
        assert "没有权限" in await response.text()


@pytest.mark.parametrize("route", GUARDED, ids=[f"{r.method}-{r.name}" for r in GUARDED])
async def test_every_page_needs_signing_in(admin_client: Any, route: Any) -> None:
    if route.method == "GET":
        response = await admin_client.get(_path(route), allow_redirects=False)
    else:
        response = await admin_client.post(_path(route), data={"csrf": "x"},
                                           allow_redirects=False)
    assert response.status == 303
    assert "/admin/login" in response.headers["Location"]


@pytest.mark.parametrize("route", [r for r in GUARDED if r.method == "POST"],
                         ids=[r.name for r in GUARDED if r.method == "POST"])
async def test_every_post_needs_the_csrf_token(admin_client: Any, settings: Settings,
                                               route: Any) -> None:
    await signed_in(admin_client, settings, "admin")
    for data in ({}, {"csrf": "forged-token"}):
        response = await admin_client.post(_path(route), data=data, allow_redirects=False)
        assert response.status == 403, route.name
        assert "页面已过期" in await response.text()


async def test_navigation_shows_only_what_the_role_may_use(admin_client: Any,
                                                           settings: Settings) -> None:
    await signed_in(admin_client, settings, "caseworker")
    html = await (await admin_client.get("/admin/")).text()
    assert "即将上线" not in html
    for path in ("/admin/registry", "/admin/payouts", "/admin/reminders"):
        assert f'href="{path}"' in html
    assert "/admin/faq" not in html and "/admin/users" not in html
    assert "/admin/audit" not in html
    sub_page = await (await admin_client.get("/admin/registry/import")).text()
    assert 'aria-current="page">救助对象' in sub_page  # the part's item stays marked


async def test_editor_does_not_see_the_registry(admin_client: Any, settings: Settings) -> None:
    await signed_in(admin_client, settings, "editor")
    html = await (await admin_client.get("/admin/")).text()
    assert "/admin/registry" not in html and "/admin/reminders" not in html
    assert "提醒每天发出" not in html  # the reminder charts are for the registry roles


async def test_security_headers(admin_client: Any, settings: Settings) -> None:
    await signed_in(admin_client, settings, "editor")
    response = await admin_client.get("/admin/faq")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    css = await admin_client.get("/admin/static/admin.css")
    assert css.status == 200


async def test_unknown_page_is_a_plain_404(admin_client: Any, settings: Settings) -> None:
    await signed_in(admin_client, settings, "editor")
    response = await admin_client.get("/admin/faq/no-such-entry")
    assert response.status == 404
    assert "找不到页面" in await response.text()


async def test_bare_mount_point_goes_home(admin_client: Any) -> None:
    response = await admin_client.get("/admin", allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "/admin/"


async def test_create_user_validates(settings: Settings) -> None:
    from admin.accounts import AccountError

    db = Database(settings.database_url)
    try:
        with pytest.raises(AccountError, match="至少"):
            await create_user(db, "zhang", "short", "editor")
        with pytest.raises(AccountError, match="角色"):
            await create_user(db, "zhang", "long-enough-password", "boss")
        user = await create_user(db, "Zhang", "long-enough-password", "editor", "张三")
        assert user.username == "zhang" and user.password_hash.startswith("$argon2id$")
        with pytest.raises(AccountError, match="已经有人用了"):
            await create_user(db, "zhang", "long-enough-password", "editor")
    finally:
        await db.dispose()
