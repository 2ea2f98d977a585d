"""Staff accounts, passwords (argon2id, strength checked with zxcvbn), database
sessions and sign-in throttling.

Every function that stamps or compares times takes ``now`` from its caller, who reads
its clock once per request (``AdminState.clock``).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from zxcvbn import zxcvbn

from admin.models import AdminSession, AdminUser, LoginThrottle
from admin.roles import ROLES
from huimin.clock import utcnow
from huimin.db import Database, dialect_insert

IDLE_TIMEOUT = timedelta(minutes=30)
ABSOLUTE_TIMEOUT = timedelta(hours=12)
TOUCH_EVERY = timedelta(seconds=30)
MIN_PASSWORD = 10
MAX_PASSWORD = 256
# zxcvbn scores 0-4; 3 means about 10^8 guesses or more ("safely unguessable" online).
MIN_STRENGTH = 3
_ZXCVBN_LENGTH = 72  # zxcvbn refuses longer input; the first 72 characters are judged
# Words anyone guessing a bureau's staff password would try first.
_SITE_WORDS = ("huimin", "minzheng", "minzhengju", "admin", "guanliyuan", "mima",
               "password", "wechat", "weixin")
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,63}$")

_hasher = PasswordHasher()


class AccountError(ValueError):
    """A request about an account that cannot be done; the message is for staff."""


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_hex(16))


def normalise_username(raw: str) -> str:
    return raw.strip().lower()


def check_username(username: str) -> str:
    name = normalise_username(username)
    if not _USERNAME.match(name):
        raise AccountError("用户名只能用英文字母、数字、点、下划线或短横线，2到64个字符，"
                           "以字母或数字开头")
    return name


# What zxcvbn found in a weak password, in words a clerk knows.
_WEAKNESSES = {
    "dictionary": "常见密码或常用词",
    "repeat": "重复的字符或片段（如 aaaa、abcabc）",
    "sequence": "按顺序排的字母或数字（如 123456、abcdef）",
    "spatial": "键盘上挨着的键（如 qwerty、1qaz2wsx）",
    "date": "日期",
    "regex": "年份",
    "user_inputs": "用户名、姓名或本系统的名字",
}


def password_problem(password: str, username: str = "", display_name: str = "") -> str | None:
    """Why ``password`` may not be used (for staff, in Chinese), or None when it may.

    At least 10 characters, not the account's name inside it, and hard to guess by
    zxcvbn's estimate (common passwords, words, sequences, repeats, keyboard walks,
    dates, and the account's own names all count as easy).
    """
    if len(password) < MIN_PASSWORD:
        return f"密码至少要{MIN_PASSWORD}个字符"
    if len(password) > MAX_PASSWORD:
        return f"密码最多{MAX_PASSWORD}个字符"
    if not password.strip():
        return "密码不能全是空格"
    lowered = password.lower()
    for name in (username, display_name):
        if len(name.strip()) >= 3 and name.strip().lower() in lowered:
            return "密码里不能有用户名或姓名"
    inputs = [v for v in (username, display_name) if v.strip()] + list(_SITE_WORDS)
    result = zxcvbn(password[:_ZXCVBN_LENGTH], user_inputs=inputs)
    if result["score"] >= MIN_STRENGTH:
        return None
    found: list[str] = []
    for match in result["sequence"]:
        kind = match.get("pattern", "")
        if kind == "dictionary" and match.get("dictionary_name") == "user_inputs":
            kind = "user_inputs"
        words = _WEAKNESSES.get(kind)
        if words and words not in found:
            found.append(words)
    inside = f"：里面有{'；'.join(found)}" if found else ""
    return (f"这个密码太容易被猜到{inside}。请换一个更长、更没有规律的密码，"
            "比如三四个不相关的词（拼音也可以）中间加上数字或符号。")


def check_password(password: str, username: str = "", display_name: str = "") -> None:
    problem = password_problem(password, username, display_name)
    if problem:
        raise AccountError(problem)


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
                      display_name: str | None = None, must_change: bool = True,
                      now: datetime | None = None) -> AdminUser:
    """Add an account; raises AccountError with a message for staff when it cannot.

    The owner must choose their own password at first sign-in unless ``must_change`` is
    False (the demo's accounts)."""
    name = check_username(username)
    check_role(role)
    display = (display_name or "").strip() or name
    if len(display) > 64:
        raise AccountError("姓名最多64个字")
    check_password(password, name, display)
    password_hash = await hash_password(password)
    async with db.session() as session:
        if await session.scalar(select(AdminUser.id).where(AdminUser.username == name)):
            raise AccountError(f"用户名 {name} 已经有人用了")
        user = AdminUser(username=name, display_name=display, password_hash=password_hash,
                         role=role, disabled=False, created_at=now or utcnow(),
                         must_change_password=must_change)
        session.add(user)
        await session.flush()
        return user


async def set_password(session: AsyncSession, user: AdminUser, password: str,
                       must_change: bool) -> None:
    """Change a password and sign the account out everywhere.

    ``must_change``: someone other than the owner set it (an administrator, the command
    line), so the owner must choose their own at the next sign-in."""
    check_password(password, user.username, user.display_name)
    user.password_hash = await hash_password(password)
    user.must_change_password = must_change
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


async def open_session(db: Database, user: AdminUser, ip: str | None, now: datetime,
                       flash: dict[str, str] | None = None) -> str:
    """Start a session for ``user``; returns the token for the cookie. ``flash``: a
    message for the first page."""
    token = secrets.token_urlsafe(32)
    async with db.session() as session:
        await session.execute(delete(AdminSession).where(
            (AdminSession.expires_at < now) | (AdminSession.last_seen_at < now - IDLE_TIMEOUT)))
        session.add(AdminSession(
            token_hash=token_hash(token), user_id=user.id,
            csrf_token=secrets.token_urlsafe(32), created_at=now, last_seen_at=now,
            expires_at=now + ABSOLUTE_TIMEOUT, ip=(ip or "")[:64] or None, flash=flash))
        row = await session.get(AdminUser, user.id)
        if row is not None:
            row.last_login_at = now
    return token


async def find_session(db: Database, token: str | None, now: datetime
                       ) -> tuple[SignedIn | None, bool]:
    """The live session for a cookie token, and whether a session was found but expired.

    An expired session (30 minutes idle, 12 hours in all) or one of a disabled account
    is deleted. A live one has its last-seen time moved on.
    """
    if not token or len(token) > 128:
        return None, False
    async with db.session() as session:
        row = await session.get(AdminSession, token_hash(token))
        if row is None:
            return None, False
        user = await session.get(AdminUser, row.user_id)
        expired = (row.expires_at <= now
                   or row.last_seen_at + IDLE_TIMEOUT <= now)
        if expired or user is None or user.disabled:
            await session.delete(row)
            return None, True
        if row.last_seen_at + TOUCH_EVERY <= now:
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


# ----- sign-in throttling --------------------------------------------------------
@dataclass(frozen=True)
class LoginPolicy:
    """How failed sign-ins are slowed down.

    Per (account name, address) pair: a few free tries, then a wait after each further
    failure that doubles (1, 2, 4 … minutes, at most an hour). A stranger can thus slow
    only their own tries, not lock a clerk out: the clerk signing in from anywhere else
    is not affected. Per account name and per address there is a much higher ceiling
    with a short lock, so a guess spread over many addresses, or one address trying
    many names, is still slowed; an address where the account has signed in before is
    exempt from both ceilings (the clerk's own office keeps working).
    """

    free_tries: int = 5
    first_wait: timedelta = timedelta(minutes=1)
    longest_wait: timedelta = timedelta(hours=1)
    forget_after: timedelta = timedelta(hours=24)  # a pair's failures, after the last
    known_for: timedelta = timedelta(days=30)  # an address the account signed in from
    ceiling_window: timedelta = timedelta(minutes=15)
    account_ceiling: int = 30
    address_ceiling: int = 50
    ceiling_lock: timedelta = timedelta(minutes=5)


LOGIN_POLICY = LoginPolicy()
PAIR, ACCOUNT, ADDRESS = "pair", "account", "address"


@dataclass(frozen=True)
class LoginLock:
    """A refusal to try passwords until ``until``; ``scope`` says for what: this account
    from this address (pair), this account name from anywhere new, or this address."""

    until: datetime
    scope: str
    failures: int = 0


def _latest(first: datetime, *others: datetime | None) -> datetime:
    return max([first, *(o for o in others if o is not None)])


def name_key(username: str) -> str:
    """A typed account name as stored in throttle keys: hashed, since people type
    passwords into the name field."""
    name = normalise_username(username)[:200]
    return hashlib.blake2b(name.encode("utf-8"), digest_size=16,
                           person=b"huimin-login").hexdigest()


class LoginGuard:
    """Counts failed sign-ins in ``admin_login_throttle`` (shared by every process
    through the database) and says when trying must wait. See :class:`LoginPolicy`."""

    def __init__(self, db: Database, policy: LoginPolicy = LOGIN_POLICY) -> None:
        self.db = db
        self.policy = policy

    @staticmethod
    def keys(username: str, ip: str | None) -> dict[str, str]:
        name, address = name_key(username), (ip or "-")[:64]
        return {PAIR: f"pair:{name}|{address}", ACCOUNT: f"account:{name}",
                ADDRESS: f"address:{address}"}

    async def _rows(self, session: AsyncSession, keys: Iterable[str], lock: bool = False
                    ) -> dict[str, LoginThrottle]:
        query = select(LoginThrottle).where(LoginThrottle.key.in_(sorted(keys)))
        if lock:  # in key order, as the inserts: concurrent failures cannot deadlock
            query = query.order_by(LoginThrottle.key).with_for_update()
        return {row.key: row for row in (await session.scalars(query)).all()}

    def _known(self, pair: LoginThrottle | None, now: datetime) -> bool:
        return (pair is not None and pair.last_success_at is not None
                and pair.last_success_at + self.policy.known_for > now)

    async def locked(self, username: str, ip: str | None, now: datetime) -> LoginLock | None:
        """The lock that stops this try now, or None."""
        keys = self.keys(username, ip)
        async with self.db.session() as session:
            rows = await self._rows(session, keys.values())
        pair = rows.get(keys[PAIR])
        scopes = [PAIR] if self._known(pair, now) else [PAIR, ACCOUNT, ADDRESS]
        found = [LoginLock(row.locked_until, scope, row.failures)
                 for scope in scopes
                 if (row := rows.get(keys[scope])) is not None
                 and row.locked_until is not None and row.locked_until > now]
        return max(found, key=lambda lock: lock.until) if found else None

    def _pair_wait(self, failures: int) -> timedelta | None:
        over = failures - self.policy.free_tries
        if over < 0:
            return None
        return min(self.policy.first_wait * 2 ** min(over, 20), self.policy.longest_wait)

    async def failed(self, username: str, ip: str | None, now: datetime) -> list[LoginLock]:
        """Count one failed sign-in; returns the locks this failure started."""
        keys = self.keys(username, ip)
        policy = self.policy
        started: list[LoginLock] = []
        async with self.db.session() as session:
            await session.execute(delete(LoginThrottle).where(LoginThrottle.forget_at < now))
            await session.execute(
                dialect_insert(session, LoginThrottle)
                .values([{"key": key, "failures": 0, "window_start": now, "forget_at": now}
                         for key in sorted(keys.values())])
                .on_conflict_do_nothing(index_elements=["key"]))
            rows = await self._rows(session, keys.values(), lock=True)
            pair = rows[keys[PAIR]]
            if pair.last_failure_at is not None \
                    and pair.last_failure_at + policy.forget_after <= now:
                pair.failures = 0
            pair.failures += 1
            pair.last_failure_at = now
            wait = self._pair_wait(pair.failures)
            if wait is not None:
                pair.locked_until = now + wait
                started.append(LoginLock(now + wait, PAIR, pair.failures))
            pair.forget_at = _latest(now + policy.forget_after, pair.locked_until,
                                     pair.last_success_at and (pair.last_success_at
                                                               + policy.known_for))
            for scope, ceiling in ((ACCOUNT, policy.account_ceiling),
                                   (ADDRESS, policy.address_ceiling)):
                row = rows[keys[scope]]
                if row.window_start + policy.ceiling_window <= now:
                    row.window_start, row.failures = now, 0
                row.failures += 1
                row.last_failure_at = now
                if row.failures >= ceiling:
                    row.locked_until = now + policy.ceiling_lock
                    started.append(LoginLock(now + policy.ceiling_lock, scope, row.failures))
                    row.window_start, row.failures = now, 0
                row.forget_at = _latest(row.window_start + policy.ceiling_window,
                                        row.locked_until)
        return started

    async def succeeded(self, username: str, ip: str | None, now: datetime) -> None:
        """A sign-in worked: the pair's failures are forgotten and the address is known
        for the account (the ceilings keep their counts: they are not the pair's)."""
        key = self.keys(username, ip)[PAIR]
        async with self.db.session() as session:
            await session.execute(delete(LoginThrottle).where(LoginThrottle.forget_at < now))
            await session.execute(
                dialect_insert(session, LoginThrottle)
                .values(key=key, failures=0, window_start=now, forget_at=now)
                .on_conflict_do_nothing(index_elements=["key"]))
            row = (await self._rows(session, [key], lock=True))[key]
            row.failures, row.locked_until = 0, None
            row.last_success_at = now
            row.forget_at = now + self.policy.known_for

    async def locks_of_accounts(self, usernames: Iterable[str], now: datetime
                                ) -> dict[str, datetime]:
        """For the users page: when the latest lock on each account ends (any address,
        or the account's ceiling), for the accounts that have one now."""
        by_name = {name_key(u): u for u in usernames}
        if not by_name:
            return {}
        async with self.db.session() as session:
            rows = (await session.scalars(select(LoginThrottle).where(
                LoginThrottle.locked_until > now,
                LoginThrottle.key.like("pair:%") | LoginThrottle.key.like("account:%")))).all()
        ends: dict[str, datetime] = {}
        for row in rows:
            hashed = row.key.split(":", 1)[1].split("|", 1)[0]
            username = by_name.get(hashed)
            if username is not None and row.locked_until is not None:
                until = row.locked_until
                ends[username] = max(until, ends.get(username, until))
        return ends


def describe_lock(lock: LoginLock) -> dict[str, Any]:
    """A lock as stored in an audit entry's 'after'."""
    return {"scope": lock.scope, "until": lock.until, "failures": lock.failures}
