"""Work out which reminders are due and queue them in the outbox, exactly once.

Each message has a unique key per (recipient, kind, period or event), and rows
are inserted with ON CONFLICT DO NOTHING, so planning twice, or from two
processes at once, never makes a second message.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from huimin.clock import local_today, utcnow
from huimin.db import Database, dialect_insert
from huimin.personal import Vault
from huimin.registry import STAGE_WORDS
from huimin.registry.models import Application, StatusChange
from notify.models import OutboxMessage, PayoutLine
from notify.rules import QuietHours

CHUNK = 1000
VERIFICATION = "verification_code"
# Kinds whose parameters are stored encrypted (the worker decrypts them to send).
SEALED_KINDS = frozenset({VERIFICATION})


@dataclass
class PlanReport:
    queued: Counter[str] = field(default_factory=Counter)
    already_planned: int = 0
    held_for_quiet_hours: int = 0

    def summary(self) -> str:
        kinds = "，".join(f"{k} {v}" for k, v in sorted(self.queued.items())) or "无"
        return (f"新排队 {sum(self.queued.values())} 条（{kinds}），"
                f"已排过 {self.already_planned} 条，其中等到早上发 {self.held_for_quiet_hours} 条")


def month_text(month: str) -> str:
    """'2026-11' -> '11月'."""
    return f"{int(month.split('-')[1])}月"


def day_text(day: date) -> str:
    return f"{day.month}月{day.day}日"


async def queue(session: AsyncSession, rows: Sequence[dict[str, Any]],
                report: PlanReport) -> None:
    """Insert outbox rows, ignoring any whose key is already there."""
    if not rows:
        return
    stmt = dialect_insert(session, OutboxMessage).on_conflict_do_nothing(index_elements=["key"])
    stmt = stmt.returning(OutboxMessage.kind, OutboxMessage.held_for_quiet_hours)
    inserted = (await session.execute(stmt, list(rows))).all() if rows else []
    for kind, held in inserted:
        report.queued[kind] += 1
        report.held_for_quiet_hours += bool(held)
    report.already_planned += len(rows) - len(inserted)


async def queue_verification_code(db: Database, vault: Vault, *, beneficiary_id: int,
                                  code: str, code_id: int, now: datetime,
                                  expires_at: datetime) -> None:
    """Queue the SMS carrying a verification code issued at ``now``: urgent (ahead of
    reminders, at any hour, past the per-phone caps), the code encrypted at rest, and
    lapsing with the code, so a code that could no longer be used is never sent."""
    async with db.session() as session:
        session.add(OutboxMessage(
            key=f"{VERIFICATION}:{code_id}", kind=VERIFICATION, beneficiary_id=beneficiary_id,
            urgent=True, params={"code": vault.encrypt(code)}, not_before=now,
            expires_at=expires_at, created_at=now))


def _row(key: str, kind: str, beneficiary_id: int, params: dict[str, str], now: datetime,
         quiet: QuietHours) -> dict[str, Any]:
    not_before = quiet.next_allowed(now)
    return {"key": key, "kind": kind, "beneficiary_id": beneficiary_id, "urgent": False,
            "params": params, "state": "queued", "not_before": not_before,
            "held_for_quiet_hours": not_before != now, "attempts": 0, "created_at": now}


async def plan_status_changes(db: Database, now: datetime, quiet: QuietHours,
                              report: PlanReport) -> None:
    """Announce each recorded stage change once (a new application's first stage is not)."""
    while True:
        async with db.session() as session:
            changes = (await session.execute(
                select(StatusChange, Application)
                .join(Application, Application.id == StatusChange.application_id)
                .where(StatusChange.announced_at.is_(None))
                .order_by(StatusChange.id).limit(CHUNK))).all()
            if not changes:
                return
            rows = [_row(f"status:{change.id}", "status_change", app.beneficiary_id, {
                "programme": app.programme, "number": app.number, "stage": change.to_stage,
                "stage_words": STAGE_WORDS.get(change.to_stage, ""),
            }, now, quiet) for change, app in changes if change.from_stage is not None]
            await queue(session, rows, report)
            await session.execute(update(StatusChange)
                                   .where(StatusChange.id.in_([c.id for c, _ in changes]))
                                   .values(announced_at=now))


async def plan_rechecks(db: Database, now: datetime, quiet: QuietHours,
                        offsets: Iterable[int], report: PlanReport) -> None:
    """Reminders ``offsets`` days before each approved application's recheck, and one when
    overdue. When several reminders are due at once only the nearest is sent."""
    today = local_today(now)
    offsets = sorted(set(offsets))
    last_id = 0
    while True:
        async with db.session() as session:
            apps = (await session.scalars(
                select(Application).where(and_(Application.id > last_id,
                                               Application.stage == "已批准",
                                               Application.recheck_due.is_not(None)))
                .order_by(Application.id).limit(CHUNK))).all()
            if not apps:
                return
            last_id = apps[-1].id
            rows = []
            for app in apps:
                due = app.recheck_due
                assert due is not None
                params = {"programme": app.programme, "due": day_text(due)}
                if today > due:
                    rows.append(_row(f"recheck-overdue:{app.id}:{due.isoformat()}",
                                     "recheck_overdue", app.beneficiary_id, params, now, quiet))
                    continue
                days_left = (due - today).days
                due_offsets = [o for o in offsets if days_left <= o]
                if due_offsets:
                    offset = due_offsets[0]
                    rows.append(_row(f"recheck:{app.id}:{due.isoformat()}:{offset}",
                                     "recheck_due", app.beneficiary_id,
                                     {**params, "days": str(days_left)}, now, quiet))
            await queue(session, rows, report)


async def plan_payouts(db: Database, now: datetime, quiet: QuietHours,
                       report: PlanReport) -> None:
    """Tell each recipient on an imported payout list that the month's money arrived."""
    while True:
        async with db.session() as session:
            lines = (await session.scalars(
                select(PayoutLine).where(PayoutLine.planned_at.is_(None))
                .order_by(PayoutLine.id).limit(CHUNK))).all()
            if not lines:
                return
            rows = [_row(f"payout:{line.beneficiary_id}:{line.programme}:{line.month}",
                         "payout", line.beneficiary_id, {
                             "programme": line.programme, "month": month_text(line.month),
                             "amount": f"{line.amount:.2f}"}, now, quiet) for line in lines]
            await queue(session, rows, report)
            await session.execute(update(PayoutLine)
                                  .where(PayoutLine.id.in_([line.id for line in lines]))
                                  .values(planned_at=now))


async def plan(db: Database, now: datetime | None = None, quiet: QuietHours | None = None,
               recheck_offsets: Iterable[int] = (14, 3)) -> PlanReport:
    """Queue everything that is due now."""
    now = now or utcnow()
    quiet = quiet or QuietHours()
    report = PlanReport()
    await plan_status_changes(db, now, quiet, report)
    await plan_rechecks(db, now, quiet, recheck_offsets, report)
    await plan_payouts(db, now, quiet, report)
    return report
