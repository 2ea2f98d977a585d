"""Signing in and out, and changing one's own password."""

from __future__ import annotations

from datetime import datetime, timedelta

from aiohttp import web
from sqlalchemy import select

from admin.accounts import (
    ACCOUNT,
    ADDRESS,
    LOGIN_POLICY,
    MAX_PASSWORD,
    AccountError,
    LoginLock,
    describe_lock,
    end_session,
    find_session,
    normalise_username,
    open_session,
    set_password,
    verify_password,
)
from admin.audit import UNKNOWN_ACCOUNT, Actor, failed_logins, record
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
from huimin.clock import CHINA

LOGIN_NOTES = {
    "expired": "登录已过期（30分钟没有操作，或登录超过12小时），请重新登录。",
    "logged_out": "已退出登录。",
    "login": "请先登录。",
    "changed": "密码已改好，请用新密码登录。",
}
WRONG = "用户名或密码不对，请再试一次。"
# Accounts with this many failed sign-ins in a day are shown to administrators.
ATTACK_FAILURES = LOGIN_POLICY.free_tries
ATTACK_WINDOW = timedelta(hours=24)


def _clock_time(moment: datetime) -> str:
    """A lock's end as staff read it: local time, rounded up to the minute."""
    local = moment.astimezone(CHINA)
    if local.second or local.microsecond:
        local = local.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return local.strftime("%H:%M")


def lock_message(lock: LoginLock) -> str:
    until = _clock_time(lock.until)
    if lock.scope == ACCOUNT:
        return (f"这个账号最近在很多地方被人反复试密码，为了安全暂停登录几分钟，请在 {until} "
                "以后再试。平时登录的电脑不受影响；如果不是您在试，请告诉管理员。")
    if lock.scope == ADDRESS:
        return f"从您所在的网络输错密码的次数太多，暂停登录几分钟，请在 {until} 以后再试。"
    return (f"这个账号在这里连续输错密码的次数太多，请在 {until} 以后再试。"
            "再输错，要等的时间会越来越长。忘记密码请找管理员重设。")


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
    st = state(request)
    current, _ = await find_session(st.db, request.cookies.get(SESSION_COOKIE), st.clock())
    if current is not None:
        raise redirect(request, "home")
    return await _login_page(request)


async def _attack_notice(request: web.Request, user: AdminUser, now: datetime
                         ) -> dict[str, str] | None:
    """For an administrator signing in: a message naming accounts under attack."""
    if user.role != "admin":
        return None
    async with state(request).db.session() as session:
        attacked = await failed_logins(session, now - ATTACK_WINDOW, ATTACK_FAILURES)
    if not attacked:
        return None
    names = "、".join(a.username for a in attacked[:5]) + ("等" if len(attacked) > 5 else "")
    return {"kind": "error",
            "text": f"有账号在24小时内被人反复输错密码：{names}。请到“账号管理”查看。"}


async def login(request: web.Request) -> web.Response:
    form = await request.post()
    typed = normalise_username(form_text(form, "username", 200))
    password = form_text(form, "password", MAX_PASSWORD + 1)
    next_path = form_text(form, "next", 500)
    ip = client_ip(request)
    st = state(request)
    now = st.clock()
    async with st.db.session() as session:
        user = await session.scalar(select(AdminUser).where(AdminUser.username == typed[:64]))
    # The typed name is kept only when it names an account: people type passwords there.
    who = Actor(None, user.username if user else UNKNOWN_ACCOUNT, ip)
    lock = await st.guard.locked(typed, ip, now)
    if lock is not None:  # refused without an audit entry: the lock's start has one
        return await _login_page(request, 429, lock_message(lock), typed, next_path)
    ok = await verify_password(user.password_hash if user else None, password)
    if not ok:
        started = await st.guard.failed(typed, ip, now)
        async with st.db.session() as session:
            record(session, who, "login_failed", "user", user.username if user else None,
                   at=now)
            for new_lock in started:
                if new_lock.scope == ADDRESS:
                    target_type, target_id = "address", ip
                else:
                    target_type, target_id = "user", user.username if user else None
                record(session, who, "login_locked", target_type, target_id,
                       after=describe_lock(new_lock), at=now)
        message = WRONG
        if started:
            message = WRONG + lock_message(max(started, key=lambda lk: lk.until))
        return await _login_page(request, 401, message, typed, next_path)
    assert user is not None
    if user.disabled:
        async with st.db.session() as session:
            record(session, who, "login_failed", "user", user.username,
                   after={"reason": "disabled"}, at=now)
        return await _login_page(request, 403, "这个账号已经停用了。如有疑问请找管理员。",
                                 typed, next_path)
    await st.guard.succeeded(typed, ip, now)
    token = await open_session(st.db, user, ip, now, await _attack_notice(request, user, now))
    async with st.db.session() as session:
        record(session, Actor(user.id, user.username, ip), "login", "user", user.username,
               at=now)
    target = url(request, "account") if user.must_change_password \
        else safe_next(request, next_path)
    response = web.HTTPSeeOther(target)
    set_cookie(request, response, SESSION_COOKIE, token)
    response.del_cookie(LOGIN_COOKIE, path=base_path(request))
    raise response


async def logout(request: web.Request) -> web.Response:
    st = state(request)
    who = actor(request)
    await end_session(st.db, request.cookies.get(SESSION_COOKIE))
    async with st.db.session() as session:
        record(session, who, "logout", "user", who.username, at=st.clock())
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
    if new == old:
        return await render(request, "account.html", status=400,
                            error="新密码不能和现在的密码一样，请换一个只有您自己知道的密码。")
    st = state(request)
    try:
        async with st.db.session() as session:
            user = await session.get(AdminUser, current.user.id)
            assert user is not None
            await set_password(session, user, new, must_change=False)
            record(session, actor(request), "own_password", "user", user.username,
                   at=st.clock())
    except AccountError as exc:
        return await render(request, "account.html", status=400, error=str(exc))
    # Every session of the account ended, this one too: sign in again with the new one.
    response = web.HTTPSeeOther(url(request, "login", {"m": "changed"}))
    response.del_cookie(SESSION_COOKIE, path=base_path(request))
    raise response
