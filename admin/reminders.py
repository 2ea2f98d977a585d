"""Reminders as staff see them: what the outbox holds, what failed and why, sending a
failed message again, what waits for the morning, and who said "no more reminders".

The outbox (notify.models.OutboxMessage) belongs to the notifier; the only change
made here is putting failed messages back in the queue, the way the worker itself
queues a message for another try (state queued, not_before now, no claim).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from admin.labels import CHANNEL_LABELS, KIND_LABELS, reason_text
from admin.registry import mask_openid
from admin.stats import day_range, local_day, to_date
from huimin.clock import CHINA, utcnow
from huimin.registry.models import Application, Beneficiary, Binding
from notify.models import FAILED, QUEUED, SKIPPED, OptOut, OutboxMessage, ProviderStatus

PER_PAGE = 50

STATE_ORDER = ("queued", "sending", "sent", "delivered", "failed", "skipped")
# A skipped message was never given a channel; in the counts it is shown by why it was
# skipped instead ("skipped:opted out"), never as "还没发".
SKIPPED_CHANNEL = "skipped:"



def channel_label(channel: str | None) -> str:
    """The counts table's channel column: 微信, 短信, 还没发 (queued, channel not chosen
    yet), or for a skipped message what happened: 没有发（本人已退订提醒）."""
    if channel and channel.startswith(SKIPPED_CHANNEL):
        return f"没有发（{reason_text(channel.removeprefix(SKIPPED_CHANNEL) or None)}）"
    return CHANNEL_LABELS.get(channel, channel or "")


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)


# ----- counts ---------------------------------------------------------------------------
@dataclass
class Counts:
    """Messages by kind x channel x state."""

    cells: Counter[tuple[str, str, str]] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.cells.values())

    def rows(self) -> list[tuple[str, str]]:
        """(kind, channel) pairs that have messages, in a steady order."""
        pairs = {(k, c) for k, c, _ in self.cells}
        kinds = list(KIND_LABELS)
        return sorted(pairs, key=lambda p: (kinds.index(p[0]) if p[0] in kinds else 99,
                                            p[0], p[1]))

    def get(self, kind: str, channel: str, state: str) -> int:
        return self.cells.get((kind, channel, state), 0)

    def by_state(self, state: str) -> int:
        return sum(n for (_, _, s), n in self.cells.items() if s == state)


async def counts(session: AsyncSession) -> Counts:
    """Messages by kind, channel and state; a skipped message without a channel is
    counted under why it was skipped (``SKIPPED_CHANNEL`` + the notifier's reason)."""
    why = case((and_(OutboxMessage.state == SKIPPED, OutboxMessage.channel.is_(None)),
                OutboxMessage.last_error), else_=None)
    rows = (await session.execute(
        select(OutboxMessage.kind, OutboxMessage.channel, OutboxMessage.state, why,
               func.count())
        .group_by(OutboxMessage.kind, OutboxMessage.channel, OutboxMessage.state,
                  why))).all()
    result = Counts()
    for kind, channel, state, reason, n in rows:
        if state == SKIPPED and not channel:
            channel = SKIPPED_CHANNEL + (reason or "")
        result.cells[(kind, channel or "", state)] += int(n)
    return result


@dataclass
class Daily:
    days: list[date]
    series: dict[str, list[int]]  # label -> one number per day


async def daily(session: AsyncSession, days: int = 30, now: datetime | None = None
                ) -> Daily:
    """Per China day over the last ``days`` days: messages queued, sent, delivered."""
    first, all_days = day_range(days, now)
    dialect = session.bind.dialect.name
    columns = (("新排队", OutboxMessage.created_at), ("发出", OutboxMessage.sent_at),
               ("送达", OutboxMessage.delivered_at))
    series: dict[str, list[int]] = {}
    for label, column in columns:
        day = local_day(column, dialect)
        rows = (await session.execute(
            select(day, func.count()).where(column >= first).group_by(day))).all()
        found = {to_date(d): int(n) for d, n in rows}
        series[label] = [found.get(d, 0) for d in all_days]
    return Daily(all_days, series)


# ----- failures ---------------------------------------------------------------------------
@dataclass(frozen=True)
class FailureGroup:
    reason: str  # as stored ("" when none)
    count: int
    kinds: dict[str, int]
    latest: datetime | None

    @property
    def words(self) -> str:
        return reason_text(self.reason)


async def failure_groups(session: AsyncSession) -> list[FailureGroup]:
    rows = (await session.execute(
        select(OutboxMessage.last_error, OutboxMessage.kind, func.count(),
               func.max(OutboxMessage.created_at))
        .where(OutboxMessage.state == FAILED)
        .group_by(OutboxMessage.last_error, OutboxMessage.kind))).all()
    groups: dict[str, dict[str, Any]] = {}
    for error, kind, n, latest in rows:
        group = groups.setdefault(error or "", {"count": 0, "kinds": {}, "latest": None})
        group["count"] += int(n)
        group["kinds"][kind] = int(n)
        if latest is not None and (group["latest"] is None or latest > group["latest"]):
            group["latest"] = latest
    return sorted((FailureGroup(reason, g["count"], g["kinds"], g["latest"])
                   for reason, g in groups.items()), key=lambda g: (-g.count, g.reason))


def _reason_is(reason: str) -> Any:
    if reason == "":
        return (OutboxMessage.last_error.is_(None)) | (OutboxMessage.last_error == "")
    return OutboxMessage.last_error == reason


async def failed_messages(session: AsyncSession, reason: str | None, page: int,
                          per_page: int = PER_PAGE
                          ) -> tuple[list[tuple[OutboxMessage, str | None]], int]:
    """Failed messages (of one reason, or all), newest first, with the number of the
    person's latest application (to open their page), and how many there are."""
    query = select(OutboxMessage).where(OutboxMessage.state == FAILED)
    if reason is not None:
        query = query.where(_reason_is(reason))
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    messages = list((await session.scalars(
        query.order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc())
        .offset((page - 1) * per_page).limit(per_page))).all())
    numbers = await latest_applications(session, {m.beneficiary_id for m in messages})
    return [(m, numbers.get(m.beneficiary_id)) for m in messages], total


