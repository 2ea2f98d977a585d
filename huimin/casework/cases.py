"""Opening and joining cases, their routing to caseworkers, limits and retention.

* One open case per person: a WeChat account (or, for an SMS reply, the beneficiary)
  with an open case adds to it instead of opening another.
* At most ``DAILY_CASES`` cases a China day per WeChat account, ``MAX_PERSON_MESSAGES``
  messages from the person per case, each cut to ``MAX_TEXT`` characters.
* Routing is data (``case_routes``): a case goes to the caseworkers routed for its
  township and for its programme; when nobody is, to those routed for ``any``.
* Retention: a closed case (messages, conversation, phone number) is deleted
  ``CLOSED_CASE_DAYS`` days after it was closed; who asked an unanswered question is
  deleted after ``ASKER_HOURS`` hours (see ``notify.new_answers``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from huimin.casework.models import (
    CALLBACK,
    CLOSED,
    MESSAGE,
    OPEN,
    PERSON,
    Case,
    CaseMessage,
    CaseRoute,
    QuestionAsker,
)
from huimin.clock import china_midnight, local_today
from huimin.db import Database
from huimin.personal import mask_name, mask_text
from huimin.registry.models import Application, Beneficiary, Binding

MAX_TEXT = 500  # characters of one message kept
MAX_PERSON_MESSAGES = 20  # messages from the person in one case
DAILY_CASES = 3  # cases one WeChat account (or beneficiary) may open per China day
CLOSED_CASE_DAYS = 180
ASKER_HOURS = 48
RECENT_TURNS = 6  # exchanges of conversation carried into a case

SCOPES = {"township": "乡镇", "programme": "救助项目", "any": "其他（没人负责的都给他）"}
OUTCOMES = {
    "answered": "已答复",
    "phoned": "已电话联系",
    "referred": "转给别的部门",
    "no_need": "不需要处理",
    "unreachable": "联系不上",
}

_TYPED_DIGITS = re.compile(r"\d{7,}")
_FULL_WIDTH_DIGITS = {0xFF10 + i: 0x30 + i for i in range(10)}


def mask_message(text: str) -> str:
    """A message as kept on a case: ID and phone numbers masked as everywhere
    (3413**********004X, 138****8000), any other run of 7+ digits hidden, whitespace
    collapsed (full-width digits are read as plain ones), cut to ``MAX_TEXT``."""
    text = text.translate(_FULL_WIDTH_DIGITS)
    text = _TYPED_DIGITS.sub(lambda m: "*" * len(m.group(0)), mask_text(text))
    return " ".join(text.split())[:MAX_TEXT]


@dataclass(frozen=True)
class Left:
    """What became of a message left for staff."""

    case_id: int | None
    new_case: bool = False
    refused: str | None = None  # "daily_cap", "full", "empty"


@dataclass(frozen=True)
class PersonContext:
    beneficiary_id: int | None = None
    masked_name: str | None = None
    township: str | None = None
    programme: str | None = None
    application_number: str | None = None


async def person_of(session: AsyncSession, openid: str | None = None,
                    beneficiary_id: int | None = None) -> PersonContext:
    """The binding of a WeChat account (or the beneficiary): township, programme and the
    newest application, for routing and for the caseworker."""
    if beneficiary_id is None and openid is not None:
        beneficiary_id = await session.scalar(
            select(Binding.beneficiary_id)
            .where(and_(Binding.openid == openid, Binding.revoked_at.is_(None)))
            .order_by(Binding.id.desc()).limit(1))
    if beneficiary_id is None:
        return PersonContext()
    person = await session.get(Beneficiary, beneficiary_id)
    if person is None:
        return PersonContext()
    application = await session.scalar(
        select(Application).where(Application.beneficiary_id == beneficiary_id)
        .order_by(Application.stage_date.desc(), Application.id.desc()).limit(1))
    return PersonContext(
        beneficiary_id=beneficiary_id, masked_name=mask_name(person.name),
        township=application.township if application else person.township,
        programme=application.programme if application else None,
        application_number=application.number if application else None)


async def open_case_of(session: AsyncSession, *, openid: str | None = None,
                       beneficiary_id: int | None = None, kind: str = MESSAGE) -> Case | None:
    who = Case.openid == openid if openid is not None else and_(
        Case.beneficiary_id == beneficiary_id, Case.kind == kind)
    return await session.scalar(select(Case).where(and_(who, Case.state == OPEN))
                                .order_by(Case.id.desc()).limit(1))


async def cases_today(session: AsyncSession, now: datetime, *, openid: str | None = None,
                      beneficiary_id: int | None = None) -> int:
    who = Case.openid == openid if openid is not None else Case.beneficiary_id == beneficiary_id
    return await session.scalar(select(func.count()).select_from(Case).where(
        and_(who, Case.opened_at >= china_midnight(local_today(now))))) or 0


async def leave_message(db: Database, openid: str, text: str, now: datetime,
                        recent: Sequence[Mapping[str, str]] = ()) -> Left:
    """Add what the person said to their open case, or open one (within the limits)."""
    kept = mask_message(text)
    if not kept:
        return Left(None, refused="empty")
    async with db.session() as session:
        case = await open_case_of(session, openid=openid)
        new = case is None
        if case is None:
            if await cases_today(session, now, openid=openid) >= DAILY_CASES:
                return Left(None, refused="daily_cap")
            context = await person_of(session, openid=openid)
            case = Case(kind=MESSAGE, state=OPEN, openid=openid,
                        beneficiary_id=context.beneficiary_id,
                        masked_name=context.masked_name, township=context.township,
                        programme=context.programme,
                        application_number=context.application_number,
                        recent=[dict(turn) for turn in recent][-2 * RECENT_TURNS:],
                        opened_at=now, last_person_at=now)
            session.add(case)
            await session.flush()
        elif await _full(session, case.id):
            return Left(case.id, refused="full")
        case.last_person_at = now
        session.add(CaseMessage(case_id=case.id, at=now, author=PERSON, text=kept))
        case_id = case.id
    if new:
        await forget_old(db, now)
    return Left(case_id, new_case=new)


async def _full(session: AsyncSession, case_id: int) -> bool:
    """Whether the person has left as many messages in this case as one may."""
    count = await session.scalar(select(func.count()).select_from(CaseMessage).where(
        and_(CaseMessage.case_id == case_id, CaseMessage.author == PERSON))) or 0
    return count >= MAX_PERSON_MESSAGES


async def callback_case(db: Database, beneficiary_id: int, phone_encrypted: str,
                        phone_masked: str, text: str, now: datetime) -> Left:
    """An SMS reply from a registered phone: a '请回电' case for the person's caseworker
    (joined to their open one), within the same limits."""
    kept = mask_message(text) or "（空短信）"
    async with db.session() as session:
        case = await open_case_of(session, beneficiary_id=beneficiary_id, kind=CALLBACK)
        new = case is None
        if case is None:
            if await cases_today(session, now, beneficiary_id=beneficiary_id) >= DAILY_CASES:
                return Left(None, refused="daily_cap")
            context = await person_of(session, beneficiary_id=beneficiary_id)
            case = Case(kind=CALLBACK, state=OPEN, openid=None,
                        beneficiary_id=beneficiary_id, masked_name=context.masked_name,
                        township=context.township, programme=context.programme,
                        application_number=context.application_number, recent=[],
                        phone_encrypted=phone_encrypted, phone_masked=phone_masked,
                        opened_at=now, last_person_at=now)
            session.add(case)
            await session.flush()
        elif await _full(session, case.id):
            return Left(case.id, refused="full")
        case.last_person_at = now
        case.phone_encrypted, case.phone_masked = phone_encrypted, phone_masked
        session.add(CaseMessage(case_id=case.id, at=now, author=PERSON, text=kept))
        case_id = case.id
    if new:
        await forget_old(db, now)
    return Left(case_id, new_case=new)


# ----- routing -------------------------------------------------------------------------
@dataclass(frozen=True)
class Routing:
    """The routes table, read once: who gets which case."""

    routes: tuple[tuple[str, str, str], ...]  # (scope, value, username)

    @classmethod
    async def load(cls, session: AsyncSession) -> Routing:
        rows = (await session.execute(
            select(CaseRoute.scope, CaseRoute.value, CaseRoute.username)
            .order_by(CaseRoute.scope, CaseRoute.value, CaseRoute.username))).all()
        return cls(tuple((r.scope, r.value, r.username) for r in rows))

    def caseworkers(self, case: Case) -> set[str]:
        """The caseworkers a case is routed to."""
        found = {user for scope, value, user in self.routes
                 if (scope == "township" and value == case.township)
                 or (scope == "programme" and value == case.programme)}
        if not found:
            found = {user for scope, _, user in self.routes if scope == "any"}
        return found

    def may_read(self, role: str, username: str, case: Case) -> bool:
        """Administrators read every case; a caseworker the cases routed to them."""
        if role == "admin":
            return True
        return role == "caseworker" and username in self.caseworkers(case)


async def add_route(session: AsyncSession, scope: str, value: str, username: str) -> bool:
    if scope not in SCOPES:
        raise ValueError(scope)
    value = "*" if scope == "any" else value.strip()[:32]
    exists = await session.scalar(select(CaseRoute.id).where(and_(
        CaseRoute.scope == scope, CaseRoute.value == value, CaseRoute.username == username)))
    if exists is not None:
        return False
    session.add(CaseRoute(scope=scope, value=value, username=username))
    await session.flush()
    return True


# ----- listing -------------------------------------------------------------------------
@dataclass(frozen=True)
class CaseRow:
    case: Case
    waiting: timedelta
    messages: int
    last_text: str


async def open_cases(session: AsyncSession, routing: Routing, role: str, username: str,
                     now: datetime, state: str = OPEN, limit: int = 500) -> list[CaseRow]:
    """The cases this member of staff may read, oldest first, with how long each has
    waited (open) and its person's messages."""
    order = Case.opened_at.asc() if state == OPEN else Case.closed_at.desc()
    cases = (await session.scalars(select(Case).where(Case.state == state)
                                   .order_by(order, Case.id).limit(limit))).all()
    readable = [c for c in cases if routing.may_read(role, username, c)]
    if not readable:
        return []
    ids = [c.id for c in readable]
    counts = dict((await session.execute(
        select(CaseMessage.case_id, func.count()).where(and_(
            CaseMessage.case_id.in_(ids), CaseMessage.author == PERSON))
        .group_by(CaseMessage.case_id))).all())
    last: dict[int, str] = {}
    for case_id, text in (await session.execute(
            select(CaseMessage.case_id, CaseMessage.text).where(and_(
                CaseMessage.case_id.in_(ids), CaseMessage.author == PERSON))
            .order_by(CaseMessage.id))).all():
        last[case_id] = text
    rows = []
    for case in readable:
        since = case.opened_at or now
        rows.append(CaseRow(case, now - since, counts.get(case.id, 0), last.get(case.id, "")))
    return rows


