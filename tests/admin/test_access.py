"""Signing in and out, throttling, sessions, CSRF and roles."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from admin.accounts import create_user
from admin.app import ROUTES
from admin.models import AdminSession, AdminUser, AuditEntry
from admin.roles import ROLES, can
from admin.web import SESSION_COOKIE
from content.models import DictionaryRow
from huimin.db import Database, utcnow
from huimin.settings import Settings
from tests.admin.conftest import (
    PASSWORD,
    add_user,
    csrf,
    load_demo,
    login,
    mounted,
    post,
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


async def _age_sessions(settings: Settings, **values: Any) -> None:
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            await session.execute(update(AdminSession).values(**values))
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
    secure = settings.with_overrides(extra={"HUIMIN_ADMIN_SECURE_COOKIES": "true"})
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
    assert [a.username for a in failed] == ["wang", "nobody"]
    assert all(a.ip == "127.0.0.1" for a in failed)


async def test_disabled_account_cannot_sign_in(admin_client: Any, settings: Settings) -> None:
    await add_user(settings, "old", "editor", disabled=True)
    response = await login(admin_client, "old")
    assert response.status == 403
    assert "停用" in await response.text()
    assert await _sessions(settings) == []


async def test_five_failures_lock_the_account_name(admin_client: Any,
                                                   settings: Settings) -> None:
    await add_user(settings, "wang", "editor")
    for attempt in range(5):
        response = await login(admin_client, "wang", f"wrong-{attempt}")
    assert "暂停登录15分钟" in await response.text()
    locked = await login(admin_client, "wang")  # even the right password
    assert locked.status == 429
    assert "暂停登录15分钟" in await locked.text()
    assert await _sessions(settings) == []
    assert "login_locked" in [a.action for a in await _audit(settings)]


async def test_five_failures_lock_the_client_address(admin_client: Any,
                                                     settings: Settings) -> None:
    await add_user(settings, "li", "editor")
    for attempt in range(5):
        await login(admin_client, f"guess{attempt}", "wrong-password")
    locked = await login(admin_client, "li")
    assert locked.status == 429


async def test_success_clears_the_failures_of_the_account(admin_client: Any,
                                                          settings: Settings) -> None:
    await add_user(settings, "wang", "editor")
    for attempt in range(3):
        await login(admin_client, "wang", f"wrong-{attempt}")
    assert (await login(admin_client, "wang")).status == 303
    token = await csrf(admin_client)
    await post(admin_client, "/admin/logout", token)
    # the address has 3 failures; one more for the name alone does not lock it
    await login(admin_client, "wang", "wrong-again")
    assert (await login(admin_client, "wang")).status == 303


# ----- sessions ------------------------------------------------------------------------
async def test_idle_session_expires_after_30_minutes(admin_client: Any,
                                                     settings: Settings) -> None:
    await signed_in(admin_client, settings, "editor")
    await _age_sessions(settings, last_seen_at=utcnow() - timedelta(minutes=29))
    assert (await admin_client.get("/admin/", allow_redirects=False)).status == 200
    await _age_sessions(settings, last_seen_at=utcnow() - timedelta(minutes=31))
    response = await admin_client.get("/admin/faq", allow_redirects=False)
    assert response.status == 303
    assert "m=expired" in response.headers["Location"]
    assert await _sessions(settings) == []
    page = await admin_client.get(response.headers["Location"])
    assert "登录已过期" in await page.text()


async def test_session_ends_after_12_hours_however_busy(admin_client: Any,
                                                        settings: Settings) -> None:
    await signed_in(admin_client, settings, "editor")
    await _age_sessions(settings, created_at=utcnow() - timedelta(hours=12),
                        expires_at=utcnow() - timedelta(seconds=1))
    response = await admin_client.get("/admin/", allow_redirects=False)
    assert response.status == 303 and "m=expired" in response.headers["Location"]


async def test_activity_keeps_the_session_alive(admin_client: Any, settings: Settings) -> None:
    await signed_in(admin_client, settings, "editor")
    await _age_sessions(settings, last_seen_at=utcnow() - timedelta(minutes=20))
    assert (await admin_client.get("/admin/", allow_redirects=False)).status == 200
    (row,) = await _sessions(settings)
    assert utcnow() - row.last_seen_at.replace(tzinfo=utcnow().tzinfo) < timedelta(minutes=1)


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
        "{user_id}", "1").replace("{app_id}", str(app_id)).replace("{month}", "2026-11")


# Pages about one application or one payout month need them in the registry.
NEEDS_REGISTRY = ("{app_id}", "{month}")


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
            assert response.status == 200, await response.text()
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
