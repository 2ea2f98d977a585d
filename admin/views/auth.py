"""Signing in and out, and changing one's own password."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select

from admin.accounts import (
    MAX_PASSWORD,
    AccountError,
    end_session,
    find_session,
    normalise_username,
    open_session,
    set_password,
    verify_password,
)
from admin.audit import LOCAL_TZ, Actor, record
from admin.models import AdminUser
from admin.web import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    actor,
    base_path,
    client_ip,
    form_text,
    new_login_token,
    redirect,
    render,
    safe_next,
    set_cookie,
    signed_in,
    state,
    url,
)

LOGIN_NOTES = {
    "expired": "登录已过期（30分钟没有操作，或登录超过12小时），请重新登录。",
    "logged_out": "已退出登录。",
    "login": "请先登录。",
}


async def _login_page(request: web.Request, status: int = 200, error: str = "",
                      username: str = "", next_path: str = "") -> web.Response:
    token = request.cookies.get(LOGIN_COOKIE) or new_login_token()
    note = LOGIN_NOTES.get(request.query.get("m", ""), "")
    response = await render(request, "login.html", status=status, login_csrf=token,
                            error=error, note=note, username=username,
                            next_path=next_path or request.query.get("next", ""))
    set_cookie(request, response, LOGIN_COOKIE, token, max_age=3600)
    return response


async def login_page(request: web.Request) -> web.Response:
    current, _ = await find_session(state(request).db, request.cookies.get(SESSION_COOKIE))
    if current is not None:
        raise redirect(request, "home")
    return await _login_page(request)


async def login(request: web.Request) -> web.Response:
    form = await request.post()
    username = normalise_username(form_text(form, "username", 200))
    password = form_text(form, "password", MAX_PASSWORD + 1)
    next_path = form_text(form, "next", 500)
    ip = client_ip(request)
    st = state(request)
    who = Actor(None, username[:64] or None, ip)
    locked = await st.guard.locked_until(username, ip)
    if locked is not None:
        async with st.db.session() as session:
            record(session, who, "login_locked", "user", username[:64])
        until = locked.astimezone(LOCAL_TZ).strftime("%H:%M")
        return await _login_page(
            request, 429, f"连续输错密码的次数太多，已暂停登录15分钟。请在 {until} 以后再试。",
            username, next_path)
    async with st.db.session() as session:
        user = await session.scalar(select(AdminUser).where(AdminUser.username == username))
    ok = await verify_password(user.password_hash if user else None, password)
    if not ok:
        lock = await st.guard.failed(username, ip)
        async with st.db.session() as session:
            record(session, who, "login_failed", "user", username[:64])
        message = "用户名或密码不对，请再试一次。"
        if lock is not None:
            until = lock.astimezone(LOCAL_TZ).strftime("%H:%M")
            message = f"连续输错密码的次数太多，已暂停登录15分钟。请在 {until} 以后再试。"
        return await _login_page(request, 401, message, username, next_path)
    assert user is not None
    if user.disabled:
        async with st.db.session() as session:
            record(session, Actor(user.id, user.username, ip), "login_failed", "user",
                   user.username, after={"reason": "disabled"})
        return await _login_page(request, 403, "这个账号已经停用了。如有疑问请找管理员。",
                                 username, next_path)
    await st.guard.succeeded(username)
    token = await open_session(st.db, user, ip)
    async with st.db.session() as session:
        record(session, Actor(user.id, user.username, ip), "login", "user", user.username)
    response = web.HTTPSeeOther(safe_next(request, next_path))
    set_cookie(request, response, SESSION_COOKIE, token)
    response.del_cookie(LOGIN_COOKIE, path=base_path(request))
    raise response


async def logout(request: web.Request) -> web.Response:
    st = state(request)
    who = actor(request)
    await end_session(st.db, request.cookies.get(SESSION_COOKIE))
    async with st.db.session() as session:
        record(session, who, "logout", "user", who.username)
    response = web.HTTPSeeOther(url(request, "login", {"m": "logged_out"}))
    response.del_cookie(SESSION_COOKIE, path=base_path(request))
    raise response


async def account_page(request: web.Request) -> web.Response:
    return await render(request, "account.html", error="")


async def change_own_password(request: web.Request) -> web.Response:
    form = await request.post()
    current = signed_in(request)
    old = form_text(form, "current", MAX_PASSWORD + 1)
    new = form_text(form, "password", MAX_PASSWORD + 1)
    repeat = form_text(form, "repeat", MAX_PASSWORD + 1)
    if not await verify_password(current.user.password_hash, old):
        return await render(request, "account.html", status=400, error="现在的密码不对。")
    if new != repeat:
        return await render(request, "account.html", status=400,
                            error="两次输入的新密码不一样。")
    st = state(request)
    try:
        async with st.db.session() as session:
            user = await session.get(AdminUser, current.user.id)
            assert user is not None
            await set_password(session, user, new)
            record(session, actor(request), "own_password", "user", user.username)
    except AccountError as exc:
        return await render(request, "account.html", status=400, error=str(exc))
    # Every session of the account ended, this one too: sign in again with the new one.
    response = web.HTTPSeeOther(url(request, "login", {"m": "login"}))
    response.del_cookie(SESSION_COOKIE, path=base_path(request))
    raise response

