"""'Where is my application?': the verified binding and the status lookup.

A person proves who they are with ID number + name + a 6-digit SMS code sent to
the phone on record; the bot answers identically whether or not the ID exists.
The code goes out through the notifier's outbox as an urgent message, sent by the
bot process's own courier (see ``bot.app``) or any running notifier.
Then "查进度" shows each application with only masked data and stage names.
A bound beneficiary can invite one family member or village assistant. Every
lookup and every change of access is written to the access log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.exc import IntegrityError

from huimin.clock import CHINA, utcnow
from huimin.db import Database
from huimin.lockouts import Backoff, Lockouts, Spacing
from huimin.personal import PersonalDataError, Vault, mask_name, normalise_id
from huimin.registry import STAGE_WORDS, queries
from huimin.registry.models import Beneficiary, VerificationCode
from notify.models import OutboxMessage
from notify.plan import VERIFICATION, queue_verification_code

log = logging.getLogger(__name__)
CODE_TTL = timedelta(minutes=5)
_ID_IN_MESSAGE = re.compile(r"\d{17}[\dXx]|\d{15,19}[Xx]?")
# An 18-character ID number anywhere in a message (spaces and dashes between its
# digits allowed): the message is a status lookup, with or without 查进度 first.
_ID_ANYWHERE = re.compile(r"(?<!\d)\d{17}[\dXx](?![\dXx])")
_ID_SPACING = re.compile(r"[\s\-－]")
_LABELS = re.compile(r"身份证号码|身份证号|身份证|号码|姓名|名字|我叫|我是|本人|是")
_NAME = re.compile(r"^[\u3400-\u9fff·]{2,6}$")
# Words that are not a name ("我的身份证是…", "帮我查查…"): characters no name has.
_NOT_NAME = re.compile(r"[我你您的吗呢吧啊呀]|申请|进度|查询|一下")
_CODE = re.compile(r"^\d{6}$")
_INVITE = re.compile(r"^(?:绑定|邀请码)\s*([A-Za-z0-9]{8})$")
INVITE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"

COMMANDS = {
    "start": {"查进度", "查询进度", "进度查询", "我的申请", "查申请", "申请进度", "查我的申请"},
    "unbind": {"解除绑定", "取消绑定", "解绑"},
    "invite": {"授权家人", "邀请家人", "添加家人", "家人代查"},
    "revoke_delegates": {"取消授权", "收回授权"},
}


def code_typed(text: str) -> str | None:
    """The 6-digit code a message is (full-width digits and spaces allowed), or None."""
    compact = re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))
    return compact if _CODE.match(compact) and compact.isascii() else None


def carries_id_number(text: str) -> bool:
    """Whether the message has an 18-character ID number in it."""
    return _ID_ANYWHERE.search(_ID_SPACING.sub("", text)) is not None


def split_identity(text: str) -> tuple[str | None, str | None]:
    """Pull an ID number and a name out of one message (either may be missing)."""
    compact = re.sub(r"[\s,，.。:：;；、/|]+", " ", text).strip()
    found = _ID_IN_MESSAGE.search(compact.replace(" ", ""))
    id_part = found.group(0) if found else None
    rest = compact
    if id_part:
        rest = rest.replace(" ", "").replace(id_part, " ")
    rest = _LABELS.sub(" ", rest)
    names = [w for w in rest.split() if _NAME.match(w) and not _NOT_NAME.search(w)]
    return id_part, (names[0] if len(names) == 1 else None)


# Every identity submission counts as a try, matched or not, so a lock never tells
# whether an ID number exists; so does every wrong code or invitation. Locks are per
# WeChat account: for one ID number from one account, for the account over all ID
# numbers, and for codes typed. Nobody can lock someone else out; a stranger is only
# ever slowed down on their own account. A right code clears them all.
ONE_ID_FROM_ONE_ACCOUNT = Backoff(free=5)
ONE_ACCOUNT = Backoff(free=10)
CODES_TYPED = Backoff(free=5)
# Codes to one phone: one a minute, five a day, whoever asks (a shared family phone,
# or a stranger who knows the ID number and name, cannot flood it).
CODES_PER_PHONE = Spacing(every=timedelta(minutes=1), per_day=5)
LOCKOUT_PREFIXES = ("bind-", "code-phone:")


@dataclass
class StatusDesk:
    """Runs the binding flow and answers status lookups."""

    db: Database
    vault: Vault | None
    lockouts: Lockouts
    courier: Callable[[], None] | None  # wakes the process's sender of urgent messages
    county: dict[str, Any]
    say: Callable[..., str]
    clock: Callable[[], datetime] = utcnow  # one reading per operation
    pending: set[asyncio.Task[Any]] = field(default_factory=set)

    # ----- commands -------------------------------------------------------------
    def command_of(self, cleaned: str) -> str | None:
        for command, words in COMMANDS.items():
            if cleaned in words:
                return command
        return None

    async def handle(self, openid: str, text: str, cleaned: str,
                     state: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """The reply and the new state, or None when this is not about status."""
        id_typed = carries_id_number(text)
        code = code_typed(text)
        if self.vault is None:
            if (self.command_of(cleaned) or state.get("flow") == "bind" or id_typed
                    or code is not None):
                log.error("HUIMIN_SECRET_KEY is not set: status lookup is unavailable")
                return self.say("status_unavailable.j2"), {}
            return None
        command = self.command_of(cleaned)
        invite = _INVITE.match(text.strip())
        if command == "start":
            return await self.start(openid)
        if command == "unbind":
            return await self.unbind(openid), {}
        if command == "invite":
            return await self.invite(openid), {}
        if command == "revoke_delegates":
            return await self.revoke_delegates(openid), {}
        if invite:
            return await self.redeem(openid, invite.group(1).upper()), {}
        if code is not None:
            # Six digits are a code, in the flow or not (after a wrong or lapsed code the
            # flow has ended): checked, and never taken for a question.
            return await self.check_code(openid, code, state), {}
        if id_typed and not (state.get("flow") == "bind" and state.get("step") == "identity"):
            # An ID number without 查进度 first (or after a code was sent): the lookup,
            # as if 查进度 had come just before, whoever is asking.
            state = {"flow": "bind", "step": "identity"}
        if state.get("flow") == "bind":
            return await self.continue_binding(openid, text, state)
        return None

    async def start(self, openid: str) -> tuple[str, dict[str, Any]]:
        async with self.db.session() as session:
            binding = await queries.active_binding(session, openid)
        if binding is not None:
            return await self.show(openid, binding.beneficiary_id), {}
        return self.say("status_ask_identity.j2"), {"flow": "bind", "step": "identity"}

    # ----- binding --------------------------------------------------------------
    async def continue_binding(self, openid: str, text: str,
                               state: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        if state.get("step") == "code":
            return None  # not a code: leaves the flow and is answered normally
        id_part, name = split_identity(text)
        if id_part is None and name is None:
            return None
        if id_part is not None:
            try:
                id_number = normalise_id(id_part)
            except PersonalDataError as exc:
                return self.say("status_bad_id.j2", reason=str(exc)), state
            # Both hashes while keys rotate, so a row not yet rotated is found too.
            hashes = self.vault_.lookup_hashes(id_number)
            state = {**state, "id_hash": hashes[0], "id_hashes": list(hashes)}
        if name is not None:
            state = {**state, "name": name}
        if "id_hash" not in state:
            return self.say("status_ask_id.j2"), state
        if "name" not in state:
            return self.say("status_ask_name.j2"), state
        return await self.send_code(openid, state["id_hash"], state["name"],
                                    state.get("id_hashes", ()))

    @property
    def vault_(self) -> Vault:
        assert self.vault is not None
        return self.vault

    def _guards(self, openid: str, id_hash: str) -> dict[str, Backoff]:
        """The limits on identity submissions."""
        pair = self.vault_.lookup_hash(f"{id_hash}:{openid}")
        return {f"bind-account:{openid}": ONE_ACCOUNT,
                f"bind-id:{pair}": ONE_ID_FROM_ONE_ACCOUNT}

    @staticmethod
    def _code_guard(openid: str) -> dict[str, Backoff]:
        """The limit on codes and invitations typed."""
        return {f"bind-code:{openid}": CODES_TYPED}

    async def _lock_reply(self, keys: Iterable[str], now: datetime) -> str | None:
        until = await self.lockouts.locked_until(list(keys), now)
        return self.say("status_locked.j2", until=lock_time_text(until)) if until else None

    async def send_code(self, openid: str, id_hash: str, name: str,
                        id_hashes: Sequence[str] = ()) -> tuple[str, dict[str, Any]]:
        """Issue a code for an ID number and name. Matched or not, sent or held back by
        the phone's limits: the same reply after the same work (the same statements,
        hashes and encryption), so neither the words nor the time tell them apart."""
        now = self.clock()
        guards = self._guards(openid, id_hash)
        locked = await self._lock_reply(guards, now)
        if locked:
            return locked, {}
        await self.lockouts.record(guards, now)
        code = f"{secrets.randbelow(10**6):06d}"
        stand_in = self.vault_.lookup_hash(f"no-phone:{id_hash}")
        async with self.db.session() as session:
            person = await queries.find_beneficiary(session, id_hashes or id_hash, name)
            phone_hash = person.phone_hash if person and person.phone_encrypted else None
        turn = await self.lockouts.take_turn(f"code-phone:{phone_hash or stand_in}",
                                             CODES_PER_PHONE, now)
        to_send = person.id if person is not None and phone_hash and turn else None
        async with self.db.session() as session:
            issued = VerificationCode(
                openid=openid, beneficiary_id=to_send,
                code_hash=self.vault_.code_hash(code, openid),
                created_at=now, expires_at=now + CODE_TTL)
            session.add(issued)
            await queries.log_access(session, f"wechat:{openid}",
                                     person.id if person else None, "verification_requested")
            await session.flush()
        # Queued after the reply, so the reply takes the same time either way.
        self._background(self._queue_sms(to_send, code, issued.id, now, issued.expires_at))
        return self.say("status_code_sent.j2"), {"flow": "bind", "step": "code",
                                                 "id_hash": id_hash}

    async def _queue_sms(self, beneficiary_id: int | None, code: str, code_id: int,
                         now: datetime, expires_at: datetime) -> None:
        """Hand the code to the notifier's outbox (urgent, encrypted, lapsing with the
        code) and wake this process's courier, which sends it within moments. With
        nobody to send to, the same insert is made and refused."""
        try:
            if beneficiary_id is not None:
                await queue_verification_code(
                    self.db, self.vault_, beneficiary_id=beneficiary_id, code=code,
                    code_id=code_id, now=now, expires_at=expires_at)
            else:
                await self._queue_nothing(code, code_id, now, expires_at)
        except Exception:
            log.exception("could not queue a verification SMS")
            return
        if self.courier is not None:
            self.courier()

    async def _queue_nothing(self, code: str, code_id: int, now: datetime,
                             expires_at: datetime) -> None:
        """What :func:`notify.plan.queue_verification_code` does, for no one: the same
        encryption and INSERT, naming no beneficiary (the database refuses it), and
        rolled back whatever happens."""
        async with self.db.sessions() as session:
            try:
                session.add(OutboxMessage(
                    key=f"{VERIFICATION}:{code_id}", kind=VERIFICATION, beneficiary_id=0,
                    urgent=True, params={"code": self.vault_.encrypt(code)},
                    not_before=now, expires_at=expires_at, created_at=now))
                with contextlib.suppress(IntegrityError):
                    await session.flush()
            finally:
                await session.rollback()

    def _background(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def check_code(self, openid: str, code: str, state: dict[str, Any]) -> str:
        now = self.clock()
        guards = self._code_guard(openid)
        locked = await self._lock_reply(guards, now)
        if locked:
            return locked
        async with self.db.session() as session:
            # The newest code that went out (a request the phone's limits held back
            # leaves the code sent just before it valid).
            latest = await session.scalar(
                select(VerificationCode)
                .where(and_(VerificationCode.openid == openid, VerificationCode.used_at.is_(None),
                            VerificationCode.beneficiary_id.is_not(None)))
                .order_by(VerificationCode.id.desc()).limit(1))
            expires = latest.expires_at if latest else None
            good = (latest is not None and latest.beneficiary_id is not None
                    and expires is not None and expires > now
                    and self.vault_.code_matches(latest.code_hash, code, openid))
            if good:
                assert latest is not None and latest.beneficiary_id is not None
                latest.used_at = now
                await queries.bind(session, openid, latest.beneficiary_id, "self",
                                   granted_by=f"wechat:{openid}")
                await queries.log_access(session, f"wechat:{openid}", latest.beneficiary_id,
                                         "bound", role="self")
                beneficiary_id = latest.beneficiary_id
        if not good:
            if await self.lockouts.record(guards, now):
                return await self._lock_reply(guards, now) or ""
            return self.say("status_wrong_code.j2", tries_left=None)
        cleared = list(guards) + (list(self._guards(openid, state["id_hash"]))
                                  if "id_hash" in state else [f"bind-account:{openid}"])
        await self.lockouts.clear(cleared)
        return self.say("status_bound.j2") + "\n\n" + await self.show(openid, beneficiary_id)

    # ----- lookups and access ------------------------------------------------------
    async def show(self, openid: str, beneficiary_id: int) -> str:
        async with self.db.session() as session:
            person = await session.get(Beneficiary, beneficiary_id)
            applications = await queries.applications_of(session, beneficiary_id)
            await queries.log_access(session, f"wechat:{openid}", beneficiary_id, "status_view",
                                     applications=len(applications))
        assert person is not None
        return self.say(
            "status_applications.j2", masked_name=mask_name(person.name),
            applications=[{
                "programme": a.programme, "number": a.number, "stage": a.stage,
                "stage_words": STAGE_WORDS.get(a.stage, ""),
                "stage_date": f"{a.stage_date.year}年{a.stage_date.month}月{a.stage_date.day}日",
                "next_step": a.next_step,
            } for a in applications])

    async def unbind(self, openid: str) -> str:
        async with self.db.session() as session:
            binding = await queries.active_binding(session, openid)
            count = await queries.revoke_bindings(session, openid=openid, by=f"wechat:{openid}")
            if binding is not None:
                await queries.log_access(session, f"wechat:{openid}", binding.beneficiary_id,
                                         "unbound", role=binding.role)
        return self.say("status_unbound.j2", count=count)

    async def invite(self, openid: str) -> str:
        code = "".join(secrets.choice(INVITE_ALPHABET) for _ in range(8))
        async with self.db.session() as session:
            binding = await queries.active_binding(session, openid)
            if binding is None or binding.role != "self":
                return self.say("status_invite_self_only.j2")
            await queries.create_invitation(session, self.vault_, binding.beneficiary_id, code,
                                            created_by=f"wechat:{openid}", now=self.clock())
            await queries.log_access(session, f"wechat:{openid}", binding.beneficiary_id,
                                     "delegate_invited")
        return self.say("status_invitation.j2", code=code)

    async def redeem(self, openid: str, code: str) -> str:
        now = self.clock()
        guards = self._code_guard(openid)
        locked = await self._lock_reply(guards, now)
        if locked:
            return locked
        async with self.db.session() as session:
            invitation = await queries.redeem_invitation(session, self.vault_, code,
                                                         used_by=f"wechat:{openid}", now=now)
            if invitation is not None:
                await queries.bind(session, openid, invitation.beneficiary_id, "delegate",
                                   granted_by=invitation.created_by)
                await queries.log_access(session, f"wechat:{openid}",
                                         invitation.beneficiary_id, "bound", role="delegate")
                person = await session.get(Beneficiary, invitation.beneficiary_id)
        if invitation is None:
            await self.lockouts.record(guards, now)
            return self.say("status_bad_invitation.j2")
        assert person is not None
        return self.say("status_delegate_bound.j2", masked_name=mask_name(person.name))

    async def revoke_delegates(self, openid: str) -> str:
        async with self.db.session() as session:
            binding = await queries.active_binding(session, openid)
            if binding is None or binding.role != "self":
                return self.say("status_invite_self_only.j2")
            count = await queries.revoke_bindings(
                session, beneficiary_id=binding.beneficiary_id, role="delegate",
                by=f"wechat:{openid}")
            await queries.log_access(session, f"wechat:{openid}", binding.beneficiary_id,
                                     "delegates_revoked", count=count)
        return self.say("status_delegates_revoked.j2", count=count)

    async def drain(self) -> None:
        while self.pending:
            await asyncio.gather(*list(self.pending), return_exceptions=True)


def lock_time_text(until: datetime) -> str:
    """'11月29日18:05' in the county's time zone."""
    local = until.astimezone(CHINA)
    return f"{local.month}月{local.day}日{local:%H:%M}"