def waiting_text(waited: timedelta) -> str:
    minutes = max(0, int(waited.total_seconds() // 60))
    if minutes < 60:
        return f"{minutes}分钟"
    hours = minutes // 60
    if hours < 48:
        return f"{hours}小时{minutes % 60}分钟" if minutes % 60 else f"{hours}小时"
    return f"{hours // 24}天{hours % 24}小时"


# ----- retention -----------------------------------------------------------------------
async def forget_old(db: Database, now: datetime) -> int:
    """Delete closed cases past their retention, and askers past theirs."""
    async with db.session() as session:
        old = (await session.scalars(select(Case.id).where(and_(
            Case.state == CLOSED,
            Case.closed_at < now - timedelta(days=CLOSED_CASE_DAYS))))).all()
        if old:
            await session.execute(delete(CaseMessage).where(CaseMessage.case_id.in_(old)))
            await session.execute(delete(Case).where(Case.id.in_(old)))
        await session.execute(delete(QuestionAsker).where(
            QuestionAsker.asked_at < now - timedelta(hours=ASKER_HOURS)))
    return len(old)


def recent_turn(said: str, reply: str) -> list[dict[str, str]]:
    """One exchange as kept for a case's conversation: both sides masked and cut."""
    turn = [{"who": "person", "text": mask_message(said)[:200]}]
    if reply:
        turn.append({"who": "bot", "text": mask_message(reply)[:200]})
    return turn
