"""Family grant codes (授权码): how a clerk grants a family member access without seeing
their WeChat openid.

The family member sends 我的授权码 to the bot and gets a short code, valid a day; they
read it to the clerk (on the phone or at the counter), who types it in the staff UI's
grant form on the beneficiary's page. The code stands for the family member's openid:
redeeming it there binds that openid as the beneficiary's delegate.

- Codes are 6 characters from 31 that cannot be misread (no 0/O, 1/I/L): about 887
  million codes. With at most a few hundred open in a county at once, a code mistyped
  by one character (or guessed) names nobody: the chance a wrong code is someone's is
  below one in a million, and a clerk learns nothing but "not valid" from it.
- Stored as a keyed hash (``Vault.code_hash``, purpose "grant"), like the SMS codes and
  invitations; single use; valid for ``VALID_FOR``; a newer code from the same WeChat
  account replaces an older unused one.
- At most ``PER_DAY`` codes per WeChat account in any 24 hours (the bot says so
  when the limit is reached), and a clerk's wrong codes are limited too
  (``WRONG_PER_HOUR`` per member of staff).
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from datetime import datetime, timedelta

from sqlalchemy import and_, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from huimin.clock import utcnow
from huimin.db import Database
from huimin.personal import Vault
from huimin.registry.models import AccessLogEntry, GrantCode

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L: read aloud or typed
LENGTH = 6
VALID_FOR = timedelta(days=1)
PER_DAY = 5  # codes one WeChat account may ask for in 24 hours
WRONG_PER_HOUR = 10  # wrong codes one member of staff may type in an hour
PURPOSE = "grant"
_CODE = re.compile(f"[{ALPHABET}]{{{LENGTH}}}")


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def typed_code(raw: str) -> str | None:
    """The grant code a typed text is (any case, spaces and dashes allowed), or None."""
    compact = re.sub(r"[\s\-－_]", "", unicodedata.normalize("NFKC", raw)).upper()
    return compact if _CODE.fullmatch(compact) else None


async def issue(db: Database, vault: Vault, openid: str,
                now: datetime | None = None) -> str | None:
    """A new code for ``openid`` (its earlier unused codes end now), or None when it
    has asked for ``PER_DAY`` codes in the last 24 hours."""
    now = now or utcnow()
    async with db.session() as session:
        asked = await session.scalar(select(func.count()).select_from(GrantCode).where(and_(
            GrantCode.openid == openid, GrantCode.created_at > now - timedelta(days=1))))
        if (asked or 0) >= PER_DAY:
            return None
        await session.execute(update(GrantCode).where(and_(
            GrantCode.openid == openid, GrantCode.used_at.is_(None),
            GrantCode.expires_at > now)).values(expires_at=now))
    for _ in range(3):  # another open code with the same hash: draw again
        code = new_code()
        try:
            async with db.session() as session:
                session.add(GrantCode(openid=openid, code_hash=vault.code_hash(code, PURPOSE),
                                      created_at=now, expires_at=now + VALID_FOR))
                session.add(AccessLogEntry(actor=f"wechat:{openid}", beneficiary_id=None,
                                           action="grant_code_issued", detail={}, at=now))
            return code
        except IntegrityError:
            continue
    raise RuntimeError("could not draw a unique grant code")


async def redeem(session: AsyncSession, vault: Vault, code: str, used_by: str,
                 now: datetime | None = None) -> GrantCode | None:
    """Use an open code once (in the caller's transaction, so it is used only if the
    grant is saved); None when no open code matches."""
    now = now or utcnow()
    result = await session.execute(
        update(GrantCode)
        .where(and_(GrantCode.code_hash.in_(vault.code_hashes(code, PURPOSE)),
                    GrantCode.used_at.is_(None), GrantCode.expires_at > now))
        .values(used_at=now, used_by=used_by[:80])
        .returning(GrantCode.id))
    code_id = result.scalar_one_or_none()
    if code_id is None:
        return None
    return await session.get(GrantCode, code_id)


async def wrong_codes(session: AsyncSession, actor: str, now: datetime | None = None) -> int:
    """Wrong codes ``actor`` ("staff:<user>") typed in the last hour (from access_log)."""
    now = now or utcnow()
    return int(await session.scalar(select(func.count()).select_from(AccessLogEntry).where(
        and_(AccessLogEntry.actor == actor, AccessLogEntry.action == "grant_code_wrong",
             AccessLogEntry.at > now - timedelta(hours=1)))) or 0)