async def latest_applications(session: AsyncSession, beneficiary_ids: set[int]
                              ) -> dict[int, Any]:
    """Each person's most recent application (id, number), to link to their page."""
    if not beneficiary_ids:
        return {}
    rows = (await session.execute(
        select(Application.beneficiary_id, Application.id, Application.number)
        .where(Application.beneficiary_id.in_(beneficiary_ids))
        .order_by(Application.stage_date, Application.id))).all()
    return {person: (app_id, number) for person, app_id, number in rows}


def _message_view(message: OutboxMessage) -> dict[str, Any]:
    return {"id": message.id, "kind": message.kind, "channel": message.channel,
            "state": message.state, "attempts": message.attempts,
            "last_error": message.last_error}


_REQUEUE = {"state": QUEUED, "attempts": 0, "claimed_by": None, "claimed_at": None,
            "held_for_quiet_hours": False}


async def retry_message(session: AsyncSession, message_id: int
                        ) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Put one failed message back in the queue; its state before and after, or None
    when it is not (or no longer) failed."""
    message = await session.get(OutboxMessage, message_id)
    if message is None or message.state != FAILED:
        return None
    before = _message_view(message)
    result = await session.execute(
        update(OutboxMessage).where(and_(OutboxMessage.id == message_id,
                                         OutboxMessage.state == FAILED))
        .values(not_before=utcnow(), **_REQUEUE))
    if not result.rowcount:
        return None
    await session.refresh(message)
    return before, _message_view(message)


async def retry_reason(session: AsyncSession, reason: str) -> list[int]:
    """Put every failed message with this reason back in the queue; their ids."""
    ids = list((await session.scalars(
        select(OutboxMessage.id).where(and_(OutboxMessage.state == FAILED,
                                            _reason_is(reason))))).all())
    if not ids:
        return []
    done: list[int] = []
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        result = await session.execute(
            update(OutboxMessage).where(and_(OutboxMessage.id.in_(chunk),
                                             OutboxMessage.state == FAILED))
            .values(not_before=utcnow(), **_REQUEUE)
            .returning(OutboxMessage.id))
        done.extend(row[0] for row in result.all())
    return done


# ----- SMS providers set aside ---------------------------------------------------------
PROVIDER_LABELS = {"tencent": "腾讯云短信", "aliyun": "阿里云短信", "console": "演示短信（不真发）"}
_ASIDE_WORDS = {
    "daily_quota": "今天的短信发送量已经到了在短信平台设定的每天上限",
    "account": "短信账户现在发不出短信（余额或套餐用完、欠费停用、没有权限或密钥不对等）",
    "unreachable": "接连几次连不上短信平台",
}


def _china_time(moment: datetime) -> str:
    local = moment.astimezone(CHINA)
    return f"{local.month}月{local.day}日 {local:%H:%M}"


@dataclass(frozen=True)
class ProviderAside:
    """An SMS provider the notifier is not using for now, in staff's words."""

    provider: str
    kind: str
    reason: str  # the provider's own code and message
    until: datetime

    @property
    def label(self) -> str:
        return PROVIDER_LABELS.get(self.provider, self.provider)

    @property
    def words(self) -> str:
        return _ASIDE_WORDS.get(self.kind, "短信平台出了问题")

    @property
    def then(self) -> str:
        when = _china_time(self.until)
        if self.kind == "daily_quota":
            return f"每天的上限到夜里12点重新计算，{when}起自动恢复使用。"
        if self.kind == "account":
            return (f"请登录这家短信平台的网站处理（充值、续费或开通权限）；{when}以后发送程序"
                    "会再试，处理好了就恢复使用，没处理好就再停一段时间。")
        return f"{when}以后发送程序会再试。"


