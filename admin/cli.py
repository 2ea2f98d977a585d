"""Account commands for ``huimin admin ...``; plain functions, no argparse here.

``huimin.wiring.cli`` parses the command line and calls these; each returns the exit code.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from typing import TextIO

from sqlalchemy import select

from admin.accounts import AccountError, create_user, set_password
from admin.audit import Actor, record
from admin.models import AdminUser
from admin.roles import ROLES, role_from_text
from huimin.casework.cases import add_route
from huimin.db import Database
from huimin.settings import Settings

CLI_ACTOR = Actor(None, "命令行", None)
DEMO_USERS = (
    ("admin", "管理员（演示）", "admin", "demo-guanli-2026"),
    ("editor", "内容编辑（演示）", "editor", "demo-bianji-2026"),
    ("caseworker", "经办人员（演示）", "caseworker", "demo-jingban-2026"),
)


def read_password(password_from: str = "prompt", stdin: TextIO | None = None) -> str:
    """'stdin': the first line of standard input; 'prompt': typed twice, not echoed."""
    if password_from == "stdin":
        return (stdin or sys.stdin).readline().rstrip("\r\n")
    first = getpass.getpass("新密码：")
    second = getpass.getpass("再输一遍：")
    if first != second:
        raise AccountError("两次输入的密码不一样")
    return first


async def _create(settings: Settings, username: str, role: str, password: str,
                  display_name: str | None) -> AdminUser:
    db = Database(settings.database_url)
    try:
        user = await create_user(db, username, password, role, display_name)
        async with db.session() as session:
            record(session, CLI_ACTOR, "user_create", "user", user.username,
                   after={"username": user.username, "display_name": user.display_name,
                          "role": user.role, "disabled": False})
        return user
    finally:
        await db.dispose()


def create_user_command(settings: Settings, username: str, role: str,
                        password_from: str = "prompt", display_name: str | None = None,
                        stdin: TextIO | None = None) -> int:
    """`huimin admin create-user NAME --role editor [--name 张三] [--password-stdin]`."""
    wanted = role_from_text(role)
    if wanted is None:
        print("角色只能是：" + "、".join(f"{k}（{v}）" for k, v in ROLES.items()),
              file=sys.stderr)
        return 2
    try:
        password = read_password(password_from, stdin)
        user = asyncio.run(_create(settings, username, wanted, password, display_name))
    except AccountError as exc:
        print(f"没有建成：{exc}", file=sys.stderr)
        return 1
    print(f"已新建账号 {user.username}（{ROLES[user.role]}）")
    return 0


async def _reset(settings: Settings, username: str, password: str) -> bool:
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            user = await session.scalar(select(AdminUser).where(
                AdminUser.username == username.strip().lower()))
            if user is None:
                return False
            # Whoever runs the command chose it: the owner picks their own at sign-in.
            await set_password(session, user, password, must_change=True)
            user.disabled = False
            record(session, CLI_ACTOR, "user_password", "user", user.username)
        return True
    finally:
        await db.dispose()


def reset_password_command(settings: Settings, username: str,
                           password_from: str = "prompt", stdin: TextIO | None = None) -> int:
    """`huimin admin reset-password NAME [--password-stdin]`: also re-enables the account
    (the way back in when the last administrator is locked out)."""
    try:
        password = read_password(password_from, stdin)
        found = asyncio.run(_reset(settings, username, password))
    except AccountError as exc:
        print(f"没有改成：{exc}", file=sys.stderr)
        return 1
    if not found:
        print(f"没有这个账号：{username}", file=sys.stderr)
        return 1
    print(f"已重设 {username.strip().lower()} 的密码")
    return 0


async def ensure_demo_users(settings: Settings) -> list[tuple[str, str, str]]:
    """Demo only: create the three demo accounts when the database has no account yet.
    Returns (username, role label, password) of the accounts made, for the banner."""
    db = Database(settings.database_url)
    try:
        async with db.session() as session:
            existing = await session.scalar(select(AdminUser.id).limit(1))
        if existing is not None:
            return []
        for username, name, role, password in DEMO_USERS:
            # The demo's printed logins work as they are (no forced change).
            await create_user(db, username, password, role, name, must_change=False)
        async with db.session() as session:  # the demo caseworker gets every message left
            await add_route(session, "any", "*", "caseworker")
    finally:
        await db.dispose()
    return [(u, ROLES[r], p) for u, _, r, p in DEMO_USERS]
