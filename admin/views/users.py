"""Staff accounts (管理员 only): create, change role, disable/enable, reset password."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from admin.accounts import (
    MAX_PASSWORD,
    AccountError,
    active_admins,
    check_role,
    create_user,
    end_user_sessions,
    set_password,
)
from admin.audit import failed_logins, record
from admin.models import AdminUser
from admin.roles import ROLES
from admin.views.auth import ATTACK_FAILURES, ATTACK_WINDOW
from admin.web import actor, flash, form_text, redirect, render, signed_in, state


def _user_view(user: AdminUser) -> dict[str, object]:
    return {"username": user.username, "display_name": user.display_name, "role": user.role,
            "disabled": user.disabled, "must_change_password": user.must_change_password}


async def _page(request: web.Request, status: int = 200, error: str = "",
                values: dict[str, str] | None = None) -> web.Response:
    st = state(request)
    now = st.clock()
    async with st.db.session() as session:
        users = (await session.scalars(select(AdminUser).order_by(AdminUser.username))).all()
        attacked = await failed_logins(session, now - ATTACK_WINDOW, ATTACK_FAILURES)
    locks = await st.guard.locks_of_accounts([u.username for u in users], now)
    attacks = [{"username": a.username, "failures": a.failures, "addresses": a.addresses,
                "last_at": a.last_at, "locked_until": locks.get(a.username)}
               for a in attacked]
    listed = {a.username for a in attacked}
    attacks += [{"username": name, "failures": None, "addresses": None, "last_at": None,
                 "locked_until": until} for name, until in sorted(locks.items())
                if name not in listed]
    return await render(request, "users.html", status=status, users=users, error=error,
                        values=values or {"role": "editor"}, attacks=attacks)


async def users_page(request: web.Request) -> web.Response:
    return await _page(request)


async def create(request: web.Request) -> web.Response:
    form = await request.post()
    values = {"username": form_text(form, "username", 100),
              "display_name": form_text(form, "display_name", 100),
              "role": form_text(form, "role", 20)}
    password = form_text(form, "password", MAX_PASSWORD + 1)
    st = state(request)
    now = st.clock()
    try:
        user = await create_user(st.db, values["username"], password, values["role"],
                                 values["display_name"], now=now)
    except AccountError as exc:
        return await _page(request, 400, str(exc), values)
    async with st.db.session() as session:
        record(session, actor(request), "user_create", "user", user.username,
               after=_user_view(user), at=now)
    await flash(request, "ok", f"已新建账号 {user.username}（{ROLES[user.role]}）。"
                               "请把初始密码当面或电话告诉本人；他第一次登录时要先改成"
                               "自己的密码。")
    raise redirect(request, "users")


async def _target(session: AsyncSession, request: web.Request) -> AdminUser:
    raw = request.match_info["user_id"]
    user = await session.get(AdminUser, int(raw)) if raw.isdigit() else None
    if user is None:
        raise web.HTTPNotFound()
    return user


async def change_role(request: web.Request) -> web.Response:
    form = await request.post()
    st, me = state(request), signed_in(request).user
    try:
        role = check_role(form_text(form, "role", 20))
        async with st.db.session() as session:
            user = await _target(session, request)
            if user.id == me.id:
                raise AccountError("不能修改自己的角色，请另一位管理员来改。")
            if user.role == role:
                raise AccountError("角色没有变化。")
            if user.role == "admin" and not user.disabled and await active_admins(session) <= 1:
                raise AccountError("这是最后一个在用的管理员账号，不能改成别的角色。")
            before = _user_view(user)
            user.role = role
            await end_user_sessions(session, user.id)
            record(session, actor(request), "user_role", "user", user.username,
                   before=before, after=_user_view(user), at=st.clock())
            name = user.username
    except AccountError as exc:
        await flash(request, "error", str(exc))
        raise redirect(request, "users") from None
    await flash(request, "ok", f"{name} 的角色已改为{ROLES[role]}，他需要重新登录。")
    raise redirect(request, "users")


async def change_status(request: web.Request) -> web.Response:
    form = await request.post()
    disable = form_text(form, "disabled", 5) == "1"
    st, me = state(request), signed_in(request).user
    try:
        async with st.db.session() as session:
            user = await _target(session, request)
            if user.id == me.id:
                raise AccountError("不能停用自己的账号。")
            if disable and user.role == "admin" and not user.disabled \
                    and await active_admins(session) <= 1:
                raise AccountError("这是最后一个在用的管理员账号，不能停用。")
            before = _user_view(user)
            user.disabled = disable
            if disable:
                await end_user_sessions(session, user.id)
            record(session, actor(request), "user_disable" if disable else "user_enable",
                   "user", user.username, before=before, after=_user_view(user),
                   at=st.clock())
            name = user.username
    except AccountError as exc:
        await flash(request, "error", str(exc))
        raise redirect(request, "users") from None
    await flash(request, "ok", f"已停用 {name}。" if disable else f"已启用 {name}。")
    raise redirect(request, "users")


async def reset_password(request: web.Request) -> web.Response:
    form = await request.post()
    password = form_text(form, "password", MAX_PASSWORD + 1)
    st, me = state(request), signed_in(request).user
    try:
        async with st.db.session() as session:
            user = await _target(session, request)
            # Someone else's: they must choose their own at the next sign-in.
            await set_password(session, user, password, must_change=user.id != me.id)
            record(session, actor(request), "user_password", "user", user.username,
                   at=st.clock())
            name = user.username
    except AccountError as exc:
        await flash(request, "error", str(exc))
        raise redirect(request, "users") from None
    if name == me.username:
        raise redirect(request, "login", {"m": "login"})
    await flash(request, "ok", f"已重设 {name} 的密码。请把新密码告诉本人；他用新密码登录后"
                               "要先改成自己的密码。")
    raise redirect(request, "users")