async def providers_set_aside(session: AsyncSession, now: datetime | None = None
                              ) -> list[ProviderAside]:
    """The providers set aside now (see notify.worker.ProviderHealth), soonest back first."""
    now = now or utcnow()
    rows = (await session.scalars(select(ProviderStatus))).all()
    result = []
    for row in rows:
        if row.aside_until > now:
            result.append(ProviderAside(row.provider, row.kind, row.reason, row.aside_until))
    return sorted(result, key=lambda p: (p.until, p.provider))


# ----- quiet hours ----------------------------------------------------------------------
@dataclass(frozen=True)
class Held:
    kind: str
    count: int
    first: datetime | None  # the earliest time they may go


async def held_for_quiet_hours(session: AsyncSession) -> list[Held]:
    rows = (await session.execute(
        select(OutboxMessage.kind, func.count(), func.min(OutboxMessage.not_before))
        .where(and_(OutboxMessage.state == QUEUED,
                    OutboxMessage.held_for_quiet_hours.is_(True)))
        .group_by(OutboxMessage.kind).order_by(OutboxMessage.kind))).all()
    return [Held(kind, int(n), first) for kind, n, first in rows]


# ----- opt-outs ---------------------------------------------------------------------------
@dataclass
class OptOutRow:
    opt_out: OptOut
    address: str  # masked
    people: list[tuple[int, int | None, str | None]]  # (beneficiary, application, number)

    @property
    def beneficiary_ids(self) -> list[int]:
        return [p[0] for p in self.people]


async def opt_outs(session: AsyncSession, page: int, per_page: int = PER_PAGE
                   ) -> tuple[list[OptOutRow], int]:
    """One page of opt-outs, newest first, and how many there are."""
    total = await session.scalar(select(func.count()).select_from(OptOut)) or 0
    rows = list((await session.scalars(
        select(OptOut).order_by(OptOut.created_at.desc(), OptOut.id.desc())
        .offset((page - 1) * per_page).limit(per_page))).all())
    return await opt_outs_for(session, rows), total


async def opt_outs_for(session: AsyncSession, rows: list[OptOut]) -> list[OptOutRow]:
    """Each opt-out with its masked address and the people it belongs to (by phone, or
    by an active WeChat binding)."""
    phones = [r.address for r in rows if r.channel == "sms"]
    openids = [r.address for r in rows if r.channel == "wechat"]
    by_phone: dict[str, list[Beneficiary]] = {}
    if phones:
        for person in (await session.scalars(
                select(Beneficiary).where(Beneficiary.phone_hash.in_(phones)))).all():
            by_phone.setdefault(person.phone_hash or "", []).append(person)
    by_openid: dict[str, list[int]] = {}
    if openids:
        for binding in (await session.scalars(select(Binding).where(and_(
                Binding.openid.in_(openids), Binding.revoked_at.is_(None))))).all():
            by_openid.setdefault(binding.openid, []).append(binding.beneficiary_id)
    ids = {p.id for people in by_phone.values() for p in people}
    ids |= {i for people in by_openid.values() for i in people}
    apps = await latest_applications(session, ids)
    result = []
    for row in rows:
        if row.channel == "sms":
            people = by_phone.get(row.address, [])
            masked = next((p.phone_masked for p in people if p.phone_masked), None) or \
                "（名单里没有这个号码）"
            person_ids = [p.id for p in people]
        else:
            masked = mask_openid(row.address)
            person_ids = by_openid.get(row.address, [])
        result.append(OptOutRow(row, masked, [
            (pid, *(apps.get(pid) or (None, None))) for pid in person_ids]))
    return result


def optout_view(row: OptOut, masked: str) -> dict[str, Any]:
    return {"id": row.id, "channel": row.channel, "address": masked, "source": row.source,
            "created_at": row.created_at}


async def find_by_number(session: AsyncSession, number: str
                         ) -> tuple[Application, Beneficiary] | None:
    app = await session.scalar(select(Application).where(Application.number == number))
    if app is None:
        return None
    person = await session.get(Beneficiary, app.beneficiary_id)
    assert person is not None
    return app, person


def masked_phone_of(person: Beneficiary) -> str:
    return person.phone_masked or ""

