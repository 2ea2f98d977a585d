"""Staff accounts, passwords (argon2id), database sessions and login throttling."""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from admin.models import AdminSession, AdminUser
from admin.roles import ROLES
from huimin.db import Database, utcnow
from huimin.limits import GuessLimiter, GuessPolicy

IDLE_TIMEOUT = timedelta(minutes=30)
ABSOLUTE_TIMEOUT = timedelta(hours=12)
TOUCH_EVERY = timedelta(seconds=30)
LOGIN_POLICY = GuessPolicy(tries=5, window=timedelta(minutes=15), lock=timedelta(minutes=15))
MIN_PASSWORD = 10
MAX_PASSWORD = 256
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,63}$")

_hasher = PasswordHasher()


class AccountError(ValueError):
    """A request about an account that cannot be done; the message is for staff."""


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_hex(16))


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=utcnow().tzinfo)


def normalise_username(raw: str) -> str:
    return raw.strip().lower()


def check_username(username: str) -> str:
    name = normalise_username(username)
    if not _USERNAME.match(name):
        raise AccountError("用户名只能用英文字母、数字、点、下划线或短横线，2到64个字符，"
                           "以字母或数字开头")
    return name


def check_password(password: str, username: str = "") -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"密码至少要{MIN_PASSWORD}个字符")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"密码最多{MAX_PASSWORD}个字符")
    if username and password.strip().lower() == username.lower():
        raise AccountError("密码不能和用户名一样")


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError("角色只能是：" + "、".join(ROLES.values()))
    return role


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant work whether or not the account exists (a dummy hash is checked)."""

    def verify() -> bool:
        try:
            return _hasher.verify(password_hash or _dummy_hash(), password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    ok = await asyncio.to_thread(verify)
    return ok and password_hash is not None


async def create_user(db: Database, username: str, password: str, role: str,
                      display_name: str | None = None) -> AdminUser:
    """Add an account; raises AccountError with a message for staff when it cannot."""
    name = check_username(username)
    check_role(role)
    check_password(password, name)
    display = (display_name or "").strip() or name
    if len(display) > 64:
        raise AccountError("姓名最多64个字")
    password_hash = await hash_password(password)
    async with db.session() as session:
        if await session.scalar(select(AdminUser.id).where(AdminUser.username == name)):
            raise AccountError(f"用户名 {name} 已经有人用了")
        user = AdminUser(username=name, display_name=display, password_hash=password_hash,
                         role=role, disabled=False, created_at=utcnow())
        session.add(user)
        await session.flush()
        return user


async def set_password(session: AsyncSession, user: AdminUser, password: str) -> None:
    """Change a password and sign the account out everywhere."""
    check_password(password, user.username)
    user.password_hash = await hash_password(password)
    await end_user_sessions(session, user.id)


async def active_admins(session: AsyncSession) -> int:
    return await session.scalar(
        select(func.count()).select_from(AdminUser)
        .where(AdminUser.role == "admin", AdminUser.disabled.is_(False))) or 0


# ----- sessions ----------------------------------------------------------------
def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass
class SignedIn:
    """The session and account behind one request."""

    session: AdminSession
    user: AdminUser

    @property
    def csrf_token(self) -> str:
        return self.session.csrf_token


async def open_session(db: Database, user: AdminUser, ip: str | None) -> str:
    """Start a session for ``user``; returns the token for the cookie."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    async with db.session() as session:
        await session.execute(delete(AdminSession).where(
            (AdminSession.expires_at < now) | (AdminSession.last_seen_at < now - IDLE_TIMEOUT)))
        session.add(AdminSession(
            token_hash=token_hash(token), user_id=user.id,
            csrf_token=secrets.token_urlsafe(32), created_at=now, last_seen_at=now,
            expires_at=now + ABSOLUTE_TIMEOUT, ip=(ip or "")[:64] or None))
        row = await session.get(AdminUser, user.id)
        if row is not None:
            row.last_login_at = now
    return token


async def find_session(db: Database, token: str | None) -> tuple[SignedIn | None, bool]:
    """The live session for a cookie token, and whether a session was found but expired.

    An expired session (30 minutes idle, 12 hours in all) or one of a disabled account
    is deleted. A live one has its last-seen time moved on.
    """
    if not token or len(token) > 128:
        return None, False
    now = utcnow()
    async with db.session() as session:
        row = await session.get(AdminSession, token_hash(token))
        if row is None:
            return None, False
        user = await session.get(AdminUser, row.user_id)
        expired = (_aware(row.expires_at) <= now
                   or _aware(row.last_seen_at) + IDLE_TIMEOUT <= now)
        if expired or user is None or user.disabled:
            await session.delete(row)
            return None, True
        if _aware(row.last_seen_at) + TOUCH_EVERY <= now:
            row.last_seen_at = now
        return SignedIn(row, user), False


async def end_session(db: Database, token: str | None) -> None:
    if not token:
        return
    async with db.session() as session:
        await session.execute(delete(AdminSession)
                              .where(AdminSession.token_hash == token_hash(token)))


async def end_user_sessions(session: AsyncSession, user_id: int) -> None:
    await session.execute(delete(AdminSession).where(AdminSession.user_id == user_id))


async def set_flash(db: Database, signed_in: SignedIn, kind: str, text: str) -> None:
    async with db.session() as session:
        row = await session.get(AdminSession, signed_in.session.token_hash)
        if row is not None:
            row.flash = {"kind": kind, "text": text[:500]}


async def pop_flash(db: Database, signed_in: SignedIn) -> dict[str, str] | None:
    flash = signed_in.session.flash
    if not flash:
        return None
    async with db.session() as session:
        row = await session.get(AdminSession, signed_in.session.token_hash)
        if row is not None:
            row.flash = None
    signed_in.session.flash = None
    return {"kind": str(flash.get("kind", "ok")), "text": str(flash.get("text", ""))}


# ----- login throttling ----------------------------------------------------------
class LoginGuard:
    """5 failed logins per account name and per client address in 15 minutes lock
    that name or address for 15 minutes (huimin.limits, in Redis or the database)."""

    def __init__(self, limiter: GuessLimiter) -> None:
        self.limiter = limiter

    @staticmethod
    def keys(username: str, ip: str | None) -> list[str]:
        keys = ["admin-login:user:" + normalise_username(username)[:64]]
        if ip:
            keys.append("admin-login:ip:" + ip[:64])
        return keys

    async def locked_until(self, username: str, ip: str | None) -> datetime | None:
        ends = [await self.limiter.locked_until(k) for k in self.keys(username, ip)]
        found = [e for e in ends if e is not None]
        return max(found) if found else None

    async def failed(self, username: str, ip: str | None) -> datetime | None:
        """Count one failed login; returns when the lock ends if this one caused it."""
        ends = [await self.limiter.record_try(k) for k in self.keys(username, ip)]
        found = [e for e in ends if e is not None]
        return max(found) if found else None

    async def succeeded(self, username: str) -> None:
        await self.limiter.clear(self.keys(username, None)[0])
